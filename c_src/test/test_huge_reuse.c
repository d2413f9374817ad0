/* test_huge_reuse: a freed huge block's memory serves the next huge request even when that
 * request is larger. The cache of freed huge segments keeps them mapped for a while; a request
 * that none fits takes the largest smaller ones, gathered (their mappings move side by side to
 * a larger aligned place, mremap) instead of giving them back and faulting as much fresh
 * memory in. Seen from outside:
 * right after malloc, the part of the new block that the old one had touched is resident
 * (mincore), where a fresh mapping would have nothing resident. Then the grown block must work
 * like any: calloc from a grown segment reads zero, every byte can be written, free and
 * usable_size find it. And a smaller request cuts a larger cached segment to its size, the
 * rest cached on its own for the next request (resident there right after malloc too).
 * Last, realloc between huge sizes: in place, moved without a copy, or cut.
 *
 * First, a huge block's mapping spans whole 2 MiB units (else its last unit could never be a
 * huge page), and a block of whole units takes no more memory than its size: the header's
 * unit is not one huge page for a few KiB of header.
 *
 * Builds that never grow (secure mode: the segment ends in a guard page, a separate mapping;
 * builds followed by a memory checker) skip the residency check, the rest runs. */
#define TEST_NAME "test_huge_reuse"
#include "testutil.h"

#include <sys/mman.h>
#include <sys/resource.h>

#include "shardalloc.h"

#define MiB ((size_t)1 << 20)
#if defined(SA_TRACK_VALGRIND) || defined(SA_TRACK_ASAN)
#define TRACKED 1
#else
#define TRACKED 0
#endif

static size_t resident_bytes(const void *p, size_t size) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  uintptr_t start = (uintptr_t)p & ~(uintptr_t)(page - 1);
  size_t n = ((uintptr_t)p + size - start + page - 1) / page;
  unsigned char *vec = malloc(n);
  if (vec == NULL || mincore((void *)start, n * page, vec) != 0) {
    free(vec);
    return 0;
  }
  size_t resident = 0;
  for (size_t i = 0; i < n; i++) resident += vec[i] & 1;
  free(vec);
  return resident * page;
}

/* The process's resident memory (/proc/self/statm), 0 where unknown. */
static size_t rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, resident = 0;
  if (f != NULL) {
    if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
    fclose(f);
  }
  return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

static long minor_faults(void) {
  struct rusage usage;
  getrusage(RUSAGE_SELF, &usage);
  return usage.ru_minflt;
}

static bool all_zero(const unsigned char *p, size_t size) {
  for (size_t i = 0; i < size; i += sizeof(uint64_t))
    if (*(const uint64_t *)(p + i) != 0) return false;
  return true;
}

/* Whether the 2 MiB unit holding `p` lies wholly inside one mapping (/proc/self/maps): where
 * a mapping ends inside a unit, the kernel can never back that unit with a huge page. */
static bool unit_mapped_whole(const void *p) {
  uintptr_t unit = (uintptr_t)p & ~(uintptr_t)(2 * MiB - 1);
  FILE *f = fopen("/proc/self/maps", "r");
  if (f == NULL) return true; /* nothing to tell */
  char line[512];
  bool whole = false;
  while (fgets(line, sizeof line, f) != NULL) {
    unsigned long lo, hi;
    if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && (uintptr_t)p >= lo && (uintptr_t)p < hi)
      whole = lo <= unit && hi >= unit + 2 * MiB;
  }
  fclose(f);
  return whole;
}

