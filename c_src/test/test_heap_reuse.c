/* test_heap_reuse: the spare pages of a thread (src/spare.c). A heap destroyed (or deleted)
 * by its owner thread leaves its empty small and medium pages to the thread, and its next
 * heap takes them instead of fresh ones. Checked here: the next heap's blocks lie in the old
 * pages, are usable and distinct, and the heaps pass mi_heap_check (which walks the spare
 * pages too); the spare pages stay within their bound (what the last destroyed heap had in
 * small and medium pages, at least 4 MiB and at most 32 MiB per thread); they go back at a
 * collect, after enough allocation slow paths with none kept or taken (not while a heap takes
 * them one by one), and at thread exit. The amount kept is the "spare bytes" line of
 * mi_stats_print_out. */
#define TEST_NAME "test_heap_reuse"
#include "testutil.h"

#include <pthread.h>

#include "shardalloc.h"

#define SPARE_MIN ((size_t)4 << 20)    /* src/spare.c: SPARE_BYTES_MIN */
#define SPARE_BOUND ((size_t)32 << 20) /* src/spare.c: SPARE_BYTES_MAX */
#define SLICE ((uintptr_t)64 << 10)

/* ---- The spare-bytes counter, read from the statistics printout --------------------------- */
typedef struct spare_s {
  long long current, peak;
  bool found;
} spare_t;

static void spare_line(const char *msg, void *arg) {
  spare_t *s = arg;
  const char *label = "spare bytes";
  const char *at = strstr(msg, label);
  if (at != NULL && sscanf(at + strlen(label), " %lld peak %lld", &s->current, &s->peak) == 2)
    s->found = true;
}

static spare_t spare_now(void) {
  spare_t s = {0, 0, false};
  mi_stats_print_out(spare_line, &s);
  CHECK(s.found);
  return s;
}

/* ---- Blocks ------------------------------------------------------------------------------ */
#define NSIZES 24
/* small classes, medium ones (pages of 512 KiB), a large block and a huge one */
static const size_t sizes[NSIZES] = {8,    16,   24,    40,    64,    100,   128,   200,
                                     256,  300,  500,   1000,  1500,  2048,  3000,  5000,
                                     8000, 9000, 16000, 30000, 60000, 70000, 200000, 20 << 20};
#define PER_SIZE 6

typedef struct blk_s {
  unsigned char *p;
  uintptr_t at; /* where it was, kept after a free */
  size_t size;
} blk_t;

static void fill(const blk_t *b, unsigned key) {
  for (size_t i = 0; i < b->size; i += 61) b->p[i] = (unsigned char)(key + i / 61);
  b->p[b->size - 1] = (unsigned char)(key ^ 0x5a);
}

static bool intact(const blk_t *b, unsigned key) {
  for (size_t i = 0; i < b->size; i += 61)
    if (b->p[i] != (unsigned char)(key + i / 61)) return false;
  return b->p[b->size - 1] == (unsigned char)(key ^ 0x5a);
}

static int by_address(const void *a, const void *b) {
  uintptr_t x = (uintptr_t)((const blk_t *)a)->p, y = (uintptr_t)((const blk_t *)b)->p;
  return x < y ? -1 : x > y;
}

/* Blocks of every size in `h`; the second half of each size freed again (real frees). */
static void make(mi_heap_t *h, blk_t *blocks) {
  for (int s = 0; s < NSIZES; s++)
    for (int k = 0; k < PER_SIZE; k++) {
      blk_t *b = &blocks[s * PER_SIZE + k];
      b->size = sizes[s];
      b->p = mi_heap_malloc(h, b->size);
      b->at = (uintptr_t)b->p;
      CHECK(b->p != NULL);
      if (b->p != NULL) fill(b, (unsigned)(s * PER_SIZE + k));
    }
  for (int s = 0; s < NSIZES; s++)
    for (int k = PER_SIZE / 2; k < PER_SIZE; k++) {
      mi_free(blocks[s * PER_SIZE + k].p);
      blocks[s * PER_SIZE + k].p = NULL;
    }
}

/* Every block intact, and no two overlap. */
static void check_blocks(blk_t *blocks, int n) {
  blk_t live[NSIZES * PER_SIZE];
  int m = 0;
  for (int i = 0; i < n; i++) {
    if (blocks[i].p == NULL) continue;
    CHECKF(intact(&blocks[i], (unsigned)i), "block %d of %zu bytes", i, blocks[i].size);
    live[m++] = blocks[i];
  }
  qsort(live, (size_t)m, sizeof(blk_t), by_address);
  for (int i = 1; i < m; i++) CHECK(live[i - 1].p + live[i - 1].size <= live[i].p);
}

