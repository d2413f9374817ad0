/* memwork: memory footprint of one workload under whatever malloc is linked or preloaded.
 *
 * Usage: memwork WORKLOAD [idle_ms=1000] [divisor=1]
 *   small     one thread: 2.4M blocks of 16-256 B (about 330 MiB), freed in random order
 *   mixed     a pool of 2 threads: blocks of 16 B - 64 KiB (log-uniform) to 192 MiB each, half
 *             freed and refilled, then all freed; the threads stay alive (idle) while the
 *             memory is measured, as in a thread pool
 *   prodcons  a producer thread allocates 2M blocks of 8-1024 B, hands them to a consumer
 *             thread and exits; the consumer frees them all (every free is cross-thread)
 *   large     one thread: 300 blocks of 1-32 MiB, at most 16 live, one byte written per 4 KiB
 *   threads   4 threads each allocate 96 MiB of 16 B - 64 KiB blocks, free them and exit
 *   crossidle 2 threads each allocate 400 MiB of 16 B - 64 KiB blocks; each frees half of its
 *             own blocks and half of the other's (cross-thread frees), then both stay alive
 *             with a trickle of work (one 16-256 B block replaced per millisecond in 64 slots)
 *             while the memory is measured, as a server's workers between bursts
 * divisor divides the amounts (block counts, MiB per thread; large: the number of blocks, not
 * their sizes) for a quick run.
 *
 * Prints one line of key=value pairs (KiB for memory):
 *   peak       VmHWM: the peak resident set size of the process
 *   freed      VmRSS right after the last free (threads of the workload joined, if they exit)
 *   idle       VmRSS after idle_ms more without any allocation (purge delays run out)
 *   collect    VmRSS after the allocator's own "give memory back" call, found with dlsym:
 *              mi_collect(true) (mimalloc, shardalloc), mallctl("arena.4096.purge")
 *              (jemalloc), malloc_trim(0) (glibc); "none" if there is none
 *   minflt     minor page faults of the whole run (getrusage), up to the last free
 * Every block is written and checked, so the memory is really resident and the allocator
 * correct. The main thread allocates nothing itself before the workload. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static uint64_t rng_next(uint64_t *s) { /* xorshift64* */
  uint64_t x = *s;
  x ^= x >> 12, x ^= x << 25, x ^= x >> 27;
  *s = x;
  return x * 2685821657736338717ULL;
}

static size_t size_between(uint64_t *s, size_t lo, size_t hi) {
  return lo + (size_t)(rng_next(s) % (hi - lo + 1));
}

/* Log-uniform in [lo, hi]: as many blocks of 16-32 B as of 32-64 KiB by count. */
static size_t size_log(uint64_t *s, size_t lo, size_t hi) {
  int lo_bits = 63 - __builtin_clzll(lo), hi_bits = 63 - __builtin_clzll(hi);
  int b = lo_bits + (int)(rng_next(s) % (uint64_t)(hi_bits - lo_bits + 1));
  size_t base = (size_t)1 << b;
  size_t v = base + (size_t)(rng_next(s) % base);
  return v < lo ? lo : v > hi ? hi : v;
}

static void *xmalloc(size_t n) {
  void *p = malloc(n);
  if (p == NULL) {
    fprintf(stderr, "memwork: out of memory (%zu bytes)\n", n);
    exit(2);
  }
  return p;
}

/* A block carries its size and a tag in its first 16 bytes (all blocks are >= 16 B), and one
 * byte written per 4 KiB page so the whole block is resident. */
static void *block_new(size_t size, uint64_t tag) {
  size_t *p = xmalloc(size < 16 ? 16 : size);
  p[0] = size;
  p[1] = tag;
  for (size_t off = 4096; off < size; off += 4096) ((char *)p)[off] = (char)tag;
  return p;
}

static void block_free(void *b, uint64_t tag) {
  size_t *p = b;
  if (p[1] != tag) {
    fprintf(stderr, "memwork: block corrupted\n");
    exit(3);
  }
  free(p);
}

static size_t divisor = 1; /* third argument: divides the workloads' amounts */

static void shuffle(void **v, size_t n, uint64_t *s) {
  for (size_t i = n; i > 1; i--) {
    size_t j = (size_t)(rng_next(s) % i);
    void *t = v[i - 1];
    v[i - 1] = v[j];
    v[j] = t;
  }
}

/* ---- Workloads ----------------------------------------------------------------------- */
static void work_small(void) {
  const size_t n = 2400000 / divisor;
  uint64_t s = 1;
  void **v = xmalloc(n * sizeof(void *));
  for (size_t i = 0; i < n; i++) v[i] = block_new(size_between(&s, 16, 256), 11);
  shuffle(v, n, &s);
  for (size_t i = 0; i < n; i++) block_free(v[i], 11);
  free(v);
}

typedef struct pool_s {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int done;    /* workers that finished their work */
  int release; /* set by main: workers may exit */
} pool_t;

static pool_t pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

