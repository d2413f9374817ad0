/* test_retire: a page emptied by its owner's free is kept ("retired") in its size class's
 * queue for 96 generic-path calls, so that memory freed and wanted again soon is not given
 * back to its segment and made into a page again; then it goes back, or when the thread
 * stops allocating, at the housekeeper's second look.
 *
 *   - a batch of 64 large blocks (one page each) allocated and freed in turn keeps its 64
 *     pages from round to round: no page is given back or made while a round allocates, and
 *     the blocks come back at the same addresses (the first page freed is wanted again 64
 *     mallocs later);
 *   - retired pages go back once the calls run on: still kept after 50 generic-path calls
 *     of another size class, gone after 200;
 *   - an idle thread's retired pages go back but the first of their queue.
 * Pages are counted with mi_stats_snapshot's pages per size class; one thread, nothing
 * else allocates meanwhile, so the counts are exact. */
#define TEST_NAME "test_retire"
#include "testutil.h"

#include <dirent.h>

#define BLOCK ((size_t)128 << 10) /* a large size class: one block per page */
#define BATCH 64

static mi_stats_snapshot_t snap;

static size_t bin_of(size_t block_size) {
  mi_stats_snapshot(&snap);
  for (size_t b = 0; b < snap.bins; b++)
    if (snap.bin_block_size[b] == block_size) return b;
  CHECKF(false, "no size class of %zu bytes", block_size);
  return 0;
}

static size_t pages_of(size_t bin) {
  mi_stats_snapshot(&snap);
  return snap.bin_pages[bin];
}

static void test_batch_keeps_pages(size_t bin) {
  SECTION("a batch of %d blocks of %zu KiB allocated and freed in turn keeps its pages", BATCH,
          BLOCK >> 10);
  void *first[BATCH], *p[BATCH];
  for (int i = 0; i < BATCH; i++) first[i] = mi_malloc(BLOCK);
  for (int i = 0; i < BATCH; i++) mi_free(first[i]);
  CHECKF(pages_of(bin) == BATCH, "%zu pages after the first batch", pages_of(bin));
  const int rounds = quick() ? 5 : 40;
  size_t low = BATCH, high = BATCH, moved = 0;
  for (int r = 0; r < rounds; r++) {
    for (int i = 0; i < BATCH; i++) {
      p[i] = mi_malloc(BLOCK);
      size_t pages = pages_of(bin);
      if (pages < low) low = pages;
      if (pages > high) high = pages;
    }
    for (int i = 0; i < BATCH; i++) { /* the same blocks, in some order */
      bool found = false;
      for (int j = 0; j < BATCH && !found; j++) found = p[i] == first[j];
      if (!found) moved++;
    }
    for (int i = 0; i < BATCH; i++) mi_free(p[i]);
  }
  CHECKF(low == BATCH && high == BATCH, "pages of the class ranged over %zu..%zu, not %d", low,
         high, BATCH);
  CHECKF(moved == 0, "%zu blocks came back at new addresses", moved);
}

/* Generic-path calls of another size class: large blocks kept live, each a new page. */
static void generic_calls(void **keep, int n) {
  for (int i = 0; i < n; i++) keep[i] = mi_malloc(BLOCK + BLOCK / 2);
}

static void test_retired_pages_go_back(size_t bin) {
  SECTION("retired pages go back to their segment after 96 generic-path calls");
  void *p[BATCH], *keep[200];
  for (int i = 0; i < BATCH; i++) p[i] = mi_malloc(BLOCK);
  for (int i = 0; i < BATCH; i++) mi_free(p[i]);
  CHECK(pages_of(bin) == BATCH);
  generic_calls(keep, 50);
  CHECKF(pages_of(bin) == BATCH, "%zu pages kept after 50 calls, not %d", pages_of(bin), BATCH);
  generic_calls(keep + 50, 150);
  CHECKF(pages_of(bin) == 0, "%zu pages still kept after 200 calls", pages_of(bin));
  for (int i = 0; i < 200; i++) mi_free(keep[i]);
}

/* How often the thread named shardalloc-hk was switched to (it wakes up once per switch); -1
 * if there is none. */
static long housekeeper_switches(void) {
  DIR *tasks = opendir("/proc/self/task");
  if (tasks == NULL) return -1;
  long switches = -1;
  for (struct dirent *e; (e = readdir(tasks)) != NULL;) {
    char path[300], line[256];
    if (e->d_name[0] == '.') continue;
    snprintf(path, sizeof(path), "/proc/self/task/%s/comm", e->d_name);
    FILE *f = fopen(path, "r");
    if (f == NULL) continue;
    bool hk = fgets(line, sizeof(line), f) != NULL && strncmp(line, "shardalloc-hk", 13) == 0;
    fclose(f);
    if (!hk) continue;
    snprintf(path, sizeof(path), "/proc/self/task/%s/status", e->d_name);
    if ((f = fopen(path, "r")) == NULL) continue;
    switches = 0;
    while (fgets(line, sizeof(line), f) != NULL)
      if (strstr(line, "ctxt_switches:") != NULL) switches += atol(strchr(line, ':') + 1);
    fclose(f);
  }
  closedir(tasks);
  return switches;
}

/* The housekeeper gives back the retired pages of a thread that stops allocating (a pool
 * thread waiting for work), all but the first of their queue (the fast path's). It looks
 * every few purge delays; the wait allows 30 s, so a slow or loaded machine only waits
 * longer. */
static void test_idle_thread_pages_go_back(size_t bin) {
  SECTION("an idle thread's retired pages go back while it lives, but the first of the queue");
  void *p[BATCH];
  for (int i = 0; i < BATCH; i++) p[i] = mi_malloc(BLOCK);
  for (int i = 0; i < BATCH; i++) mi_free(p[i]);
  CHECK(pages_of(bin) == BATCH);
  double start = now_s();
  while (pages_of(bin) > 1 && now_s() - start < 30) tu_sleep_ms(10);
  printf("  %zu of %d pages kept after %.2f s idle\n", pages_of(bin), BATCH, now_s() - start);
  CHECKF(pages_of(bin) == 1, "%zu pages kept by an idle thread, not 1", pages_of(bin));
  /* then it sleeps: with nothing left that it may give back it stops looking (a quiet half
   * second within 10 s; one that looks again and again never gets one) */
  start = now_s();
  long before = housekeeper_switches(), woke = 0;
  CHECK(before >= 0);
  bool quiet = false;
  while (!quiet && now_s() - start < 10) {
    tu_sleep_ms(500);
    long after = housekeeper_switches();
    woke = after - before;
    quiet = woke == 0;
    before = after;
  }
  CHECKF(quiet, "the housekeeper woke up %ld times in the last half second, idle", woke);
  void *q = mi_malloc(BLOCK); /* the kept page serves the next block */
  CHECK(pages_of(bin) == 1);
  mi_free(q);
}

int main(void) {
  size_t bin = bin_of(BLOCK);
  test_batch_keeps_pages(bin);
  mi_collect(true); /* nothing retired is left */
  CHECK(pages_of(bin) == 0);
  test_retired_pages_go_back(bin);
  mi_collect(true);
  test_idle_thread_pages_go_back(bin);
  return tu_finish();
}
