/* test_remote_free: frees of other threads' small blocks, through the sized free and through
 * the plain one (interior pointers of aligned blocks too), are gathered per page (remote.c)
 * and all come back to their pages: when the freeing thread exits, when
 * it calls mi_collect, when it allocates through its slow path; and after the first
 * mi_heap_new, frees are no longer gathered. "Come back" is checked by the owner: after it
 * collects, no block counts as in use any more, and the heap checks out.
 * Threads hand work over through joins and a condition variable, never by timing. */
#define TEST_NAME "test_remote_free"
#include "testutil.h"

#include <pthread.h>

#include "shardalloc.h"

#define BLOCKS 3000

typedef struct {
  void *p;
  size_t size;
} item_t;

static item_t items[BLOCKS];
static size_t baseline;
static bool plain_free; /* mi_free instead of the sized free (a block then joins its chain
                           without reading its page, remote.c) */
static bool interior;   /* blocks from mi_malloc_aligned_at: pointers inside their blocks,
                           which the chain's checks turn into block starts (free.c) */

/* The owner's side: blocks of many small sizes, each with its size, contents set. */
static void allocate_all(uint64_t seed) {
  tu_rng_t rng = {seed};
  for (int i = 0; i < BLOCKS; i++) {
    size_t size = 8 + tu_below(&rng, 1017);
    items[i].p = interior ? mi_malloc_aligned_at(size, 64, 8) : mi_malloc_aligned(size, 8);
    items[i].size = size;
    CHECK(items[i].p != NULL);
    tu_fill(items[i].p, size, (uint64_t)i);
  }
}

/* The freeing thread's side: in allocation order, so consecutive frees share pages. */
static void free_all(void) {
  for (int i = 0; i < BLOCKS; i++) {
    CHECK(tu_verify(items[i].p, items[i].size, (uint64_t)i) == items[i].size);
    if (plain_free || interior)
      mi_free(items[i].p);
    else
      mi_free_size_aligned(items[i].p, items[i].size, 8);
  }
}

/* The owner collects (taking in what other threads handed over) and counts. */
static void expect_all_back(const char *when) {
  mi_collect(true);
  size_t now = tu_in_use_blocks(false);
  CHECKF(now == baseline, "%s: %zu blocks in use, %zu before", when, now, baseline);
  CHECK(mi_heap_check(mi_heap_get_default()));
}

/* ---- 1. the freeing thread exits ----------------------------------------------------------- */
static void *free_and_exit(void *arg) {
  (void)arg;
  free_all();
  return NULL;
}

/* The freeing thread's side, keeping every 8th block; it exits. */
static void *free_most_and_exit(void *arg) {
  (void)arg;
  for (int i = 0; i < BLOCKS; i++) {
    if (i % 8 == 0) continue;
    CHECK(tu_verify(items[i].p, items[i].size, (uint64_t)i) == items[i].size);
    mi_free(items[i].p);
  }
  return NULL;
}

/* ---- 2. the freeing thread calls mi_collect, then waits while the owner counts ------------- */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int phase;

static void set_phase(int p) {
  pthread_mutex_lock(&lock);
  phase = p;
  pthread_cond_broadcast(&changed);
  pthread_mutex_unlock(&lock);
}
static void wait_phase(int p) {
  pthread_mutex_lock(&lock);
  while (phase != p) pthread_cond_wait(&changed, &lock);
  pthread_mutex_unlock(&lock);
}

static void *free_then_collect(void *arg) {
  (void)arg;
  free_all();
  mi_collect(false);
  set_phase(1); /* the owner counts while this thread lives on */
  wait_phase(2);
  return NULL;
}

/* ---- 3. the freeing thread allocates: its first allocation is a slow path ----------------- */
static void *free_then_allocate(void *arg) {
  (void)arg;
  free_all();
  void *mine = mi_malloc(100);
  CHECK(mine != NULL);
  set_phase(3);
  wait_phase(4);
  mi_free(mine);
  return NULL;
}

/* ---- 4. the freeing thread only frees, and lives on ----------------------------------------- */
static void *free_then_wait(void *arg) {
  (void)arg;
  free_all();
  set_phase(5);
  wait_phase(6);
  return NULL;
}

static void run_thread(void *(*fn)(void *)) {
  pthread_t t;
  CHECK(pthread_create(&t, NULL, fn, NULL) == 0);
  pthread_join(t, NULL);
}

int main(void) {
  printf("%s: gathered cross-thread frees all come back\n", TEST_NAME);
  mi_collect(true);
  baseline = tu_in_use_blocks(false);

  pthread_t t;
  for (int plain = 0; plain <= 1; plain++) {
    plain_free = plain;
    const char *how = plain ? "mi_free" : "the sized free";
    SECTION("%s: the freeing thread exits", how);
    allocate_all(1);
    run_thread(free_and_exit);
    expect_all_back("after the freeing thread exited");

    SECTION("%s: the freeing thread calls mi_collect and lives on", how);
    allocate_all(2);
    phase = 0;
    CHECK(pthread_create(&t, NULL, free_then_collect, NULL) == 0);
    wait_phase(1);
    expect_all_back("after mi_collect in the freeing thread");
    set_phase(2);
    pthread_join(t, NULL);

    SECTION("%s: the freeing thread allocates through its slow path and lives on", how);
    phase = 0;
    allocate_all(3);
    CHECK(pthread_create(&t, NULL, free_then_allocate, NULL) == 0);
    wait_phase(3);
    expect_all_back("after the freeing thread's slow path");
    set_phase(4);
    pthread_join(t, NULL);
  }

  SECTION("pointers inside their blocks (mi_malloc_aligned_at), freed with mi_free");
  /* every 8th block stays, so that no page empties (an emptied page starts its lists over):
   * the blocks handed out next come from the lists the frees built, and must not overlap */
  interior = true;
  allocate_all(5);
  run_thread(free_most_and_exit);
  interior = false;
  static item_t fresh[BLOCKS];
  tu_rng_t rng = {6};
  for (int i = 0; i < BLOCKS; i++) {
    fresh[i].size = 8 + tu_below(&rng, 1017);
    fresh[i].p = mi_malloc(fresh[i].size);
    CHECK(fresh[i].p != NULL);
    tu_fill(fresh[i].p, fresh[i].size, (uint64_t)(BLOCKS + i));
  }
  for (int i = 0; i < BLOCKS; i++) {
    CHECKF(tu_verify(fresh[i].p, fresh[i].size, (uint64_t)(BLOCKS + i)) == fresh[i].size,
           "block %d allocated after the frees overlaps another", i);
    mi_free(fresh[i].p);
  }
  for (int i = 0; i < BLOCKS; i += 8) {
    CHECK(tu_verify(items[i].p, items[i].size, (uint64_t)i) == items[i].size);
    mi_free(items[i].p);
  }
  expect_all_back("after the kept blocks were freed too");

  SECTION("after mi_heap_new, frees are not gathered: they come back at once");
  mi_heap_t *heap = mi_heap_new();
  CHECK(heap != NULL);
  allocate_all(4);
  CHECK(pthread_create(&t, NULL, free_then_wait, NULL) == 0);
  wait_phase(5);
  expect_all_back("with gathering off, the freeing thread alive");
  set_phase(6);
  pthread_join(t, NULL);
  mi_heap_delete(heap);
  return tu_finish();
}
