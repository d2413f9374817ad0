/* test_untouched: malloc and calloc leave fresh memory untouched: blocks of an OS page or
 * more, and the first block of a smaller size to start in an OS page. A write into a block of never-used memory (a free-list link, a clear) is a page
 * fault inside the allocator's call, about 1-10 us, and resident memory the program may never
 * use; the program's own first write takes that fault instead, and only where it writes. So
 * right after the call, none of the OS pages wholly inside such a block may be resident
 * (mincore). Blocks of every kind: small pages (4-8 KiB blocks), medium, large, and huge. A
 * block at the start of a segment (32 MiB aligned) shares the first 2 MiB unit with the
 * segment's header, which malloc writes: when that unit carries huge page advice (segments
 * made for blocks of 2 MiB and more, huge blocks) it comes in whole, so it is left out.
 * Then the blocks must still work: calloc's read zero, writes stick, and blocks handed out
 * again after a free (dirty memory now) are cleared by calloc (test_zero covers that fully).
 *
 * Debug builds fill new blocks with a pattern, which touches them: there the residency checks
 * are skipped (said in the output), the rest runs. */
#define TEST_NAME "test_untouched"
#include "testutil.h"

#include <sys/mman.h>

#include "shardalloc.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* OS pages wholly inside [p, p + size) that are resident. */
static size_t resident_pages(const void *p, size_t size) {
  size_t page = (size_t)sysconf(_SC_PAGESIZE);
  uintptr_t start = ((uintptr_t)p + page - 1) & ~(uintptr_t)(page - 1);
  uintptr_t end = ((uintptr_t)p + size) & ~(uintptr_t)(page - 1);
  size_t n = 0;
  for (uintptr_t a = start; a < end; a += page) {
    unsigned char vec = 0;
    CHECK(mincore((void *)a, page, &vec) == 0);
    n += vec & 1;
  }
  return n;
}

static const size_t sizes[] = {4 * KiB, 6 * KiB, 8 * KiB, 16 * KiB, 48 * KiB, 64 * KiB,
                               100 * KiB, 1 * MiB, 4 * MiB, 24 * MiB};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))
#define PER_SIZE 3 /* blocks of each size: the page's first and the ones after it */

static void check_untouched(void *p, size_t size, const char *how) {
  CHECKF(p != NULL, "%s(%zu) failed", how, size);
  if (p == NULL || SA_DEBUG > 0) return;
  uintptr_t unit_end = ((uintptr_t)p & ~(uintptr_t)(32 * MiB - 1)) + 2 * MiB;
  size_t skip = size >= 2 * MiB && (uintptr_t)p < unit_end ? unit_end - (uintptr_t)p : 0;
  if (skip >= size) return;
  size_t n = resident_pages((char *)p + skip, size - skip);
  CHECKF(n == 0, "%s(%zu) = %p: %zu of its pages are resident right after the call", how, size,
         p, n);
}

/* Blocks smaller than an OS page: past a page's first OS page (threaded at once), the free
 * list grows over an OS page only once a block starting there was handed out, so a block that
 * is the first to start in its OS page comes out of fresh memory untouched too (the OS page its start lies in is not resident). Blocks
 * are taken one after the other and never written; sizes nothing else here uses, so that
 * their pages are fresh; they live to the end of the test, so that every page the test
 * makes later is fresh too. */
enum { SMALL_SIZES = 4, TAKE = 160 };
#define SLICE_BYTES ((uintptr_t)64 << 10) /* pages start at a slice */
static void check_small_untouched(char *taken[SMALL_SIZES][TAKE]) {
  static const size_t small_sizes[SMALL_SIZES] = {80, 640, 1536, 3072};
  size_t os_page = (size_t)sysconf(_SC_PAGESIZE);
  for (size_t s = 0; s < SMALL_SIZES; s++) {
    size_t firsts = 0;
    for (size_t i = 0; i < TAKE; i++) {
      char *p = taken[s][i] = mi_malloc(small_sizes[s]);
      CHECK(p != NULL);
      if (p == NULL || SA_DEBUG > 0 || SA_SECURE) continue; /* secure: random order */
      size_t stride = mi_usable_size(p);
      bool first_in_os_page = i > 0 && p == taken[s][i - 1] + stride &&
                              (uintptr_t)(p - stride) / os_page < (uintptr_t)p / os_page &&
                              ((uintptr_t)p & (SLICE_BYTES - 1)) >= os_page;
      if (!first_in_os_page) continue;
      firsts++;
      unsigned char vec = 0;
      CHECK(mincore((void *)((uintptr_t)p & ~(uintptr_t)(os_page - 1)), os_page, &vec) == 0);
      CHECKF((vec & 1) == 0, "mi_malloc(%zu) = %p, the first block in its OS page: the page is "
             "resident right after the call", small_sizes[s], (void *)p);
    }
    if (SA_DEBUG == 0 && !SA_SECURE)
      CHECKF(firsts >= 3, "%zu-byte blocks: only %zu started an OS page", small_sizes[s], firsts);
  }
}

