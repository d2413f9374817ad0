/* test_align: every power-of-two alignment from 1 byte to 4 MiB, with sizes around each
 * alignment, through every aligned entry point. Each block is checked for its alignment and
 * usable size, written in full, and the blocks of each alignment are freed in a shuffled order
 * through mi_free, mi_free_aligned and mi_free_size_aligned. Then 16 MiB, and alignments of
 * 32 MiB and 1 GiB (a mapping of their own each) with small sizes: freed on this and on
 * another thread, reallocated, at offsets, in heaps. */
#define TEST_NAME "test_align"
#include "testutil.h"

#include <pthread.h>

#include "shardalloc.h"

#define MAX_ALIGN ((size_t)4 << 20)
#define QUICK_WRITE_MAX ((size_t)256 << 10)

/* One allocation made by the sweep, with what it must satisfy. */
typedef struct rec_s {
  void *p;
  size_t size;
  size_t alignment;
  size_t offset; /* p + offset is aligned */
  size_t check_len; /* bytes filled with the pattern */
  uint64_t key;
} rec_t;

/* Sizes up to a little over the largest size the direct table serves. */
#define SMALL_SWEEP_MAX 1100

static rec_t *recs;
static size_t nrecs, caprecs;
static tu_rng_t rng = {12345};

static void add(void *p, size_t size, size_t alignment, size_t offset, const char *what) {
  CHECKF(p != NULL, "%s(size %zu, alignment %zu, offset %zu) returned NULL", what, size,
         alignment, offset);
  if (p == NULL) return;
  CHECKF(tu_is_aligned((char *)p + offset, alignment),
         "%s(size %zu, alignment %zu, offset %zu) = %p is misaligned", what, size, alignment,
         offset, p);
  size_t u = mi_usable_size(p);
  CHECKF(u >= size, "%s(size %zu, alignment %zu): usable size %zu", what, size, alignment, u);
  /* The whole usable size belongs to the caller: write all of it, then the checked pattern.
   * Quick mode (valgrind, sanitizers) writes only the ends of big blocks. */
  uint64_t key = tu_rand(&rng);
  size_t check_len = size;
  if (quick() && u > QUICK_WRITE_MAX) {
    memset((char *)p + u - QUICK_WRITE_MAX / 2, 0xa5, QUICK_WRITE_MAX / 2);
    check_len = QUICK_WRITE_MAX / 2;
  } else if (u > size) {
    memset((char *)p + size, 0xa5, u - size);
  }
  tu_fill(p, check_len, key);
  if (nrecs == caprecs) {
    caprecs = caprecs ? caprecs * 2 : 256;
    recs = realloc(recs, caprecs * sizeof *recs);
  }
  recs[nrecs++] = (rec_t){p, size, alignment, offset, check_len, key};
}

/* Verify every live block, free them in a random order through varying free entry points. */
static void verify_and_free_all(void) {
  for (size_t i = nrecs; i > 1; i--) {
    size_t j = tu_below(&rng, i);
    rec_t t = recs[i - 1];
    recs[i - 1] = recs[j];
    recs[j] = t;
  }
  for (size_t i = 0; i < nrecs; i++) {
    rec_t *r = &recs[i];
    size_t bad = tu_verify(r->p, r->check_len, r->key);
    CHECKF(bad == r->check_len, "block %p (size %zu, alignment %zu) corrupted at offset %zu", r->p,
           r->size, r->alignment, bad);
    /* mi_free_aligned expects the pointer itself to be aligned: not so for aligned_at. */
    switch (r->offset != 0 ? 0 : i % 3) {
    case 0: mi_free(r->p); break;
    case 1: mi_free_aligned(r->p, r->alignment); break;
    default: mi_free_size_aligned(r->p, r->size, r->alignment); break;
    }
  }
  nrecs = 0;
}

/* Bytes of a block the pattern covers: all of it, except in quick mode for big blocks. */
static size_t fill_len(size_t n) { return quick() && n > QUICK_WRITE_MAX ? QUICK_WRITE_MAX : n; }

