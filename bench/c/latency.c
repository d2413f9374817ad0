/* latency: the time of each malloc and each free, as a distribution, to see an allocator's tail.
 *
 * Each thread owns SLOTS slots and OPS times picks a random one: an occupied slot is freed, an
 * empty one gets a new block (so about half the slots are live). Sizes, uniform within each
 * range: 80 % 8-256 B, 15 % 257 B-4 KiB, 4 % 4-64 KiB, 1 % 64 KiB-4 MiB. The first byte of
 * each new block is written, as a program would (timed on its own as "touch": a first write
 * to fresh memory takes the page fault there, not in malloc). WARMUP operations first, not
 * recorded, bring the slots to their steady state.
 *
 * Phases: 1 thread, then 2, 4 ... up to MAX_THREADS, the threads of a phase starting together
 * at a barrier. Each thread uses its own fixed PRNG seed, so every allocator sees the same calls.
 *
 * Clock: rdtsc (x86, between lfences), calibrated against CLOCK_MONOTONIC; elsewhere, or when
 * two calibrations disagree, clock_gettime. The cost of an empty timed region (its minimum)
 * is subtracted from every sample. Samples go into log-scale histograms, 8 buckets per
 * power of two (a reported percentile is its bucket's midpoint: within about 6 %); the
 * maximum is exact.
 *
 * --detail: also reads the thread's rusage (getrusage(RUSAGE_THREAD), outside the timed
 * region) around every call and keeps every sample, to tell which calls form the tail: per
 * size class, and how many of the calls above p99 / p99.9 took a page fault or a context
 * switch inside the call. Two system calls per operation make this mode slower; its
 * latencies are only for the breakdown.
 *
 * usage: latency [--detail] [ops=1000000] [max_threads=2] [warmup=100000] [slots=4096]
 * prints, one record per line, fields as key=value:
 *   clock ...                         the clock, its calibration and overhead
 *   phase threads=T ...               the phase's wall time and the threads' faults and switches
 *   row threads=T kind=K ...          count, mean and p50 p90 p99 p99.9 p99.99 max (ns) of
 *                                     K = malloc, free, touch
 *   class / tail threads=T kind=K ... (--detail) per size class; the calls above p99, p99.9
 */
#define _GNU_SOURCE /* RUSAGE_THREAD */
#include "bench_common.h"

#include <math.h>
#include <pthread.h>
#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define HAVE_TSC 1
#endif

enum { K_MALLOC, K_FREE, K_TOUCH, KINDS };
static const char *const kind_name[KINDS] = {"malloc", "free", "touch"};

enum { CLASSES = 4 };
static const char *const class_name[CLASSES] = {"8-256", "257-4K", "4K-64K", "64K-4M"};

/* ---- clock ---- */

static int g_use_tsc;
static double g_ns_per_tick = 1.0;
static uint64_t g_overhead; /* ticks of an empty timed region (minimum) */

static inline uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline uint64_t ticks(void) {
#ifdef HAVE_TSC
  if (g_use_tsc) {
    /* The fences keep the measured call from moving across the reads. */
    _mm_lfence();
    uint64_t t = __rdtsc();
    _mm_lfence();
    return t;
  }
#endif
  return mono_ns();
}

#ifdef HAVE_TSC
static double tsc_calibrate(uint64_t span_ns) {
  uint64_t n0 = mono_ns(), c0 = __rdtsc(), n1;
  while ((n1 = mono_ns()) - n0 < span_ns) {
  }
  uint64_t c1 = __rdtsc();
  return (double)(n1 - n0) / (double)(c1 - c0);
}
#endif

static void clock_setup(void) {
#ifdef HAVE_TSC
  double a = tsc_calibrate(20000000), b = tsc_calibrate(20000000);
  if (a > 0 && fabs(a - b) / a < 0.01) {
    g_use_tsc = 1;
    g_ns_per_tick = (a + b) / 2;
  }
#endif
  uint64_t best = UINT64_MAX;
  for (int i = 0; i < 100000; i++) {
    uint64_t t0 = ticks();
    uint64_t t1 = ticks();
    if (t1 - t0 < best) best = t1 - t0;
  }
  g_overhead = best;
}

