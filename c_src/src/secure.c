/* shardalloc: secure mode (SA_SECURE=1), the out-of-line part: the process secret, the
 * per-thread random numbers, randomized free lists, guard pages and the reports of heap
 * corruption. The inline part (link coding, the checks on free) is secure.h. Every report
 * is one line on stderr naming the error and the address, then abort(): in secure mode a
 * corrupted heap is never used further. */
#include "internal.h"

#if SA_SECURE

#include <time.h>

uint64_t _sa_secure_secret[2];
sa_secure_bin_t _sa_secure_bins[BIN_COUNT + 1];
static bool guards_on; /* the OS page is SA_GUARD_SIZE: guards can be protected one by one */

/* ---- Random numbers ---------------------------------------------------------------------- */
/* Mixes a 64-bit value so that every input bit moves about half the output bits. */
static uint64_t mix64(uint64_t x) {
  x ^= x >> 31;
  x *= 0xD6E8FEB86659FD93u;
  x ^= x >> 29;
  x *= 0xCF1BBCDCB7A56463u;
  return x ^ (x >> 32);
}

/* A seed from the kernel; without getrandom, the clock and addresses (ASLR) mixed. */
static uint64_t random_seed(void) {
  uint64_t seed;
  if (_sa_os_random(&seed, sizeof(seed))) return seed;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uintptr_t)&seed ^
               (uintptr_t)&random_seed);
}

/* The thread's generator (xorshift64*): only the slow paths draw from it. */
static __thread uint64_t thread_rng SA_TLS_MODEL;

static uint64_t thread_random(void) {
  uint64_t x = thread_rng;
  if (sa_unlikely(x == 0)) x = random_seed() | 1; /* first use in this thread */
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  thread_rng = x;
  return x * 0x2545F4914F6CDD1Du;
}

void _sa_secure_init(void) {
  do {
    _sa_secure_secret[0] = random_seed();
    _sa_secure_secret[1] = mix64(random_seed() ^ _sa_secure_secret[0]);
  } while (_sa_secure_secret[0] == 0 || _sa_secure_secret[1] == 0);
  for (size_t bin = 0; bin < BIN_COUNT; bin++) {
    size_t size = sa_bin_size(bin);
    unsigned shift = (unsigned)__builtin_ctzll(size);
    uint64_t odd = size >> shift, inv = odd; /* Newton: each step doubles the bits correct */
    for (int i = 0; i < 5; i++) inv *= 2 - odd * inv;
    sa_assert(odd * inv == 1);
    _sa_secure_bins[bin] = (sa_secure_bin_t){.inv = inv, .size = (uint32_t)size, .shift = shift};
  }
  _sa_secure_bins[BIN_COUNT] = (sa_secure_bin_t){.inv = 1, .size = 0, .shift = 0};
  guards_on = _sa_os_page_size() == SA_GUARD_SIZE;
}

