/* test_thp_advice: the transparent huge page advice of large pages is given once per 2 MiB
 * unit and kept, purges included: making and freeing large pages again on the same units
 * makes no madvise call, and a purge gives the memory back but keeps the advice, so a large
 * page made there later asks nothing. Counted through the "thp advice" line of the statistics
 * (madvise calls that changed the advice), so it checks the bookkeeping, not the kernel.
 *
 * Then where the advice goes, read from the kernel's side (/proc/self/smaps, the "hg" flag of
 * the mapping that holds an address): a block of 2 MiB or more carries it on the units it
 * covers at least half of; a segment made for a large block carries it on all its units but
 * the header's (whose first write, inside malloc, must not map a 2 MiB huge page), so the
 * block starts at the second unit; small pages made after it go elsewhere (no call drops
 * advice for them). Skipped where the kernel has no THP, and under an emulator. First of all
 * (the process's first segment must hold small pages), a large block beside small pages
 * starts at a unit boundary, and its tail's unit, which it covers a quarter of and nothing
 * else touched, carries the advice. Last, a block that realloc grows out of its slice gets
 * the advice on the clean unit it moves to; one that grows within its slice does not. And a
 * unit small pages had mapped 4 KiB at a time, freed and purged slice by slice, goes back
 * whole at its last purge, so that a large page made there later gets a huge page (page faults
 * of the writing thread; skipped where the kernel keeps such a unit's page table anyway). */
#define _GNU_SOURCE /* RUSAGE_THREAD */
#define TEST_NAME "test_thp_advice"
#include "testutil.h"

#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "shardalloc.h"

#define MIB ((size_t)1 << 20)

static void read_line(const char *line, void *arg) {
  const char *label = "  thp advice ";
  if (strncmp(line, label, strlen(label)) == 0) sscanf(line + strlen(label), "%ld", (long *)arg);
}

/* The process's count of advice calls. */
static long advice_calls(void) {
  long calls = -1;
  mi_stats_print_out(read_line, &calls);
  CHECKF(calls >= 0, "no \"thp advice\" line in the statistics");
  return calls;
}

/* Bytes of [p, p + size) that are resident (whole OS pages). */
static size_t resident(const void *p, size_t size) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE), n = size / page, count = 0;
  unsigned char vec[1024];
  if (n > sizeof vec || mincore((void *)p, n * page, vec) != 0) return SIZE_MAX;
  for (size_t i = 0; i < n; i++) count += vec[i] & 1;
  return count * page;
}

/* Whether the mapping holding `addr` has the huge page advice (VmFlags "hg"); -1: unknown. */
static int advised(const void *addr) {
  FILE *f = fopen("/proc/self/smaps", "r");
  if (f == NULL) return -1;
  char line[512];
  int in = 0, found = -1;
  while (found < 0 && fgets(line, sizeof line, f) != NULL) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2) {
      in = (uintptr_t)addr >= lo && (uintptr_t)addr < hi;
    } else if (in && strncmp(line, "VmFlags:", 8) == 0) {
      found = strstr(line, " hg") != NULL;
    }
  }
  fclose(f);
  return found;
}

/* smaps can be read here (not under an emulator, THP in the kernel); else says why not. */
static bool smaps_usable(void) {
  if (getenv("SA_TEST_RUNNER") != NULL) { /* an emulator's smaps are its own (testutil.h) */
    printf("  (skipped: under an emulator)\n");
    return false;
  }
  if (access("/sys/kernel/mm/transparent_hugepage/enabled", F_OK) != 0) {
    printf("  (skipped: no transparent huge pages in this kernel)\n");
    return false;
  }
  return true;
}

/* Run `body` on a thread of its own, whose segments are made for it (the caches emptied
 * first), under a purge delay of `purge_delay` ms. */
static void on_own_thread(void *(*body)(void *), long purge_delay) {
  mi_option_set(mi_option_purge_delay, purge_delay);
  mi_collect(true);
  pthread_t thread;
  CHECK(pthread_create(&thread, NULL, body, NULL) == 0);
  pthread_join(thread, NULL);
  mi_option_set(mi_option_purge_delay, 25);
}

