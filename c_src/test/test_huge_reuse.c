/* test_huge_reuse: a freed huge block's memory serves the next huge request even when that
 * request is larger. The cache of freed huge segments keeps them mapped for a while; a request
 * that none fits grows the largest smaller one (its mapping moves to a larger aligned place,
 * mremap) instead of giving it back and faulting as much fresh memory in. Seen from outside:
 * right after malloc, the part of the new block that the old one had touched is resident
 * (mincore), where a fresh mapping would have nothing resident. Then the grown block must work
 * like any: calloc from a grown segment reads zero, every byte can be written, free and
 * usable_size find it.
 *
 * Builds that never grow (secure mode: the segment ends in a guard page, a separate mapping;
 * builds followed by a memory checker) skip the residency check, the rest runs. */
#define TEST_NAME "test_huge_reuse"
#include "testutil.h"

#include <sys/mman.h>

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

static bool all_zero(const unsigned char *p, size_t size) {
  for (size_t i = 0; i < size; i += sizeof(uint64_t))
    if (*(const uint64_t *)(p + i) != 0) return false;
  return true;
}

int main(void) {
  /* the cache must not expire between a free and the next malloc, however slow the machine */
  mi_option_set(mi_option_purge_delay, 600000);
  bool grows = !SA_SECURE && !TRACKED && getenv("SA_TEST_RUNNER") == NULL; /* qemu-user: the
                                                            emulator's mappings are its own */

  unsigned char *p = mi_malloc(20 * MiB);
  CHECK(p != NULL);
  memset(p, 0xA5, 20 * MiB);
  mi_free(p);

  unsigned char *q = mi_malloc(24 * MiB); /* no cached segment fits: the 20 MiB one grows */
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
  return tu_finish();
}
