/* shardalloc: internal helpers shared by the core files. The inline fast paths live here;
 * the slow paths they fall into are out of line and cold, declared in prototypes.h by the
 * file that defines them. Internal symbols start with `_sa_` (never `mi_`/`_mi_`), so the
 * library links beside a real mimalloc without a clash. */
#ifndef SHARDALLOC_INTERNAL_H
#define SHARDALLOC_INTERNAL_H

#include <pthread.h>
#include <string.h>

#include "track.h"
#include "types.h"

#define sa_likely(x) __builtin_expect(!!(x), 1)
#define sa_unlikely(x) __builtin_expect(!!(x), 0)
#define sa_cold __attribute__((cold, noinline))
#define sa_inline static inline __attribute__((always_inline))

/* The thread-local default heap. Initial-exec TLS is one `mov %fs:off`; a library meant to
 * be loaded with dlopen builds with SA_TLS_DYNAMIC, which uses the general model instead. */
#if defined(SA_TLS_DYNAMIC)
#define SA_TLS_MODEL
#else
#define SA_TLS_MODEL __attribute__((tls_model("initial-exec")))
#endif
extern __thread heap_t *_sa_heap_default SA_TLS_MODEL;

/* ---- Global locks -----------------------------------------------------------------------
 * Every mutex of the library that is not in a per-thread object. Each is defined (and
 * documented) in the file named; init.c lists them in lock order and holds them across fork. */
extern pthread_mutex_t _sa_heaps_lock;    /* sharedheap.c: heaps' instance lists */
extern pthread_mutex_t _sa_pool_lock;     /* heap.c: the pool of thread and heap objects */
extern pthread_mutex_t _sa_huge_lock;     /* huge.c: the lists of huge pages */
extern pthread_mutex_t _sa_owned_lock;    /* purge.c: the list of all owned segments */
extern pthread_mutex_t _sa_segments_lock; /* segment.c: the segment caches, abandoned list */
extern pthread_mutex_t _sa_arena_lock;    /* arena.c: the reservation's segment bitmap */
extern pthread_mutex_t _sa_threads_lock;  /* stats.c: live threads, exited threads' totals */

/* ---- Assertions ------------------------------------------------------------------------- */
void _sa_assert_fail(const char *expr, const char *file, int line, const char *func) sa_cold;
#if SA_DEBUG > 0
#define sa_assert(x) ((x) ? (void)0 : _sa_assert_fail(#x, __FILE__, __LINE__, __func__))
#else
#define sa_assert(x) ((void)0)
#endif
#if SA_DEBUG > 1
#define sa_assert_expensive(x) sa_assert(x)
#else
#define sa_assert_expensive(x) ((void)0)
#endif
/* One condition of a validity walk (mi_heap_check): when it does not hold, say which and
 * where on stderr (always: the caller asked) and fail the walk. */