static size_t sizes_for(size_t a, size_t *out) {
  static const size_t fixed[] = {1, 2, 7, 8, 16, 24, 100, 1000, 4096, 5000, 65536, 100000};
  size_t n = 0;
  out[n++] = 1;
  if (a > 1) out[n++] = a - 1;
  out[n++] = a;
  out[n++] = a + 1;
  /* Quick mode (valgrind) skips the biggest sizes of the biggest alignments. */
  if (!quick() || a < ((size_t)256 << 10)) out[n++] = 3 * a;
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
    /* Quick mode: the biggest alignments get only a few of the fixed sizes. */
    if (quick() && a >= ((size_t)256 << 10) && fixed[i] != 100 && fixed[i] != 100000) continue;
    out[n++] = fixed[i];
  }
  return n;
}

static void sweep(size_t a) {
  size_t sizes[32];
  size_t ns = sizes_for(a, sizes);
  for (size_t k = 0; k < ns; k++) {
    size_t n = sizes[k];
    add(mi_malloc_aligned(n, a), n, a, 0, "mi_malloc_aligned");

    char *z = mi_zalloc_aligned(n, a);
    CHECKF(z == NULL || tu_first_nonzero(z, n) == n, "mi_zalloc_aligned(%zu, %zu) not zero", n, a);
    add(z, n, a, 0, "mi_zalloc_aligned");

    size_t count = (n % 3 == 0) ? 3 : 1;
    char *c = mi_calloc_aligned(count, n / count, a);
    CHECKF(c == NULL || tu_first_nonzero(c, n) == n, "mi_calloc_aligned(%zu, %zu, %zu) not zero",
           count, n / count, a);
    add(c, n, a, 0, "mi_calloc_aligned");

    mi_heap_t *h = mi_heap_get_default();
    add(mi_heap_malloc_aligned(h, n, a), n, a, 0, "mi_heap_malloc_aligned");

    /* aligned_at: p + offset is aligned; offsets up to the size. */
    const size_t offsets[] = {0, 8, 16, 24, 48, 100};
    for (size_t o = 0; o < sizeof offsets / sizeof offsets[0]; o++) {
      if (offsets[o] > n) continue;
      add(mi_malloc_aligned_at(n, a, offsets[o]), n, a, offsets[o], "mi_malloc_aligned_at");
    }

    if (a >= sizeof(void *)) {
      void *p = NULL;
      int rc = mi_posix_memalign(&p, a, n);
      CHECKF(rc == 0, "mi_posix_memalign(%zu, %zu) = %d", a, n, rc);
      if (rc == 0) add(p, n, a, 0, "mi_posix_memalign");
    }
    add(mi_aligned_alloc(a, n), n, a, 0, "mi_aligned_alloc");
    add(mi_memalign(a, n), n, a, 0, "mi_memalign");

    /* realloc_aligned: content and alignment kept, growing and shrinking. */
    char *r = mi_malloc_aligned(n, a);
    CHECK(r != NULL);
    if (r != NULL) {
      uint64_t key = tu_rand(&rng);
      tu_fill(r, fill_len(n), key);
      size_t sizes2[] = {n * 2 + 1, n + 17, n / 2 + 1, 3 * a + 5};
      size_t cur = n;
      for (size_t s = 0; s < sizeof sizes2 / sizeof sizes2[0]; s++) {
        size_t m = sizes2[s];
        char *q = mi_realloc_aligned(r, m, a);
        CHECKF(q != NULL, "mi_realloc_aligned(%zu -> %zu, %zu) NULL", cur, m, a);
        if (q == NULL) break;
        size_t keep = fill_len(cur < m ? cur : m);
        CHECKF(tu_is_aligned(q, a), "mi_realloc_aligned(%zu -> %zu, %zu) = %p misaligned", cur, m,
               a, (void *)q);
        CHECKF(tu_verify(q, keep, key) == keep, "mi_realloc_aligned(%zu -> %zu, %zu) lost content",
               cur, m, a);
        CHECK(mi_usable_size(q) >= m);
        tu_fill(q, fill_len(m), key);
        r = q;
        cur = m;
      }
      add(r, cur, a, 0, "mi_realloc_aligned");
    }
  }
  verify_and_free_all();
}

