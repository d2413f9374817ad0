/* xmalloc: producer/consumer cross-thread free, in the style of xmalloc-test (written from
 * its published description).
 *
 * Producer threads allocate blocks of random size, write a tag into each, and hand them over
 * in batches of BATCH through a bounded mutex-protected queue; consumer threads check the tags
 * and free the blocks. Every block is freed by a thread other than the one that allocated it,
 * and so is each batch header. The queue holds at most QUEUE_MAX batches, so a slow consumer
 * throttles the producers instead of letting memory grow without bound.
 *
 * Threads are split into producers = max(1, threads/2) and consumers = the rest (at least 1).
 *
 * usage: xmalloc [threads=2] [blocks_per_producer=4000000] [min=8] [max=256]
 * prints: the work done, the time, and throughput in blocks (one malloc + one free) per s.
 */
#include "bench_common.h"

#include <pthread.h>

#define BATCH 64
#define QUEUE_MAX 256

typedef struct batch_s {
  struct batch_s *next;
  int n;
  void *blk[BATCH];
  size_t size[BATCH];
} batch_t;

static struct {
  pthread_mutex_t lock;
  pthread_cond_t nonempty, nonfull;
  batch_t *head, *tail;
  long count;
  long producers_left;
} g_q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
         NULL, NULL, 0, 0};

static long g_blocks;
static size_t g_min, g_max;

static void queue_push(batch_t *b) {
  b->next = NULL;
  pthread_mutex_lock(&g_q.lock);
  while (g_q.count >= QUEUE_MAX) pthread_cond_wait(&g_q.nonfull, &g_q.lock);
  if (g_q.tail) g_q.tail->next = b;
  else g_q.head = b;
  g_q.tail = b;
  g_q.count++;
  pthread_cond_signal(&g_q.nonempty);
  pthread_mutex_unlock(&g_q.lock);
}

/* Returns NULL once the queue is empty and every producer has finished. */
static batch_t *queue_pop(void) {
  pthread_mutex_lock(&g_q.lock);
  while (g_q.head == NULL && g_q.producers_left > 0)
    pthread_cond_wait(&g_q.nonempty, &g_q.lock);
  batch_t *b = g_q.head;
  if (b) {
    g_q.head = b->next;
    if (g_q.head == NULL) g_q.tail = NULL;
    g_q.count--;
    pthread_cond_signal(&g_q.nonfull);
  }
  pthread_mutex_unlock(&g_q.lock);
  return b;
}

static void *producer(void *arg) {
  rng_t rng;
  rng_seed(&rng, (uint64_t)(uintptr_t)arg);
  long left = g_blocks;
  while (left > 0) {
    batch_t *b = bench_check(malloc(sizeof(batch_t)));
    b->n = left < BATCH ? (int)left : BATCH;
    for (int i = 0; i < b->n; i++) {
      size_t size = rng_range(&rng, g_min, g_max);
      unsigned char *p = bench_check(malloc(size));
      p[0] = (unsigned char)i;
      p[size - 1] = (unsigned char)size;
      b->blk[i] = p;
      b->size[i] = size;
    }
    left -= b->n;
    queue_push(b);
  }
  pthread_mutex_lock(&g_q.lock);
  g_q.producers_left--;
  pthread_cond_broadcast(&g_q.nonempty);
  pthread_mutex_unlock(&g_q.lock);
  return NULL;
}

static void *consumer(void *arg) {
  (void)arg;
  batch_t *b;
  while ((b = queue_pop()) != NULL) {
    for (int i = 0; i < b->n; i++) {
      unsigned char *p = b->blk[i];
      if (p[0] != (unsigned char)i || p[b->size[i] - 1] != (unsigned char)b->size[i])
        bench_fail("xmalloc: block content changed");
      free(p);
    }
    free(b);
  }
  return NULL;
}

int main(int argc, char **argv) {
  usage_if_asked(argc, argv,
                 "usage: xmalloc [threads=2] [blocks_per_producer=4000000] [min=8] [max=256]\n");
  long threads = arg_long(argc, argv, 1, 2);
  g_blocks = arg_long(argc, argv, 2, 4000000);
  g_min = (size_t)arg_long(argc, argv, 3, 8);
  g_max = (size_t)arg_long(argc, argv, 4, 256);
  if (g_min > g_max) bench_fail("min > max");
  long producers = threads / 2 > 0 ? threads / 2 : 1;
  long consumers = threads - producers > 0 ? threads - producers : 1;
  g_q.producers_left = producers;

  pthread_t *tid = bench_check(malloc((size_t)(producers + consumers) * sizeof(pthread_t)));
  double t0 = now_s();
  for (long i = 0; i < consumers; i++)
    if (pthread_create(&tid[i], NULL, consumer, NULL) != 0) bench_fail("pthread_create");
  for (long i = 0; i < producers; i++)
    if (pthread_create(&tid[consumers + i], NULL, producer, (void *)(uintptr_t)i) != 0)
      bench_fail("pthread_create");
  for (long i = 0; i < producers + consumers; i++) pthread_join(tid[i], NULL);
  double elapsed = now_s() - t0;
  free(tid);

  double blocks = (double)producers * (double)g_blocks;
  printf("xmalloc: %ld producers -> %ld consumers, %ld blocks each of %zu-%zu B: "
         "%.3f s, %.2f Mblocks/s\n",
         producers, consumers, g_blocks, g_min, g_max, elapsed, blocks / elapsed / 1e6);
  return 0;
}
