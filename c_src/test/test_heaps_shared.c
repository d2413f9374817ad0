/* test_heaps_shared: heaps shared by every thread. 16 worker threads allocate from a few
 * rolling heaps at once, and threads that exit right after (two per round) leave blocks in
 * them too. Each round, in phases separated by barriers:
 *   A  each worker frees what is left of its row of the block table (verified first), then
 *      fills the row with new blocks from every heap (malloc, zalloc, calloc, aligned,
 *      realloc), each with a pattern; worker 0 meanwhile runs the two short-lived threads;
 *   B  each worker checks and frees every other block of another thread's row (cross-thread
 *      frees, into live, deleted and exited threads' pages);
 *   C  whichever worker comes first retires heap r % HEAPS: it verifies every block of that
 *      heap, checks that mi_heap_visit_blocks counts exactly those blocks (every thread's
 *      part, exited threads' included) and mi_heap_check, then destroys it (even rounds) or
 *      deletes it (odd rounds; its blocks then belong to the main heap and are freed in later
 *      rounds), and puts a new heap in its place. Meanwhile the others allocate and free in
 *      the other heaps, and the last to come collects one of them.
 * At the end the main thread retires the heaps left, after every worker has exited, and
 * checks that no page is left holding blocks: a block of a destroyed heap that no thread
 * freed would stay counted.
 *
 * Synchronisation is by barriers and one atomic ticket per round; no sleeps. */
#define TEST_NAME "test_heaps_shared"
#include "testutil.h"

#include <pthread.h>

#include "shardalloc.h"

#define WORKERS 16
#define TRANSIENT 2 /* short-lived threads per round */
#define ROWS (WORKERS + TRANSIENT)
#define HEAPS 4
#define MAIN_HEAP (-1)
#define FULL_PATTERN_MAX ((size_t)64 << 10)

typedef struct blk_s {
  uint8_t *p;
  size_t size;
  uint64_t key;
  int heap; /* index into heaps[], or MAIN_HEAP after a delete */
} blk_t;

static int rounds;
static int per_row;
static blk_t *table[ROWS];
static mi_heap_t *heaps[HEAPS];
static pthread_barrier_t barrier;
#define ROUNDS_MAX 64
static _Atomic(int) ticket[ROUNDS_MAX]; /* who comes first in phase C of each round */
static _Atomic(uint64_t) transient_seed;

/* ---- Blocks ------------------------------------------------------------------------------- */
static void fill(const blk_t *b) {
  if (b->size <= FULL_PATTERN_MAX) {
    tu_fill(b->p, b->size, b->key);
  } else { /* large: both ends */
    tu_fill(b->p, 4096, b->key);
    tu_fill(b->p + b->size - 4096, 4096, b->key ^ 1);
  }
}

static bool intact(const blk_t *b) {
  if (b->size <= FULL_PATTERN_MAX) return tu_verify(b->p, b->size, b->key) == b->size;
  return tu_verify(b->p, 4096, b->key) == 4096 &&
         tu_verify(b->p + b->size - 4096, 4096, b->key ^ 1) == 4096;
}

static mi_heap_t *heap_of(const blk_t *b) {
  return b->heap == MAIN_HEAP ? mi_heap_get_default() : heaps[b->heap];
}

/* Verify a block (content and heap) and free it. */
static void check_free(blk_t *b) {
  if (b->p == NULL) return;
  CHECKF(intact(b), "block %p of %zu bytes damaged", (void *)b->p, b->size);
  CHECKF(mi_heap_contains_block(heap_of(b), b->p), "block %p not in heap %d", (void *)b->p,
         b->heap);
  mi_free(b->p);
  b->p = NULL;
}

static size_t random_size(tu_rng_t *rng) {
  size_t k = tu_below(rng, 100);
  if (k < 70) return 1 + tu_below(rng, 256);
  if (k < 95) return 257 + tu_below(rng, 8 << 10);
  if (k < 99) return (8 << 10) + tu_below(rng, 120 << 10);
  return (128 << 10) + tu_below(rng, 900 << 10);
}

/* A block from `heap` by one of the allocation calls, filled. */
static void alloc_one(blk_t *b, int h, tu_rng_t *rng) {
  mi_heap_t *heap = heaps[h];
  size_t n = random_size(rng);
  void *p = NULL;
  switch (tu_below(rng, 6)) {
  case 0: p = mi_heap_zalloc(heap, n); break;
  case 1: p = mi_heap_calloc(heap, 1, n); break;
  case 2: p = mi_heap_malloc_aligned(heap, n, (size_t)16 << tu_below(rng, 5)); break;
  case 3: { /* grown within the heap: the moved block is the heap's */
    void *q = mi_heap_malloc(heap, n / 2 + 1);
    p = q == NULL ? NULL : mi_heap_realloc(heap, q, n);
    break;
  }
  default: p = mi_heap_malloc(heap, n); break;
  }
  CHECKF(p != NULL, "allocation of %zu bytes from heap %d", n, h);
  b->p = p;
  b->size = n;
  b->heap = h;
  b->key = tu_rand(rng);
  if (p != NULL) fill(b);
}

