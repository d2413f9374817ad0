/* larson: a server simulation with thread turnover, in the style of Larson and Krishnan's
 * benchmark (written from its published description).
 *
 * Each of T "lanes" owns an array of slots holding blocks of random size. A lane is served by
 * one thread at a time: the thread performs OPS rounds of "free a random slot's block, allocate
 * a replacement of a new random size", then starts its successor (which inherits the slots)
 * and exits. So blocks are freed by threads other than the one that allocated them, threads
 * die while their memory is still live, and new threads keep arriving. The main thread fills
 * the slots first and frees whatever is left at the end (more cross-thread frees).
 *
 * Each block carries two tag bytes that are checked when it is freed.
 *
 * usage: larson [threads=2] [generations=50] [ops=500000] [slots=5000] [min=8] [max=1000]
 * prints: the work done, the time, and throughput in operations (one free + one malloc) per s.
 */
#include "bench_common.h"

#include <pthread.h>

typedef struct {
  void **blk;
  size_t *size;
  rng_t rng;
  long gen;
} lane_t;

static long g_slots, g_ops, g_generations;
static size_t g_min, g_max;

static pthread_mutex_t g_done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_done_cond = PTHREAD_COND_INITIALIZER;
static long g_lanes_done;

static void *block_new(size_t slot, size_t size) {
  unsigned char *p = bench_check(malloc(size));
  p[0] = (unsigned char)slot;
  p[size - 1] = (unsigned char)(size * 7);
  return p;
}

static void block_free(void *blk, size_t slot, size_t size) {
  unsigned char *p = blk;
  if (p[0] != (unsigned char)slot || p[size - 1] != (unsigned char)(size * 7))
    bench_fail("larson: block content changed");
  free(p);
}

static void *lane_worker(void *arg);

static void lane_spawn(lane_t *lane) {
  pthread_attr_t attr;
  pthread_t tid;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  if (pthread_create(&tid, &attr, lane_worker, lane) != 0) bench_fail("pthread_create");
  pthread_attr_destroy(&attr);
}

static void *lane_worker(void *arg) {
  lane_t *lane = arg;
  for (long i = 0; i < g_ops; i++) {
    size_t slot = (size_t)rng_below(&lane->rng, (uint64_t)g_slots);
    block_free(lane->blk[slot], slot, lane->size[slot]);
    size_t size = rng_range(&lane->rng, g_min, g_max);
    lane->blk[slot] = block_new(slot, size);
    lane->size[slot] = size;
  }
  lane->gen++;
  if (lane->gen < g_generations) {
    lane_spawn(lane);
  } else {
    pthread_mutex_lock(&g_done_lock);
    g_lanes_done++;
    pthread_cond_signal(&g_done_cond);
    pthread_mutex_unlock(&g_done_lock);
  }
  return NULL;
}

int main(int argc, char **argv) {
  usage_if_asked(argc, argv,
                 "usage: larson [threads=2] [generations=50] [ops=500000] [slots=5000] "
                 "[min=8] [max=1000]\n");
  long threads = arg_long(argc, argv, 1, 2);
  g_generations = arg_long(argc, argv, 2, 50);
  g_ops = arg_long(argc, argv, 3, 500000);
  g_slots = arg_long(argc, argv, 4, 5000);
  g_min = (size_t)arg_long(argc, argv, 5, 8);
  g_max = (size_t)arg_long(argc, argv, 6, 1000);
  if (g_min > g_max) bench_fail("min > max");

  lane_t *lanes = bench_check(calloc((size_t)threads, sizeof(lane_t)));
  for (long t = 0; t < threads; t++) {
    lane_t *lane = &lanes[t];
    rng_seed(&lane->rng, (uint64_t)t);
    lane->blk = bench_check(malloc((size_t)g_slots * sizeof(void *)));
    lane->size = bench_check(malloc((size_t)g_slots * sizeof(size_t)));
    for (long s = 0; s < g_slots; s++) {
      lane->size[s] = rng_range(&lane->rng, g_min, g_max);
      lane->blk[s] = block_new((size_t)s, lane->size[s]);
    }
  }

  double t0 = now_s();
  for (long t = 0; t < threads; t++) lane_spawn(&lanes[t]);
  pthread_mutex_lock(&g_done_lock);
  while (g_lanes_done < threads) pthread_cond_wait(&g_done_cond, &g_done_lock);
  pthread_mutex_unlock(&g_done_lock);
  double elapsed = now_s() - t0;

  for (long t = 0; t < threads; t++) {
    for (long s = 0; s < g_slots; s++) block_free(lanes[t].blk[s], (size_t)s, lanes[t].size[s]);
    free(lanes[t].blk);
    free(lanes[t].size);
  }
  free(lanes);

  double ops = (double)threads * (double)g_generations * (double)g_ops;
  printf("larson: %ld threads x %ld generations x %ld ops, %ld slots of %zu-%zu B: "
         "%.3f s, %.2f Mops/s\n",
         threads, g_generations, g_ops, g_slots, g_min, g_max, elapsed, ops / elapsed / 1e6);
  return 0;
}