static inline uint64_t elapsed_ns(uint64_t t0, uint64_t t1) {
  uint64_t d = t1 - t0;
  d = d > g_overhead ? d - g_overhead : 0;
  return (uint64_t)((double)d * g_ns_per_tick);
}

/* ---- log-scale histogram: values below 8 exact, then 8 buckets per power of two ---- */

enum { SUB_BITS = 3, SUB = 1 << SUB_BITS, BUCKETS = (64 - SUB_BITS + 1) * SUB };

typedef struct {
  uint64_t n[BUCKETS];
  uint64_t count, max;
  double sum;
} hist_t;

static inline unsigned bucket_of(uint64_t v) {
  if (v < SUB) return (unsigned)v;
  unsigned msb = 63u - (unsigned)__builtin_clzll(v);
  return (msb - SUB_BITS + 1) * SUB + ((unsigned)(v >> (msb - SUB_BITS)) & (SUB - 1));
}

static double bucket_mid(unsigned b) {
  if (b < SUB) return b;
  unsigned g = b / SUB;
  double width = ldexp(1.0, (int)g - 1);
  return (double)(SUB + b % SUB) * width + (width - 1) / 2;
}

static inline void hist_add(hist_t *h, uint64_t v) {
  h->n[bucket_of(v)]++;
  h->count++;
  h->sum += (double)v;
  if (v > h->max) h->max = v;
}

static void hist_merge(hist_t *into, const hist_t *h) {
  for (unsigned b = 0; b < BUCKETS; b++) into->n[b] += h->n[b];
  into->count += h->count;
  into->sum += h->sum;
  if (h->max > into->max) into->max = h->max;
}

static double hist_quantile(const hist_t *h, double q) {
  uint64_t rank = (uint64_t)ceil(q * (double)h->count), seen = 0;
  if (rank == 0) rank = 1;
  for (unsigned b = 0; b < BUCKETS; b++) {
    seen += h->n[b];
    if (seen >= rank) {
      double mid = bucket_mid(b);
      return mid < (double)h->max ? mid : (double)h->max;
    }
  }
  return (double)h->max;
}

static const double quantiles[] = {0.5, 0.9, 0.99, 0.999, 0.9999};
static const char *const quantile_name[] = {"p50", "p90", "p99", "p99.9", "p99.99"};
enum { NQ = sizeof quantiles / sizeof quantiles[0] };

static void print_hist(const char *rec, long threads, const char *kind, const char *cls,
                       const hist_t *h) {
  printf("%s threads=%ld kind=%s", rec, threads, kind);
  if (cls) printf(" class=%s", cls);
  printf(" count=%llu mean=%.1f", (unsigned long long)h->count,
         h->count ? h->sum / (double)h->count : 0.0);
  for (int q = 0; q < NQ; q++) printf(" %s=%.0f", quantile_name[q], hist_quantile(h, quantiles[q]));
  printf(" max=%llu\n", (unsigned long long)h->max);
}

/* ---- the workload ---- */

/* --detail keeps every sample: its time, size class and what happened inside the call. */
typedef struct {
  uint64_t ns;
  uint8_t kind, cls;
  uint16_t faults;  /* minor + major faults during the call (saturating) */
  uint8_t nvcsw;    /* voluntary context switches (the thread blocked: a lock, a syscall) */
  uint8_t nivcsw;   /* involuntary ones (preempted) */
} sample_t;

typedef struct {
  long index;
  long threads;
  hist_t hist[KINDS];
  sample_t *samples;
  long nsamples;
  long minflt, nvcsw, nivcsw; /* over the measured operations */
} job_t;

static long g_ops, g_warmup, g_slots;
static int g_detail;
static pthread_barrier_t g_start;

static inline size_t pick_size(rng_t *r, int *cls) {
  uint64_t pct = rng_below(r, 100);
  if (pct < 80) return *cls = 0, rng_range(r, 8, 256);
  if (pct < 95) return *cls = 1, rng_range(r, 257, 4096);
  if (pct < 99) return *cls = 2, rng_range(r, 4097, 65536);
  return *cls = 3, rng_range(r, 65537, 4194304);
}

static inline void usage_now(struct rusage *ru) { getrusage(RUSAGE_THREAD, ru); }

static inline uint8_t sat8(long v) { return (uint8_t)(v > 255 ? 255 : v); }

