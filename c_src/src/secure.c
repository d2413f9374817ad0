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

/* Seeds of the threads' generators: a counter from a random start, mixed with a random key
 * (splitmix64, keyed), so that a new thread costs no getrandom call (a system call in every
 * thread: 6,000 of them in one run of thread_churn). Its own key: a thread's seed tells
 * nothing of the link-coding secret. */
static _Atomic(uint64_t) thread_seed_next;
static uint64_t thread_seed_key;

static uint64_t thread_seed(void) {
  uint64_t n = atomic_fetch_add_explicit(&thread_seed_next, 0x9E3779B97F4A7C15u,
                                         memory_order_relaxed);
  return mix64(mix64(n) ^ thread_seed_key);
}

/* The thread's generator (xorshift64*): only the slow paths draw from it. */
static __thread uint64_t thread_rng SA_TLS_MODEL;

static uint64_t thread_random(void) {
  uint64_t x = thread_rng;
  if (sa_unlikely(x == 0)) x = thread_seed() | 1; /* first use in this thread */
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
  atomic_store_explicit(&thread_seed_next, random_seed(), memory_order_relaxed);
  thread_seed_key = random_seed();
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
  /* inside out: block i joins at a uniform place j in [0, i], the block there moves to i; j
   * from 32 random bits by a multiplication (no division: this runs for every fresh block,
   * and a page's first extension is on the path of every new thread) */
  uint64_t bits = 0;
  for (size_t i = 0; i < count; i++) {
    if ((i & 1) == 0) bits = thread_random();
    size_t j = (size_t)(((bits & 0xFFFFFFFFu) * (uint64_t)(i + 1)) >> 32);
    bits >>= 32;
    order[i] = (uint16_t)i;
    uint16_t t = order[j];
    order[j] = order[i];
    order[i] = t;
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

/* The guard at the end of slice `slice`, set or removed, and its bit. */
static void slice_guard_set(segment_t *segment, size_t slice, bool on) {
  uint64_t bit = (uint64_t)1 << (slice % 64);
  if (((segment->guard_slices[slice / 64] & bit) != 0) == on) return;
  guard_set((uint8_t *)segment + (slice + 1) * SLICE_SIZE - SA_GUARD_SIZE, on);
  segment->guard_slices[slice / 64] ^= bit;
}

/* Guards are dropped lazily: a page freed keeps its guard, so a large page freed and made
 * again at the same place (the common case: the same request again) costs no mprotect; the
 * guards a new page covers are removed when it is made. Free slices may so carry a guard,
 * which nothing reads or writes. */
void _sa_secure_page_guards(segment_t *segment, size_t start, size_t slices, size_t block_size) {
  size_t last = start + slices - 1;
  for (size_t i = start; i < last; i++) {
    if (segment->guard_slices[i / 64] == 0) { /* skip a word without guards */
      i |= 63;
      continue;
    }
    slice_guard_set(segment, i, false);
  }
  /* a page at the segment's end shares the segment's guard, which is not in the bitmap */
  if (last == SLICES_PER_SEGMENT - 1) return;
  slice_guard_set(segment, last, block_size > SMALL_BLOCK_MAX);
}

void _sa_secure_segment_guards_drop(segment_t *segment) {
  for (size_t i = 0; i < SLICES_PER_SEGMENT - 1; i++)
    if (segment->guard_slices[i / 64] != 0) slice_guard_set(segment, i, false);
}

void _sa_secure_segment_guard(void *segment, size_t size) {
  guard_set((uint8_t *)segment + size - SA_GUARD_SIZE, true);
}

/* ---- Clearing a large block (SECURE_CLEAR_PURGE_MIN and up) --------------------------------
 * A large block handed out again holds its previous owner's data in the OS pages that owner
 * touched and only there: the others were never touched, or were purged (both read as zero),
 * or were swapped out (they hold data, but are not resident either). So mincore (a MiB at a
 * time) tells the resident runs, which are cleared with memset, and the runs that are not,
 * which are given back with madvise(DONTNEED): with no resident page in them that call is
 * cheap, and it drops swapped-out data too; the next owner's touch then faults in a zero page,
 * as it would have the first time. Clearing costs what the previous owner touched, not the
 * block's size, and pages nobody touches never become resident: a program that uses a few KiB
 * of a MiB buffer pays two system calls, not a 1 MiB memset or page faults on what it uses.
 * Past CLEAR_PURGE_RUNS_MAX runs given back one by one (the system calls stay bounded), the
 * rest of the block is cleared in one go: with memset when most pages looked at so far were
 * resident, else with one madvise (the rule before: what was resident there faults in again
 * when touched). When a whole MiB is resident, the owner wrote densely: the rest is cleared
 * with memset without looking (a mincore per MiB would cost about a tenth of the memset it
 * might spare). The parts of OS pages the block shares with its neighbours are cleared with
 * memset. */
#define CLEAR_PURGE_RUNS_MAX 8

/* [p, end) cleared by giving it back to the OS, or with memset if that fails. */
static void clear_by_purge(uint8_t *p, uint8_t *end) {
  if (_sa_os_purge(p, (size_t)(end - p)) != 0) memset(p, 0, (size_t)(end - p));
}

void _sa_secure_clear_large(void *p, size_t size) {
  size_t os_page = _sa_os_page_size();
  uint8_t *start = (uint8_t *)sa_align_up((uintptr_t)p, os_page);
  uint8_t *end = (uint8_t *)(((uintptr_t)p + size) & ~(uintptr_t)(os_page - 1));
  if (end <= start) {
    memset(p, 0, size);
    return;
  }
  memset(p, 0, (size_t)(start - (uint8_t *)p));
  memset(end, 0, (size_t)((uint8_t *)p + size - end));
  uint8_t vec[SECURE_CLEAR_CHUNK_PAGES];
  uint8_t *run = NULL; /* start of a run of non-resident pages not cleared yet */
  size_t purges = 0, looked = 0, resident_total = 0;
  for (uint8_t *chunk = start; chunk < end;) {
    size_t pages = (size_t)(end - chunk) / os_page;
    if (pages > SECURE_CLEAR_CHUNK_PAGES) pages = SECURE_CLEAR_CHUNK_PAGES;
    uint8_t *chunk_end = chunk + pages * os_page;
    if (!_sa_os_resident_map(chunk, pages, vec)) { /* cannot tell: all taken as resident */
      if (run != NULL) clear_by_purge(run, chunk);
      memset(chunk, 0, (size_t)(end - chunk));
      return;
    }
    size_t resident_pages = 0;
    for (size_t i = 0; i < pages;) {
      size_t j = i + 1;
      bool resident = vec[i] & 1;
      while (j < pages && (vec[j] & 1) == resident) j++;
      uint8_t *at = chunk + i * os_page;
      if (!resident) {
        if (run == NULL) run = at; /* may go on in the next chunk */
      } else {
        if (run != NULL) {
          if (purges == CLEAR_PURGE_RUNS_MAX) { /* too many runs: the rest in one go */
            looked += i;
            resident_total += resident_pages;
            if (resident_total * 2 >= looked) memset(run, 0, (size_t)(end - run));
            else clear_by_purge(run, end);
            return;
          }
          clear_by_purge(run, at);
          purges++;
          run = NULL;
        }
        memset(at, 0, (j - i) * os_page);
        resident_pages += j - i;
      }
      i = j;
    }
    looked += pages;
    resident_total += resident_pages;
    chunk = chunk_end;
    if (resident_pages == pages && chunk < end) { /* written densely */
      memset(chunk, 0, (size_t)(end - chunk));
      return;
    }
  }
  if (run != NULL) clear_by_purge(run, end);
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
