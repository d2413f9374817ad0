/* test_api: the contract of every function in shardalloc.h, and every bad-input case.
 *
 * Each section names the functions it exercises; the expected answers are the one-line
 * contracts of the header (which follow the C standard and POSIX where they apply). */
#define TEST_NAME "test_api"
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shardalloc.h"

/* The alignment sweeps stop here: larger alignments get mappings of their own, which
 * test_align covers. */
#define ALIGN_SWEEP_MAX ((size_t)16 << 20)

/* This program passes impossible sizes on purpose. */
#pragma GCC diagnostic ignored "-Walloc-size-larger-than="

static int global_var = 42;

/* Sizes that cover every size-class range: tiny, small, medium, large and huge. */
static const size_t some_sizes[] = {
    1,         7,        8,         9,         15,        16,        17,
    24,        31,       32,        33,        63,        64,        65,
    100,       127,      128,       129,       255,       256,       257,
    500,       1000,     1023,      1024,      1025,      2000,      4095,
    4096,      4097,     8191,      8192,      8193,      10000,     20480,
    32768,     65535,    65536,     65537,     100000,    262144,    524288,
    1000000,   1048576,  4194304,   8388607,   16777216,  16777217,  (size_t)40 << 20,
};
#define N_SIZES (sizeof some_sizes / sizeof some_sizes[0])

static size_t page_size(void) { return (size_t)sysconf(_SC_PAGESIZE); }

static void test_malloc_zero(void) {
  SECTION("mi_malloc(0): a unique, freeable pointer");
  void *a = mi_malloc(0), *b = mi_malloc(0), *c = mi_zalloc(0), *d = mi_calloc(0, 0);
  void *e = mi_calloc(0, 16), *f = mi_calloc(16, 0), *g = mi_mallocn(0, 8);
  CHECK(a != NULL);
  CHECK(b != NULL);
  CHECK(c != NULL);
  CHECK(d != NULL);
  CHECK(e != NULL);
  CHECK(f != NULL);
  CHECK(g != NULL);
  CHECK(a != b);
  CHECK(a != c && b != c && c != d && d != e && e != f && f != g);
  CHECK(mi_usable_size(a) < 4096);
  mi_free(a);
  mi_free(b);
  mi_free(c);
  mi_free(d);
  mi_free(e);
  mi_free(f);
  mi_free(g);
  /* Many zero-size blocks live at once are all distinct. */
  enum { N = 1000 };
  void **ps = malloc(N * sizeof(void *));
  for (int i = 0; i < N; i++) ps[i] = mi_malloc(0);
  int dup = 0;
  for (int i = 1; i < N; i++)
    if (ps[i] == ps[i - 1] || ps[i] == NULL) dup++;
  CHECKF(dup == 0, "%d zero-size blocks were NULL or repeated", dup);
  for (int i = 0; i < N; i++) mi_free(ps[i]);
  free(ps);
}

/* A request that cannot be met: NULL and errno == ENOMEM. */
#define CHECK_ENOMEM(call)                                                                  \
  do {                                                                                      \
    errno = 0;                                                                              \
    void *r_ = (call);                                                                      \
    int e_ = errno;                                                                         \
    CHECKF(r_ == NULL && e_ == ENOMEM, "%s returned %p, errno %d", #call, r_, e_);         \
    if (r_ != NULL) mi_free(r_);                                                            \
  } while (0)

static void test_too_large(void) {
  SECTION("too-large requests: NULL with errno ENOMEM, no crash");
  const size_t huge[] = {SIZE_MAX,          SIZE_MAX - 1,   SIZE_MAX - 4096,
                         SIZE_MAX / 2,      SIZE_MAX / 2 + 1, (size_t)1 << 62,
                         (size_t)1 << 48,   PTRDIFF_MAX};
  for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
    size_t n = huge[i];
    CHECK_ENOMEM(mi_malloc(n));
    CHECK_ENOMEM(mi_zalloc(n));
    CHECK_ENOMEM(mi_calloc(1, n));
    CHECK_ENOMEM(mi_calloc(n, 1));
    CHECK_ENOMEM(mi_mallocn(1, n));
    CHECK_ENOMEM(mi_malloc_aligned(n, 16));
    CHECK_ENOMEM(mi_malloc_aligned(n, 4096));
    CHECK_ENOMEM(mi_malloc_aligned_at(n, 64, 8));
    CHECK_ENOMEM(mi_zalloc_aligned(n, 64));
    CHECK_ENOMEM(mi_calloc_aligned(1, n, 64));
    CHECK_ENOMEM(mi_memalign(64, n));
    CHECK_ENOMEM(mi_aligned_alloc(64, n));
    CHECK_ENOMEM(mi_valloc(n));
    CHECK_ENOMEM(mi_pvalloc(n));
    CHECK_ENOMEM(mi_realloc(NULL, n));
    CHECK_ENOMEM(mi_rezalloc(NULL, n));
    CHECK_ENOMEM(mi_heap_malloc(mi_heap_get_default(), n));
    CHECK_ENOMEM(mi_heap_zalloc(mi_heap_get_default(), n));
    void *p = (void *)0x1;
    errno = 0;
    int rc = mi_posix_memalign(&p, 64, n);
    CHECKF(rc == ENOMEM && p == (void *)0x1, "posix_memalign(64, %zu) = %d, *p = %p", n, rc, p);
  }
  SECTION("too-large requests on a live block: NULL, ENOMEM, the block unchanged");
  for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
    size_t n = huge[i];
    char *p = mi_malloc(100);
    tu_fill(p, 100, 7);
    CHECK_ENOMEM(mi_realloc(p, n));
    CHECK_ENOMEM(mi_rezalloc(p, n));
    CHECK_ENOMEM(mi_realloc_aligned(p, n, 16));
    CHECK_ENOMEM(mi_rezalloc_aligned(p, n, 16));
    CHECK_ENOMEM(mi_reallocarray(p, 1, n));
    CHECK_ENOMEM(mi_reallocn(p, 1, n));
    CHECK(tu_verify(p, 100, 7) == 100);
    CHECK(mi_usable_size(p) >= 100);
    mi_free(p);
  }
}