/* ---- Sections ---------------------------------------------------------------------------- */
static void destroy_then_reuse(void) {
  mi_collect(false); /* no spare pages from before */
  CHECK(spare_now().current == 0);
  blk_t old[NSIZES * PER_SIZE], fresh[NSIZES * PER_SIZE];
  mi_heap_t *h = mi_heap_new();
  make(h, old);
  CHECK(mi_heap_check(h));
  mi_heap_destroy(h); /* with live blocks in every class */
  spare_t kept = spare_now();
  CHECKF(kept.current > 0, "the destroy kept no page");
  CHECK((size_t)kept.current <= SPARE_BOUND);
  CHECK(mi_heap_check(mi_heap_get_default())); /* walks the spare pages */

  mi_heap_t *g = mi_heap_new();
  make(g, fresh);
  CHECK(mi_heap_check(g));
  CHECK(mi_heap_check(mi_heap_get_default()));
  /* blocks of the new heap in the old one's pages (a page's first slice holds its blocks) */
  int reused = 0;
  for (int i = 0; i < NSIZES * PER_SIZE; i++) {
    if (fresh[i].size > 8000) continue; /* small pages: one slice */
    for (int j = 0; j < NSIZES * PER_SIZE; j++)
      if (old[j].size == fresh[i].size && (old[j].at & ~(SLICE - 1)) == (fresh[i].at & ~(SLICE - 1))) {
        reused++;
        break;
      }
  }
  CHECKF(reused > 0, "no block of the new heap lies in a page of the destroyed one");
  CHECKF(spare_now().current < kept.current, "the new heap took no spare page");
  check_blocks(fresh, NSIZES * PER_SIZE);
  /* blocks of the main heap meanwhile: distinct from the heap's, and its pages are its own */
  blk_t main_blocks[NSIZES * PER_SIZE];
  make(mi_heap_get_default(), main_blocks);
  check_blocks(fresh, NSIZES * PER_SIZE);
  check_blocks(main_blocks, NSIZES * PER_SIZE);
  CHECK(mi_heap_check(mi_heap_get_default()));
  mi_heap_destroy(g);
  for (int i = 0; i < NSIZES * PER_SIZE; i++) mi_free(main_blocks[i].p);
  CHECK(mi_heap_check(mi_heap_get_default()));
}

/* Medium blocks of 20,000 bytes, a page of 512 KiB per 25 of them: `pages` pages' worth. */
static void medium_pages(mi_heap_t *h, int pages) {
  for (int i = 0; i < pages * 25; i++) CHECK(mi_heap_malloc(h, 20000) != NULL);
}

/* A heap of far more pages than the bound: what is kept stays under it. */
static void bound(void) {
  mi_collect(false);
  mi_stats_reset(); /* the peak from here on */
  mi_heap_t *h = mi_heap_new();
  for (int i = 0; i < 4000; i++) CHECK(mi_heap_malloc(h, 48 + (size_t)(i % 64) * 16) != NULL);
  medium_pages(h, 80); /* 40 MiB */
  mi_heap_destroy(h);
  spare_t s = spare_now();
  CHECK(s.current > 0);
  CHECKF((size_t)s.peak <= SPARE_BOUND, "%lld bytes of spare pages, bound %zu", s.peak,
         SPARE_BOUND);
  CHECK(mi_heap_check(mi_heap_get_default()));
  mi_collect(false);
  CHECK(spare_now().current == 0);
}

/* The bound follows the last destroyed heap: one of 12 MiB of pages leaves all of them (more
 * than the 4 MiB kept at least); a small one after it lowers the bound again, so that the
 * pages of a large heap destroyed next are kept only up to the small one's 4 MiB. */
static void bound_follows_the_last_heap(void) {
  mi_collect(false);
  mi_heap_t *h = mi_heap_new();
  medium_pages(h, 24);
  mi_heap_destroy(h);
  CHECKF((size_t)spare_now().current == (size_t)24 << 19, "%lld bytes kept of a heap of 12 MiB",
         spare_now().current);
  CHECK(mi_heap_check(mi_heap_get_default()));
  mi_collect(false);
  h = mi_heap_new();
  CHECK(mi_heap_malloc(h, 100) != NULL);
  mi_heap_destroy(h); /* the bound: 4 MiB again */
  mi_collect(false);
  h = mi_heap_new();
  medium_pages(h, 24);
  mi_heap_t *small = mi_heap_new();
  CHECK(mi_heap_malloc(small, 100) != NULL);
  mi_heap_destroy(small); /* a page of 64 KiB kept, the bound 4 MiB */
  mi_heap_delete(h);      /* its pages are in use: none is kept */
  CHECK((size_t)spare_now().current <= SPARE_MIN);
  mi_collect(false);
  CHECK(spare_now().current == 0);
}

