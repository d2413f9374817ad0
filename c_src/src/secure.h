/* shardalloc: secure mode (SA_SECURE=1), the inline part. Off by default: with SA_SECURE 0
 * nothing here is compiled but the constant SA_GUARD_SIZE (0), so the other files' code is
 * exactly that of a build without this file.
 *
 * What secure mode adds (docs/design.md, "Secure mode"):
 *   - free-list links are stored encoded, next' = (next ^ k0) * M + k1 (M odd, so the map is
 *     invertible), with keys derived from the page descriptor's address and a per-process
 *     secret from getrandom (no per-page storage); every link followed is decoded and must be
 *     NULL or the start of a block of the same page, or the process aborts naming the block.
 *     The multiplication carries a change of any low byte of the stored word into the high
 *     bits of the decoded one (a rotation would keep it low), so even a one-byte overwrite
 *     decodes to an address outside the page;
 *   - a no-access guard page at the end of every page of blocks larger than SMALL_BLOCK_MAX
 *     and at the end of every segment (secure.c);
 *   - new blocks join a page's free list in random order (secure.c);
 *   - every free checks that the pointer starts a block and that the block is not free
 *     already; the link word is cleared when a block is handed out, so a live block's first
 *     word is never a valid encoded link unless the program wrote one;
 *   - blocks are cleared when handed out, so no data of a previous owner reaches the next.
 * Included by internal.h after the pointer helpers; track.h calls the link coders. */
#ifndef SHARDALLOC_SECURE_H
#define SHARDALLOC_SECURE_H

/* Bytes at the end of the page of `slices` slices starting at slice `start` that no block may
 * use: its own guard (pages of blocks above SMALL_BLOCK_MAX) or the segment's. */
sa_inline size_t sa_guard_bytes(size_t start, size_t slices, size_t block_size) {
  if (!SA_SECURE) return 0;
  return block_size > SMALL_BLOCK_MAX || start + slices == SLICES_PER_SEGMENT ? SA_GUARD_SIZE : 0;
}

#if SA_SECURE

/* secure.c: the process secret and, per size class, the block size, its count of trailing
 * zero bits and the inverse modulo 2^64 of its odd part, with which "x is k block sizes, k
 * below the page's `reserved`" is one multiplication, one rotation and one comparison
 * (sa_secure_is_block): a table load instead of computing the size on every check. */
typedef struct sa_secure_bin_s {
  uint64_t inv;   /* (size >> shift)^-1 mod 2^64 */
  uint32_t size;  /* 0: huge pages (inv 1, shift 0: only offset 0 is a block) */
  uint32_t shift; /* trailing zeros of size */
} sa_secure_bin_t;
/* hidden: addressed directly, not through the shared library's GOT */
extern uint64_t _sa_secure_secret[2] __attribute__((visibility("hidden")));
extern sa_secure_bin_t _sa_secure_bins[BIN_COUNT + 1] __attribute__((visibility("hidden")));

/* The multiplier of the coding and its inverse modulo 2^64. */
#define SA_LINK_MUL 0xD6E8FEB86659FD93u
#define SA_LINK_MUL_INV 0xCFEE444D8B59A89Bu
_Static_assert((uint64_t)SA_LINK_MUL * SA_LINK_MUL_INV == 1, "inverse multipliers");

/* The page's keys: its descriptor address xor the secret. No further mixing: a public
 * invertible map of the key would not hide the secret from whoever learns one page's keys,
 * and the diffusion a one-byte overwrite needs comes from the multiplication of the coding
 * itself (docs/design.md, "Secure mode"). */
sa_inline uint64_t sa_secure_key0(const page_t *page) {
  return (uintptr_t)page ^ _sa_secure_secret[0];
}
sa_inline uint64_t sa_secure_key1(const page_t *page) {
  return (uintptr_t)page ^ _sa_secure_secret[1];
}