static void test_overflow(void) {
  SECTION("count * size overflow: NULL with ENOMEM; the old block stays valid");
  const size_t pairs[][2] = {
      {SIZE_MAX, 2},
      {2, SIZE_MAX},
      {SIZE_MAX / 2 + 1, 2},
      {(size_t)1 << 32, (size_t)1 << 32},
      {((size_t)1 << 33) + 1, ((size_t)1 << 31) + 3},
      {SIZE_MAX, SIZE_MAX},
      {SIZE_MAX / 16 + 1, 16},
  };
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    size_t c = pairs[i][0], s = pairs[i][1];
    CHECK_ENOMEM(mi_calloc(c, s));
    CHECK_ENOMEM(mi_mallocn(c, s));
    CHECK_ENOMEM(mi_calloc_aligned(c, s, 32));
    CHECK_ENOMEM(mi_reallocn(NULL, c, s));
    CHECK_ENOMEM(mi_reallocarray(NULL, c, s));
    CHECK_ENOMEM(mi_recalloc(NULL, c, s));
    mi_heap_t *h = mi_heap_get_default();
    CHECK_ENOMEM(mi_heap_calloc(h, c, s));

    char *p = mi_zalloc(200);
    tu_fill(p, 200, 11);
    CHECK_ENOMEM(mi_reallocn(p, c, s));
    CHECK_ENOMEM(mi_reallocarray(p, c, s));
    CHECK_ENOMEM(mi_recalloc(p, c, s));
    CHECK_ENOMEM(mi_recalloc_aligned(p, c, s, 16));
    CHECKF(tu_verify(p, 200, 11) == 200, "block changed by a failed resize (%zu x %zu)", c, s);
    mi_free(p);
  }
  SECTION("count * size that fits: served");
  void *p = mi_calloc((size_t)1 << 10, (size_t)1 << 10);
  CHECK(p != NULL && tu_first_nonzero(p, (size_t)1 << 20) == ((size_t)1 << 20));
  mi_free(p);
  p = mi_mallocn(3, 1000);
  CHECK(p != NULL && mi_usable_size(p) >= 3000);
  p = mi_reallocn(p, 5, 1000);
  CHECK(p != NULL && mi_usable_size(p) >= 5000);
  p = mi_reallocarray(p, 7, 1000);
  CHECK(p != NULL && mi_usable_size(p) >= 7000);
  mi_free(p);
}

static void test_posix_memalign(void) {
  SECTION("mi_posix_memalign: EINVAL unless a power of two times sizeof(void*); *p untouched");
  const size_t bad[] = {0,  1,  2,  3,  4,  5,   6,   7,   12,   20,  24,
                        40, 48, 96, 3 * sizeof(void *), 100, 4095, 4097, 12288, ((size_t)1 << 20) + 8,
                        SIZE_MAX, SIZE_MAX / 2 + 1 + 8};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    void *p = (void *)0x1234;
    int rc = mi_posix_memalign(&p, bad[i], 64);
    CHECKF(rc == EINVAL, "alignment %zu: returned %d", bad[i], rc);
    CHECKF(p == (void *)0x1234, "alignment %zu: *p changed to %p", bad[i], p);
  }
  SECTION("mi_posix_memalign: every valid alignment up to %zu MiB", ALIGN_SWEEP_MAX >> 20);
  for (size_t a = sizeof(void *); a <= ALIGN_SWEEP_MAX; a *= 2) {
    const size_t sizes[] = {0, 1, a - 1, a, a + 1, 1000};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
      void *p = (void *)0x1234;
      int rc = mi_posix_memalign(&p, a, sizes[k]);
      CHECKF(rc == 0 && p != (void *)0x1234 && p != NULL, "alignment %zu size %zu: rc %d", a,
             sizes[k], rc);
      if (rc != 0) continue;
      CHECKF(tu_is_aligned(p, a), "alignment %zu size %zu: %p", a, sizes[k], p);
      CHECK(mi_usable_size(p) >= sizes[k]);
      memset(p, 0x5a, sizes[k]);
      mi_free(p);
    }
  }
  SECTION("mi_posix_memalign: alignment above MI_ALIGNMENT_MAX fails with ENOMEM");
  {
    void *p = (void *)0x1234;
    int rc = mi_posix_memalign(&p, MI_ALIGNMENT_MAX * 2, 64);
    CHECKF(rc == ENOMEM && p == (void *)0x1234, "rc %d, *p %p", rc, p);
    if (rc == 0) mi_free(p);
    CHECK_ENOMEM(mi_malloc_aligned(64, MI_ALIGNMENT_MAX * 2));
    CHECK_ENOMEM(mi_zalloc_aligned(64, MI_ALIGNMENT_MAX * 4));
  }
}

