/* Helpers shared by the C benchmark programs in bench/c/.
 *
 * Header-only so that every program is one compile: a small PRNG (xorshift64*, seeded per
 * thread so runs are repeatable), a monotonic clock, positional-argument parsing, and a
 * check that ends the program when an allocation fails or a block's content is wrong.
 *
 * The programs call plain malloc/free/realloc/calloc so that LD_PRELOAD swaps the allocator.
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

typedef struct {
  uint64_t s;
} rng_t;

static inline void rng_seed(rng_t *r, uint64_t seed) {
  r->s = (seed + 1) * 0x9E3779B97F4A7C15ULL;
  if (r->s == 0) r->s = 1;
}

static inline uint64_t rng_next(rng_t *r) {
  uint64_t x = r->s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  r->s = x;
  return x * 0x2545F4914F6CDD1DULL;
}

/* Uniform in [0, n) without a division. */
static inline uint64_t rng_below(rng_t *r, uint64_t n) {
  return (uint64_t)(((unsigned __int128)rng_next(r) * n) >> 64);
}

/* Uniform in [lo, hi]. */
static inline size_t rng_range(rng_t *r, size_t lo, size_t hi) {
  return lo + (size_t)rng_below(r, (uint64_t)(hi - lo) + 1);
}

static inline double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void bench_fail(const char *what) {
  fprintf(stderr, "FAIL: %s\n", what);
  exit(2);
}

static inline void *bench_check(void *p) {
  if (p == NULL) bench_fail("allocation returned NULL");
  return p;
}

/* Run fn on each of `threads` jobs (an array of `job_size`-byte structs), each on its own
 * thread, and wait for all; one job runs on the calling thread. */
static inline void bench_run_jobs(long threads, void *(*fn)(void *), void *jobs, size_t job_size) {
  if (threads == 1) {
    fn(jobs);
    return;
  }
  pthread_t *tid = (pthread_t *)bench_check(malloc((size_t)threads * sizeof(pthread_t)));
  for (long t = 0; t < threads; t++)
    if (pthread_create(&tid[t], NULL, fn, (char *)jobs + (size_t)t * job_size) != 0)
      bench_fail("pthread_create");
  for (long t = 0; t < threads; t++) pthread_join(tid[t], NULL);
  free(tid);
}

/* Positional argument i (1-based) as a positive integer, or def when absent. "-" also means
 * the default, so a later argument can be given alone: `larson - 5000`. */
static inline long arg_long(int argc, char **argv, int i, long def) {
  if (i >= argc || strcmp(argv[i], "-") == 0) return def;
  char *end;
  errno = 0;
  long v = strtol(argv[i], &end, 0);
  if (errno != 0 || *end != '\0' || v <= 0) {
    fprintf(stderr, "argument %d ('%s') must be a positive integer\n", i, argv[i]);
    exit(1);
  }
  return v;
}

/* Grows (or shrinks) *p by realloc from old to new_size bytes, checks that three of the kept
 * bytes (first, middle, last) survived, and fills the new tail with `fill`. */
static inline void bench_resize(unsigned char **p, size_t old, size_t new_size,
                                unsigned char fill) {
  unsigned char first = 0, mid = 0, last = 0;
  size_t keep = old < new_size ? old : new_size;
  if (keep > 0) {
    first = (*p)[0];
    mid = (*p)[keep / 2];
    last = (*p)[keep - 1];
  }
  unsigned char *q = bench_check(realloc(*p, new_size));
  if (keep > 0 && (q[0] != first || q[keep / 2] != mid || q[keep - 1] != last))
    bench_fail("realloc lost the block's content");
  if (new_size > old) memset(q + old, fill, new_size - old);
  *p = q;
}

/* Prints usage and exits when the first argument asks for help. */
static inline void usage_if_asked(int argc, char **argv, const char *usage) {
  if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
    fputs(usage, stdout);
    exit(0);
  }
}

/* This process's peak RSS in MiB (VmHWM: unlike getrusage's ru_maxrss it does not include the
 * memory of the process image before exec, e.g. a Python parent's) and its minor page faults. */
static inline void self_usage(double *maxrss_mib, long *minflt) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  *maxrss_mib = (double)ru.ru_maxrss / 1024.0;
  *minflt = ru.ru_minflt;
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) return;
  char line[256];
  long kib;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "VmHWM: %ld kB", &kib) == 1) *maxrss_mib = (double)kib / 1024.0;
  fclose(f);
}

#endif
