/* A multi-threaded program with cross-thread frees, run by tests/preload.rs with and without
 * LD_PRELOAD=libshardalloc.so.
 *
 * Three waves of eight threads. Each thread allocates blocks of many sizes (small to a few
 * MiB, through malloc, calloc, realloc, posix_memalign, aligned_alloc), fills each with a
 * pattern of its tag and posts it to the next thread's mailbox; then it takes what the
 * previous thread posted, checks the pattern, sometimes grows the block with realloc, and
 * frees it: almost every free is from another thread than the allocating one. A wave's
 * threads exit with blocks still in the mailboxes; the next wave frees those (blocks of
 * exited threads), and main frees the last wave's. stdout: totals that depend only on the
 * workload, not on the schedule or the allocator. */
#include <pthread.h>
#include <malloc.h>

#include "progutil.h"

#define THREADS 8
#define WAVES 3
#define ROUNDS 100
#define BATCH 40

typedef struct msg_s {
  struct msg_s *next;
  void *block;
  size_t size;
  uint64_t tag;
} msg_t;

typedef struct mailbox_s {
  pthread_mutex_t lock;
  msg_t *head;
} mailbox_t;

static mailbox_t mailboxes[THREADS];
static uint64_t total_blocks, total_bytes, total_tags; /* atomics */
static served_t served;

/* xorshift64*: a deterministic stream per thread */
static uint64_t next_random(uint64_t *state) {
  uint64_t x = *state;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *state = x;
  return x * 2685821657736338717ull;
}

static size_t pick_size(uint64_t r) {
  if (r % 1024 == 0) return (4u << 20) + (r >> 10) % 4096; /* huge: own segment */
  if (r % 64 == 1) return 65536 + (r >> 8) % (448 << 10);  /* large: up to 512 KiB */
  if (r % 8 == 2) return 1024 + (r >> 8) % (63 << 10);     /* medium */
  return 1 + (r >> 8) % 1024;                              /* small */
}

static void *allocate(size_t size, uint64_t r) {
  void *p = NULL;
  switch ((r >> 40) % 8) {
  case 0: p = calloc(1, size); if (p) CHECK(((uint8_t *)p)[size - 1] == 0 && ((uint8_t *)p)[0] == 0); break;
  case 1: p = realloc(NULL, size); break;
  case 2: CHECK(posix_memalign(&p, 64, size) == 0); CHECK((uintptr_t)p % 64 == 0); break;
  case 3: p = aligned_alloc(256, (size + 255) & ~(size_t)255); CHECK((uintptr_t)p % 256 == 0); break;
  default: p = malloc(size); break;
  }
  CHECK(p != NULL);
  CHECK(malloc_usable_size(p) >= size);
  return p;
}

static void consume(msg_t *m) {
  CHECK(verify(m->block, m->size, m->tag));
  if (m->tag % 5 == 0) {
    /* grow a block another thread allocated: realloc must keep its content */
    size_t bigger = m->size + m->size / 2 + 17;
    void *q = realloc(m->block, bigger);
    CHECK(q != NULL);
    CHECK(verify(q, m->size, m->tag));
    m->block = q;
  }
  free(m->block);
  __atomic_add_fetch(&total_blocks, 1, __ATOMIC_RELAXED);
  __atomic_add_fetch(&total_bytes, m->size, __ATOMIC_RELAXED);
  __atomic_add_fetch(&total_tags, m->tag, __ATOMIC_RELAXED);
  free(m);
}

static msg_t *take_all(mailbox_t *box) {
  pthread_mutex_lock(&box->lock);
  msg_t *list = box->head;
  box->head = NULL;
  pthread_mutex_unlock(&box->lock);
  return list;
}

static void drain(mailbox_t *box) {
  for (msg_t *m = take_all(box), *next; m != NULL; m = next) {
    next = m->next;
    consume(m);
  }
}

typedef struct worker_arg_s {
  int wave, index;
} worker_arg_t;

static void *worker(void *argp) {
  worker_arg_t *arg = argp;
  uint64_t state = 0x1234567ull + (uint64_t)arg->wave * 1000003 + (uint64_t)arg->index * 7919;
  mailbox_t *out = &mailboxes[(arg->index + 1) % THREADS];
  mailbox_t *in = &mailboxes[arg->index];
  for (int round = 0; round < ROUNDS; round++) {
    msg_t *batch = NULL, *last = NULL;
    for (int i = 0; i < BATCH; i++) {
      uint64_t r = next_random(&state);
      size_t size = pick_size(r);
      msg_t *m = malloc(sizeof *m);
      CHECK(m != NULL);
      m->tag = ((uint64_t)arg->wave << 48) ^ ((uint64_t)arg->index << 40) ^
               ((uint64_t)round << 16) ^ (uint64_t)i;
      m->size = size;
      m->block = allocate(size, r);
      fill(m->block, size, m->tag);
      if (i == 0 && round % 10 == 0) served_note(&served, m->block);
      m->next = batch;
      batch = m;
      if (last == NULL) last = m;
    }
    pthread_mutex_lock(&out->lock);
    last->next = out->head;
    out->head = batch;
    pthread_mutex_unlock(&out->lock);
    drain(in);
  }
  return NULL;
}

int main(void) {
  for (int i = 0; i < THREADS; i++) pthread_mutex_init(&mailboxes[i].lock, NULL);
  for (int wave = 0; wave < WAVES; wave++) {
    pthread_t threads[THREADS];
    worker_arg_t args[THREADS];
    for (int i = 0; i < THREADS; i++) {
      args[i] = (worker_arg_t){wave, i};
      CHECK(pthread_create(&threads[i], NULL, worker, &args[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++) CHECK(pthread_join(threads[i], NULL) == 0);
    printf("wave %d: done\n", wave);
  }
  for (int i = 0; i < THREADS; i++) drain(&mailboxes[i]); /* the last wave's leftovers */
  printf("blocks %llu, bytes %llu, tag sum %llu\n", (unsigned long long)total_blocks,
         (unsigned long long)total_bytes, (unsigned long long)total_tags);
  served_report("worker blocks", &served);
  return 0;
}