/* Free what the row still holds, then fill it with blocks from every heap. */
static void refill_row(int row, tu_rng_t *rng) {
  blk_t *blocks = table[row];
  for (int i = 0; i < per_row; i++) check_free(&blocks[i]);
  for (int i = 0; i < per_row; i++) alloc_one(&blocks[i], i % HEAPS, rng);
}

/* ---- Short-lived threads: allocate, then exit with their blocks still in use ------------- */
static void *transient_main(void *arg) {
  int row = (int)(intptr_t)arg;
  tu_rng_t rng = {tu_mix64(atomic_fetch_add(&transient_seed, 1) * 977 + (uint64_t)row)};
  refill_row(row, &rng);
  return NULL; /* exits: its parts of the heaps are abandoned */
}

/* ---- Retiring a heap ---------------------------------------------------------------------- */
typedef struct visit_count_s {
  size_t areas, blocks, used;
} visit_count_t;

static bool count_visit(const mi_heap_t *heap, const mi_heap_area_t *area, void *block,
                        size_t block_size, void *arg) {
  (void)heap;
  (void)block_size;
  visit_count_t *c = arg;
  if (block == NULL) {
    c->areas++;
    c->used += area->used;
  } else {
    c->blocks++;
  }
  return true;
}

/* Every block of heap `h` verified; visit must see exactly those; then destroy or delete it.
 * No thread allocates from or frees into it meanwhile. */
static void retire(int h, bool destroy) {
  size_t live = 0;
  for (int row = 0; row < ROWS; row++) {
    for (int i = 0; i < per_row; i++) {
      blk_t *b = &table[row][i];
      if (b->p == NULL || b->heap != h) continue;
      CHECKF(intact(b), "block %p of heap %d damaged before retiring it", (void *)b->p, h);
      CHECK(mi_heap_contains_block(heaps[h], b->p));
      live++;
    }
  }
  visit_count_t c = {0, 0, 0};
  CHECK(mi_heap_visit_blocks(heaps[h], true, count_visit, &c));
  CHECKF(c.blocks == live && c.used == live,
         "heap %d: visit found %zu blocks (areas say %zu in use), the table holds %zu", h,
         c.blocks, c.used, live);
  CHECK(mi_heap_check(heaps[h]));
  if (destroy) mi_heap_destroy(heaps[h]);
  else mi_heap_delete(heaps[h]);
  for (int row = 0; row < ROWS; row++) {
    for (int i = 0; i < per_row; i++) {
      blk_t *b = &table[row][i];
      if (b->p == NULL || b->heap != h) continue;
      if (destroy) b->p = NULL; /* gone with the heap */
      else b->heap = MAIN_HEAP;
    }
  }
  heaps[h] = mi_heap_new();
  CHECK(heaps[h] != NULL);
}

/* While one worker retires heap `retiring`: allocate and free in the others (and the main
 * heap), never in that one. */
static void churn(int retiring, tu_rng_t *rng) {
  void *ps[64];
  for (int k = 0; k < 64; k++) {
    int h = (retiring + 1 + k % (HEAPS - 1)) % HEAPS;
    size_t n = random_size(rng);
    ps[k] = k % 5 == 0 ? mi_malloc(n) : mi_heap_malloc(heaps[h], n);
    CHECK(ps[k] != NULL);
    if (ps[k] != NULL) memset(ps[k], 0x5a, n < 64 ? n : 64);
  }
  for (int k = 0; k < 64; k++) mi_free(ps[k]);
}

/* ---- A heap whose blocks were all allocated by threads that have exited ----------------- */
#define ORPHAN_THREADS 4
static mi_heap_t *orphan_heap;
static blk_t *orphan_blocks[ORPHAN_THREADS];

static void *orphan_main(void *arg) {
  int k = (int)(intptr_t)arg;
  tu_rng_t rng = {tu_mix64((uint64_t)k + 4242)};
  for (int i = 0; i < per_row; i++) {
    blk_t *b = &orphan_blocks[k][i];
    b->size = random_size(&rng);
    b->p = mi_heap_malloc(orphan_heap, b->size);
    b->key = tu_rand(&rng);
    b->heap = MAIN_HEAP; /* checked against orphan_heap until it is deleted */
    CHECK(b->p != NULL);
    if (b->p != NULL) fill(b);
  }
  return NULL;
}

/* The threads exit with their blocks in the heap: its delete must hand them to the main heap
 * intact, its destroy must free them (the pages holding blocks go back to what they were). */