sa_inline block_t *sa_secure_encode(const page_t *page, const block_t *next) {
  return (block_t *)((((uintptr_t)next ^ sa_secure_key0(page)) * SA_LINK_MUL) +
                     sa_secure_key1(page));
}
sa_inline block_t *sa_secure_decode(const page_t *page, const block_t *stored) {
  return (block_t *)((((uintptr_t)stored - sa_secure_key1(page)) * SA_LINK_MUL_INV) ^
                     sa_secure_key0(page));
}

/* sa_page_start in one shift: the descriptor's offset in `pages` is 64 times its slice's
 * index, the slice's offset in the segment 65536 times it. */
sa_inline uintptr_t sa_secure_page_start(const page_t *page) {
  _Static_assert(sizeof(page_t) << (SLICE_SHIFT - 6) == SLICE_SIZE, "64-byte descriptors");
  uintptr_t in_segment = (uintptr_t)page & SEGMENT_MASK;
  return ((uintptr_t)page - in_segment) +
         ((in_segment - offsetof(segment_t, pages)) << (SLICE_SHIFT - 6));
}

/* `b` is the start of one of the page's blocks (below `reserved`). With size = odd << shift
 * and offset = k * size, k < reserved: offset * inv = k << shift (no wrap, k * size < 2^64)
 * and the rotation gives k. Conversely a result q < reserved means offset * inv == q << shift
 * (q's bits do not wrap around), so offset == q * size: the test is exact for every offset. */
sa_inline bool sa_secure_is_block(const page_t *page, const void *b) {
  uint64_t offset = (uintptr_t)b - sa_secure_page_start(page);
  const sa_secure_bin_t *bin = &_sa_secure_bins[page->bin];
  uint64_t x = offset * bin->inv;
  uint64_t q = (x >> bin->shift) | (x << ((64 - bin->shift) & 63));
  return q < page->reserved;
}

/* A link read from `holder` does not decode to NULL or a block of the page: abort. */
void _sa_secure_corrupt_link(const page_t *page, const block_t *holder, const block_t *decoded)
    __attribute__((cold, noreturn));
/* The block's first word decodes to a plausible link: find it in its page's lists (owner) or
 * take it as free (another thread: it cannot walk them), and abort on a double free. */
void _sa_secure_maybe_double_free(const page_t *page, const block_t *block, bool owner) sa_cold;
void _sa_secure_invalid_free(const void *p) __attribute__((cold, noreturn));

/* The link stored in `holder`, a free block of `page`, decoded and checked. */
sa_inline block_t *sa_secure_next(const page_t *page, const block_t *holder, const block_t *stored) {
  block_t *next = sa_secure_decode(page, stored);
  if (sa_unlikely(next != NULL && !sa_secure_is_block(page, next)))
    _sa_secure_corrupt_link(page, holder, next);
  return next;
}

/* `b` is the start of a block of any page of ours (a link of a heap's delayed list). */
sa_inline bool sa_secure_is_any_block(const void *b) {
  if ((uintptr_t)b >> SA_ADDRESS_BITS != 0) return false; /* a random value, most likely */
  segment_t *segment = sa_segment_lookup(b);
  return segment != NULL && sa_secure_is_block(sa_page_of(segment, b), b);
}

/* Every free of a block of a small, medium or large page: invalid pointers and double frees.
 * Another thread also takes a link to another page as free: the block waits in a heap's
 * delayed list (the owner looks there when it frees into a full page: _sa_free_block_local). */
sa_inline void sa_secure_check_free(const page_t *page, const block_t *block, bool owner) {
  if (sa_unlikely(!sa_secure_is_block(page, block))) _sa_secure_invalid_free(block);
  const block_t *next = sa_secure_decode(page, block->next);
  if (owner) {
    /* The owner confirms every suspicion by walking the page's lists, so a coarse filter
     * suffices: a free block's link decodes to NULL or into its own segment; a live block's
     * cleared word does not (nor, but once in 2^39, does a word the program wrote). */
    if (sa_unlikely(next == NULL || (((uintptr_t)next ^ (uintptr_t)block) >> SEGMENT_SHIFT) == 0))
      _sa_secure_maybe_double_free(page, block, owner);
  } else if (sa_unlikely(next == NULL ||
                         ((uintptr_t)next >> SA_ADDRESS_BITS == 0 && /* a live word's, mostly */
                          (sa_secure_is_block(page, next) || sa_secure_is_any_block(next))))) {
    _sa_secure_maybe_double_free(page, block, owner);
  }
}