static void test_bad_alignment(void) {
  SECTION("mi_memalign, mi_aligned_alloc: NULL with EINVAL for a non-power-of-two alignment");
  const size_t bad[] = {0, 3, 5, 6, 7, 12, 24, 48, 100, 3 * sizeof(void *), 65535, 65537,
                        ((size_t)1 << 20) + 1, SIZE_MAX};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    size_t a = bad[i];
    errno = 0;
    void *p = mi_memalign(a, 64);
    int e = errno;
    CHECKF(p == NULL && e == EINVAL, "memalign(%zu): %p errno %d", a, p, e);
    if (p) mi_free(p);
    errno = 0;
    p = mi_aligned_alloc(a, 64);
    e = errno;
    CHECKF(p == NULL && e == EINVAL, "aligned_alloc(%zu): %p errno %d", a, p, e);
    if (p) mi_free(p);
  }
  SECTION("mi_malloc_aligned and friends: NULL (EINVAL or ENOMEM) for a bad alignment");
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    size_t a = bad[i];
    void *r[5];
    errno = 0;
    r[0] = mi_malloc_aligned(64, a);
    int e0 = errno;
    r[1] = mi_zalloc_aligned(64, a);
    r[2] = mi_calloc_aligned(4, 16, a);
    r[3] = mi_malloc_aligned_at(64, a, 8);
    r[4] = mi_heap_malloc_aligned(mi_heap_get_default(), 64, a);
    for (int k = 0; k < 5; k++) {
      CHECKF(r[k] == NULL, "variant %d with alignment %zu returned %p", k, a, r[k]);
      if (r[k]) mi_free(r[k]);
    }
    CHECKF(e0 == EINVAL || e0 == ENOMEM, "malloc_aligned(64, %zu): errno %d", a, e0);
  }
  SECTION("mi_memalign, mi_aligned_alloc: every power of two works (also below sizeof(void*))");
  for (size_t a = 1; a <= ALIGN_SWEEP_MAX; a *= 2) {
    void *p = mi_memalign(a, 100);
    CHECKF(p != NULL && tu_is_aligned(p, a), "memalign(%zu) = %p", a, p);
    if (p) memset(p, 1, 100);
    mi_free(p);
    p = mi_aligned_alloc(a, a * 2 < 100 ? 100 : a * 2);
    CHECKF(p != NULL && tu_is_aligned(p, a), "aligned_alloc(%zu) = %p", a, p);
    mi_free(p);
    p = mi_aligned_alloc(a, 100); /* size not a multiple of the alignment: allowed */
    CHECKF(p != NULL && tu_is_aligned(p, a), "aligned_alloc(%zu, 100) = %p", a, p);
    mi_free(p);
  }
}

static void test_free_null(void) {
  SECTION("free variants of NULL are no-ops; usable size of NULL is 0");
  mi_free(NULL);
  mi_free_size(NULL, 0);
  mi_free_size(NULL, 100);
  mi_free_aligned(NULL, 64);
  mi_free_size_aligned(NULL, 100, 64);
  CHECK(mi_usable_size(NULL) == 0);
  CHECK(mi_malloc_usable_size(NULL) == 0);
  CHECK(1); /* reached: nothing crashed */
}

