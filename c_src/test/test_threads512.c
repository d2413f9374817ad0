/* test_threads512: 512 threads alive at once (64 with SA_TEST_QUICK). Each round:
 *   phase 1  every thread allocates a few blocks and publishes them;      (barrier)
 *   phase 2  every thread verifies and frees another thread's blocks, and leaves a few new
 *            blocks behind for the main thread;                           (barrier)
 *   exit     every thread exits with blocks still live (its memory is abandoned);
 *   main     the main thread verifies and frees the leftovers (frees into abandoned memory),
 *            then allocates and frees a lot (reclaiming that memory).
 * Each thread's work and stack are small: the test is about thread count, not volume. */
#define TEST_NAME "test_threads512"
#include "testutil.h"

#include <limits.h>
#include <pthread.h>

#include "shardalloc.h"

#define PER_THREAD 12 /* blocks published in phase 1 */
#define LEFT_BEHIND 4 /* blocks left for the main thread in phase 2 */

typedef struct blk_s {
  uint8_t *p;
  size_t size;
  uint64_t key;
} blk_t;

static int nthreads;
static blk_t (*published)[PER_THREAD];
static blk_t (*left_behind)[LEFT_BEHIND];
static pthread_barrier_t barrier;
static int round_no;

static size_t size_for(int t, int j) {
  static const size_t sizes[] = {8, 24, 40, 64, 100, 200, 512, 1000, 3000, 9000, 40000, 300000};
  /* Mostly small; the large ones rotate through the threads so there are only a few. */
  size_t n = sizes[(size_t)(t + j) % (sizeof sizes / sizeof sizes[0])];
  if (n >= 40000 && (t % 8) != 0) n = 48;
  return n;
}

static void make_block(blk_t *b, size_t n, uint64_t seed) {
  b->p = mi_malloc(n);
  b->size = n;
  b->key = tu_mix64(seed ^ (uint64_t)(uintptr_t)b->p);
  CHECKF(b->p != NULL, "malloc(%zu) failed", n);
  if (b->p != NULL) tu_fill(b->p, n, b->key);
}

static void check_and_free(blk_t *b, const char *who) {
  if (b->p == NULL) return;
  size_t bad = tu_verify(b->p, b->size, b->key);
  CHECKF(bad == b->size, "%s: block %p (size %zu) damaged at offset %zu", who, (void *)b->p,
         b->size, bad);
  mi_free(b->p);
  b->p = NULL;
}

static void *thread_main(void *arg) {
  int t = (int)(intptr_t)arg;
  uint64_t seed = tu_mix64((uint64_t)t * 7919 + (uint64_t)round_no * 104729);
  for (int j = 0; j < PER_THREAD; j++) make_block(&published[t][j], size_for(t, j), seed + (uint64_t)j);
  /* A short-lived private block too: allocate and free locally. */
  void *tmp = mi_malloc(128);
  mi_free(tmp);
  pthread_barrier_wait(&barrier);

  /* Free the blocks of another thread: a different partner each round. */
  int partner = (t + 1 + round_no * 37) % nthreads;
  if (partner == t) partner = (t + 1) % nthreads;
  for (int j = 0; j < PER_THREAD; j++) check_and_free(&published[partner][j], "partner");
  for (int j = 0; j < LEFT_BEHIND; j++)
    make_block(&left_behind[t][j], size_for(t, j + 3), seed ^ 0xabcdef);
  pthread_barrier_wait(&barrier);
  return NULL;
}

int main(void) {
  nthreads = quick() ? 64 : 512;
  int rounds = quick() ? 2 : 3;
  printf("%s: %d threads alive at once, %d rounds of allocate / exchange / exit / reclaim\n",
         TEST_NAME, nthreads, rounds);
  double t0 = now_s();
  published = calloc((size_t)nthreads, sizeof *published);
  left_behind = calloc((size_t)nthreads, sizeof *left_behind);
  pthread_t *threads = calloc((size_t)nthreads, sizeof(pthread_t));

  pthread_attr_t attr;
  pthread_attr_init(&attr);
  size_t stack = 64 << 10;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  stack = 512 << 10; /* instrumented code needs more stack */
#endif
  if (stack < (size_t)PTHREAD_STACK_MIN) stack = (size_t)PTHREAD_STACK_MIN;
  pthread_attr_setstacksize(&attr, stack);

  for (round_no = 0; round_no < rounds; round_no++) {
    pthread_barrier_init(&barrier, NULL, (unsigned)nthreads);
    int created = 0;
    for (int t = 0; t < nthreads; t++) {
      int rc = pthread_create(&threads[t], &attr, thread_main, (void *)(intptr_t)t);
      CHECKF(rc == 0, "pthread_create of thread %d failed: %d", t, rc);
      if (rc != 0) break;
      created++;
    }
    if (created != nthreads) {
      /* The barrier cannot complete: this run cannot go on. */
      fprintf(stderr, "%s: only %d of %d threads could be created\n", TEST_NAME, created, nthreads);
      tu_finish();
      return 1;
    }
    for (int t = 0; t < nthreads; t++) pthread_join(threads[t], NULL);
    pthread_barrier_destroy(&barrier);

    int published_left = 0;
    for (int t = 0; t < nthreads; t++)
      for (int j = 0; j < PER_THREAD; j++)
        if (published[t][j].p != NULL) published_left++;
    CHECKF(published_left == 0, "%d published blocks were not freed by partners", published_left);

    /* Blocks of threads that have exited: free them from the main thread. */
    for (int t = 0; t < nthreads; t++)
      for (int j = 0; j < LEFT_BEHIND; j++) check_and_free(&left_behind[t][j], "main");

    /* Allocate a lot from the main thread: this reuses the memory the threads abandoned. */
    enum { M = 4000 };
    blk_t *mine = malloc(M * sizeof(blk_t));
    for (int i = 0; i < M; i++) make_block(&mine[i], size_for(i, i / 7), (uint64_t)i);
    for (int i = 0; i < M; i++) check_and_free(&mine[i], "main reuse");
    free(mine);
    mi_collect(false);
    CHECK(mi_heap_check(mi_heap_get_default()));
    SECTION("round %d: %d threads, %d blocks exchanged, %d left behind and freed by main",
            round_no + 1, nthreads, nthreads * PER_THREAD, nthreads * LEFT_BEHIND);
  }
  mi_collect(true);
  CHECK(mi_heap_check(mi_heap_get_default()));
  pthread_attr_destroy(&attr);
  free(threads);
  free(published);
  free(left_behind);
  printf("    %.2f s\n", now_s() - t0);
  return tu_finish();
}