/* The free fast path's test: `block` starts a block of the page and its first word is no
 * plausible link (a live block's). False sends the free to _sa_secure_free_checked (secure.c),
 * which runs sa_secure_check_free; kept apart so that the fast path calls nothing that returns
 * (no stack frame). */
sa_inline bool sa_secure_free_unsuspicious(const page_t *page, const block_t *block) {
  if (!sa_secure_is_block(page, block)) return false;
  const block_t *next = sa_secure_decode(page, block->next);
  return next != NULL && (((uintptr_t)next ^ (uintptr_t)block) >> SEGMENT_SHIFT) != 0;
}
void _sa_secure_free_checked(page_t *page, block_t *block) sa_cold;

/* A block about to be handed out is cleared, so the next owner never reads the previous
 * owner's data (blocks of a page of fresh memory are zero already, but for the link word).
 * On allocation rather than on free: the new owner's core is about to write the block anyway,
 * while a clear on free by another thread would pull every line of it to that thread's core.
 * The cleared link word also makes a live block's first word no valid link (check_free).
 * Blocks up to 128 bytes (sizes are multiples of 8, at least 8) with a few fixed-size stores
 * that may overlap, instead of a call to memset. */
/* Blocks from this size up are cleared where their previous owner touched them (secure.c:
 * mincore, memset of the resident runs, madvise of the others); below it, the system calls
 * cost more than a memset of the whole block (measured on a KVM guest, where a system call
 * costs 2-8 us: even at 256 KiB for one block whose page stays cached, 4x faster for a batch
 * of 64 whose memsets miss the cache, 1.5x slower at 128 KiB). */
#define SECURE_CLEAR_PURGE_MIN ((size_t)256 << 10)
/* OS pages one mincore looks at (its vector is on the stack). */
#define SECURE_CLEAR_CHUNK_PAGES 256
void _sa_secure_clear_large(void *p, size_t size) sa_cold;
/* Clear `size` bytes that an earlier owner may have written: a memset, or from
 * SECURE_CLEAR_PURGE_MIN up only where they were touched. */
sa_inline void sa_secure_clear(void *p, size_t size) {
  if (size < SECURE_CLEAR_PURGE_MIN) memset(p, 0, size);
  else _sa_secure_clear_large(p, size);
}
sa_inline void sa_secure_clear_alloc(const page_t *page, block_t *block) {
  if (page->is_zero) {
    block->next = NULL;
    return;
  }
  uint8_t *p = (uint8_t *)block;
  size_t size = _sa_secure_bins[page->bin].size; /* never a huge page here */
  if (size <= 16) {
    memset(p, 0, 8);
    memset(p + size - 8, 0, 8);
  } else if (size <= 32) {
    memset(p, 0, 16);
    memset(p + size - 16, 0, 16);
  } else if (size <= 64) {
    memset(p, 0, 32);
    memset(p + size - 32, 0, 32);
  } else if (size <= 128) {
    memset(p, 0, 64);
    memset(p + size - 64, 0, 64);
  } else {
    sa_secure_clear(p, size);
  }
}

#endif /* SA_SECURE */

/* The link of a block in a heap's delayed list (thread_delayed_free): keyed by the page of
 * the block that holds it, like every link, but it leads to a block of any page. */
sa_inline block_t *sa_delayed_next(const page_t *page, const block_t *block) {
#if SA_SECURE
  sa_track_mem_defined(block, sizeof(block_t));
  block_t *next = sa_secure_decode(page, block->next);
  sa_track_mem_noaccess(block, sizeof(block_t));
  if (next != NULL && !sa_secure_is_any_block(next)) _sa_secure_corrupt_link(page, block, next);
  return next;
#else
  return sa_block_next(page, block);
#endif
}

#endif /* SHARDALLOC_SECURE_H */
