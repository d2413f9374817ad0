/* large_blocks: churn of large zeroed blocks, where page faults decide the time.
 *
 * Each thread keeps a window of `live` slots. BLOCKS times it picks a random slot, frees the
 * block there, callocs a new one of a random size between min and max MiB, checks that a few
 * sampled bytes are zero, and writes one byte in every 4 KiB page (first use of the memory).
 * An allocator that returns every block to the kernel pays a page fault per page on the next
 * block; one that keeps and reuses memory must still hand out zeroed memory from calloc.
 *
 * usage: large_blocks [threads=1] [blocks=300] [min_mib=5] [max_mib=25] [live=20]
 *   (`live` is per thread; blocks is per thread)
 * prints: the work done, the time, the minor page faults and peak RSS of the process.
 */
#include "bench_common.h"

#include <pthread.h>

#define MIB ((size_t)1 << 20)
#define PAGE 4096

static long g_blocks, g_live;
static size_t g_min, g_max;

typedef struct {
  long id;
  double bytes;
} job_t;

static void *run_job(void *arg) {
  job_t *job = arg;
  rng_t r;
  rng_seed(&r, (uint64_t)job->id);
  unsigned char **slot = bench_check(calloc((size_t)g_live, sizeof(void *)));
  double bytes = 0;
  for (long i = 0; i < g_blocks; i++) {
    size_t s = (size_t)rng_below(&r, (uint64_t)g_live);
    free(slot[s]);
    size_t size = rng_range(&r, g_min, g_max);
    unsigned char *p = bench_check(calloc(1, size));
    for (int k = 0; k < 8; k++)
      if (p[rng_below(&r, size)] != 0) bench_fail("large_blocks: calloc memory not zero");
    for (size_t off = 0; off < size; off += PAGE) p[off] = (unsigned char)(off >> 12);
    p[size - 1] = 1;
    slot[s] = p;
    bytes += (double)size;
  }
  for (long s = 0; s < g_live; s++) free(slot[s]);
  free(slot);
  job->bytes = bytes;
  return NULL;
}

int main(int argc, char **argv) {
  usage_if_asked(argc, argv,
                 "usage: large_blocks [threads=1] [blocks=300] [min_mib=5] [max_mib=25] "
                 "[live=20]\n");
  long threads = arg_long(argc, argv, 1, 1);
  g_blocks = arg_long(argc, argv, 2, 300);
  g_min = (size_t)arg_long(argc, argv, 3, 5) * MIB;
  g_max = (size_t)arg_long(argc, argv, 4, 25) * MIB;
  g_live = arg_long(argc, argv, 5, 20);
  if (g_min > g_max) bench_fail("min > max");

  job_t *jobs = bench_check(calloc((size_t)threads, sizeof(job_t)));
  double maxrss0;
  long flt0;
  self_usage(&maxrss0, &flt0);
  double t0 = now_s();
  for (long t = 0; t < threads; t++) jobs[t].id = t;
  bench_run_jobs(threads, run_job, jobs, sizeof(job_t));
  double elapsed = now_s() - t0;
  double maxrss;
  long flt;
  self_usage(&maxrss, &flt);

  double bytes = 0;
  for (long t = 0; t < threads; t++) bytes += jobs[t].bytes;
  printf("large_blocks: %ld threads x %ld callocs of %zu-%zu MiB, %ld live each (%.1f GiB): "
         "%.3f s, %ld minor faults, peak RSS %.0f MiB\n",
         threads, g_blocks, g_min / MIB, g_max / MIB, g_live, bytes / (double)(1 << 30),
         elapsed, flt - flt0, maxrss);
  free(jobs);
  return 0;
}