/* While a heap takes spare pages, the rest stays, however many slow paths all its takes span:
 * the 64 slow paths count from the last page kept or taken (here 55 between two takes: 30
 * large blocks and the page's 25 blocks, each of which, at 4 KiB and more, is handed out by
 * a slow path; 440 in all). */
static void kept_while_taken(void) {
  mi_collect(false);
  mi_heap_t *h = mi_heap_new();
  medium_pages(h, 8);
  mi_heap_destroy(h);
  long long kept = spare_now().current;
  CHECK((size_t)kept == (size_t)8 << 19);
  enum { LARGE = 8 * 30 };
  static void *large[LARGE];
  int n = 0;
  mi_heap_t *g = mi_heap_new();
  for (int page = 0; page < 8; page++) {
    medium_pages(g, 1); /* takes one spare page */
    CHECKF(spare_now().current == kept - (long long)(page + 1) * (512 << 10),
           "page %d: %lld bytes spare", page, spare_now().current);
    /* 30 slow paths more before the next take: a large block is a page of its own */
    for (int i = 0; i < 30; i++) large[n++] = mi_malloc(70000);
  }
  CHECK(spare_now().current == 0);
  CHECK(mi_heap_check(g));
  mi_heap_destroy(g);
  for (int i = 0; i < n; i++) mi_free(large[i]);
  mi_collect(false);
}

/* A deleted heap's empty pages are kept; its live blocks move to the main heap intact. */
static void deleted(void) {
  mi_collect(false);
  blk_t blocks[NSIZES * PER_SIZE];
  mi_heap_t *h = mi_heap_new();
  make(h, blocks);
  for (size_t n = 0; n < 200; n++) mi_free(mi_heap_malloc(h, 4000)); /* a page left empty */
  mi_heap_delete(h);
  CHECK(spare_now().current > 0);
  check_blocks(blocks, NSIZES * PER_SIZE);
  for (int i = 0; i < NSIZES * PER_SIZE; i++)
    CHECK(blocks[i].p == NULL || mi_heap_contains_block(mi_heap_get_default(), blocks[i].p));
  CHECK(mi_heap_check(mi_heap_get_default()));
  for (int i = 0; i < NSIZES * PER_SIZE; i++) mi_free(blocks[i].p);
  CHECK(mi_heap_check(mi_heap_get_default()));
}

/* Spare pages no heap asks for go back after enough allocation slow paths: a block of a
 * large class is a page of its own, so each such allocation, while the others live, takes
 * the slow path. */
static void expiry(void) {
  mi_collect(false);
  mi_heap_t *h = mi_heap_new();
  for (int i = 0; i < 100; i++) CHECK(mi_heap_malloc(h, 24) != NULL);
  mi_heap_destroy(h);
  CHECK(spare_now().current > 0);
  void *large[100]; /* more than the 64 slow paths spare pages wait */
  for (int i = 0; i < 100; i++) large[i] = mi_malloc(70000);
  for (int i = 0; i < 100; i++) mi_free(large[i]);
  CHECKF(spare_now().current == 0, "%lld bytes still spare", spare_now().current);
  CHECK(mi_heap_check(mi_heap_get_default()));
}

/* A thread that ends with spare pages gives them back. */
static void *request_thread(void *arg) {
  (void)arg;
  for (int r = 0; r < 50; r++) {
    blk_t blocks[NSIZES * PER_SIZE];
    mi_heap_t *h = mi_heap_new();
    make(h, blocks);
    check_blocks(blocks, NSIZES * PER_SIZE);
    if (r % 10 == 0) CHECK(mi_heap_check(h) && mi_heap_check(mi_heap_get_default()));
    if (r % 3 == 2) mi_heap_delete(h);
    else mi_heap_destroy(h);
    if (r % 3 == 2)
      for (int i = 0; i < NSIZES * PER_SIZE; i++) mi_free(blocks[i].p);
  }
  CHECK(spare_now().current > 0);
  return NULL;
}

static void thread_exit(void) {
  mi_collect(false);
  pthread_t t;
  CHECK(pthread_create(&t, NULL, request_thread, NULL) == 0);
  pthread_join(t, NULL);
  CHECK(spare_now().current == 0);
}

int main(void) {
  SECTION("a destroyed heap's pages serve the next heap");
  destroy_then_reuse();
  SECTION("what is kept stays within the bound");
  bound();
  SECTION("the bound follows the last destroyed heap");
  bound_follows_the_last_heap();
  SECTION("spare pages stay while a heap takes them");
  kept_while_taken();
  SECTION("a deleted heap's empty pages are kept, its blocks live on");
  deleted();
  SECTION("spare pages nobody asks for go back");
  expiry();
  SECTION("a thread's spare pages go back at its exit");
  thread_exit();
  return tu_finish();
}