/* Sizes of the four largest large size classes, each covering a whole 2 MiB unit or more. */
static const size_t sizes[] = {5 * MIB / 2, 3 * MIB, 7 * MIB / 2, 4 * MIB};

/* A thread of its own, so that its first large page makes a segment and asks for the advice:
 * the count below is at least one call. */
static void *no_repeat(void *arg) {
  (void)arg;
  long before = advice_calls();
  void *keep = mi_malloc(3 * MIB); /* keeps its segment in use */
  const int rounds = quick() ? 50 : 200;
  for (int i = 0; i < rounds; i++) {
    char *p = mi_malloc(sizes[i % 4]);
    CHECK(p != NULL);
    if (p == NULL) continue;
    p[0] = 1;
    p[sizes[i % 4] - 1] = 1;
    mi_free(p);
    mi_collect(false); /* the empty page goes back to its segment, not kept retired */
  }
  long calls = advice_calls() - before;
  /* Without purges, each unit of a segment is advised at most once: 15 per segment (all but
   * the header's), and the loop's pages fit in two segments. */
  CHECKF(calls >= 1 && calls <= 30, "%ld advice calls for %d large pages", calls, rounds);
  mi_free(keep);
  return NULL;
}

static void test_no_repeat(void) {
  SECTION("large pages made again on advised units make no advice call");
  on_own_thread(no_repeat, 1000000); /* nothing is purged during the loop */
}

static void test_purge_keeps(void) {
  SECTION("a purge gives a large page's units back but keeps their advice");
  mi_option_set(mi_option_purge_delay, 0); /* frees purge at once */
  void *keep = mi_malloc(3 * MIB);
  char *p = mi_malloc(4 * MIB);
  CHECK(keep != NULL && p != NULL);
  if (keep == NULL || p == NULL) return;
  memset(p, 1, 4 * MIB);
  char *unit = (char *)(((uintptr_t)p + 2 * MIB - 1) & ~(uintptr_t)(2 * MIB - 1));
  long made = advice_calls();
  mi_free(p);
  mi_collect(false);
  CHECKF(advice_calls() == made, "freeing and purging an advised page made %ld advice calls",
         advice_calls() - made);
  size_t left = resident(unit, 2 * MIB);
  CHECKF(left == 0, "%zu KiB of a unit the freed block covered whole still resident", left >> 10);
  if (smaps_usable())
    CHECKF(advised(unit) == 1, "the purged unit at %p lost its advice", (void *)unit);
  p = mi_malloc(4 * MIB);
  CHECK(p != NULL);
  CHECKF(advice_calls() == made, "a large page made again on purged units asked again");
  mi_free(p);
  mi_free(keep);
  mi_option_set(mi_option_purge_delay, 25);
}

/* Blocks of 4 MiB until one is in a segment other than `first`'s (made for it): all of that
 * segment's units carry the advice, the ones the block does not touch too. Then small pages
 * of sizes not used yet go elsewhere: no advice is dropped for them, nor do they sit in an
 * advised mapping or in the new segment's header unit. A thread of its own: its first
 * segment, made for `first`, keeps free slices in its header's unit (the 4 MiB blocks start
 * at unit boundaries), where the small pages belong. */