/* Many blocks of one alignment at once, so the allocator cannot just reuse one block. */
static void many_at_once(size_t a, size_t n, size_t count) {
  for (size_t i = 0; i < count; i++) add(mi_malloc_aligned(n, a), n, a, 0, "mi_malloc_aligned");
  verify_and_free_all();
}

/* ---- Alignments of 32 MiB and more: a mapping of their own ------------------------------ */
static void *free_on_thread(void *p) {
  mi_free(p);
  return NULL;
}

static void free_from_another_thread(void *p) {
  pthread_t t;
  CHECK(pthread_create(&t, NULL, free_on_thread, p) == 0);
  CHECK(pthread_join(t, NULL) == 0);
}

/* A fresh block of `size` at `a`: aligned, its usable size written in full, known to the
 * heap; the pattern `key` fills its first `size` bytes. */
static void *big_aligned(mi_heap_t *heap, size_t size, size_t a, uint64_t key) {
  void *p = heap ? mi_heap_malloc_aligned(heap, size, a) : mi_malloc_aligned(size, a);
  CHECKF(p != NULL && tu_is_aligned(p, a), "size %zu alignment %zu MiB: %p", size, a >> 20, p);
  if (p == NULL) return NULL;
  size_t u = mi_usable_size(p);
  CHECKF(u >= size, "size %zu alignment %zu MiB: usable %zu", size, a >> 20, u);
  memset(p, 0xa5, u);
  tu_fill(p, size, key);
  CHECK(mi_is_in_heap_region(p) && mi_is_in_heap_region((char *)p + u - 1));
  CHECK(mi_heap_contains_block(heap ? heap : mi_heap_get_default(), p));
  return p;
}

static void huge_alignment(size_t a) {
  const size_t sizes[] = {1, 16, 4096, (size_t)1 << 20};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    size_t n = sizes[k];
    /* free on the same thread, then on another */
    mi_free(big_aligned(NULL, n, a, 1));
    free_from_another_thread(big_aligned(NULL, n, a, 2));

    /* zeroed */
    char *z = mi_zalloc_aligned(n, a);
    CHECKF(z != NULL && tu_is_aligned(z, a), "zalloc %zu at %zu MiB: %p", n, a >> 20, z);
    if (z != NULL) CHECK(tu_first_nonzero(z, n) == n);
    mi_free(z);

    /* realloc: keeping the alignment (grow, shrink), then to a plain block */
    void *p = big_aligned(NULL, n, a, 3);
    void *q = mi_realloc_aligned(p, 2 * n + 100, a);
    CHECKF(q != NULL && tu_is_aligned(q, a), "realloc_aligned %zu at %zu MiB", n, a >> 20);
    if (q != NULL) {
      CHECK(tu_verify(q, n, 3) == n && mi_usable_size(q) >= 2 * n + 100);
      memset(q, 0x5a, mi_usable_size(q));
      tu_fill(q, n, 4);
      p = mi_realloc_aligned(q, n / 2 + 1, a);
      CHECK(p != NULL && tu_is_aligned(p, a) && tu_verify(p, n / 2 + 1, 4) == n / 2 + 1);
      q = mi_realloc(p, 3 * n + 200);
      CHECK(q != NULL && tu_verify(q, n / 2 + 1, 4) == n / 2 + 1);
      free_from_another_thread(q);
    }

    /* p + offset aligned: p lies in the header's unit or in the next unit's first slice */
    const size_t offsets[] = {8, (size_t)64 << 10, ((size_t)32 << 20) - 8, a - 8};
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
      char *r = mi_malloc_aligned_at(n, a, offsets[i]);
      CHECKF(r != NULL && tu_is_aligned(r + offsets[i], a), "aligned_at %zu, %zu MiB, +%zu", n,
             a >> 20, offsets[i]);
      if (r == NULL) continue;
      CHECK(mi_usable_size(r) >= n);
      memset(r, 0x3c, n);
      if (i % 2) free_from_another_thread(r);
      else mi_free(r);
    }

    /* heaps: destroy frees the block; delete hands it to the thread's heap */
    mi_heap_t *h = mi_heap_new();
    big_aligned(h, n, a, 5);
    mi_heap_destroy(h);
    h = mi_heap_new();
    p = big_aligned(h, n, a, 6);
    mi_heap_delete(h);
    if (p != NULL) {
      CHECK(mi_heap_contains_block(mi_heap_get_default(), p) && tu_verify(p, n, 6) == n);
      free_from_another_thread(p);
    }
  }
}

