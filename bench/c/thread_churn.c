/* thread_churn: waves of many short-lived threads that each allocate a little.
 *
 * WAVES times the main thread starts THREADS threads at once and joins them. Each thread makes
 * ALLOCS small allocations (16 B to max) and keeps them live, writes them, frees all but the
 * last, and returns the last to the main thread, which checks and frees it after the join (a
 * free of a block whose owning thread has exited). What this measures is the allocator's
 * per-thread cost: setting up a heap on a thread's first allocation and tearing it down at
 * its exit.
 *
 * usage: thread_churn [threads=200] [waves=120] [allocs=100] [max=256]
 * prints: the work done, the time, thread starts per second, the process's peak RSS.
 */
#include "bench_common.h"

#include <pthread.h>

static long g_allocs;
static size_t g_max;

static void *worker(void *arg) {
  rng_t r;
  rng_seed(&r, (uint64_t)(uintptr_t)arg);
  long n = g_allocs > 0 ? g_allocs : 1;
  unsigned char **blk = bench_check(malloc((size_t)n * sizeof(void *)));
  for (long i = 0; i < n; i++) {
    size_t size = rng_range(&r, 16, g_max);
    blk[i] = bench_check(malloc(size));
    memset(blk[i], (int)(i & 0xff), size < 64 ? size : 64);
  }
  unsigned char *last = blk[n - 1];
  for (long i = 0; i < n - 1; i++) {
    if (blk[i][0] != (unsigned char)(i & 0xff)) bench_fail("thread_churn: block content changed");
    free(blk[i]);
  }
  free(blk);
  last[0] = 0xA5;
  return last;
}

int main(int argc, char **argv) {
  usage_if_asked(argc, argv,
                 "usage: thread_churn [threads=200] [waves=120] [allocs=100] [max=256]\n");
  long threads = arg_long(argc, argv, 1, 200);
  long waves = arg_long(argc, argv, 2, 120);
  g_allocs = arg_long(argc, argv, 3, 100);
  g_max = (size_t)arg_long(argc, argv, 4, 256);
  if (g_max < 16) bench_fail("max < 16");

  pthread_t *tid = bench_check(malloc((size_t)threads * sizeof(pthread_t)));
  double t0 = now_s();
  for (long w = 0; w < waves; w++) {
    for (long t = 0; t < threads; t++)
      if (pthread_create(&tid[t], NULL, worker, (void *)(uintptr_t)(w * threads + t)) != 0)
        bench_fail("pthread_create");
    for (long t = 0; t < threads; t++) {
      unsigned char *last;
      pthread_join(tid[t], (void **)&last);
      if (last[0] != 0xA5) bench_fail("thread_churn: block content changed");
      free(last);
    }
  }
  double elapsed = now_s() - t0;
  double maxrss;
  long flt;
  self_usage(&maxrss, &flt);
  printf("thread_churn: %ld waves x %ld threads x %ld allocs of 16-%zu B: %.3f s, "
         "%.0f threads/s, peak RSS %.1f MiB\n",
         waves, threads, g_allocs, g_max, elapsed, (double)(waves * threads) / elapsed, maxrss);
  free(tid);
  return 0;
}