int main(void) {
  bool checks = SA_DEBUG == 0;
  printf("%s: fresh blocks of an OS page or more stay untouched by malloc and calloc%s\n",
         TEST_NAME, checks ? "" : " (debug build: residency not checked, pattern fill)");
  void *blocks[NSIZES][2 * PER_SIZE];

  SECTION("small blocks: the first block in each fresh OS page is handed out untouched");
  static char *small_blocks[SMALL_SIZES][TAKE];
  check_small_untouched(small_blocks);

  SECTION("malloc and calloc of fresh memory write nothing into the blocks");
  for (size_t s = 0; s < NSIZES; s++) {
    for (size_t k = 0; k < PER_SIZE; k++) {
      blocks[s][k] = mi_malloc(sizes[s]);
      check_untouched(blocks[s][k], sizes[s], "mi_malloc");
      blocks[s][PER_SIZE + k] = mi_calloc(1, sizes[s]);
      check_untouched(blocks[s][PER_SIZE + k], sizes[s], "mi_calloc");
    }
  }

  SECTION("the untouched blocks work: calloc's read zero, writes stick");
  for (size_t s = 0; s < NSIZES; s++) {
    for (size_t k = 0; k < 2 * PER_SIZE; k++) {
      unsigned char *p = blocks[s][k];
      if (p == NULL) continue;
      if (k >= PER_SIZE) {
        size_t nonzero = 0;
        for (size_t i = 0; i < sizes[s]; i += 512) nonzero += p[i] != 0;
        nonzero += p[sizes[s] - 1] != 0;
        CHECKF(nonzero == 0, "mi_calloc(%zu): %zu sampled bytes are not zero", sizes[s], nonzero);
      }
      CHECK(mi_usable_size(p) >= sizes[s]);
      memset(p, (int)(0x10 + s), sizes[s]);
    }
  }
  for (size_t s = 0; s < NSIZES; s++)
    for (size_t k = 0; k < 2 * PER_SIZE; k++) {
      unsigned char *p = blocks[s][k];
      if (p == NULL) continue;
      CHECK(p[0] == 0x10 + s && p[sizes[s] / 2] == 0x10 + s && p[sizes[s] - 1] == 0x10 + s);
    }

  SECTION("blocks handed out again over written memory: calloc clears them");
  for (size_t s = 0; s < NSIZES; s++)
    for (size_t k = 0; k < 2 * PER_SIZE; k++) mi_free(blocks[s][k]);
  for (size_t s = 0; s < NSIZES; s++) {
    for (size_t k = 0; k < PER_SIZE; k++) {
      unsigned char *p = mi_calloc(1, sizes[s]);
      CHECK(p != NULL);
      if (p == NULL) continue;
      size_t nonzero = 0;
      for (size_t i = 0; i < sizes[s]; i++) nonzero += p[i] != 0;
      CHECKF(nonzero == 0, "mi_calloc(%zu) over written memory: %zu bytes are not zero", sizes[s],
             nonzero);
      blocks[s][k] = p;
    }
  }
  for (size_t s = 0; s < NSIZES; s++)
    for (size_t k = 0; k < PER_SIZE; k++) mi_free(blocks[s][k]);
  for (size_t s = 0; s < SMALL_SIZES; s++)
    for (size_t i = 0; i < TAKE; i++) mi_free(small_blocks[s][i]);
  CHECK(mi_heap_check(mi_heap_get_default()));
  return tu_finish();
}