int main(void) {
  /* the cache must not expire between a free and the next malloc, however slow the machine */
  mi_option_set(mi_option_purge_delay, 600000);
  bool grows = !SA_SECURE && !TRACKED && getenv("SA_TEST_RUNNER") == NULL; /* qemu-user: the
                                                            emulator's mappings are its own */
  /* the process's resident size and page faults tell of the allocator alone: not under
   * valgrind or a sanitizer (quick mode: their shadow memory shows there too), nor qemu-user */
  bool measured = !TRACKED && !quick() && getenv("SA_TEST_RUNNER") == NULL;

  /* a huge block's mapping spans whole 2 MiB units, its last one included (not in secure
   * builds, where the guard page that ends the segment is a mapping of its own) */
  size_t odd = 9 * MiB + 1;
  unsigned char *o = mi_malloc(odd);
  CHECK(o != NULL);
  if (!SA_SECURE && getenv("SA_TEST_RUNNER") == NULL)
    CHECKF(unit_mapped_whole(o + odd - 1), "the last 2 MiB unit of a block of %zu bytes is "
           "mapped in part", odd);
  mi_free(o);
  mi_collect(true);

  /* an 8 MiB block written whole takes 8 MiB (and the header's few KiB), not the 10 MiB of
   * its mapping: with the header's unit a huge page, it took 10 */
  mi_stats_snapshot_t stats_before, stats_after;
  mi_stats_snapshot(&stats_before);
  unsigned char *fresh = mi_malloc(8 * MiB); /* the caches are empty: a fresh segment */
  mi_stats_snapshot(&stats_after);
  /* ... which counts as committed the block and the header's slice, not the header's unit */
  if (!SA_SECURE)
    CHECKF(stats_after.committed - stats_before.committed <= 8 * MiB + 64 * 1024,
           "an 8 MiB block counts %zu KiB committed",
           (stats_after.committed - stats_before.committed) >> 10);
  mi_free(fresh);
  mi_collect(true);
  if (measured) {
    size_t before = rss_bytes();
    unsigned char *e = mi_malloc(8 * MiB);
    CHECK(e != NULL);
    memset(e, 0x11, 8 * MiB);
    size_t taken = rss_bytes() - before;
    printf("  an 8 MiB block written whole: %zu KiB resident more\n", taken >> 10);
    CHECKF(before == 0 || taken <= 8 * MiB + 512 * 1024, "an 8 MiB block took %zu KiB",
           taken >> 10);
    mi_free(e);
    mi_collect(true);
  }

  unsigned char *p = mi_malloc(20 * MiB);
  CHECK(p != NULL);
  memset(p, 0xA5, 20 * MiB);
  mi_free(p);

  unsigned char *q = mi_malloc(24 * MiB); /* no cached segment fits: the 20 MiB one moves */
  CHECK(q != NULL);
  CHECK(mi_usable_size(q) >= 24 * MiB);
  size_t kept = resident_bytes(q, 19 * MiB);
  printf("  a 24 MiB block after a freed 20 MiB one: %zu of its first 19 MiB resident%s\n",
         kept >> 20, grows ? "" : " (not checked in this build)");
  if (grows) CHECKF(kept >= 18 * MiB, "only %zu MiB kept of the freed block", kept >> 20);
  memset(q, 0x5A, 24 * MiB); /* every byte writable, the new part included */
  CHECK(mi_is_in_heap_region(q + 24 * MiB - 1));
  mi_free(q);

  unsigned char *r = mi_calloc(1, 28 * MiB); /* dirty memory grown again: cleared */
  CHECK(r != NULL);
  CHECK(all_zero(r, 28 * MiB));
  memset(r, 1, 28 * MiB);
  mi_free(r);

  /* a smaller request after all that takes the 28 MiB segment (within 1.5x) and stays usable */
  unsigned char *s = mi_calloc(1, 20 * MiB);
  CHECK(s != NULL);
  CHECK(all_zero(s, 20 * MiB));
  mi_free(s);

  /* A smaller request takes a larger cached segment cut to its size (the block as large as
   * mi_good_size says); the rest, memory the freed block touched, waits in the cache as a
   * segment of its own and serves the next request warm. */
  mi_collect(true); /* an empty cache */
  unsigned char *big = mi_malloc(30 * MiB);
  CHECK(big != NULL);
  memset(big, 0xC3, 30 * MiB);
  mi_free(big);
  unsigned char *a = mi_malloc(10 * MiB);
  CHECK(a != NULL);
  CHECKF(mi_usable_size(a) == mi_good_size(10 * MiB), "a 10 MiB block from a 30 MiB segment: "
         "usable %zu, good size %zu", mi_usable_size(a), mi_good_size(10 * MiB));
  if (grows) CHECKF(a == big, "a 10 MiB block after a freed 30 MiB one is not at its place");
  unsigned char *b = mi_calloc(1, 16 * MiB);
  CHECK(b != NULL);
  kept = resident_bytes(b, 16 * MiB);
  printf("  a 16 MiB block after that: %zu of its 16 MiB resident%s\n", kept >> 20,
         grows ? "" : " (not checked in this build)");
  if (grows) CHECKF(kept >= 15 * MiB, "only %zu MiB of the cut-off part kept", kept >> 20);
  CHECK(all_zero(b, 16 * MiB));
  memset(a, 1, 10 * MiB);
  memset(b, 2, 16 * MiB);
  CHECK(a[10 * MiB - 1] == 1 && b[0] == 2 && mi_is_in_heap_region(b + 16 * MiB - 1));
  mi_free(a);
  mi_free(b);

  /* Freed blocks none of which fits a request alone are gathered into it: their units move
   * side by side into one mapping (mremap, the largest first), resident and with their old
   * contents, and only the rest is fresh. calloc clears what they held, and nothing more
   * needs clearing: the fresh rest reads zero as it is. */
  mi_collect(true);
  unsigned char *g8 = mi_malloc(8 * MiB), *g6 = mi_malloc(6 * MiB);
  CHECK(g8 != NULL && g6 != NULL);
  memset(g8, 0xAB, 8 * MiB);
  memset(g6, 0xCD, 6 * MiB);
  mi_free(g8);
  mi_free(g6);
  unsigned char *g = mi_malloc(14 * MiB);
  CHECK(g != NULL);
  kept = resident_bytes(g, 14 * MiB);
  printf("  a 14 MiB block after freed ones of 8 and 6 MiB: %zu of its 14 MiB resident%s\n",
         kept >> 20, grows ? "" : " (not checked in this build)");
  if (grows) {
    CHECKF(kept >= 13 * MiB, "only %zu MiB of the two freed blocks kept", kept >> 20);
    if (SA_DEBUG == 0) CHECK(g[0] == 0xAB && g[8 * MiB - 1] == 0xAB && g[8 * MiB] == 0xCD &&
                             g[14 * MiB - 1] == 0xCD);
  }
  memset(g, 0x77, 14 * MiB);
  mi_free(g);
  unsigned char *gz = mi_calloc(1, 20 * MiB); /* the 14 MiB of memory written, 6 fresh */
  CHECK(gz != NULL);
  CHECK(all_zero(gz, 20 * MiB));
  memset(gz, 0x78, 20 * MiB);
  CHECK(mi_usable_size(gz) >= 20 * MiB && mi_is_in_heap_region(gz + 20 * MiB - 1));
  mi_free(gz);

  /* realloc from huge to huge keeps the memory: in place within the mapping's last unit, the
   * mapping moved (not copied) beyond it, the unneeded units cut on a shrink; zeroing realloc
   * clears what the block takes of its old mapping. */
  mi_collect(true);
  unsigned char *d = mi_malloc(20 * MiB); /* leaves data in the mapping h takes next */
  CHECK(d != NULL);
  memset(d, 0xFF, 20 * MiB);
  mi_free(d);
  unsigned char *h = mi_zalloc(19 * MiB);
  CHECK(h != NULL);
  memset(h, 0x3C, 19 * MiB);
  unsigned char *h2 = mi_rezalloc(h, 20 * MiB); /* the block's units span 20 MiB: in place */
  CHECK(h2 != NULL);
  if (grows) CHECKF(h2 == h, "a 19 MiB block grown to 20 MiB moved (%p -> %p)", (void *)h,
                    (void *)h2);
  CHECK(mi_usable_size(h2) == mi_good_size(20 * MiB));
  CHECK(h2[19 * MiB - 1] == 0x3C && all_zero(h2 + 19 * MiB, MiB));
  memset(h2, 0x4D, 20 * MiB);
  long faults = minor_faults();
  unsigned char *h3 = mi_realloc(h2, 40 * MiB); /* beyond the mapping: moved */
  faults = minor_faults() - faults;
  CHECK(h3 != NULL);
  /* moved, not copied: a copy writes 20 MiB of fresh memory (10 faults of huge pages, 5,120
   * of 4 KiB ones); the move writes only the header into a fresh unit */
  if (grows && measured)
    CHECKF(faults < 8, "a 20 MiB block grown to 40 MiB took %ld page faults", faults);
  CHECK(mi_usable_size(h3) == mi_good_size(40 * MiB));
  bool kept_all = true;
  for (size_t i = 0; i < 20 * MiB; i += 4096) kept_all &= h3[i] == 0x4D;
  CHECK(kept_all && h3[20 * MiB - 1] == 0x4D);
  memset(h3, 0x5E, 40 * MiB);
  unsigned char *h4 = mi_realloc(h3, 9 * MiB); /* a shrink: in place, the rest cut */
  CHECK(h4 != NULL);
  if (grows) CHECKF(h4 == h3, "a 40 MiB block shrunk to 9 MiB moved");
  CHECK(mi_usable_size(h4) == mi_good_size(9 * MiB));
  CHECK(h4[0] == 0x5E && h4[9 * MiB - 1] == 0x5E && mi_is_in_heap_region(h4 + 9 * MiB - 1));
  mi_free(h4);

  /* a block aligned to 64 MiB starts in its mapping's second 32 MiB unit: realloc finds its
   * segment all the same (it copies such a block) */
  unsigned char *al = mi_malloc_aligned(40 * MiB, 64 * MiB);
  CHECK(al != NULL && ((uintptr_t)al & (64 * MiB - 1)) == 0);
  if (al != NULL) {
    memset(al, 0x01, 40 * MiB);
    unsigned char *al2 = mi_realloc(al, 48 * MiB);
    CHECK(al2 != NULL && al2[0] == 0x01 && al2[40 * MiB - 1] == 0x01);
    mi_free(al2);
  }
  return tu_finish();
}
