/* test_thp_advice: the transparent huge page advice of large pages is given once per 2 MiB
 * unit and kept while the unit's memory is kept: making and freeing large pages again on the
 * same units makes no madvise call; a purge that cleans a unit drops its advice, and a large
 * page made there later asks again. Counted through the "thp advice" line of the statistics
 * (madvise calls that changed the advice), so it checks the bookkeeping, not the kernel. */
#define TEST_NAME "test_thp_advice"
#include "testutil.h"

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

/* Sizes of four large size classes, each spanning two or more whole 2 MiB units. */
static const size_t sizes[] = {5 * MIB, 6 * MIB, 7 * MIB, 8 * MIB};

static void test_no_repeat(void) {
  SECTION("large pages made again on advised units make no advice call");
  mi_option_set(mi_option_purge_delay, 1000000); /* nothing is purged during the loop */
  void *keep = mi_malloc(6 * MIB);               /* keeps its segment in use */
  long before = advice_calls();
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
  /* Without purges, each unit of a segment is advised at most once: 16 per segment, and the
   * loop's pages fit in two segments. */
  CHECKF(calls >= 1 && calls <= 32, "%ld advice calls for %d large pages", calls, rounds);
  mi_free(keep);
}

static void test_purge_drops(void) {
  SECTION("a purge drops the advice; the next large page there asks again");
  mi_option_set(mi_option_purge_delay, 0); /* frees purge at once */
  void *keep = mi_malloc(6 * MIB);
  char *p = mi_malloc(8 * MIB);
  CHECK(keep != NULL && p != NULL);
  p[0] = 1;
  long made = advice_calls();
  mi_free(p);
  mi_collect(false);
  long freed = advice_calls();
  CHECKF(freed > made, "freeing and purging an advised page dropped no advice (%ld calls)",
         freed - made);
  p = mi_malloc(8 * MIB);
  CHECK(p != NULL);
  CHECKF(advice_calls() > freed, "a large page on purged units was not advised");
  mi_free(p);
  mi_free(keep);
}

int main(void) {
  if (mi_option_is_enabled(mi_option_allow_large_os_pages)) {
    printf("%s: skipped: allow_large_os_pages advises whole segments\n", TEST_NAME);
    return 0;
  }
  test_no_repeat();
  test_purge_drops();
  return tu_finish();
}
