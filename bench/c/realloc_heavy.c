/* realloc_heavy: buffers grown by repeated realloc, the way strings and vectors grow.
 *
 * Each round has two phases, each growing several buffers at once in round-robin (so a
 * buffer's neighbour is usually live and growth in place is not free):
 *  - small steps: SMALL_BUFS buffers grow by 1-64 bytes per realloc up to `small_max` bytes,
 *    each new tail filled (string appends);
 *  - doubling: BIG_BUFS buffers double from 64 bytes up to `big_max` bytes, each new half filled
 *    (vector growth), then shrink to a quarter before being freed.
 * After every realloc three bytes of the old content (first, middle, last) are compared with
 * what they held before, so a realloc that loses data fails the run.
 *
 * usage: realloc_heavy [threads=1] [rounds=40] [small_max=16384] [big_max=8388608]
 * prints: the work done, the number of realloc calls, the time.
 */
#include "bench_common.h"

#include <pthread.h>

#define SMALL_BUFS 64
#define BIG_BUFS 8

static long g_rounds;
static size_t g_small_max, g_big_max;

typedef struct {
  long id;
  long reallocs;
} job_t;

static void *run_job(void *arg) {
  job_t *job = arg;
  rng_t r;
  rng_seed(&r, (uint64_t)job->id);
  long reallocs = 0;
  for (long round = 0; round < g_rounds; round++) {
    unsigned char *buf[SMALL_BUFS] = {0};
    size_t len[SMALL_BUFS] = {0};
    int growing = SMALL_BUFS;
    while (growing > 0) {
      growing = 0;
      for (int b = 0; b < SMALL_BUFS; b++) {
        if (len[b] >= g_small_max) continue;
        size_t next = len[b] + rng_range(&r, 1, 64);
        bench_resize(&buf[b], len[b], next, (unsigned char)(next * 13 + (size_t)b));
        len[b] = next;
        reallocs++;
        growing++;
      }
    }
    for (int b = 0; b < SMALL_BUFS; b++) free(buf[b]);

    unsigned char *big[BIG_BUFS] = {0};
    size_t blen[BIG_BUFS] = {0};
    for (size_t size = 64; size <= g_big_max; size *= 2) {
      for (int b = 0; b < BIG_BUFS; b++) {
        bench_resize(&big[b], blen[b], size, (unsigned char)(size >> 6));
        blen[b] = size;
        reallocs++;
      }
    }
    for (int b = 0; b < BIG_BUFS; b++) {
      bench_resize(&big[b], blen[b], blen[b] / 4, 0);
      reallocs++;
      free(big[b]);
    }
  }
  job->reallocs = reallocs;
  return NULL;
}

int main(int argc, char **argv) {
  usage_if_asked(argc, argv,
                 "usage: realloc_heavy [threads=1] [rounds=40] [small_max=16384] "
                 "[big_max=8388608]\n");
  long threads = arg_long(argc, argv, 1, 1);
  g_rounds = arg_long(argc, argv, 2, 40);
  g_small_max = (size_t)arg_long(argc, argv, 3, 16384);
  g_big_max = (size_t)arg_long(argc, argv, 4, 8 << 20);

  job_t *jobs = bench_check(calloc((size_t)threads, sizeof(job_t)));
  double t0 = now_s();
  for (long t = 0; t < threads; t++) jobs[t].id = t;
  bench_run_jobs(threads, run_job, jobs, sizeof(job_t));
  double elapsed = now_s() - t0;

  long reallocs = 0;
  for (long t = 0; t < threads; t++) reallocs += jobs[t].reallocs;
  printf("realloc_heavy: %ld threads x %ld rounds, %d buffers to %zu B by 1-64 B, %d to %zu B "
         "by doubling: %ld reallocs, %.3f s\n",
         threads, g_rounds, SMALL_BUFS, g_small_max, BIG_BUFS, g_big_max, reallocs, elapsed);
  free(jobs);
  return 0;
}
