/* test_stress: many threads allocating, resizing and freeing random sizes for a few seconds,
 * with a share of the blocks handed to other threads (cross-thread frees) and with thread
 * churn: threads exit while others still hold their blocks, and new threads take their place
 * (so abandoned memory is freed into and reclaimed). Every block carries a pattern derived
 * from (pointer, size, seed) and is verified before it is freed or resized.
 *
 * Default: 32 worker slots for ~3 s. SA_TEST_QUICK: 8 slots for ~0.5 s.
 * SA_TEST_STRESS_SECONDS / SA_TEST_STRESS_THREADS override both. */
#define TEST_NAME "test_stress"
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <semaphore.h>

#include "shardalloc.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* Blocks up to this size get the pattern in full; larger ones get it sampled (first and last
 * 4 KiB and one word every SAMPLE_STRIDE), which keeps huge blocks cheap. */
#define FULL_PATTERN_MAX (64 * KiB)
#define SAMPLE_STRIDE (64 * KiB)

typedef struct blk_s {
  uint8_t *p;
  size_t size;
  uint64_t key;
  uint32_t owner; /* serial number of the thread that allocated it */
} blk_t;

/* ---- Patterns --------------------------------------------------------------------------- */
static uint64_t block_key(const void *p, size_t size, uint64_t seed) {
  return tu_mix64(seed ^ ((uint64_t)(uintptr_t)p * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)size << 17));
}

static void block_fill(const blk_t *b) {
  if (b->size <= FULL_PATTERN_MAX) {
    tu_fill(b->p, b->size, b->key);
    return;
  }
  tu_fill(b->p, 4 * KiB, b->key);
  tu_fill(b->p + b->size - 4 * KiB, 4 * KiB, b->key ^ 1);
  for (size_t off = SAMPLE_STRIDE; off + 8 <= b->size - 4 * KiB; off += SAMPLE_STRIDE) {
    uint64_t w = tu_pattern_word(b->key ^ 2, off / SAMPLE_STRIDE);
    memcpy(b->p + off, &w, 8);
  }
}

/* Offset of the first damaged byte, or SIZE_MAX when intact. */
static size_t block_check(const blk_t *b) {
  if (b->size <= FULL_PATTERN_MAX) {
    size_t off = tu_verify(b->p, b->size, b->key);
    return off == b->size ? SIZE_MAX : off;
  }
  size_t off = tu_verify(b->p, 4 * KiB, b->key);
  if (off != 4 * KiB) return off;
  off = tu_verify(b->p + b->size - 4 * KiB, 4 * KiB, b->key ^ 1);
  if (off != 4 * KiB) return b->size - 4 * KiB + off;
  for (size_t o = SAMPLE_STRIDE; o + 8 <= b->size - 4 * KiB; o += SAMPLE_STRIDE) {
    uint64_t w = tu_pattern_word(b->key ^ 2, o / SAMPLE_STRIDE), got;
    memcpy(&got, b->p + o, 8);
    if (got != w) return o;
  }
  return SIZE_MAX;
}

static _Atomic(long) n_alloc, n_free, n_xfree, n_realloc, n_exchanged, n_threads, n_heap_checks;

static void verify(const blk_t *b, const char *when) {
  size_t bad = block_check(b);
  CHECKF(bad == SIZE_MAX, "%s: block %p (size %zu, from thread %u) damaged at offset %zu", when,
         (void *)b->p, b->size, b->owner, bad);
  size_t u = mi_usable_size(b->p);
  CHECKF(u >= b->size, "%s: block %p usable size %zu < %zu", when, (void *)b->p, u, b->size);
}

/* ---- The exchange: a shared array through which blocks move between threads ------------- */
#define EXCHANGE_SLOTS 4096
static blk_t exchange[EXCHANGE_SLOTS];
static pthread_mutex_t exchange_lock = PTHREAD_MUTEX_INITIALIZER;