static void test_realloc_basics(void) {
  SECTION("mi_realloc(NULL, n) acts as mi_malloc; the common prefix survives a resize");
  for (size_t i = 0; i < N_SIZES; i++) {
    size_t n = some_sizes[i];
    char *p = mi_realloc(NULL, n);
    CHECKF(p != NULL && mi_usable_size(p) >= n, "realloc(NULL, %zu)", n);
    if (!p) continue;
    tu_fill(p, n, n);
    size_t m = n / 2 + 1;
    char *q = mi_realloc(p, m);
    CHECKF(q != NULL && tu_verify(q, m, n) == m, "shrink %zu -> %zu", n, m);
    char *r = mi_realloc(q, n * 2);
    CHECKF(r != NULL && tu_verify(r, m, n) == m, "grow %zu -> %zu", m, n * 2);
    mi_free(r);
  }
  void *p = mi_realloc(NULL, 0);
  CHECK(p != NULL);
  mi_free(p);
  p = mi_reallocn(NULL, 10, 10);
  CHECK(p != NULL && mi_usable_size(p) >= 100);
  mi_free(p);
  p = mi_reallocarray(NULL, 10, 10);
  CHECK(p != NULL && mi_usable_size(p) >= 100);
  mi_free(p);

  SECTION("mi_reallocf: resizes like realloc; on failure returns NULL (ENOMEM) and frees p");
  char *s = mi_malloc(50);
  tu_fill(s, 50, 3);
  s = mi_reallocf(s, 5000);
  CHECK(s != NULL && tu_verify(s, 50, 3) == 50);
  s = mi_reallocf(s, 20);
  CHECK(s != NULL && tu_verify(s, 20, 3) == 20);
  errno = 0;
  char *t = mi_reallocf(s, SIZE_MAX);
  CHECKF(t == NULL && errno == ENOMEM, "reallocf(p, SIZE_MAX) = %p, errno %d", (void *)t, errno);
  /* s was freed by the failed mi_reallocf: not touched again. */
  t = mi_reallocf(NULL, 100);
  CHECK(t != NULL);
  mi_free(t);
  /* Many failing reallocf calls must not leak (each frees its block): run a few thousand. */
  for (int i = 0; i < 5000; i++) {
    void *u = mi_malloc(64 + (size_t)(i % 7) * 1000);
    void *v = mi_reallocf(u, SIZE_MAX / 2);
    CHECK(v == NULL);
  }
}

static void test_expand(void) {
  SECTION("mi_expand: p when the block already holds newsize, else NULL and p unchanged");
  for (size_t i = 0; i < N_SIZES; i++) {
    size_t n = some_sizes[i];
    char *p = mi_malloc(n);
    CHECK(p != NULL);
    size_t u = mi_usable_size(p);
    tu_fill(p, n, 99);
    CHECKF(mi_expand(p, n) == p, "expand(p, %zu) to its own size", n);
    CHECKF(mi_expand(p, u) == p, "expand(p, usable %zu)", u);
    if (n > 1) CHECKF(mi_expand(p, n - 1) == p, "expand(p, %zu - 1)", n);
    CHECKF(mi_expand(p, u + 1) == NULL, "expand(p, usable %zu + 1) must fail", u);
    CHECK(mi_expand(p, SIZE_MAX) == NULL);
    CHECK(mi_usable_size(p) == u);
    CHECK(tu_verify(p, n, 99) == n);
    mi_free(p);
  }
  CHECK(mi_expand(NULL, 10) == NULL);
}

static void test_strings(void) {
  SECTION("mi_strdup, mi_strndup: copies, NUL-terminated, NULL for NULL");
  char *s = mi_strdup("hello, world");
  CHECK(s != NULL && strcmp(s, "hello, world") == 0);
  CHECK(mi_usable_size(s) >= 13);
  mi_free(s);
  s = mi_strdup("");
  CHECK(s != NULL && s[0] == '\0');
  mi_free(s);
  CHECK(mi_strdup(NULL) == NULL);
  CHECK(mi_strndup(NULL, 5) == NULL);
  CHECK(mi_strndup(NULL, 0) == NULL);
  s = mi_strndup("hello", 3);
  CHECK(s != NULL && strcmp(s, "hel") == 0);
  mi_free(s);
  s = mi_strndup("hi", 10);
  CHECK(s != NULL && strcmp(s, "hi") == 0);
  mi_free(s);
  s = mi_strndup("hello", 5);
  CHECK(s != NULL && strcmp(s, "hello") == 0);
  mi_free(s);
  s = mi_strndup("hello", 0);
  CHECK(s != NULL && s[0] == '\0');
  mi_free(s);
  s = mi_strndup("hello", SIZE_MAX);
  CHECK(s != NULL && strcmp(s, "hello") == 0);
  mi_free(s);
  /* strndup must not read past n bytes: the source is not NUL-terminated within them. */
  char unterminated[4] = {'a', 'b', 'c', 'd'};
  s = mi_strndup(unterminated, 4);
  CHECK(s != NULL && strcmp(s, "abcd") == 0);
  mi_free(s);
  /* A long string (a large block). */
  size_t len = 300000;
  char *big = malloc(len + 1);
  for (size_t i = 0; i < len; i++) big[i] = (char)('a' + i % 26);
  big[len] = '\0';
  s = mi_strdup(big);
  CHECK(s != NULL && strlen(s) == len && memcmp(s, big, len + 1) == 0);
  mi_free(s);
  s = mi_strndup(big, 70000);
  CHECK(s != NULL && strlen(s) == 70000 && memcmp(s, big, 70000) == 0);
  mi_free(s);
  free(big);
}