void _sa_check_failed(const char *expr, const char *file, int line) sa_cold;
#define SA_CHECK(cond)                                  \
  do {                                                  \
    if (sa_unlikely(!(cond))) {                         \
      _sa_check_failed(#cond, __FILE__, __LINE__);      \
      return false;                                     \
    }                                                   \
  } while (0)
#define SA_DEBUG_FREED 0xDF /* fill of freed blocks in debug builds */
#define SA_DEBUG_UNINIT 0xD0 /* fill of fresh blocks in debug builds */

/* ---- Small arithmetic ------------------------------------------------------------------- */
sa_inline bool sa_is_power_of_two(size_t x) { return x != 0 && (x & (x - 1)) == 0; }
sa_inline size_t sa_align_up(size_t x, size_t align) { return (x + align - 1) & ~(align - 1); }
sa_inline bool sa_mul_overflow(size_t count, size_t size, size_t *total) {
  return __builtin_mul_overflow(count, size, total);
}
sa_inline size_t sa_bsr(size_t x) { return 63 - (size_t)__builtin_clzll(x); } /* x != 0 */

/* Identity of the calling thread: the thread pointer, unique among live threads. */
sa_inline uintptr_t sa_thread_id(void) { return (uintptr_t)__builtin_thread_pointer(); }

/* ---- Size classes (see types.h) --------------------------------------------------------- */
sa_inline size_t sa_bin(size_t size) {
  if (size <= 8) return 0;
  if (size <= 128) return (size + 15) >> 4;
  size_t s = size - 1;
  size_t b = sa_bsr(s); /* >= 7 */
  return 9 + ((b - 7) << 2) + ((s >> (b - 2)) & 3);
}
sa_inline size_t sa_bin_size(size_t bin) {
  if (bin == 0) return 8;
  if (bin <= 8) return bin << 4;
  size_t i = bin - 9;
  return (5 + (i & 3)) << (7 + (i >> 2) - 2);
}
/* The bin of a direct-table word size (size rounded up to 8 bytes). */
sa_inline size_t sa_bin_of_wsize(size_t wsize) { return sa_bin(wsize == 0 ? 1 : wsize * 8); }

/* The bin a young heap (types.h's YOUNG_PAGES_MAX) serves `size` <= DIRECT_SIZE_MAX from: the
 * size rounded up to a power of two, at least YOUNG_SIZE_MIN. */
sa_inline size_t sa_bin_young(size_t size) {
  return sa_bin(size <= YOUNG_SIZE_MIN ? YOUNG_SIZE_MIN : (size_t)1 << (sa_bsr(size - 1) + 1));
}

/* ---- Segments and pages from pointers ---------------------------------------------------
 * The segment map: for every SEGMENT_SIZE unit of the address space, the segment that starts
 * there, or none (not ours, or the continuation of a huge segment: `_sa_segment_of_any`
 * resolves those). Written when a segment is created or released (segmap.c). The free fast
 * path looks a pointer up here before it reads any header, so a pointer that is not ours
 * (a stack or static address, a page from mmap, a wild value) never makes it fault. Indexes
 * wrap at SA_ADDRESS_BITS: a non-canonical pointer aliases a real entry, whose page lookup
 * stays inside that segment's header (sa_page_of masks too).
 *
 * An entry holds the segment's distance from `none`, a segment header that is all zero and
 * never written, placed right after the entries (one base register serves both): an empty entry (0, as the zeroed map starts)
 * then leads to `none`, whose owner (0) is no thread and whose slices all lead to its
 * slice_none (flags 0). So the free fast path needs no test for "not ours": such a pointer
 * fails the owner test like another thread's block, and the generic path sorts it out. */
#if defined(__x86_64__)
#define SA_ADDRESS_BITS 47 /* x86-64 user space (without 5-level paging hints) */
#else
#define SA_ADDRESS_BITS 48 /* aarch64 and others: 48-bit user addresses */
#endif
#define SEGMENT_MAP_UNITS ((size_t)1 << (SA_ADDRESS_BITS - SEGMENT_SHIFT))
typedef struct segment_map_s {
  _Atomic(uintptr_t) entry[SEGMENT_MAP_UNITS];  /* segment - &none; 0: none */
  segment_t none;                               /* all zero, never written */
} segment_map_t;
extern segment_map_t _sa_segment_map;
#define SA_SEGMENT_NONE (&_sa_segment_map.none)

/* The map's segment for `p`'s unit: never NULL, SA_SEGMENT_NONE where there is none. */
sa_inline segment_t *sa_segment_map_get(const void *p) {
  size_t unit = ((uintptr_t)p >> SEGMENT_SHIFT) & (SEGMENT_MAP_UNITS - 1);
  uintptr_t offset = atomic_load_explicit(&_sa_segment_map.entry[unit], memory_order_relaxed);
  return (segment_t *)((uintptr_t)SA_SEGMENT_NONE + offset);
}
/* The segment starting in `p`'s unit, or NULL. */
sa_inline segment_t *sa_segment_lookup(const void *p) {
  segment_t *segment = sa_segment_map_get(p);
  return segment != SA_SEGMENT_NONE ? segment : NULL;
}

/* The segment of a pointer known to be ours (a block, a page descriptor). */
sa_inline segment_t *sa_segment_of(const void *p) {
  return (segment_t *)((uintptr_t)p & ~(uintptr_t)SEGMENT_MASK);
}
/* The page holding `p`, whose segment starts in p's SEGMENT_SIZE unit. */
sa_inline page_t *sa_page_of(const segment_t *segment, const void *p) {
  size_t idx = ((uintptr_t)p & SEGMENT_MASK) >> SLICE_SHIFT;
  return (page_t *)((const uint8_t *)&segment->slice_none + segment->page_offsets[idx]);
}
/* The page_offsets entry of `page`'s slices (types.h). */
sa_inline uint16_t sa_page_offset(const page_t *page) {
  return (uint16_t)((const uint8_t *)page - (const uint8_t *)&sa_segment_of(page)->slice_none);
}
sa_inline bool sa_page_is_huge(const page_t *page) { return page->bin == BIN_COUNT; }
/* The page of a huge segment's one block. */
sa_inline page_t *sa_huge_page(segment_t *segment) { return &segment->pages[HUGE_PAGE_INDEX]; }
sa_inline uint8_t *sa_page_start(const page_t *page) {
  const segment_t *segment = sa_segment_of(page);
  return (uint8_t *)segment + (size_t)(page - segment->pages) * SLICE_SIZE;
}
sa_inline size_t sa_block_size(const page_t *page) {
  if (sa_likely(!sa_page_is_huge(page))) return sa_bin_size(page->bin);
  return sa_segment_of(page)->huge_block_size;
}

/* The slices of a page of one block of `block_size` bytes (a large block's, or a block that
 * realloc grows, regrow.c): the block and, in secure builds, its guard. */
sa_inline size_t sa_one_block_slices(size_t block_size) {
  return (block_size + SA_GUARD_SIZE + SLICE_SIZE - 1) / SLICE_SIZE;
}

/* The slices of a page for blocks of `block_size`: one for small blocks, MEDIUM_PAGE_SLICES
 * for medium ones; larger ones get a page of one block. */
sa_inline size_t sa_page_slices_for(size_t block_size) {
  if (block_size <= SMALL_BLOCK_MAX) return 1;
  if (block_size <= MEDIUM_BLOCK_MAX) return MEDIUM_PAGE_SLICES;
  return sa_one_block_slices(block_size);
}

/* The block of `block_size` bytes that contains `p`, of a page whose blocks start at `start`. */
sa_inline block_t *sa_block_start_in(uint8_t *start, size_t block_size, const void *p) {
  size_t offset = (size_t)((const uint8_t *)p - start);
  return (block_t *)(start + offset - offset % block_size);
}

/* The block that contains `p` (p itself unless the page handed out interior pointers). */
sa_inline block_t *sa_block_start(const page_t *page, const void *p) {
  if (sa_likely(!page->flags.x.has_aligned)) return (block_t *)p;
  return sa_block_start_in(sa_page_start(page), sa_block_size(page), p);
}

/* The cross-thread free word (types.h): list head, delayed state, count of blocks in the list. */
sa_inline block_t *sa_xthread_block(uintptr_t x) { return (block_t *)(x & XTHREAD_BLOCK_MASK); }
sa_inline delayed_state_t sa_xthread_state(uintptr_t x) {
  return (delayed_state_t)(x & XTHREAD_STATE_MASK);
}
sa_inline size_t sa_xthread_count(uintptr_t x) { return (size_t)(x >> XTHREAD_COUNT_SHIFT); }
/* A page of one block whose block waits in its cross-thread list (word `x`) already: any
 * other free of that block is a second one. */
sa_inline bool sa_one_block_waits(const page_t *page, uintptr_t x) {
  return page->reserved == 1 && sa_xthread_block(x) != NULL;
}
/* `x` with another delayed state (list and count kept). */
sa_inline uintptr_t sa_xthread_with_state(uintptr_t x, delayed_state_t s) {
  return (x & ~XTHREAD_STATE_MASK) | (uintptr_t)s;
}
/* `x` with `b` pushed onto its list. */
sa_inline uintptr_t sa_xthread_push(uintptr_t x, block_t *b) {
  return (uintptr_t)b | (x & XTHREAD_STATE_MASK) |
         ((uintptr_t)(sa_xthread_count(x) + 1) << XTHREAD_COUNT_SHIFT);
}
/* `x` with its list taken: empty, count 0, state kept. */
sa_inline uintptr_t sa_xthread_taken(uintptr_t x) { return x & XTHREAD_STATE_MASK; }

/* Chain headers (types.h): release builds only (debug and memory-checker builds fill or guard
 * freed blocks past the link word), on pages of blocks of 16 bytes and more (not bin 0). */
#define SA_CHAIN_HEADERS (!SA_SECURE && SA_DEBUG == 0 && !SA_TRACK)
sa_inline bool sa_page_has_chain_headers(const page_t *page) {
  return SA_CHAIN_HEADERS && page->bin != 0;
}
sa_inline void sa_chain_header_set(const page_t *page, block_t *head, const block_t *tail,
                                   size_t count) {
  if (sa_page_has_chain_headers(page))
    ((uintptr_t *)head)[1] = (uintptr_t)tail | ((uintptr_t)count << XTHREAD_COUNT_SHIFT);
}
sa_inline uintptr_t sa_chain_header(const block_t *head) { return ((const uintptr_t *)head)[1]; }

/* ---- Secure mode (SA_SECURE=1): link coding and free checks; empty otherwise ------------ */
#include "secure.h"

/* ---- The out-of-line functions, by file ------------------------------------------------- */
#include "prototypes.h"

/* ---- The allocation fast path ------------------------------------------------------------
 * Budget: size check, one TLS load, one table load, pop, used++: 14 instructions on x86-64
 * (see bench/ for the callgrind counts). The empty page of a fresh heap (and of a
 * direct-table slot without a usable page) has no free block, so no "initialised?" test. */
sa_inline void *sa_page_pop(page_t *page, block_t *block) {
  page->free = sa_block_next(page, block);
  page->used++;
  sa_track_malloc(block, sa_block_size(page), false);
#if SA_SECURE
  sa_secure_clear_alloc(page, block); /* no data of the previous owner (secure.h) */
#endif
#if SA_DEBUG > 0
  sa_assert(sa_page_of(sa_segment_of(block), block) == page);
  memset(block, SA_DEBUG_UNINIT, sa_block_size(page));
#endif
  return block;
}

/* The next block to hand out: from `free`, or else the whole same-thread free list taken at
 * once (no slow path needed for blocks this thread freed itself: a loop that frees and
 * allocates one block would otherwise ping-pong through the generic path). NULL: slow path. */
sa_inline block_t *sa_page_next_block(page_t *page) {
  block_t *block = page->free;
  if (sa_likely(block != NULL)) return block;
  block = page->local_free;
  if (block != NULL) {
    page->local_free = NULL;
    page->is_zero = 0; /* recycled blocks join the free list */
  }
  return block;
}

/* Take a block from `page`, or fall to the generic path; `zero` clears it (a constant at
 * every call site, so it costs the plain malloc nothing). */
sa_inline void *sa_page_malloc(heap_t *heap, page_t *page, size_t size, bool zero) {
  block_t *block = sa_page_next_block(page);
  if (sa_unlikely(block == NULL)) return _sa_malloc_generic(size, heap, zero);
  void *p = sa_page_pop(page, block);
  /* never a huge page here; secure release builds cleared the block in sa_page_pop */
  if (zero && !(SA_SECURE && SA_DEBUG == 0)) memset(p, 0, sa_block_size(page));
  return p;
}

sa_inline void *sa_heap_malloc_small(heap_t *heap, size_t size) {
  return sa_page_malloc(heap, heap->pages_direct[(size + 7) >> 3], size, false);
}

/* The page to take a block of `size` bytes from without the slow path: the direct table for
 * small sizes, the first page of the size class's queue for larger ones (one bin computation
 * more), the empty page for huge sizes (always the generic path). */
sa_inline page_t *sa_heap_page_for(heap_t *heap, size_t size) {
  if (sa_likely(size <= DIRECT_SIZE_MAX)) return heap->pages_direct[(size + 7) >> 3];
  if (size <= LARGE_BLOCK_MAX) {
    page_t *page = heap->pages[sa_bin(size)].first;
    if (page != NULL) return page;
  }
  return &_sa_page_empty;
}

sa_inline void *sa_heap_malloc_zero(heap_t *heap, size_t size, bool zero) {
  return sa_page_malloc(heap, sa_heap_page_for(heap, size), size, zero);
}

sa_inline void *sa_heap_malloc(heap_t *heap, size_t size) {
  return sa_heap_malloc_zero(heap, size, false);
}

/* ---- The free fast path ------------------------------------------------------------------
 * Owner thread and no rare flag: push onto local_free, used--. Everything else (another
 * thread, a full page, interior pointers, a page of one block, an emptied page) goes to the
 * generic path; a pointer the segment map does not know (NULL, not ours, deep inside a huge
 * block) to the unmapped path. Debug builds run this same code with the checks inside it. */

/* Push a block onto its page's same-thread free list (owner only). The one local free: the
 * fast path and the generic path both end here. True when the page is to be retired now:
 * the free emptied it, and it is not retired already (a page emptied again while retired, a
 * lone object's, keeps its countdown: page.c). */
sa_inline bool sa_page_free_local_push(page_t *page, block_t *block) {
#if SA_DEBUG > 0
  _sa_debug_fill_freed(page, block);
#endif
  sa_block_set_next(page, block, page->local_free);
  page->local_free = block;
#if defined(__SANITIZE_THREAD__)
  /* the housekeeper's sweep may read `used` now (housekeeper.c): a release store shows
   * ThreadSanitizer the order that x86 and the sweep's CAS give (three instructions more on
   * the fast path, so only here) */
  uint16_t used = (uint16_t)(page->used - 1);
  __atomic_store_n(&page->used, used, __ATOMIC_RELEASE);
  bool emptied = used == 0;
#else
  bool emptied = --page->used == 0;
#endif
  return sa_unlikely(emptied) && page->retire_expire == 0;
}

/* The local free from a fast path (no house_lock held). */
sa_inline void sa_page_free_local(page_t *page, block_t *block) {
  if (sa_page_free_local_push(page, block)) _sa_page_retire(page);
}

/* The owner's free of a block of a page whose flags are PAGE_FLAGS_FAST: the fast path of
 * sa_free and of the sized free (free.c). Debug and secure builds check it here. */
sa_inline void sa_free_owned(page_t *page, void *p) {
#if SA_DEBUG > 0
  _sa_debug_check_free(page, (block_t *)p, p, true); /* aborts on misuse */
#endif
#if SA_SECURE
  if (sa_unlikely(!sa_secure_free_unsuspicious(page, (block_t *)p))) {
    _sa_secure_free_checked(page, (block_t *)p); /* aborts on misuse, or frees */
    return;
  }
#endif
  sa_track_free(p, sa_block_size(page));
  sa_page_free_local(page, (block_t *)p);
}

sa_inline void sa_free(void *p) {
  segment_t *segment = sa_segment_map_get(p); /* SA_SEGMENT_NONE: owned by no thread */
  page_t *page = sa_page_of(segment, p);
  if (sa_unlikely(atomic_load_explicit(&segment->thread_id, memory_order_relaxed) !=
                  sa_thread_id())) {
    _sa_free_not_owned(segment, page, p); /* reads no more of the descriptor first */
    return;
  }
  if (sa_likely(page->flags.any == PAGE_FLAGS_FAST)) {
    sa_free_owned(page, p);
    return;
  }
  _sa_free_generic(segment, page, p);
}

#endif /* SHARDALLOC_INTERNAL_H */