static void *worker(void *arg) {
  job_t *job = arg;
  rng_t r;
  rng_seed(&r, (uint64_t)(job->threads * 1000 + job->index));
  unsigned char **slot = bench_check(calloc((size_t)g_slots, sizeof *slot));
  uint8_t *slot_cls = bench_check(calloc((size_t)g_slots, 1));
  struct rusage ru0, ru1, c0, c1;

  pthread_barrier_wait(&g_start);
  for (long i = 0; i < g_warmup + g_ops; i++) {
    int measured = i >= g_warmup;
    if (i == g_warmup) usage_now(&ru0);
    long s = (long)rng_below(&r, (uint64_t)g_slots);
    unsigned char *p = slot[s];
    int kind, cls;
    uint64_t t0, t1;
    if (g_detail && measured) usage_now(&c0);
    if (p != NULL) {
      if (p[0] != (unsigned char)s) bench_fail("latency: block content changed");
      kind = K_FREE;
      cls = slot_cls[s];
      t0 = ticks();
      free(p);
      t1 = ticks();
      slot[s] = NULL;
    } else {
      kind = K_MALLOC;
      size_t size = pick_size(&r, &cls);
      t0 = ticks();
      p = malloc(size);
      t1 = ticks();
      bench_check(p);
    }
    if (!measured) {
      if (kind == K_MALLOC) p[0] = (unsigned char)s, slot[s] = p, slot_cls[s] = (uint8_t)cls;
      continue;
    }
    if (g_detail) usage_now(&c1);
    uint64_t ns = elapsed_ns(t0, t1);
    hist_add(&job->hist[kind], ns);
    if (g_detail) {
      long flt = (c1.ru_minflt - c0.ru_minflt) + (c1.ru_majflt - c0.ru_majflt);
      job->samples[job->nsamples++] = (sample_t){
          ns, (uint8_t)kind, (uint8_t)cls, (uint16_t)(flt > 65535 ? 65535 : flt),
          sat8(c1.ru_nvcsw - c0.ru_nvcsw), sat8(c1.ru_nivcsw - c0.ru_nivcsw)};
    }
    if (kind == K_MALLOC) {
      uint64_t w0 = ticks();
      p[0] = (unsigned char)s;
      uint64_t w1 = ticks();
      hist_add(&job->hist[K_TOUCH], elapsed_ns(w0, w1));
      slot[s] = p;
      slot_cls[s] = (uint8_t)cls;
    }
  }
  usage_now(&ru1);
  job->minflt = ru1.ru_minflt - ru0.ru_minflt;
  job->nvcsw = ru1.ru_nvcsw - ru0.ru_nvcsw;
  job->nivcsw = ru1.ru_nivcsw - ru0.ru_nivcsw;

  for (long s = 0; s < g_slots; s++) free(slot[s]);
  free(slot);
  free(slot_cls);
  return NULL;
}

/* ---- --detail: which calls form the tail ---- */

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

static void print_detail(long threads, job_t *jobs) {
  long total = 0;
  for (long t = 0; t < threads; t++) total += jobs[t].nsamples;
  uint64_t *ns = bench_check(malloc((size_t)(total > 0 ? total : 1) * sizeof *ns));
  for (int kind = K_MALLOC; kind <= K_FREE; kind++) {
    hist_t cls_hist[CLASSES];
    long cls_faults[CLASSES] = {0};
    memset(cls_hist, 0, sizeof cls_hist);
    long n = 0;
    for (long t = 0; t < threads; t++)
      for (long i = 0; i < jobs[t].nsamples; i++) {
        const sample_t *x = &jobs[t].samples[i];
        if (x->kind != kind) continue;
        ns[n++] = x->ns;
        hist_add(&cls_hist[x->cls], x->ns);
        cls_faults[x->cls] += x->faults;
      }
    for (int c = 0; c < CLASSES; c++) {
      print_hist("class", threads, kind_name[kind], class_name[c], &cls_hist[c]);
      printf("classfaults threads=%ld kind=%s class=%s faults_per_call=%.3f\n", threads,
             kind_name[kind], class_name[c],
             cls_hist[c].count ? (double)cls_faults[c] / (double)cls_hist[c].count : 0.0);
    }
    if (n == 0) continue;
    qsort(ns, (size_t)n, sizeof *ns, cmp_u64);
    static const double above[] = {0.99, 0.999};
    static const char *const above_name[] = {"p99", "p99.9"};
    for (int a = 0; a < 2; a++) {
      uint64_t threshold = ns[(long)((double)(n - 1) * above[a])];
      long count = 0, by_cls[CLASSES] = {0}, with_fault = 0, with_vcsw = 0, with_ivcsw = 0,
           neither = 0;
      for (long t = 0; t < threads; t++)
        for (long i = 0; i < jobs[t].nsamples; i++) {
          const sample_t *x = &jobs[t].samples[i];
          if (x->kind != kind || x->ns < threshold) continue;
          count++;
          by_cls[x->cls]++;
          with_fault += x->faults > 0;
          with_vcsw += x->nvcsw > 0;
          with_ivcsw += x->nivcsw > 0;
          neither += x->faults == 0 && x->nvcsw == 0 && x->nivcsw == 0;
        }
      printf("tail threads=%ld kind=%s above=%s threshold=%llu count=%ld", threads, kind_name[kind],
             above_name[a], (unsigned long long)threshold, count);
      for (int c = 0; c < CLASSES; c++) printf(" class_%s=%ld", class_name[c], by_cls[c]);
      printf(" with_fault=%ld with_vcsw=%ld with_ivcsw=%ld none=%ld\n", with_fault, with_vcsw,
             with_ivcsw, neither);
    }
  }
  free(ns);
}