static void *large_segment(void *arg) {
  (void)arg;
  char *first = mi_malloc(8); /* the first segment, holding small pages */
  enum { MAX = 16, SMALL = 12 };
  char *blocks[MAX] = {0};
  char *other = NULL;
  for (int i = 0; i < MAX && other == NULL; i++) {
    blocks[i] = mi_malloc(4 * MIB);
    CHECK(blocks[i] != NULL);
    if (blocks[i] != NULL && ((uintptr_t)blocks[i] >> 25) != ((uintptr_t)first >> 25))
      other = blocks[i];
  }
  CHECKF(other != NULL, "no 4 MiB block outside the first segment in %d", MAX);
  bool smaps = smaps_usable();
  if (other != NULL && smaps) {
    char *segment = (char *)((uintptr_t)other & ~(uintptr_t)(32 * MIB - 1));
    char *untouched = segment + ((size_t)(other - segment) < 16 * MIB ? 30 : 2) * MIB;
    CHECKF(advised(untouched) == 1, "a unit of the segment made for a 4 MiB block (at %p), "
           "away from it, has no huge page advice", (void *)untouched);
  }
  long before = advice_calls();
  void *small[SMALL];
  for (int i = 0; i < SMALL; i++) {
    small[i] = mi_malloc(3000 + 100 * (size_t)i); /* medium and small size classes */
    CHECK(small[i] != NULL);
    if (small[i] != NULL && smaps)
      CHECKF(advised(small[i]) == 0, "a %zu-byte block at %p sits in an advised mapping",
             (size_t)(3000 + 100 * i), small[i]);
    if (small[i] != NULL && other != NULL)
      CHECKF((uintptr_t)small[i] >> 25 != (uintptr_t)other >> 25, "a %zu-byte block at %p "
             "sits in the segment made for a 4 MiB block (its header's unit)",
             (size_t)(3000 + 100 * i), small[i]);
  }
  CHECKF(advice_calls() == before, "small pages made %ld advice calls (dropped advice)",
         advice_calls() - before);
  for (int i = 0; i < SMALL; i++) mi_free(small[i]);
  for (int i = 0; i < MAX; i++) mi_free(blocks[i]);
  mi_free(first);
  return NULL;
}

static void test_large_segment(void) {
  SECTION("a segment made for a large block is advised whole; small pages go elsewhere");
  on_own_thread(large_segment, 25);
}

/* 3 MiB blocks until one is in a segment made for it, away from the small pages' segment: it
 * starts at the segment's second unit, since the header's unit has no advice (its first write,
 * made inside malloc, would otherwise map and clear a 2 MiB huge page there). */
static void test_where(void) {
  SECTION("a segment made for 3 MiB blocks: the header's unit unadvised, the block's advised");
  if (!smaps_usable()) return;
  char *small = mi_malloc(8);
  enum { MAX = 24 };
  char *blocks[MAX];
  int n = 0;
  char *first = NULL;
  while (n < MAX && first == NULL) {
    char *p = blocks[n++] = mi_malloc(3 * MIB);
    CHECK(p != NULL);
    if (p != NULL && ((uintptr_t)p >> 25) != ((uintptr_t)small >> 25) &&
        ((uintptr_t)p & (32 * MIB - 1)) == 2 * MIB)
      first = p;
  }
  CHECKF(first != NULL, "no 3 MiB block at the second unit of a segment of its own in %d", n);
  if (first != NULL) {
    char *segment = first - 2 * MIB;
    CHECKF(advised(segment) == 0, "the header's unit of a segment made for 3 MiB blocks (at %p) "
           "has the huge page advice", (void *)segment);
    CHECKF(advised(first) == 1, "the unit the block covers whole (at %p) has no huge page advice",
           (void *)first);
    /* the block covers [4 MiB, 5 MiB) of the third unit: half */
    CHECKF(advised(segment + 4 * MIB) == 1, "the unit the block covers half of (at %p) has no "
           "huge page advice", (void *)(segment + 4 * MIB));
  }
  for (int i = 0; i < n; i++) mi_free(blocks[i]);
  mi_free(small);
}

/* The first large block of a process whose first segment holds small pages: it starts at the
 * second unit, since the first holds 4 KiB pages (the header's, a small page's) where the
 * kernel will map no huge page; and it advises the unit it covers less than half of, which
 * nothing else touched, so that its tail does not map 4 KiB pages there either. Runs first:
 * the segment must be the process's first, made for small pages. */