static void test_usable_and_good_size(void) {
  SECTION("usable size >= request, == mi_good_size for fresh blocks; good_size >= size");
  for (size_t n = 0; n <= 70000; n += (n < 2048 ? 1 : n < 20000 ? 7 : 61)) {
    char *p = mi_malloc(n);
    size_t u = mi_usable_size(p), g = mi_good_size(n);
    CHECKF(p != NULL && u >= n, "malloc(%zu): usable %zu", n, u);
    CHECKF(u == g, "malloc(%zu): usable %zu != good_size %zu", n, u, g);
    CHECK(mi_malloc_usable_size(p) == u);
    if (p) memset(p, 0xee, u); /* the whole usable size is ours to write */
    mi_free(p);
  }
  for (size_t i = 0; i < N_SIZES; i++) {
    size_t n = some_sizes[i];
    char *p = mi_malloc(n);
    size_t u = mi_usable_size(p), g = mi_good_size(n);
    CHECKF(p != NULL && u >= n, "malloc(%zu): usable %zu", n, u);
    CHECKF(u == g, "malloc(%zu): usable %zu != good_size %zu", n, u, g);
    CHECK(g >= n);
    if (p) {
      p[0] = 1;
      p[u - 1] = 2;
    }
    mi_free(p);
  }
  CHECK(mi_good_size(1) >= 1);
  CHECK(mi_good_size((size_t)1 << 40) >= ((size_t)1 << 40));
}

static void test_small(void) {
  SECTION("mi_malloc_small, mi_zalloc_small for every size up to MI_SMALL_SIZE_MAX");
  void *ps[MI_SMALL_SIZE_MAX + 1];
  for (size_t n = 0; n <= MI_SMALL_SIZE_MAX; n++) {
    char *p = mi_malloc_small(n);
    CHECKF(p != NULL && mi_usable_size(p) >= n, "malloc_small(%zu)", n);
    if (p) memset(p, 0xcc, n);
    ps[n] = p;
  }
  for (size_t n = 0; n <= MI_SMALL_SIZE_MAX; n++) mi_free(ps[n]);
  for (size_t n = 0; n <= MI_SMALL_SIZE_MAX; n++) {
    char *p = mi_zalloc_small(n);
    CHECKF(p != NULL && mi_usable_size(p) >= n, "zalloc_small(%zu)", n);
    CHECKF(p != NULL && tu_first_nonzero(p, n) == n, "zalloc_small(%zu) not zeroed", n);
    ps[n] = p;
  }
  for (size_t n = 0; n <= MI_SMALL_SIZE_MAX; n++) mi_free(ps[n]);
  /* Small blocks are 16-byte aligned from 16 bytes up. */
  for (size_t n = 16; n <= MI_SMALL_SIZE_MAX; n += 8) {
    void *p = mi_malloc_small(n);
    CHECKF(tu_is_aligned(p, 16), "malloc_small(%zu) = %p", n, p);
    mi_free(p);
  }
}

static void test_sized_free(void) {
  SECTION("mi_free_size, mi_free_aligned, mi_free_size_aligned");
  for (size_t i = 0; i < N_SIZES; i++) {
    size_t n = some_sizes[i];
    void *p = mi_malloc(n);
    CHECK(p != NULL);
    mi_free_size(p, n);
    for (size_t a = 8; a <= 65536; a *= 8) {
      p = mi_malloc_aligned(n, a);
      CHECK(p != NULL && tu_is_aligned(p, a));
      memset(p, 3, n < 4096 ? n : 4096);
      mi_free_aligned(p, a);
      p = mi_malloc_aligned(n, a);
      CHECK(p != NULL && tu_is_aligned(p, a));
      mi_free_size_aligned(p, n, a);
    }
    p = mi_zalloc(n);
    mi_free_size(p, n);
  }
}

static void test_valloc(void) {
  size_t ps = page_size();
  SECTION("mi_valloc: page aligned (page size %zu); mi_pvalloc: page aligned, whole pages", ps);
  const size_t sizes[] = {0, 1, 100, 4095, 4096, 4097, 10000, 65536, 100000, 1 << 20, 5 << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    size_t n = sizes[i];
    char *p = mi_valloc(n);
    CHECKF(p != NULL && tu_is_aligned(p, ps), "valloc(%zu) = %p", n, (void *)p);
    CHECK(mi_usable_size(p) >= n);
    if (p) memset(p, 1, n);
    mi_free(p);
    size_t rounded = (n + ps - 1) / ps * ps;
    p = mi_pvalloc(n);
    CHECKF(p != NULL && tu_is_aligned(p, ps), "pvalloc(%zu) = %p", n, (void *)p);
    CHECKF(mi_usable_size(p) >= rounded, "pvalloc(%zu): usable %zu < %zu", n, mi_usable_size(p),
           rounded);
    if (p) memset(p, 2, rounded); /* the rounded-up size is ours to write */
    mi_free(p);
  }
  CHECK_ENOMEM(mi_pvalloc(SIZE_MAX - 10)); /* rounding up would overflow */
  CHECK_ENOMEM(mi_pvalloc(SIZE_MAX - ps + 2));
}