/* Put `b` into a random slot; returns the block that was there (p == NULL if none). */
static blk_t exchange_swap(tu_rng_t *rng, blk_t b) {
  size_t i = tu_below(rng, EXCHANGE_SLOTS);
  pthread_mutex_lock(&exchange_lock);
  blk_t old = exchange[i];
  exchange[i] = b;
  pthread_mutex_unlock(&exchange_lock);
  if (b.p != NULL) atomic_fetch_add_explicit(&n_exchanged, 1, memory_order_relaxed);
  return old;
}

/* ---- Workers -------------------------------------------------------------------------------- */
static atomic_bool stop;
static sem_t finished; /* posted by each worker as it finishes */

typedef struct slot_s {
  pthread_t thread;
  atomic_int state; /* 0: unused, 1: running, 2: finished (waiting to be joined) */
  uint64_t seed;
  uint32_t serial;
} slot_t;

static size_t random_size(tu_rng_t *rng) {
  size_t u = tu_below(rng, 100000);
  if (u < 70000) return tu_below(rng, 256) + 1;               /* 70%: tiny/small */
  if (u < 90000) return tu_below(rng, 4096 - 256) + 257;      /* 20%: small */
  if (u < 97000) return tu_below(rng, 64 * KiB - 4096) + 4097; /* 7%: medium */
  if (u < 99500) return tu_below(rng, MiB - 64 * KiB) + 64 * KiB + 1; /* 2.5%: large */
  if (u < 99995) return tu_below(rng, 3 * MiB) + MiB;         /* 0.5%: big large */
  return tu_below(rng, 8 * MiB) + 16 * MiB + 1;               /* 0.005%: huge */
}

#define LIVE_MAX 256

typedef struct worker_s {
  tu_rng_t rng;
  uint32_t serial;
  blk_t live[LIVE_MAX];
  size_t nlive;
  mi_heap_t *heap; /* a private heap for some allocations, or NULL */
} worker_t;

static void release(worker_t *w, blk_t b, const char *when) {
  verify(&b, when);
  if (b.owner != w->serial) atomic_fetch_add_explicit(&n_xfree, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&n_free, 1, memory_order_relaxed);
  switch (tu_below(&w->rng, 4)) {
  case 0: mi_free_size(b.p, b.size); break;
  default: mi_free(b.p); break;
  }
}

static void new_block(worker_t *w) {
  blk_t b;
  b.size = random_size(&w->rng);
  size_t kind = tu_below(&w->rng, 20);
  if (kind == 0) {
    size_t align = (size_t)1 << tu_below(&w->rng, 13); /* 1 .. 4096 */
    b.p = mi_malloc_aligned(b.size, align);
    CHECKF(b.p != NULL && tu_is_aligned(b.p, align), "malloc_aligned(%zu, %zu) = %p", b.size,
           align, (void *)b.p);
  } else if (kind == 1 && w->heap != NULL) {
    b.p = mi_heap_malloc(w->heap, b.size);
  } else if (kind == 2) {
    b.p = mi_zalloc(b.size);
    if (b.p != NULL && b.size <= 4096)
      CHECKF(tu_first_nonzero(b.p, b.size) == b.size, "mi_zalloc(%zu) = %p: byte %zu not zero",
             b.size, (void *)b.p, tu_first_nonzero(b.p, b.size));
  } else {
    b.p = mi_malloc(b.size);
  }
  CHECKF(b.p != NULL, "allocation of %zu bytes failed", b.size);
  if (b.p == NULL) return;
  b.key = block_key(b.p, b.size, tu_rand(&w->rng));
  b.owner = w->serial;
  block_fill(&b);
  w->live[w->nlive++] = b;
  atomic_fetch_add_explicit(&n_alloc, 1, memory_order_relaxed);
}

static blk_t take_live(worker_t *w) {
  size_t i = tu_below(&w->rng, w->nlive);
  blk_t b = w->live[i];
  w->live[i] = w->live[--w->nlive];
  return b;
}