static void test_placement(void) {
  SECTION("a large block beside small pages starts at a unit and advises its tail's unit");
  void *small = mi_malloc(16); /* the first segment, made for small pages */
  char *p = mi_malloc(2 * MIB + MIB / 2); /* its page: 2.5 MiB, a size class's exactly */
  CHECK(small != NULL && p != NULL);
  if (p == NULL || small == NULL) return;
  CHECKF(((uintptr_t)small >> 25) == ((uintptr_t)p >> 25), "not in the first segment: %p, %p",
         small, (void *)p);
  CHECKF(((uintptr_t)p & (32 * MIB - 1)) == 2 * MIB, "the block starts at %p, not at the "
         "segment's second unit", (void *)p);
  if (smaps_usable())
    CHECKF(advised(p + 2 * MIB) == 1, "the unit the block covers a quarter of (at %p) has no "
           "huge page advice", (void *)(p + 2 * MIB));
  /* The next one follows it, sharing that unit: freed and due, its part there stays (a purge
   * would split the huge page the live block's tail sits in), its own unit goes back. */
  mi_option_set(mi_option_purge_delay, 1);
  char *q = mi_malloc(2 * MIB + MIB / 2);
  if (!SA_SECURE) CHECK(q == p + 2 * MIB + MIB / 2); /* secure: a guard page between them */
  if (q == p + 2 * MIB + MIB / 2) {
    memset(q, 1, 2 * MIB + MIB / 2);
    mi_free(q);
    mi_collect(false);  /* the page back to its segment: its slices pending */
    tu_sleep_ms(20);       /* past the (1 ms, 4 ms for such runs) delay: due */
    mi_collect(false);  /* purge what is due */
    size_t shared = resident(q, 2 * MIB - MIB / 2), own = resident(p + 4 * MIB, 2 * MIB);
    printf("  freed block: %zu KiB of its part of the shared unit resident, %zu KiB of its own\n",
           shared >> 10, own >> 10);
    CHECKF(shared == 2 * MIB - MIB / 2, "its part of the unit a live block shares was purged");
    CHECKF(own == 0, "%zu KiB of its own unit still resident", own >> 10);
  }
  mi_option_set(mi_option_purge_delay, 25);
  mi_free(p);
  mi_free(small);
}

/* A small page that must go on an advised unit drops the unit's advice only when one of its
 * slices is fresh (never touched, or purged), so that its first touches map 4 KiB; on slices
 * that were in use since their last purge it keeps it (the call, which waits for the memory
 * map lock behind other threads' page faults, would change nothing for memory that is
 * mapped). A thread of its own, so that its segments are the ones made here: a 4 MiB block
 * makes its first segment (advised but for the header's unit), 1 KiB blocks fill the header's
 * unit until a page has to go on an advised unit, on fresh slices: one call. Then the 4 MiB
 * block goes back to the segment (not purged: a long delay), and once the unadvised units are
 * full again the next page goes on its slices (best fit: the smaller free run): no call. */
enum { SMALL_BLOCKS_MAX = 4096 };