static void *mixed_worker(void *arg) {
  uint64_t s = (uint64_t)(uintptr_t)arg + 7;
  const size_t target = ((size_t)192 << 20) / divisor;
  size_t cap = 1 << 20, n = 0, bytes = 0;
  void **v = xmalloc(cap * sizeof(void *));
  while (bytes < target && n < cap) {
    size_t size = size_log(&s, 16, 64 << 10);
    v[n++] = block_new(size, 22);
    bytes += size;
  }
  shuffle(v, n, &s);
  for (size_t i = 0; i < n / 2; i++) {
    block_free(v[i], 22);
    v[i] = block_new(size_log(&s, 16, 64 << 10), 22);
  }
  shuffle(v, n, &s);
  for (size_t i = 0; i < n; i++) block_free(v[i], 22);
  free(v);
  pthread_mutex_lock(&pool.lock);
  pool.done++;
  pthread_cond_broadcast(&pool.cond);
  while (!pool.release) pthread_cond_wait(&pool.cond, &pool.lock);
  pthread_mutex_unlock(&pool.lock);
  return NULL;
}

static pthread_t mixed_threads[2];

static void work_mixed(void) {
  for (int i = 0; i < 2; i++)
    pthread_create(&mixed_threads[i], NULL, mixed_worker, (void *)(uintptr_t)i);
  pthread_mutex_lock(&pool.lock);
  while (pool.done < 2) pthread_cond_wait(&pool.cond, &pool.lock);
  pthread_mutex_unlock(&pool.lock);
}

static void mixed_finish(void) {
  pthread_mutex_lock(&pool.lock);
  pool.release = 1;
  pthread_cond_broadcast(&pool.cond);
  pthread_mutex_unlock(&pool.lock);
  for (int i = 0; i < 2; i++) pthread_join(mixed_threads[i], NULL);
}

static size_t pc_count;
static void **pc_blocks;

static void *producer(void *arg) {
  (void)arg;
  uint64_t s = 3;
  pc_blocks = xmalloc(pc_count * sizeof(void *));
  for (size_t i = 0; i < pc_count; i++) pc_blocks[i] = block_new(size_between(&s, 16, 1024), 33);
  return NULL; /* exits before the consumer frees */
}

static void *consumer(void *arg) {
  (void)arg;
  for (size_t i = 0; i < pc_count; i++) block_free(pc_blocks[i], 33);
  free(pc_blocks);
  return NULL;
}

static void work_prodcons(void) {
  pthread_t t;
  pc_count = 2000000 / divisor;
  pthread_create(&t, NULL, producer, NULL);
  pthread_join(t, NULL);
  pthread_create(&t, NULL, consumer, NULL);
  pthread_join(t, NULL);
}

static void work_large(void) {
  enum { LIVE = 16 };
  const size_t total = 300 / divisor < 2 * LIVE ? 2 * LIVE : 300 / divisor;
  void *live[LIVE] = {0};
  uint64_t s = 5;
  for (size_t i = 0; i < total; i++) {
    size_t slot = (size_t)(rng_next(&s) % LIVE);
    if (live[slot] != NULL) block_free(live[slot], 44);
    live[slot] = block_new(size_between(&s, 1 << 20, 32 << 20), 44);
  }
  for (size_t i = 0; i < LIVE; i++)
    if (live[i] != NULL) block_free(live[i], 44);
}

static void *threads_worker(void *arg) {
  uint64_t s = (uint64_t)(uintptr_t)arg + 101;
  const size_t target = ((size_t)96 << 20) / divisor;
  size_t cap = 1 << 20, n = 0, bytes = 0;
  void **v = xmalloc(cap * sizeof(void *));
  while (bytes < target && n < cap) {
    size_t size = size_log(&s, 16, 64 << 10);
    v[n++] = block_new(size, 55);
    bytes += size;
  }
  for (size_t i = 0; i < n; i++) block_free(v[i], 55);
  free(v);
  return NULL;
}

static void work_threads(void) {
  pthread_t t[4];
  for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, threads_worker, (void *)(uintptr_t)i);
  for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
}

/* crossidle: each worker fills its own array, then (after both are full) frees the first half
 * of its own array and the second half of the other's, signals main and trickles until
 * released. The trickle keeps each thread's heap in use without large frees of its own. */
static void **cross_blocks[2];
static size_t cross_count[2];
static pthread_barrier_t cross_filled;
static pool_t cross = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};