static void *worker_main(void *arg) {
  slot_t *slot = (slot_t *)arg;
  worker_t *w = calloc(1, sizeof *w); /* the system allocator: keep test state apart */
  w->rng.s = slot->seed;
  w->serial = slot->serial;
  if (tu_below(&w->rng, 4) == 0) w->heap = mi_heap_new();
  /* A thread lives for a number of operations or a time, whichever ends first, so threads
   * churn also where everything runs slowly (sanitizers, valgrind). */
  size_t lifetime = quick() ? 300 + tu_below(&w->rng, 3000) : 1000 + tu_below(&w->rng, 12000);
  double deadline = now_s() + 0.005 + (double)tu_below(&w->rng, 200) * 1e-3;
  size_t target = 16 + tu_below(&w->rng, LIVE_MAX - 16);

  for (size_t op = 0; op < lifetime && !atomic_load_explicit(&stop, memory_order_relaxed); op++) {
    size_t r = tu_below(&w->rng, 100);
    if (w->nlive == 0 || (r < 50 && w->nlive < target)) {
      new_block(w);
    } else if (r < 80) {
      blk_t b = take_live(w);
      if (tu_below(&w->rng, 3) == 0) {
        /* Hand it to whoever looks at this slot next; free what was there. */
        verify(&b, "before exchange");
        blk_t old = exchange_swap(&w->rng, b);
        if (old.p != NULL) release(w, old, "from exchange");
      } else {
        release(w, b, "local free");
      }
    } else if (r < 88) {
      /* Resize a live block (which may belong to another, possibly dead, thread). */
      blk_t b = take_live(w);
      verify(&b, "before realloc");
      size_t newsize = tu_below(&w->rng, 2) ? random_size(&w->rng) : b.size + tu_below(&w->rng, 64);
      uint8_t *q = mi_realloc(b.p, newsize);
      CHECKF(q != NULL, "realloc(%p, %zu -> %zu) failed", (void *)b.p, b.size, newsize);
      if (q == NULL) {
        w->live[w->nlive++] = b;
        continue;
      }
      /* The pattern is position-keyed, so the kept prefix still verifies with the old key
       * (the first 4 KiB are written in full even for sampled blocks). */
      size_t keep = b.size < newsize ? b.size : newsize;
      if (keep > 4 * KiB) keep = 4 * KiB;
      CHECKF(tu_verify(q, keep, b.key) == keep, "realloc %zu -> %zu lost the prefix", b.size,
             newsize);
      blk_t nb = {q, newsize, block_key(q, newsize, tu_rand(&w->rng)), w->serial};
      block_fill(&nb);
      w->live[w->nlive++] = nb;
      atomic_fetch_add_explicit(&n_realloc, 1, memory_order_relaxed);
    } else if (r < 96) {
      /* Take a block from the exchange: keep it or free it here. */
      blk_t none = {0};
      blk_t got = exchange_swap(&w->rng, none);
      if (got.p != NULL) {
        verify(&got, "taken from exchange");
        if (w->nlive < LIVE_MAX && tu_below(&w->rng, 2) == 0)
          w->live[w->nlive++] = got;
        else
          release(w, got, "taken from exchange");
      }
    } else if (r < 98) {
      target = 16 + tu_below(&w->rng, LIVE_MAX - 16);
      while (w->nlive > target) release(w, take_live(w), "trim");
    } else {
      blk_t b = take_live(w);
      verify(&b, "spot check");
      w->live[w->nlive++] = b;
    }
    if ((op & 63) == 63 && now_s() > deadline) break;
    if ((op & 4095) == 4095) {
      CHECK(mi_heap_check(mi_heap_get_default()));
      atomic_fetch_add_explicit(&n_heap_checks, 1, memory_order_relaxed);
    }
  }

  /* Exit: some blocks are freed here, the rest handed on (their owner is about to die). */
  if (w->heap != NULL) mi_heap_delete(w->heap); /* its blocks move to the default heap */
  while (w->nlive > 0) {
    blk_t b = take_live(w);
    if (tu_below(&w->rng, 3) == 0) {
      release(w, b, "at thread exit");
    } else {
      verify(&b, "before exchange at exit");
      blk_t old = exchange_swap(&w->rng, b);
      if (old.p != NULL) release(w, old, "from exchange at exit");
    }
  }
  if (tu_below(&w->rng, 4) == 0) mi_thread_done(); /* explicit, or by the thread's exit */
  free(w);
  atomic_store(&slot->state, 2);
  sem_post(&finished);
  return NULL;
}