static void test_version(void) {
  SECTION("mi_version() == SHARDALLOC_VERSION (%d)", SHARDALLOC_VERSION);
  CHECK(mi_version() == SHARDALLOC_VERSION);
}

static void test_heap_region(void) {
  SECTION("mi_is_in_heap_region: true for our blocks of every size, false for others");
  const size_t sizes[] = {1, 16, 1000, 20 << 10, 200 << 10, 1 << 20, 8 << 20, 40 << 20};
  for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
    char *p = mi_malloc(sizes[i]);
    CHECKF(mi_is_in_heap_region(p), "malloc(%zu) = %p not in heap region", sizes[i], (void *)p);
    CHECKF(mi_is_in_heap_region(p + sizes[i] - 1), "last byte of malloc(%zu)", sizes[i]);
    CHECK(mi_heap_check_owned(mi_heap_get_default(), p));
    mi_free(p);
    p = mi_malloc_aligned(sizes[i], 4096);
    CHECKF(mi_is_in_heap_region(p), "malloc_aligned(%zu, 4096)", sizes[i]);
    mi_free(p);
  }
  int local = 1;
  char *sys = malloc(64);
  char *sys_big = malloc(1 << 20); /* glibc serves this with its own mmap */
  CHECK(!mi_is_in_heap_region(&local));
  CHECK(!mi_is_in_heap_region(&global_var));
  CHECK(!mi_is_in_heap_region(sys));
  CHECK(!mi_is_in_heap_region(sys_big));
  CHECK(!mi_is_in_heap_region((void *)test_heap_region));
  CHECK(!mi_is_in_heap_region(NULL));
  void *foreign = mmap(NULL, (size_t)64 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  CHECK(foreign != MAP_FAILED);
  if (foreign != MAP_FAILED) {
    /* 64 MiB of someone else's memory: its 32 MiB-aligned interior is not ours either. */
    uintptr_t mid = ((uintptr_t)foreign + ((size_t)32 << 20) - 1) & ~(((uintptr_t)32 << 20) - 1);
    CHECK(!mi_is_in_heap_region(foreign));
    CHECK(!mi_is_in_heap_region((void *)mid));
    CHECK(!mi_heap_check_owned(mi_heap_get_default(), (void *)mid));
    munmap(foreign, (size_t)64 << 20);
  }
  CHECK(!mi_heap_check_owned(mi_heap_get_default(), &local));
  CHECK(!mi_heap_check_owned(mi_heap_get_default(), &global_var));
  CHECK(!mi_heap_check_owned(mi_heap_get_default(), sys));
  CHECK(!mi_heap_check_owned(mi_heap_get_default(), sys_big));
  CHECK(!mi_heap_check_owned(mi_heap_get_default(), NULL));
  free(sys);
  free(sys_big);
}

