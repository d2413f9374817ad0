/* cache_scratch / cache_thrash: false sharing caused by the allocator, in the style of the
 * Hoard suite's cache-scratch and cache-thrash (written from their published descriptions).
 *
 * scratch (default): the main thread allocates one small object per thread, back to back (so
 *   they are likely neighbours in one cache line), and hands one to each thread. Each thread
 *   frees the object it was given, then ITER times allocates an object of the same size, writes
 *   every byte of it WRITES times, and frees it. An allocator that hands the freed neighbour
 *   back to the freeing thread makes threads write to one cache line ("passive" false sharing).
 * thrash (--thrash): no hand-over; each thread allocates its own objects. An allocator that
 *   serves concurrent threads from one cache line causes "active" false sharing.
 * The threads start together at a barrier; with a good allocator the time stays flat as the
 * thread count grows up to the core count.
 *
 * usage: cache_scratch [--thrash] [threads=2] [iterations=2000] [objsize=8] [writes=150000]
 * prints: mode, work done, the time.
 */
#include "bench_common.h"

#include <pthread.h>

static long g_iters, g_writes;
static size_t g_objsize;
static pthread_barrier_t g_start;

typedef struct {
  char *given; /* scratch mode: the object the main thread allocated for this thread */
} worker_t;

static void object_write(volatile char *p) {
  for (long w = 0; w < g_writes; w++)
    for (size_t k = 0; k < g_objsize; k++) p[k] = (char)(p[k] + 1);
}

static void *worker(void *arg) {
  worker_t *wk = arg;
  pthread_barrier_wait(&g_start);
  if (wk->given) free(wk->given);
  for (long i = 0; i < g_iters; i++) {
    char *p = bench_check(malloc(g_objsize));
    p[0] = 0;
    object_write(p);
    free(p);
  }
  return NULL;
}

int main(int argc, char **argv) {
  usage_if_asked(argc, argv,
                 "usage: cache_scratch [--thrash] [threads=2] [iterations=2000] [objsize=8] "
                 "[writes=150000]\n");
  int thrash = 0;
  if (argc > 1 && strcmp(argv[1], "--thrash") == 0) {
    thrash = 1;
    argv++;
    argc--;
  }
  long threads = arg_long(argc, argv, 1, 2);
  g_iters = arg_long(argc, argv, 2, 2000);
  g_objsize = (size_t)arg_long(argc, argv, 3, 8);
  g_writes = arg_long(argc, argv, 4, 150000);

  worker_t *wk = bench_check(calloc((size_t)threads, sizeof(worker_t)));
  pthread_t *tid = bench_check(malloc((size_t)threads * sizeof(pthread_t)));
  if (!thrash)
    for (long t = 0; t < threads; t++) wk[t].given = bench_check(malloc(g_objsize));
  pthread_barrier_init(&g_start, NULL, (unsigned)threads + 1);
  for (long t = 0; t < threads; t++)
    if (pthread_create(&tid[t], NULL, worker, &wk[t]) != 0) bench_fail("pthread_create");
  double t0 = now_s();
  pthread_barrier_wait(&g_start);
  for (long t = 0; t < threads; t++) pthread_join(tid[t], NULL);
  double elapsed = now_s() - t0;
  pthread_barrier_destroy(&g_start);

  printf("cache_%s: %ld threads x %ld objects of %zu B x %ld writes: %.3f s\n",
         thrash ? "thrash" : "scratch", threads, g_iters, g_objsize, g_writes, elapsed);
  free(tid);
  free(wk);
  return 0;
}
