/* test_thread_waves: waves of short-lived threads reuse the segments of the wave before.
 *
 * Each wave starts WAVE threads, which allocate, wait for each other at a barrier (so that
 * all of them own a segment at once), free and exit; the main thread joins them. The
 * counters of mi_stats_snapshot tell what happened to the segments:
 *   1. a wave that frees everything leaves its segments empty: they stay cached (more than
 *      the segment_cache option's count: as many as threads owned at once), and the next
 *      wave takes them instead of mapping new ones;
 *   2. a wave that leaves a block per thread (freed by the main thread after the join)
 *      leaves its segments abandoned: with no cache at all, each thread of the next wave
 *      reclaims one, finds it empty and keeps it rather than unmapping it and mapping another;
 *   3. memory purged while its segment is cached and taken again soon after by a new thread
 *      raises the purge delay of such memory (purge_delay_raises).
 * The housekeeper is off, so that nothing but these threads touches the segments. Time enters
 * only in section 3, as in test_purge_delay: a sleep past the delay (1 s) lets the slices fall
 * due, and the next wave must take them within twice the delay (2 s) of their purge. */
#define TEST_NAME "test_thread_waves"
#include "testutil.h"

#include <pthread.h>
#include <time.h>

#include "shardalloc.h"

#define WAVE 32
#define BLOCKS 24

static pthread_barrier_t barrier;
static size_t sizes_used; /* how many of the sizes below the threads allocate */
static bool leave_one;    /* a block per thread outlives it: its segment is abandoned */

static void *worker(void *arg) {
  static const size_t sizes[] = {48, 400, 3000};
  uint64_t key = (uint64_t)(uintptr_t)arg;
  void *blocks[BLOCKS];
  for (size_t i = 0; i < BLOCKS; i++) {
    size_t n = sizes[i % sizes_used];
    blocks[i] = mi_malloc(n);
    CHECK(blocks[i] != NULL);
    if (blocks[i] != NULL) tu_fill(blocks[i], n, key + i);
  }
  pthread_barrier_wait(&barrier);
  for (size_t i = leave_one ? 1 : 0; i < BLOCKS; i++) {
    CHECK(tu_verify(blocks[i], sizes[i % sizes_used], key + i) == sizes[i % sizes_used]);
    mi_free(blocks[i]);
  }
  return leave_one ? blocks[0] : NULL;
}

/* One wave; the blocks its threads leave are freed here, after the join. */
static void wave(uint64_t seed) {
  pthread_t tid[WAVE];
  CHECK(pthread_barrier_init(&barrier, NULL, WAVE) == 0);
  for (size_t t = 0; t < WAVE; t++)
    CHECK(pthread_create(&tid[t], NULL, worker, (void *)(uintptr_t)(seed + t * BLOCKS)) == 0);
  for (size_t t = 0; t < WAVE; t++) {
    void *left = NULL;
    pthread_join(tid[t], &left);
    if (left != NULL) {
      CHECK(tu_verify(left, 48, seed + t * BLOCKS) == 48);
      mi_free(left); /* a free into an abandoned segment */
    }
  }
  pthread_barrier_destroy(&barrier);
}

static mi_stats_snapshot_t snap(void) {
  mi_stats_snapshot_t s;
  mi_stats_snapshot(&s);
  return s;
}

int main(void) {
  mi_option_set(mi_option_background_purge, 0);
  mi_option_set(mi_option_purge_delay, 60000); /* no purge, no cache expiry, in 1 and 2 */
  void *anchor = mi_malloc(16);                /* the main thread's heap and segment */
  CHECK(anchor != NULL);

  SECTION("a wave's empty segments are cached for the next wave");
  {
    sizes_used = 3;
    leave_one = false;
    wave(1);
    mi_stats_snapshot_t after_first = snap();
    CHECKF(after_first.segments >= WAVE + 1, "%zu segments kept after the first wave",
           after_first.segments);
    wave(1000);
    mi_stats_snapshot_t after_second = snap();
    CHECKF(after_second.mmaps == after_first.mmaps, "the second wave mapped %zu segments",
           after_second.mmaps - after_first.mmaps);
  }

  SECTION("with no cache, a new thread keeps the abandoned segment it empties");
  {
    mi_option_set(mi_option_segment_cache, 0);
    mi_collect(true); /* the cache goes back to the OS */
    sizes_used = 1;   /* one size: one reclaim per thread */
    leave_one = true;
    wave(2000);
    mi_stats_snapshot_t abandoned = snap();
    CHECKF(abandoned.abandoned == WAVE, "%zu segments abandoned", abandoned.abandoned);
    leave_one = false;
    wave(3000);
    mi_stats_snapshot_t after = snap();
    CHECKF(after.abandoned == 0, "%zu segments still abandoned", after.abandoned);
    CHECKF(after.mmaps == abandoned.mmaps, "the wave after mapped %zu segments",
           after.mmaps - abandoned.mmaps);
    mi_option_set(mi_option_segment_cache, 4);
  }

  SECTION("cached memory purged and taken again soon by new threads raises its delay");
  {
    mi_option_set(mi_option_purge_delay, 1000);
    sizes_used = 3;
    leave_one = false;
    wave(4000); /* its segments go to the cache, their free slices pending */
    size_t before = snap().purge_delay_raises;
    tu_sleep_ms(1100); /* past the delay: due */
    mi_collect(false); /* purges what is due in the cache */
    CHECK(snap().purges > 0);
    wave(5000); /* takes the purged slices again */
    size_t raised = snap().purge_delay_raises - before;
    CHECKF(raised >= 1, "the delay was raised %zu times", raised);
  }

  mi_free(anchor);
  return tu_finish();
}