static void *cross_worker(void *arg) {
  const int me = (int)(uintptr_t)arg, other = 1 - me;
  uint64_t s = (uint64_t)me + 201;
  const size_t target = ((size_t)400 << 20) / divisor;
  size_t cap = 1 << 20, n = 0, bytes = 0;
  void **v = xmalloc(cap * sizeof(void *));
  while (bytes < target && n < cap) {
    size_t size = size_log(&s, 16, 64 << 10);
    v[n++] = block_new(size, 66);
    bytes += size;
  }
  cross_blocks[me] = v;
  cross_count[me] = n;
  pthread_barrier_wait(&cross_filled);
  for (size_t i = 0; i < cross_count[me] / 2; i++) block_free(cross_blocks[me][i], 66);
  for (size_t i = cross_count[other] / 2; i < cross_count[other]; i++)
    block_free(cross_blocks[other][i], 66);
  pthread_barrier_wait(&cross_filled); /* both arrays' blocks are all freed */
  free(v);

  void *slots[64];
  for (size_t i = 0; i < 64; i++) slots[i] = block_new(size_between(&s, 16, 256), 77);
  pthread_mutex_lock(&cross.lock);
  cross.done++;
  pthread_cond_broadcast(&cross.cond);
  for (;;) {
    int released = cross.release;
    pthread_mutex_unlock(&cross.lock);
    if (released) break;
    size_t slot = (size_t)(rng_next(&s) % 64);
    block_free(slots[slot], 77);
    slots[slot] = block_new(size_between(&s, 16, 256), 77);
    struct timespec ms = {0, 1000000L}; /* the pace of the trickle, not a synchronisation */
    nanosleep(&ms, NULL);
    pthread_mutex_lock(&cross.lock);
  }
  for (size_t i = 0; i < 64; i++) block_free(slots[i], 77);
  return NULL;
}

static pthread_t cross_threads[2];

static void work_crossidle(void) {
  pthread_barrier_init(&cross_filled, NULL, 2);
  for (int i = 0; i < 2; i++)
    pthread_create(&cross_threads[i], NULL, cross_worker, (void *)(uintptr_t)i);
  pthread_mutex_lock(&cross.lock);
  while (cross.done < 2) pthread_cond_wait(&cross.cond, &cross.lock);
  pthread_mutex_unlock(&cross.lock);
}

static void crossidle_finish(void) {
  pthread_mutex_lock(&cross.lock);
  cross.release = 1;
  pthread_mutex_unlock(&cross.lock);
  for (int i = 0; i < 2; i++) pthread_join(cross_threads[i], NULL);
  pthread_barrier_destroy(&cross_filled);
}

/* ---- Measuring ----------------------------------------------------------------------- */
static long status_kib(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) return -1;
  char line[256];
  long v = -1;
  size_t n = strlen(key);
  while (fgets(line, sizeof(line), f) != NULL)
    if (strncmp(line, key, n) == 0) v = strtol(line + n, NULL, 10);
  fclose(f);
  return v;
}

/* The allocator's own call to give memory back; its name, or "none". */
static const char *allocator_collect(void) {
  void (*mi_collect)(int) = (void (*)(int))dlsym(RTLD_DEFAULT, "mi_collect");
  if (mi_collect != NULL) {
    mi_collect(1);
    return "mi_collect";
  }
  int (*mallctl)(const char *, void *, size_t *, void *, size_t) =
      (int (*)(const char *, void *, size_t *, void *, size_t))dlsym(RTLD_DEFAULT, "mallctl");
  if (mallctl != NULL) {
    mallctl("arena.4096.purge", NULL, NULL, NULL, 0); /* MALLCTL_ARENAS_ALL */
    return "mallctl";
  }
  int (*trim)(size_t) = (int (*)(size_t))dlsym(RTLD_DEFAULT, "malloc_trim");
  if (trim != NULL) {
    trim(0);
    return "malloc_trim";
  }
  return "none";
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: memwork small|mixed|prodcons|large|threads|crossidle [idle_ms=1000] "
                    "[divisor=1]\n");
    return 1;
  }
  const char *w = argv[1];
  long idle_ms = argc > 2 ? strtol(argv[2], NULL, 10) : 1000;
  if (argc > 3 && strtol(argv[3], NULL, 10) > 0) divisor = (size_t)strtol(argv[3], NULL, 10);
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  if (strcmp(w, "small") == 0) work_small();
  else if (strcmp(w, "mixed") == 0) work_mixed();
  else if (strcmp(w, "prodcons") == 0) work_prodcons();
  else if (strcmp(w, "large") == 0) work_large();
  else if (strcmp(w, "threads") == 0) work_threads();
  else if (strcmp(w, "crossidle") == 0) work_crossidle();
  else {
    fprintf(stderr, "memwork: unknown workload %s\n", w);
    return 1;
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  long freed = status_kib("VmRSS:");
  struct timespec idle = {idle_ms / 1000, (idle_ms % 1000) * 1000000L};
  nanosleep(&idle, NULL);
  long idle_rss = status_kib("VmRSS:");
  const char *how = allocator_collect();
  long collected = status_kib("VmRSS:");
  long peak = status_kib("VmHWM:");
  if (strcmp(w, "mixed") == 0) mixed_finish();
  if (strcmp(w, "crossidle") == 0) crossidle_finish();
  double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
  printf("workload=%s peak=%ld freed=%ld idle=%ld collect=%ld collect_fn=%s minflt=%ld "
         "time=%.3f\n",
         w, peak, freed, idle_rss, collected, how, ru.ru_minflt, secs);
  return 0;
}