static void orphans(bool destroy) {
  mi_collect(true);
  mi_stats_snapshot_t before, after;
  mi_stats_snapshot(&before);
  orphan_heap = mi_heap_new();
  pthread_t threads[ORPHAN_THREADS];
  for (int k = 0; k < ORPHAN_THREADS; k++) {
    orphan_blocks[k] = calloc((size_t)per_row, sizeof(blk_t));
    CHECK(pthread_create(&threads[k], NULL, orphan_main, (void *)(intptr_t)k) == 0);
  }
  for (int k = 0; k < ORPHAN_THREADS; k++) pthread_join(threads[k], NULL);
  for (int k = 0; k < ORPHAN_THREADS; k++)
    for (int i = 0; i < per_row; i++)
      CHECK(orphan_blocks[k][i].p == NULL ||
            mi_heap_contains_block(orphan_heap, orphan_blocks[k][i].p));
  if (destroy) {
    mi_heap_destroy(orphan_heap);
  } else {
    mi_heap_delete(orphan_heap);
    for (int k = 0; k < ORPHAN_THREADS; k++)
      for (int i = 0; i < per_row; i++) check_free(&orphan_blocks[k][i]);
  }
  mi_collect(true);
  mi_stats_snapshot(&after);
  CHECKF(after.page_bytes == before.page_bytes,
         "%s: %zu bytes of pages hold blocks, %zu before the threads ran",
         destroy ? "destroy" : "delete", after.page_bytes, before.page_bytes);
  for (int k = 0; k < ORPHAN_THREADS; k++) free(orphan_blocks[k]);
}

/* ---- Workers ------------------------------------------------------------------------------- */
static void *worker_main(void *arg) {
  int t = (int)(intptr_t)arg;
  tu_rng_t rng = {tu_mix64((uint64_t)t * 7919 + 1)};
  for (int r = 0; r < rounds; r++) {
    /* A */
    refill_row(t, &rng);
    if (t == 0) {
      pthread_t tt[TRANSIENT];
      for (int k = 0; k < TRANSIENT; k++)
        CHECK(pthread_create(&tt[k], NULL, transient_main, (void *)(intptr_t)(WORKERS + k)) == 0);
      for (int k = 0; k < TRANSIENT; k++) pthread_join(tt[k], NULL);
    }
    pthread_barrier_wait(&barrier);
    /* B: every other block of another row, from this thread */
    int row = (t + 1 + r) % ROWS;
    for (int i = r % 2; i < per_row; i += 2) check_free(&table[row][i]);
    pthread_barrier_wait(&barrier);
    /* C */
    int retiring = r % HEAPS;
    int mine = atomic_fetch_add(&ticket[r], 1);
    if (mine == 0) {
      retire(retiring, r % 2 == 0);
    } else {
      churn(retiring, &rng);
      if (mine == WORKERS - 1) mi_heap_collect(heaps[(retiring + 1) % HEAPS], r % 3 == 0);
    }
    pthread_barrier_wait(&barrier);
  }
  return NULL;
}

int main(void) {
  rounds = quick() ? 8 : 24;
  per_row = quick() ? 96 : 400;
  printf("%s: %d workers, %d short-lived threads per round, %d heaps, %d rounds\n", TEST_NAME,
         WORKERS, TRANSIENT, HEAPS, rounds);
  for (int row = 0; row < ROWS; row++) table[row] = calloc((size_t)per_row, sizeof(blk_t));
  for (int h = 0; h < HEAPS; h++) heaps[h] = mi_heap_new();
  mi_stats_snapshot_t before;
  mi_collect(true);
  mi_stats_snapshot(&before);

  SECTION("a heap whose blocks all belong to exited threads: delete, then destroy");
  orphans(false);
  orphans(true);

  SECTION("16 threads share %d rolling heaps; heaps retired by whichever thread comes first",
          HEAPS);
  pthread_barrier_init(&barrier, NULL, WORKERS);
  pthread_t threads[WORKERS];
  for (int t = 0; t < WORKERS; t++)
    CHECK(pthread_create(&threads[t], NULL, worker_main, (void *)(intptr_t)t) == 0);
  for (int t = 0; t < WORKERS; t++) pthread_join(threads[t], NULL);
  pthread_barrier_destroy(&barrier);

  SECTION("after every thread exited: the heaps left are retired from the main thread");
  for (int h = 0; h < HEAPS; h++) retire(h, h % 2 == 0);
  for (int row = 0; row < ROWS; row++)
    for (int i = 0; i < per_row; i++) check_free(&table[row][i]);
  for (int h = 0; h < HEAPS; h++) mi_heap_destroy(heaps[h]);

  SECTION("no page holds blocks any more");
  mi_collect(true);
  mi_stats_snapshot_t after;
  mi_stats_snapshot(&after);
  /* blocks of a destroyed heap left behind would stay counted, page by page */
  size_t pages_before = before.page_bytes, pages_after = after.page_bytes;
  CHECKF(pages_after <= pages_before + ((size_t)1 << 20),
         "%zu bytes of pages hold blocks at the end, %zu at the start", pages_after,
         pages_before);
  CHECKF(after.in_use <= before.in_use + ((size_t)64 << 10),
         "%zu bytes in use at the end, %zu at the start", after.in_use, before.in_use);
  CHECK(mi_heap_check(mi_heap_get_default()));
  for (int row = 0; row < ROWS; row++) free(table[row]);
  return tu_finish();
}