static void start_worker(slot_t *s, uint32_t serial, pthread_attr_t *attr) {
  s->seed = tu_mix64(serial + 1000);
  s->serial = serial;
  atomic_store(&s->state, 1);
  int rc = pthread_create(&s->thread, attr, worker_main, s);
  CHECKF(rc == 0, "pthread_create failed: %d", rc);
  if (rc != 0) atomic_store(&s->state, 0);
  atomic_fetch_add(&n_threads, 1);
}

static double env_double(const char *name, double dflt) {
  const char *v = getenv(name);
  return (v != NULL && *v) ? atof(v) : dflt;
}

int main(void) {
  bool q = quick();
  int nslots = (int)env_double("SA_TEST_STRESS_THREADS", q ? 8 : 32);
  double seconds = env_double("SA_TEST_STRESS_SECONDS", q ? 0.5 : 3.0);
  printf("%s: %d worker slots for %.1f s, cross-thread frees through a %d-slot exchange, "
         "thread churn\n",
         TEST_NAME, nslots, seconds, EXCHANGE_SLOTS);
  slot_t *slots = calloc((size_t)nslots, sizeof(slot_t));
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * KiB);
  sem_init(&finished, 0, 0);
  uint32_t serial = 1;
  double t0 = now_s();
  for (int i = 0; i < nslots; i++) start_worker(&slots[i], serial++, &attr);

  /* Churn: replace every finished worker, for the time given and until as many workers as
   * there are slots have been replaced, however slowly they run (valgrind on a loaded
   * machine): each worker ends after a bounded number of operations, so this ends too. */
  long replaced = 0;
  while (now_s() - t0 < seconds || replaced < nslots) {
    while (sem_wait(&finished) != 0 && errno == EINTR) {
    }
    for (int i = 0; i < nslots; i++) {
      if (atomic_load(&slots[i].state) == 2) {
        pthread_join(slots[i].thread, NULL);
        start_worker(&slots[i], serial++, &attr);
        replaced++;
      }
    }
  }
  atomic_store(&stop, true);
  for (int i = 0; i < nslots; i++)
    if (atomic_load(&slots[i].state) != 0) pthread_join(slots[i].thread, NULL);
  double elapsed = now_s() - t0;

  /* The main thread frees what is left in the exchange (mostly blocks of dead threads). */
  long left = 0;
  for (size_t i = 0; i < EXCHANGE_SLOTS; i++) {
    if (exchange[i].p == NULL) continue;
    verify(&exchange[i], "final drain");
    mi_free(exchange[i].p);
    exchange[i].p = NULL;
    left++;
  }
  /* Reuse after all that: the abandoned memory must serve new allocations. */
  void *after[1000];
  for (int i = 0; i < 1000; i++) {
    after[i] = mi_malloc((size_t)(i % 300) * 8 + 1);
    CHECK(after[i] != NULL);
  }
  for (int i = 0; i < 1000; i++) mi_free(after[i]);
  mi_collect(true);
  CHECK(mi_heap_check(mi_heap_get_default()));

  long allocs = atomic_load(&n_alloc), frees = atomic_load(&n_free) + left;
  SECTION("%ld threads ran; %ld allocations, %ld reallocs, %ld frees (%ld cross-thread), "
          "%ld hand-offs, %ld heap checks, %ld blocks drained at the end, in %.2f s",
          atomic_load(&n_threads), allocs, atomic_load(&n_realloc), frees, atomic_load(&n_xfree),
          atomic_load(&n_exchanged), atomic_load(&n_heap_checks), left, elapsed);
  CHECK(allocs > 0);
  CHECKF(allocs == frees, "%ld allocations but %ld frees: blocks lost by the test", allocs, frees);
  CHECK(atomic_load(&n_xfree) > 0);
  CHECK(atomic_load(&n_threads) > nslots);
  pthread_attr_destroy(&attr);
  sem_destroy(&finished);
  free(slots);
  return tu_finish();
}