static void test_heaps(void) {
  SECTION("mi_heap_new / mi_heap_malloc & friends / contains_block / check_owned");
  mi_heap_t *def = mi_heap_get_default();
  CHECK(def != NULL);
  mi_heap_t *h = mi_heap_new();
  CHECK(h != NULL && h != def);
  if (h == NULL) return;
  enum { N = 200 };
  char *blocks[N];
  size_t sizes[N];
  int bad_contains = 0, bad_contains_def = 0, bad_owned = 0, bad_owned_def = 0;
  for (int i = 0; i < N; i++) {
    size_t n = (i % 10 == 9) ? (size_t)(i + 1) * 1000 : (size_t)(i * 13 % 700) + 1;
    if (i == N - 1) n = 20 << 20; /* one huge block */
    sizes[i] = n;
    switch (i % 5) {
    case 0: blocks[i] = mi_heap_malloc(h, n); break;
    case 1: blocks[i] = mi_heap_zalloc(h, n); break;
    case 2: blocks[i] = mi_heap_calloc(h, 1, n); break;
    case 3: blocks[i] = mi_heap_malloc_aligned(h, n, 256); break;
    default: blocks[i] = mi_heap_realloc(h, NULL, n); break;
    }
    CHECKF(blocks[i] != NULL, "heap block %d size %zu", i, n);
    if (i % 5 == 1 || i % 5 == 2) CHECK(tu_first_nonzero(blocks[i], n) == n);
    if (i % 5 == 3) CHECK(tu_is_aligned(blocks[i], 256));
    tu_fill(blocks[i], n, (uint64_t)i);
    if (!mi_heap_contains_block(h, blocks[i])) bad_contains++;
    if (mi_heap_contains_block(def, blocks[i])) bad_contains_def++;
    if (!mi_heap_check_owned(h, blocks[i])) bad_owned++;
    /* "points into a block of `heap`": the default heap does not own them */
    if (mi_heap_check_owned(def, blocks[i])) bad_owned_def++;
  }
  CHECKF(bad_contains == 0, "%d of %d blocks not in the heap that allocated them", bad_contains, N);
  CHECKF(bad_contains_def == 0, "%d of %d blocks of a new heap claimed by the default heap",
         bad_contains_def, N);
  CHECKF(bad_owned == 0, "mi_heap_check_owned(heap, p) false for %d of %d of its blocks", bad_owned,
         N);
  CHECKF(bad_owned_def == 0,
         "mi_heap_check_owned(default heap, p) true for %d of %d blocks of another heap",
         bad_owned_def, N);
  void *d = mi_malloc(100);
  CHECK(mi_heap_contains_block(def, d));
  CHECK(!mi_heap_contains_block(h, d));
  CHECKF(!mi_heap_check_owned(h, d), "check_owned(new heap, block of the default heap) is true");
  CHECK(mi_heap_check_owned(def, d));
  mi_free(d);

  SECTION("mi_heap_realloc moves a block into the heap; mi_heap_collect keeps live blocks");
  char *m = mi_malloc(40);
  tu_fill(m, 40, 1234);
  m = mi_heap_realloc(h, m, 100000);
  CHECK(m != NULL && tu_verify(m, 40, 1234) == 40);
  CHECK(mi_heap_contains_block(h, m));
  mi_free(m);
  /* Free half of the blocks, then collect. */
  for (int i = 0; i < N; i += 2) {
    CHECK(tu_verify(blocks[i], sizes[i], (uint64_t)i) == sizes[i]);
    mi_free(blocks[i]);
    blocks[i] = NULL;
  }
  mi_heap_collect(h, false);
  mi_heap_collect(h, true);
  CHECK(mi_heap_check(h));
  for (int i = 1; i < N; i += 2)
    CHECKF(tu_verify(blocks[i], sizes[i], (uint64_t)i) == sizes[i], "block %d after collect", i);

  SECTION("mi_heap_set_default / get_default: mi_malloc allocates from the default heap");
  mi_heap_t *old = mi_heap_set_default(h);
  CHECK(old == def);
  CHECK(mi_heap_get_default() == h);
  void *x = mi_malloc(64);
  CHECK(x != NULL && mi_heap_contains_block(h, x));
  CHECK(!mi_heap_contains_block(def, x));
  mi_free(x);
  CHECK(mi_heap_set_default(old) == h);
  CHECK(mi_heap_get_default() == def);

  SECTION("mi_heap_delete: live blocks move to the default heap and stay valid");
  mi_heap_delete(h);
  for (int i = 1; i < N; i += 2) {
    CHECKF(tu_verify(blocks[i], sizes[i], (uint64_t)i) == sizes[i], "block %d after delete", i);
    CHECKF(mi_heap_contains_block(def, blocks[i]), "block %d not in the default heap", i);
  }
  CHECK(mi_heap_check(def));
  /* Allocation goes on; freed and still-live blocks coexist. */
  void *more[64];
  for (int i = 0; i < 64; i++) more[i] = mi_malloc((size_t)i * 17 + 1);
  for (int i = 1; i < N; i += 2) mi_free(blocks[i]);
  for (int i = 0; i < 64; i++) mi_free(more[i]);
  CHECK(mi_heap_check(def));

  SECTION("mi_heap_destroy frees every block of the heap at once");
  for (int round = 0; round < 3; round++) {
    mi_heap_t *g = mi_heap_new();
    CHECK(g != NULL);
    if (!g) break;
    for (int i = 0; i < 3000; i++) {
      size_t n = (i % 100 == 0) ? 300000 : (size_t)(i % 2000) + 1;
      void *p = mi_heap_malloc(g, n);
      CHECK(p != NULL);
      memset(p, 0x77, n);
      if (i % 3 == 0) mi_free(p); /* some freed individually before the destroy */
    }
    void *hugeblk = mi_heap_malloc(g, 24 << 20);
    CHECK(hugeblk != NULL);
    mi_heap_destroy(g);
    CHECK(mi_heap_get_default() == def);
    CHECK(mi_heap_check(def));
  }
  /* A new heap made and destroyed/deleted while empty. */
  mi_heap_t *e1 = mi_heap_new();
  mi_heap_destroy(e1);
  mi_heap_t *e2 = mi_heap_new();
  mi_heap_delete(e2);
  void *after = mi_malloc(1000);
  CHECK(after != NULL);
  mi_free(after);
  CHECK(mi_heap_check(mi_heap_get_default()));
}