int main(void) {
  printf("%s: alignments 1 B .. %zu MiB through every aligned entry point\n", TEST_NAME,
         MAX_ALIGN >> 20);
  double t0 = now_s();
  for (size_t a = 1; a <= MAX_ALIGN; a *= 2) {
    sweep(a);
    if (a >= 4096 && a % (64 << 10) == 0) printf("    alignment %zu KiB done\n", a >> 10);
  }
  SECTION("alignments 1 B .. %zu MiB, sizes 1, a-1, a, a+1, 3a and 12 fixed sizes: OK so far",
          MAX_ALIGN >> 20);

  SECTION("every size 0 .. %d B at every alignment up to 2 KiB (the small aligned fast path)",
          SMALL_SWEEP_MAX);
  for (size_t a = 1; a <= 2048; a *= 2) {
    for (size_t n = 0; n <= SMALL_SWEEP_MAX; n++) {
      /* the usable size is that of the class of n rounded up to a (at least one byte) */
      size_t rounded = ((n == 0 ? 1 : n) + a - 1) & ~(a - 1);
      void *p = mi_malloc_aligned(n, a), *q = mi_aligned_alloc(a, n);
      CHECKF(p != NULL && q != NULL && tu_is_aligned(p, a) && tu_is_aligned(q, a),
             "alignment %zu, size %zu: %p %p", a, n, p, q);
      if (p != NULL && q != NULL) {
        size_t usable = mi_usable_size(p), plain_usable;
        void *plain = mi_malloc(rounded);
        plain_usable = mi_usable_size(plain);
        mi_free(plain);
        CHECKF(usable == plain_usable && mi_usable_size(q) == usable,
               "alignment %zu, size %zu: usable %zu and %zu, the class of %zu has %zu", a, n,
               usable, mi_usable_size(q), rounded, plain_usable);
        memset(p, 0x5a, usable);
      }
      mi_free(p);
      mi_free(q);
    }
  }

  SECTION("many live blocks per alignment (interleaved with plain mallocs)");
  for (size_t a = 16; a <= 65536; a *= 4) {
    void *filler[50];
    for (int i = 0; i < 50; i++) filler[i] = mi_malloc((size_t)i * 24 + 8);
    many_at_once(a, 24, quick() ? 100 : 500);
    many_at_once(a, a + 8, quick() ? 20 : 64);
    for (int i = 0; i < 50; i++) mi_free(filler[i]);
  }
  many_at_once((size_t)1 << 20, 100, 8);
  many_at_once(MAX_ALIGN, 100, 4);

  SECTION("16 MiB, the largest alignment inside a segment");
  add(mi_malloc_aligned(100, (size_t)16 << 20), 100, (size_t)16 << 20, 0, "mi_malloc_aligned");
  verify_and_free_all();

  for (size_t a = (size_t)32 << 20; a <= ((size_t)1 << 30); a <<= 5) {
    SECTION("alignment %zu MiB: sizes 1 B .. 1 MiB; free on this and another thread, realloc, "
            "offsets, heaps",
            a >> 20);
    huge_alignment(a);
  }

  CHECK(mi_heap_check(mi_heap_get_default()));
  free(recs);
  printf("    %.2f s\n", now_s() - t0);
  return tu_finish();
}