static void *small_on_advised(void *arg) {
  (void)arg;
  char *big = mi_malloc(4 * MIB);
  CHECK(big != NULL);
  if (big == NULL) return NULL;
  uintptr_t segment = (uintptr_t)big & ~(uintptr_t)(32 * MIB - 1);
  static void *small[SMALL_BLOCKS_MAX];
  int n = 0;
  char *fresh = NULL; /* the first block past the header's unit */
  long before = advice_calls();
  while (n < SMALL_BLOCKS_MAX && fresh == NULL) {
    char *q = small[n++] = mi_malloc(1024);
    CHECK(q != NULL);
    if (q == NULL) break;
    if ((uintptr_t)q - segment >= 2 * MIB) fresh = q;
  }
  CHECKF(fresh != NULL && (uintptr_t)fresh - segment < 32 * MIB,
         "no 1 KiB block past the header's unit of the 4 MiB block's segment in %d", n);
  if (fresh != NULL) {
    CHECKF((uintptr_t)fresh >= (uintptr_t)big + 4 * MIB, "the page on fresh slices (%p) lies "
           "in the live 4 MiB block (%p)", (void *)fresh, (void *)big);
    CHECKF(advice_calls() - before == 1, "a small page on an advised unit's fresh slices made "
           "%ld advice calls, not 1 (dropping the advice)", advice_calls() - before);
    if (smaps_usable())
      CHECKF(advised(fresh) == 0, "the unit of a small page on fresh slices (at %p) kept the "
             "huge page advice", (void *)fresh);
  }
  mi_free(big);
  mi_collect(false); /* the page back to the segment: its slices free, in use since a purge */
  /* 1 KiB blocks again until one lies on neither unadvised unit (the header's, and the one
   * whose advice was dropped): the smaller free run, where the 4 MiB block was */
  before = advice_calls();
  char *reused = NULL;
  uintptr_t dropped_unit = fresh != NULL ? ((uintptr_t)fresh - segment) / (2 * MIB) : 0;
  while (n < SMALL_BLOCKS_MAX && reused == NULL) {
    char *q = small[n++] = mi_malloc(1024);
    CHECK(q != NULL);
    if (q == NULL) break;
    uintptr_t unit = ((uintptr_t)q - segment) / (2 * MIB);
    if (unit != 0 && unit != dropped_unit) reused = q;
  }
  CHECKF(reused != NULL, "no 1 KiB block past the unadvised units in %d", n);
  if (reused != NULL) {
    CHECKF(reused >= big && reused < big + 4 * MIB, "the page past the unadvised units (%p) is "
           "not on the freed 4 MiB block's slices (%p)", (void *)reused, (void *)big);
    CHECKF(advice_calls() == before, "a small page on slices in use since their last purge made "
           "%ld advice calls", advice_calls() - before);
    if (smaps_usable())
      CHECKF(advised(reused) == 1, "the unit of a small page on slices in use since their last "
             "purge (at %p) lost the huge page advice", (void *)reused);
  }
  for (int i = 0; i < n; i++) mi_free(small[i]);
  return NULL;
}

static void test_small_on_advised(void) {
  SECTION("a small page on an advised unit drops the advice only on fresh slices");
  on_own_thread(small_on_advised, 1000000); /* nothing is purged meanwhile */
}

/* Two large pages share a unit and are freed apart: when the first comes due the shared
 * unit waits for the second (purging part of a huge page splits it), and once that one is
 * due the unit goes back whole. The wait once set no later purge (only a page in use should
 * stop it for good): the unit stayed resident while the thread lived. A thread of its own, so
 * that its purge delay is the option's; the option's delay times 4 for such runs (purge.c). */
static void *shared_unit_purge(void *arg) {
  (void)arg;
  char *a = mi_malloc(3 * MIB), *b = mi_malloc(3 * MIB);
  CHECK(a != NULL && b != NULL);
  if (a == NULL || b == NULL) return NULL;
  char *unit = (char *)(((uintptr_t)a + 3 * MIB - 1) & ~(uintptr_t)(2 * MIB - 1));
  CHECKF(b >= unit && b < unit + 2 * MIB, "the blocks share no unit: %p, %p", (void *)a,
         (void *)b);
  memset(a, 1, 3 * MIB);
  memset(b, 1, 3 * MIB);
  mi_free(a);
  mi_collect(false); /* the page back to its segment (not kept retired): pending */
  tu_sleep_ms(200);  /* half the wait of such runs */
  mi_free(b);
  mi_collect(false);
  /* purges of what is due, from here until the shared unit went back (20 s at most): the
   * first ones find it waiting for b's slices */
  size_t left = 2 * MIB;
  for (int i = 0; i < 2000 && left != 0; i++) {
    mi_collect(false);
    left = resident(unit, 2 * MIB);
    if (left != 0) tu_sleep_ms(10);
  }
  CHECKF(left == 0, "%zu KiB of the unit two freed large blocks shared still resident",
         left >> 10);
  return NULL;
}

static void test_shared_unit_purge(void) {
  SECTION("a unit two large blocks share goes back once both are due, freed apart");
  on_own_thread(shared_unit_purge, 100);
}