static void test_collect(void) {
  SECTION("mi_collect(false), mi_collect(true) keep live blocks intact");
  enum { N = 500 };
  void *ps[N];
  for (int i = 0; i < N; i++) {
    size_t n = (size_t)(i * 37 % 5000) + 1;
    if (i % 100 == 0) n = 3 << 20;
    ps[i] = mi_malloc(n);
    tu_fill(ps[i], n < 64 ? n : 64, (uint64_t)i);
  }
  for (int i = 0; i < N; i += 3) {
    mi_free(ps[i]);
    ps[i] = NULL;
  }
  mi_collect(false);
  for (int i = 0; i < N; i++)
    if (ps[i]) {
      size_t n = (size_t)(i * 37 % 5000) + 1;
      if (i % 100 == 0) n = 3 << 20;
      size_t k = n < 64 ? n : 64;
      CHECK(tu_verify(ps[i], k, (uint64_t)i) == k);
    }
  mi_collect(true);
  for (int i = 0; i < N; i++) mi_free(ps[i]);
  mi_collect(true);
  mi_heap_collect(mi_heap_get_default(), true);
  CHECK(mi_heap_check(mi_heap_get_default()));
  void *p = mi_malloc(10);
  CHECK(p != NULL);
  mi_free(p);
}

static void *thread_lifecycle(void *arg) {
  (void)arg;
  mi_thread_init();
  mi_thread_init(); /* twice is harmless */
  char *a = mi_malloc(100);
  tu_fill(a, 100, 5);
  char *big = mi_malloc(2 << 20);
  tu_fill(big, 64, 6);
  mi_thread_done();
  /* Allocation after mi_thread_done re-creates the heap. */
  char *b = mi_malloc(200);
  CHECK(b != NULL);
  tu_fill(b, 200, 7);
  CHECK(tu_verify(a, 100, 5) == 100);
  CHECK(tu_verify(big, 64, 6) == 64);
  CHECK(mi_heap_check(mi_heap_get_default()));
  mi_free(a);
  mi_free(big);
  CHECK(tu_verify(b, 200, 7) == 200);
  mi_free(b);
  mi_thread_done();
  mi_thread_done(); /* twice is harmless */
  return NULL;
}

static void test_thread_init_done(void) {
  SECTION("mi_thread_init / mi_thread_done, then allocate again (in a new thread)");
  for (int i = 0; i < 4; i++) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, thread_lifecycle, NULL) == 0);
    pthread_join(t, NULL);
  }
  SECTION("mi_thread_done on the main thread, then allocate again");
  char *keep = mi_malloc(300);
  tu_fill(keep, 300, 9);
  mi_thread_done();
  char *p = mi_malloc(300);
  CHECK(p != NULL);
  CHECK(tu_verify(keep, 300, 9) == 300);
  mi_free(keep);
  mi_free(p);
  CHECK(mi_heap_check(mi_heap_get_default()));
}

/* Last, because an allocator that reads a header at segment_of(p) without checking that p is
 * its own crashes here rather than answering false. */
static void test_contains_foreign(void) {
  SECTION("mi_heap_contains_block: false for stack, global, glibc and NULL pointers");
  int local = 0;
  char *sys = malloc(100);
  mi_heap_t *h = mi_heap_new();
  mi_heap_t *def = mi_heap_get_default();
  CHECK(!mi_heap_contains_block(def, NULL));
  CHECK(!mi_heap_contains_block(def, &local));
  CHECK(!mi_heap_contains_block(def, &global_var));
  CHECK(!mi_heap_contains_block(def, sys));
  if (h != NULL) {
    CHECK(!mi_heap_contains_block(h, &local));
    CHECK(!mi_heap_contains_block(h, sys));
    mi_heap_delete(h);
  }
  free(sys);
}

int main(void) {
  printf("%s: the API contract of shardalloc.h\n", TEST_NAME);
  mi_thread_init();
  test_version();
  test_malloc_zero();
  CHECK(mi_heap_check(mi_heap_get_default()));
  test_too_large();
  test_overflow();
  CHECK(mi_heap_check(mi_heap_get_default()));
  test_posix_memalign();
  test_bad_alignment();
  CHECK(mi_heap_check(mi_heap_get_default()));
  test_free_null();
  test_realloc_basics();
  test_expand();
  CHECK(mi_heap_check(mi_heap_get_default()));
  test_strings();
  test_usable_and_good_size();
  test_small();
  CHECK(mi_heap_check(mi_heap_get_default()));
  test_sized_free();
  test_valloc();
  CHECK(mi_heap_check(mi_heap_get_default()));
  test_heap_region();
  test_heaps();
  CHECK(mi_heap_check(mi_heap_get_default()));
  test_collect();
  test_thread_init_done();
  CHECK(mi_heap_check(mi_heap_get_default()));
  test_contains_foreign();
  return tu_finish();
}