/* ---- phases ---- */

static void run_phase(long threads) {
  job_t *jobs = bench_check(calloc((size_t)threads, sizeof *jobs));
  for (long t = 0; t < threads; t++) {
    jobs[t].index = t;
    jobs[t].threads = threads;
    if (g_detail) { /* written now, so that its page faults do not count in the phase */
      jobs[t].samples = bench_check(malloc((size_t)g_ops * sizeof(sample_t)));
      memset(jobs[t].samples, 0xff, (size_t)g_ops * sizeof(sample_t));
    }
  }
  pthread_barrier_init(&g_start, NULL, (unsigned)threads);
  double t0 = now_s();
  bench_run_jobs(threads, worker, jobs, sizeof *jobs);
  double seconds = now_s() - t0;
  pthread_barrier_destroy(&g_start);

  hist_t all[KINDS];
  memset(all, 0, sizeof all);
  long minflt = 0, nvcsw = 0, nivcsw = 0;
  for (long t = 0; t < threads; t++) {
    for (int k = 0; k < KINDS; k++) hist_merge(&all[k], &jobs[t].hist[k]);
    minflt += jobs[t].minflt;
    nvcsw += jobs[t].nvcsw;
    nivcsw += jobs[t].nivcsw;
  }
  printf("phase threads=%ld seconds=%.3f minflt=%ld nvcsw=%ld nivcsw=%ld\n", threads, seconds,
         minflt, nvcsw, nivcsw);
  for (int k = 0; k < KINDS; k++) print_hist("row", threads, kind_name[k], NULL, &all[k]);
  if (g_detail) print_detail(threads, jobs);
  fflush(stdout);
  for (long t = 0; t < threads; t++) free(jobs[t].samples);
  free(jobs);
}

int main(int argc, char **argv) {
  usage_if_asked(argc, argv,
                 "usage: latency [--detail] [ops=1000000] [max_threads=2] [warmup=100000] "
                 "[slots=4096]\n");
  if (argc > 1 && strcmp(argv[1], "--detail") == 0) {
    g_detail = 1;
    argv[1] = argv[0];
    argc--;
    argv++;
  }
  g_ops = arg_long(argc, argv, 1, 1000000);
  long max_threads = arg_long(argc, argv, 2, 2);
  g_warmup = arg_long(argc, argv, 3, 100000);
  g_slots = arg_long(argc, argv, 4, 4096);
  if (g_slots > 65536) bench_fail("slots > 65536");

  clock_setup();
  printf("clock source=%s ns_per_tick=%.5f overhead_ticks=%llu ops=%ld warmup=%ld slots=%ld "
         "detail=%d\n",
         g_use_tsc ? "rdtsc" : "clock_gettime", g_ns_per_tick, (unsigned long long)g_overhead,
         g_ops, g_warmup, g_slots, g_detail);
  for (long threads = 1; threads <= max_threads; threads *= 2) run_phase(threads);
  return 0;
}
