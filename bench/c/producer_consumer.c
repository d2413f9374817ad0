/* producer_consumer: the shape of a channel pipeline, as in the criterion group of the same
 * name (benches/allocators.rs): per round, a fresh consumer thread; the calling thread
 * allocates `blocks` blocks (of `size` bytes, or 8-1024 B when size is 0), writes their first
 * and last byte, and sends their addresses in batches of 64 through a bounded queue of 16
 * batches; the consumer checks the first byte of each and frees it. Every free is a
 * cross-thread free, and the consumer never allocates.
 *
 * usage: producer_consumer [rounds=40] [blocks=64000] [size=0]
 * prints: the work done, the time, and blocks (one malloc + one cross-thread free) per s.
 */
#define _GNU_SOURCE /* pthread_setname_np: the profile tells the two threads apart */
#include "bench_common.h"

#include <pthread.h>
#include <stdbool.h>

#define BATCH 64
#define QUEUE 16

typedef struct {
  void *p[BATCH];
} batch_t;

static struct {
  pthread_mutex_t lock;
  pthread_cond_t changed;
  batch_t slot[QUEUE];
  long head, tail; /* batches sent, received */
  int done;
} q = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, {{{0}}}, 0, 0, 0};

static void send(const batch_t *b) {
  pthread_mutex_lock(&q.lock);
  while (q.head - q.tail == QUEUE) pthread_cond_wait(&q.changed, &q.lock);
  q.slot[q.head % QUEUE] = *b;
  q.head++;
  pthread_cond_broadcast(&q.changed);
  pthread_mutex_unlock(&q.lock);
}

static bool receive(batch_t *b) {
  pthread_mutex_lock(&q.lock);
  while (q.head == q.tail && !q.done) pthread_cond_wait(&q.changed, &q.lock);
  bool got = q.head != q.tail;
  if (got) {
    *b = q.slot[q.tail % QUEUE];
    q.tail++;
    pthread_cond_broadcast(&q.changed);
  }
  pthread_mutex_unlock(&q.lock);
  return got;
}

static void *consumer(void *arg) {
  long *freed = arg;
  pthread_setname_np(pthread_self(), "consumer");
  batch_t b;
  while (receive(&b)) {
    for (int i = 0; i < BATCH; i++) {
      if (*(volatile unsigned char *)b.p[i] != 1) bench_fail("block content");
      free(b.p[i]);
    }
    *freed += BATCH;
  }
  return NULL;
}

int main(int argc, char **argv) {
  usage_if_asked(argc, argv, "usage: producer_consumer [rounds=40] [blocks=64000] [size=0]\n");
  long rounds = arg_long(argc, argv, 1, 40);
  long blocks = arg_long(argc, argv, 2, 64000) / BATCH * BATCH;
  long size = argc > 3 ? atol(argv[3]) : 0;
  rng_t rng;
  rng_seed(&rng, 5);
  long freed = 0;
  double t0 = now_s();
  for (long r = 0; r < rounds; r++) {
    pthread_t tid;
    q.done = 0;
    if (pthread_create(&tid, NULL, consumer, &freed) != 0) bench_fail("pthread_create");
    batch_t b;
    for (long i = 0; i < blocks; i++) {
      size_t len = size > 0 ? (size_t)size : rng_range(&rng, 8, 1024);
      unsigned char *p = bench_check(malloc(len));
      p[0] = 1;
      p[len - 1] = 2;
      b.p[i % BATCH] = p;
      if (i % BATCH == BATCH - 1) send(&b);
    }
    pthread_mutex_lock(&q.lock);
    q.done = 1;
    pthread_cond_broadcast(&q.changed);
    pthread_mutex_unlock(&q.lock);
    pthread_join(tid, NULL);
  }
  double t = now_s() - t0;
  if (freed != rounds * blocks) bench_fail("blocks lost");
  printf("producer_consumer: %ld rounds of %ld blocks of %s B: %.3f s, %.2f Mblocks/s\n", rounds,
         blocks, size > 0 ? argv[3] : "8-1024", t, (double)freed / t / 1e6);
  return 0;
}
