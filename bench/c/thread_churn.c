/* thread_churn: waves of many short-lived threads that each allocate a little.
 *
 * WAVES times the main thread starts THREADS threads at once and joins them. Each thread makes
 * ALLOCS small allocations (16 B to max) and keeps them live, writes them, frees all but the
 * last, and returns the last to the main thread, which checks and frees it after the join (a
 * free of a block whose owning thread has exited). What this measures is the allocator's
 * per-thread cost: setting up a heap on a thread's first allocation and tearing it down at
 * its exit.
 *
 * With neighbour=N > 0 the threads of a wave also free each other's blocks while they live:
 * every Nth block a thread allocates is handed to the next thread of the wave, which frees it
 * after a barrier that all the wave's threads reach (so hundreds of threads live at once, and
 * every page gets frees from two threads).
 *
 * usage: thread_churn [threads=200] [waves=120] [allocs=100] [max=256] [neighbour=0]
 * prints: the work done, the time, thread starts per second, the process's peak RSS.
 */
#include "bench_common.h"

#include <pthread.h>

static long g_allocs;
static size_t g_max;
static long g_neighbour;  /* 0: no hand-off between threads */
static long g_threads;
static unsigned char ***g_handoff; /* per thread of the wave: the blocks it hands on */
static pthread_barrier_t g_wave_barrier;

static void *worker(void *arg) {
  rng_t r;
  rng_seed(&r, (uint64_t)(uintptr_t)arg);
  long n = g_allocs > 0 ? g_allocs : 1;
  long me = (long)((uintptr_t)arg % (uintptr_t)g_threads);
  unsigned char **blk = bench_check(malloc((size_t)n * sizeof(void *)));
  unsigned char **mine = NULL; /* the blocks handed to the next thread, NULL-terminated */
  long handed = 0;
  if (g_neighbour > 0) mine = bench_check(malloc((size_t)(n / g_neighbour + 2) * sizeof(void *)));
  for (long i = 0; i < n; i++) {
    size_t size = rng_range(&r, 16, g_max);
    blk[i] = bench_check(malloc(size));
    memset(blk[i], (int)(i & 0xff), size < 64 ? size : 64);
    if (g_neighbour > 0 && i < n - 1 && i % g_neighbour == 0) {
      mine[handed++] = blk[i];
      blk[i] = NULL;
    }
  }
  if (g_neighbour > 0) {
    mine[handed] = NULL;
    g_handoff[me] = mine;
    pthread_barrier_wait(&g_wave_barrier);
    unsigned char **theirs = g_handoff[(me + g_threads - 1) % g_threads];
    for (long k = 0; theirs[k] != NULL; k++) {
      if (theirs[k][0] != (unsigned char)((k * g_neighbour) & 0xff))
        bench_fail("thread_churn: handed-over block content changed");
      free(theirs[k]);
    }
    pthread_barrier_wait(&g_wave_barrier); /* the list itself is freed by its maker */
    free(mine);
  }
  unsigned char *last = blk[n - 1];
  for (long i = 0; i < n - 1; i++) {
    if (blk[i] == NULL) continue;
    if (blk[i][0] != (unsigned char)(i & 0xff)) bench_fail("thread_churn: block content changed");
    free(blk[i]);
  }
  free(blk);
  last[0] = 0xA5;
  return last;
}

int main(int argc, char **argv) {
  usage_if_asked(argc, argv,
                 "usage: thread_churn [threads=200] [waves=120] [allocs=100] [max=256] "
                 "[neighbour=0]\n");
  long threads = arg_long(argc, argv, 1, 200);
  long waves = arg_long(argc, argv, 2, 120);
  g_allocs = arg_long(argc, argv, 3, 100);
  g_max = (size_t)arg_long(argc, argv, 4, 256);
  g_neighbour = arg_long(argc, argv, 5, 0);
  if (g_max < 16) bench_fail("max < 16");
  if (threads < 1 || g_neighbour < 0) bench_fail("threads < 1 or neighbour < 0");
  g_threads = threads;
  if (g_neighbour > 0) {
    g_handoff = bench_check(calloc((size_t)threads, sizeof(*g_handoff)));
    if (pthread_barrier_init(&g_wave_barrier, NULL, (unsigned)threads) != 0)
      bench_fail("pthread_barrier_init");
  }

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
  printf("thread_churn: %ld waves x %ld threads x %ld allocs of 16-%zu B", waves, threads,
         g_allocs, g_max);
  if (g_neighbour > 0) printf(", every %ld%s freed by the neighbour", g_neighbour,
                              g_neighbour == 1 ? "" : g_neighbour == 2 ? "nd" : g_neighbour == 3 ? "rd" : "th");
  printf(": %.3f s, %.0f threads/s, %.1f M ops/s, peak RSS %.1f MiB\n", elapsed,
         (double)(waves * threads) / elapsed, (double)(waves * threads * g_allocs) * 2 / elapsed / 1e6,
         maxrss);
  free(tid);
  if (g_neighbour > 0) {
    pthread_barrier_destroy(&g_wave_barrier);
    free(g_handoff);
  }
  return 0;
}