/* A thread of its own, whose first segment has clean units after the header's. */
static void *growing_block(void *arg) {
  (void)arg;
  char *v = mi_realloc(mi_malloc(4 * 1024), 16 * 1024);
  char *s = mi_realloc(mi_malloc(4 * 1024), 16 * 1024); /* a string, right after v */
  CHECK(s != NULL && v != NULL);
  if (s == NULL || v == NULL) return NULL;
  for (size_t size = 32 * 1024; v != NULL && size <= 128 * 1024; size *= 2) {
    v = mi_realloc(v, size); /* a vector: moves out of its slice at 128 KiB (s follows it) */
    CHECK(v != NULL);
    if (v != NULL) v[size - 1] = 1;
  }
  if (v == NULL) return NULL;
  CHECKF(((uintptr_t)v & (2 * MIB - 1)) == 0, "the vector's page at %p", (void *)v);
  CHECKF(advised(v) == 1, "the unit of the vector's page at %p has no advice", (void *)v);
  CHECKF(advised(s) == 0, "the string's unit at %p carries the advice", (void *)s);
  mi_free(s);
  mi_free(v);
  return NULL;
}

static void test_growing_block(void) {
  SECTION("a block realloc grew out of its slice asks for huge pages on its clean unit");
  if (!smaps_usable()) return;
  on_own_thread(growing_block, 25);
}

/* Minor page faults of the calling thread so far. */
static long thread_faults(void) {
  struct rusage usage;
  getrusage(RUSAGE_THREAD, &usage);
  return usage.ru_minflt;
}

/* Page faults of the calling thread while it writes [p, p + size). */
static long faults_writing(char *p, size_t size) {
  long before = thread_faults();
  memset(p, 7, size);
  return thread_faults() - before;
}

/* Whether this kernel maps a huge page on an advised unit that was mapped 4 KiB at a time
 * and then given back whole in one call (it frees the unit's page table then: PT_RECLAIM,
 * Linux 6.14), tried on a mapping of our own. */