/* ---- Randomized free lists --------------------------------------------------------------- */
block_t *_sa_secure_thread_blocks(page_t *page, uint8_t *first, size_t count, size_t bsize) {
  /* a shuffle of the block indexes (Fisher-Yates); count <= PAGE_EXTEND_BYTES / 8 */
  uint16_t order[PAGE_EXTEND_BYTES / SA_INTPTR_SIZE > PAGE_EXTEND_MIN_BLOCKS
                     ? PAGE_EXTEND_BYTES / SA_INTPTR_SIZE
                     : PAGE_EXTEND_MIN_BLOCKS];
  sa_assert(count <= sizeof(order) / sizeof(order[0]));
  for (size_t i = 0; i < count; i++) order[i] = (uint16_t)i;
  for (size_t i = count - 1; i > 0; i--) {
    size_t j = (size_t)(thread_random() % (i + 1));
    uint16_t t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  block_t *next = page->free;
  for (size_t i = 0; i < count; i++) {
    block_t *b = (block_t *)(first + (size_t)order[i] * bsize);
    sa_block_set_next(page, b, next);
    next = b;
  }
  return next;
}

/* ---- Guard pages ------------------------------------------------------------------------- */
static void guard_set(void *p, bool on) {
  if (!guards_on) return;
  int err = _sa_os_protect(p, SA_GUARD_SIZE, on);
  if (err != 0) _sa_error("mprotect of the guard page at %p failed (errno %d)", p, err);
}

void _sa_secure_page_guard(segment_t *segment, size_t start, size_t slices, size_t block_size,
                           bool on) {
  /* a page at the segment's end shares the segment's guard, which stays */
  if (block_size <= SMALL_BLOCK_MAX || start + slices == SLICES_PER_SEGMENT) return;
  guard_set((uint8_t *)segment + (start + slices) * SLICE_SIZE - SA_GUARD_SIZE, on);
}

void _sa_secure_segment_guard(void *segment, size_t size) {
  guard_set((uint8_t *)segment + size - SA_GUARD_SIZE, true);
}

/* ---- Clearing a large block (SECURE_CLEAR_PURGE_MIN and up) --------------------------------
 * A large block handed out again holds its previous owner's data in the pages that owner
 * touched, and only there: the rest was never touched or was purged, and reads as zero.
 * Clearing all of it costs its whole size each time, even when a program uses a few KiB of a
 * MiB buffer. So when at most 1/64 of its OS pages are resident (4 per MiB), the block is
 * given back to the OS instead (madvise DONTNEED: it reads as zero, and only what the next
 * owner touches is faulted in, taken to be about what the last one touched); when more are,
 * a memset is cheaper than the page faults. Where the line lies depends on what a page fault
 * costs: about 0.5 us on bare metal (the madvise wins up to a sixth of the pages), but 9 us
 * on the KVM guest the benchmarks ran on, where it wins only up to 1-2 pages per MiB; 1/64
 * is a compromise. Only the first MiB
 * is looked at (a bounded mincore), and taken to stand for the rest. Pages that are not
 * resident because they were swapped out hold data too: the madvise discards them as well,
 * and the memset reads them in to clear them. The parts of OS pages the block shares with
 * its neighbours are cleared with memset. */
void _sa_secure_clear_large(void *p, size_t size) {
  size_t os_page = _sa_os_page_size();
  uint8_t *start = (uint8_t *)sa_align_up((uintptr_t)p, os_page);
  uint8_t *end = (uint8_t *)(((uintptr_t)p + size) & ~(uintptr_t)(os_page - 1));
  if (end <= start) {
    memset(p, 0, size);
    return;
  }
  /* the first MiB (SA_OS_RESIDENT_MAX pages) stands for the rest: one bounded look */
  size_t pages = (size_t)(end - start) / os_page;
  if (pages > SA_OS_RESIDENT_MAX) pages = SA_OS_RESIDENT_MAX;
  size_t resident = _sa_os_resident_pages(start, pages);
  if (resident > pages / 64 || _sa_os_purge(start, (size_t)(end - start)) != 0) {
    memset(p, 0, size);
    return;
  }
  memset(p, 0, (size_t)(start - (uint8_t *)p));
  memset(end, 0, (size_t)((uint8_t *)p + size - end));
}

/* ---- The free fast path's slow side ------------------------------------------------------- */
void _sa_secure_free_checked(page_t *page, block_t *block) {
  sa_secure_check_free(page, block, true); /* aborts on an invalid or double free */
  sa_track_free(block, sa_block_size(page));
  sa_page_free_local(page, block);
}

/* ---- Reports ----------------------------------------------------------------------------- */
void _sa_secure_corrupt_link(const page_t *page, const block_t *holder, const block_t *decoded) {
  _sa_fatal("heap corruption: the free-list link of the free block %p (page %p) was "
            "overwritten (it decodes to %p): a write past the end of a block or into a freed one",
            (const void *)holder, (const void *)sa_page_start(page), (const void *)decoded);
  __builtin_unreachable();
}

void _sa_secure_invalid_free(const void *p) {
  _sa_fatal("free(%p): invalid pointer: not the start of a block", p);
  __builtin_unreachable();
}

static bool list_holds(const page_t *page, const block_t *list, const block_t *block) {
  for (size_t n = 0; list != NULL && n <= page->capacity; n++, list = sa_block_next(page, list))
    if (list == block) return true;
  return false;
}

void _sa_secure_maybe_double_free(const page_t *page, const block_t *block, bool owner) {
  if (owner) {
    /* a live block whose first word happens to decode to a link of the page is no error */
    block_t *x = sa_xthread_block(atomic_load_explicit(&page->xthread_free, memory_order_acquire));
    if (!list_holds(page, page->free, block) && !list_holds(page, page->local_free, block) &&
        !list_holds(page, x, block))
      return;
  }
  /* another thread: only the owner may walk the lists, but a live block's first word is a
   * valid link only if the program wrote one there (the word is cleared on allocation) */
  _sa_fatal("free(%p): double free: the block is free already", (const void *)block);
}

#endif /* SA_SECURE */