static bool kernel_reclaims_unit_tables(void) {
  char *map = mmap(NULL, 4 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (map == MAP_FAILED) return false;
  char *unit = (char *)(((uintptr_t)map + 2 * MIB - 1) & ~(uintptr_t)(2 * MIB - 1));
  memset(unit, 1, 256 * 1024); /* 4 KiB pages, and a page table for the unit */
  bool reclaims = madvise(unit, 2 * MIB, MADV_DONTNEED) == 0 &&
                  madvise(unit, 2 * MIB, MADV_HUGEPAGE) == 0 && faults_writing(unit, 2 * MIB) <= 2;
  munmap(map, 4 * MIB);
  return reclaims;
}

/* Slices that small pages had mapped 4 KiB at a time, freed and purged at different times
 * (every other one first), each going back alone: the last purge of a unit's slices must give
 * the whole unit back in one call, over the slices purged before, or the kernel keeps the
 * unit's page table, and a large page made there later faults 4 KiB at a time (512 faults)
 * under the advice all the same. A thread of its own: its first segment holds only these. */
enum { RECLAIM_BLOCKS_MAX = 8192 };

static void *unit_reclaimed(void *arg) {
  (void)arg;
  static char *blocks[RECLAIM_BLOCKS_MAX];
  int n = 0;
  uintptr_t segment = 0;
  while (n < RECLAIM_BLOCKS_MAX) { /* 1 KiB blocks over the header's unit and the next */
    char *q = blocks[n++] = mi_malloc(1024);
    CHECK(q != NULL);
    if (q == NULL) return NULL;
    memset(q, 1, 1024);
    if (segment == 0) segment = (uintptr_t)q & ~(uintptr_t)(32 * MIB - 1);
    if ((uintptr_t)q - segment >= 4 * MIB) break;
  }
  CHECKF((uintptr_t)blocks[n - 1] - segment >= 4 * MIB,
         "%d blocks of 1 KiB did not reach the segment's third unit", n);
  for (int pass = 0; pass < 2; pass++) { /* even slices of the units past the header's, then odd */
    for (int i = 0; i < n; i++) {
      uintptr_t offset = (uintptr_t)blocks[i] - segment;
      if (blocks[i] != NULL && offset >= 2 * MIB && (pass == 1 || (offset >> 16) % 2 == 0)) {
        mi_free(blocks[i]);
        blocks[i] = NULL;
      }
    }
    mi_collect(true); /* the empty pages back to the segment, and purged */
  }
  char *big = mi_malloc(2 * MIB); /* the free run from the second unit on */
  CHECKF(big == (char *)segment + 2 * MIB, "the 2 MiB block at %p, not at the second unit",
         (void *)big);
  if (big == (char *)segment + 2 * MIB) {
    long faults = faults_writing(big, 2 * MIB);
    printf("  a 2 MiB block on a unit small pages had mapped: %ld page faults\n", faults);
    if (faults > 8 && !kernel_reclaims_unit_tables()) /* no huge page to be had just now */
      printf("  (not counted: the probe got no huge page either)\n");
    else
      CHECKF(faults <= 8, "%ld page faults writing a 2 MiB block on an advised unit that "
             "small pages had mapped 4 KiB at a time (the unit's page table kept)", faults);
  }
  mi_free(big);
  for (int i = 0; i < n; i++) mi_free(blocks[i]);
  return NULL;
}

static void test_unit_reclaimed(void) {
  SECTION("a unit small pages mapped goes back whole, so a large page there gets a huge page");
  if (SA_SECURE || !smaps_usable()) return; /* secure: guard pages split the units */
  if (!kernel_reclaims_unit_tables()) {
    printf("  (skipped: this kernel maps no huge page on a unit given back after 4 KiB pages)\n");
    return;
  }
  on_own_thread(unit_reclaimed, 25);
}

/* The end of the mapping (of /proc/self/maps) that holds `addr`; 0: unknown. */
static uintptr_t mapping_end(const void *addr) {
  FILE *f = fopen("/proc/self/maps", "r");
  if (f == NULL) return 0;
  char line[512];
  uintptr_t end = 0;
  while (end == 0 && fgets(line, sizeof line, f) != NULL) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && (uintptr_t)addr >= lo && (uintptr_t)addr < hi)
      end = hi;
  }
  fclose(f);
  return end;
}

/* A huge block's last 2 MiB unit lies in one mapping whole: the kernel maps a unit that a
 * mapping covers in part 4 KiB at a time. Secure builds end every segment with a no-access
 * guard page, which splits the mapping: the guard must lie past the block's last unit. */
static void test_huge_last_unit(void) {
  SECTION("a huge block's last unit is not split by the segment's guard page");
  if (!smaps_usable()) return;
  size_t size = 5 * MIB + 100 * 1024; /* ends 1.1 MiB into its last unit */
  char *p = mi_malloc(size);
  CHECK(p != NULL);
  if (p == NULL) return;
  uintptr_t last_unit_end = ((uintptr_t)p + size + 2 * MIB - 1) & ~(uintptr_t)(2 * MIB - 1);
  uintptr_t end = mapping_end(p + size - 1);
  printf("  block %p + %zu: its mapping ends %+ld KiB from its last unit's end\n", (void *)p,
         size, ((long)end - (long)last_unit_end) / 1024);
  CHECKF(end >= last_unit_end, "the mapping ends at %#lx, inside the block's last unit",
         (unsigned long)end);
  mi_free(p);
}

int main(void) {
  if (mi_option_is_enabled(mi_option_allow_large_os_pages)) {
    printf("%s: skipped: allow_large_os_pages advises whole segments\n", TEST_NAME);
    return 0;
  }
  test_placement();
  test_no_repeat();
  test_purge_keeps();
  test_large_segment();
  test_where();
  test_huge_last_unit();
  test_small_on_advised();
  test_shared_unit_purge();
  test_growing_block();
  test_unit_reclaimed();
  return tu_finish();
}
