/* test_sizeclass: the size classes, seen through the public API (mi_good_size, mi_malloc,
 * mi_usable_size). The design's promises: monotonic, every request fits its class, spacing of
 * at most 25% (so bounded waste), 16-byte alignment from 16 bytes up (8 below), and a fresh
 * block's usable size is exactly mi_good_size of the request, except in a new thread's first
 * pages, which round small sizes up to a power of two. */
#define TEST_NAME "test_sizeclass"
#include "testutil.h"

#include <pthread.h>

#include "shardalloc.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

/* The next size to look at: every size while small, then sampled, and always both sides of
 * every power of two (where class boundaries cluster). */
static size_t next_size(size_t n, size_t dense_limit) {
  if (n < dense_limit) return n + 1;
  size_t next = n + (n < MiB ? 8 : 1024);
  size_t pow = (size_t)1 << (64 - __builtin_clzll((unsigned long long)n)); /* > n */
  if (pow - 1 > n && pow - 1 < next) next = pow - 1;
  if (pow < next) next = pow;
  if ((n & (n - 1)) == 0) next = n + 1;
  return next;
}

static void test_good_size(void) {
  const size_t limit = 20 * MiB + 1000;
  SECTION("mi_good_size over 1 .. 20 MiB (dense to 64 KiB, then sampled): monotonic, fits, "
          "bounded waste");
  size_t prev = 0, checked = 0, classes = 0, last_class = 0;
  double max_ratio = 1.0;
  size_t max_ratio_at = 0;
  long bad_mono = 0, bad_fit = 0, bad_waste = 0, bad_spacing = 0;
  for (size_t n = 1; n <= limit; n = next_size(n, 64 * KiB)) {
    size_t g = mi_good_size(n);
    checked++;
    if (g < prev) {
      if (bad_mono++ < 5) CHECKF(g >= prev, "good_size(%zu) = %zu < %zu (previous)", n, g, prev);
    }
    if (g < n) {
      if (bad_fit++ < 5) CHECKF(g >= n, "good_size(%zu) = %zu", n, g);
    }
    /* Waste: at most a quarter of the request, plus 16 bytes of slack for the exact classes
     * of the smallest sizes. */
    if (n >= 16 && g > n + n / 4 + 16) {
      if (bad_waste++ < 5) CHECKF(g <= n + n / 4 + 16, "good_size(%zu) = %zu wastes too much", n, g);
    }
    if (n >= 64) {
      double r = (double)g / (double)n;
      if (r > max_ratio) {
        max_ratio = r;
        max_ratio_at = n;
      }
    }
    if (g != last_class) {
      /* A new class: its distance from the previous one is at most 25% (beyond 64 bytes). */
      if (last_class >= 64 && g - last_class > last_class / 4) {
        if (bad_spacing++ < 5)
          CHECKF(g - last_class <= last_class / 4, "classes %zu -> %zu: spacing over 25%%",
                 last_class, g);
      }
      classes++;
      last_class = g;
    }
    prev = g;
  }
  CHECK(bad_mono == 0);
  CHECK(bad_fit == 0);
  CHECK(bad_waste == 0);
  CHECK(bad_spacing == 0);
  printf("    %zu sizes checked, %zu distinct good sizes, max good_size(n)/n for n >= 64: %.4f "
         "(at n = %zu)\n",
         checked, classes, max_ratio, max_ratio_at);
  CHECKF(max_ratio <= 1.25 + 1e-9, "max ratio %.4f at %zu exceeds the 25%% spacing", max_ratio,
         max_ratio_at);
}

static void test_alignment(void) {
  SECTION("every block is 16-byte aligned from 16 bytes up (8-byte below), several per size");
  enum { PER_SIZE = 3 };
  long bad = 0;
  for (size_t n = 0; n <= 20000; n = next_size(n, 4096)) {
    void *ps[PER_SIZE];
    size_t align = n >= 16 ? 16 : 8;
    for (int k = 0; k < PER_SIZE; k++) {
      ps[k] = mi_malloc(n);
      if (ps[k] == NULL || !tu_is_aligned(ps[k], align)) {
        if (bad++ < 5) CHECKF(ps[k] != NULL && tu_is_aligned(ps[k], align), "malloc(%zu) = %p not %zu-byte aligned", n, ps[k], align);
      }
    }
    for (int k = 0; k < PER_SIZE; k++) mi_free(ps[k]);
  }
  for (size_t n = 20000; n <= 6 * MiB; n += n / 7 + 3) {
    void *p = mi_malloc(n);
    if (p == NULL || !tu_is_aligned(p, 16)) {
      if (bad++ < 5) CHECKF(p != NULL && tu_is_aligned(p, 16), "malloc(%zu) = %p not 16-byte aligned", n, p);
    }
    mi_free(p);
  }
  CHECK(bad == 0);
  /* The same from a block that is not the first of its page: allocate a few hundred of one
   * small size and look at every one of them. */
  for (size_t n = 16; n <= 512; n += 16) {
    enum { M = 300 };
    void *ps[M];
    int misaligned = 0;
    for (int i = 0; i < M; i++) {
      ps[i] = mi_malloc(n);
      if (!tu_is_aligned(ps[i], 16)) misaligned++;
    }
    CHECKF(misaligned == 0, "%d of %d blocks of size %zu not 16-byte aligned", misaligned, M, n);
    for (int i = 0; i < M; i++) mi_free(ps[i]);
  }
}

static void test_usable_is_good(void) {
  size_t top = quick() ? 1 * MiB : 4 * MiB;
  SECTION("mi_usable_size(mi_malloc(n)) == mi_good_size(n) for n up to %zu MiB", top / MiB);
  long bad = 0;
  size_t checked = 0;
  for (size_t n = 0; n <= top; n = n < 8192 ? n + 1 : n + n / 64 + 1) {
    void *p = mi_malloc(n);
    size_t u = mi_usable_size(p), g = mi_good_size(n);
    checked++;
    if (p == NULL || u != g || u < n) {
      if (bad++ < 5) CHECKF(p != NULL && u == g && u >= n, "malloc(%zu): usable %zu, good_size %zu", n, u, g);
    }
    mi_free(p);
  }
  CHECK(bad == 0);
  printf("    %zu sizes checked\n", checked);
}

/* A new thread's first pages serve small sizes from the power-of-two classes from 64 bytes up
 * (a thread that makes a few blocks of many sizes touches fewer OS pages); once its heap holds
 * 8 pages, every class serves its own sizes. Checked on a thread of its own, from its first
 * allocation. */
static void *young_thread(void *arg) {
  (void)arg;
  static const size_t young[][2] = {{8, 64},    {20, 64},   {40, 64},   {100, 128},
                                    {200, 256}, {300, 512}, {600, 1024}};
  enum { YOUNG = sizeof(young) / sizeof(young[0]), MORE = 8 };
  void *kept[YOUNG + MORE];
  for (size_t i = 0; i < YOUNG; i++) {
    kept[i] = mi_malloc(young[i][0]);
    CHECKF(mi_usable_size(kept[i]) == young[i][1], "a new thread's malloc(%zu): usable %zu, not %zu",
           young[i][0], mi_usable_size(kept[i]), young[i][1]);
  }
  for (size_t i = 0; i < MORE; i++) kept[YOUNG + i] = mi_malloc(1280 + 256 * i); /* 8 pages more */
  for (size_t i = 0; i < YOUNG; i++) {
    void *p = mi_malloc(young[i][0]);
    CHECKF(mi_usable_size(p) == mi_good_size(young[i][0]), "after 13 pages, malloc(%zu): usable "
           "%zu, not %zu", young[i][0], mi_usable_size(p), mi_good_size(young[i][0]));
    mi_free(p);
  }
  CHECK(mi_heap_check(mi_heap_get_default()));
  for (size_t i = 0; i < YOUNG + MORE; i++) mi_free(kept[i]);
  return NULL;
}

/* A young class that needs a second page ends the heap's youth: the thread is not a small one
 * (a page of 64-byte blocks holding 8-byte requests is where that stops). */
static void *young_thread_outgrown(void *arg) {
  (void)arg;
  enum { N = 1200 }; /* more than a page of 128-byte blocks (512) */
  static void *kept[N];
  size_t young = 0, grown = 0;
  for (size_t i = 0; i < N; i++) {
    kept[i] = mi_malloc(100);
    size_t u = mi_usable_size(kept[i]);
    if (u == 128 && grown == 0) young++;
    else if (u == mi_good_size(100)) grown++;
  }
  CHECKF(young >= 400 && young <= 512 && grown == N - young, "a new thread's 1200 blocks of 100 "
         "bytes: %zu of 128, then %zu of %zu", young, grown, mi_good_size(100));
  CHECK(mi_heap_check(mi_heap_get_default()));
  for (size_t i = 0; i < N; i++) mi_free(kept[i]);
  return NULL;
}

static void test_young_thread(void) {
  SECTION("a new thread: sizes up to 1 KiB round to a power of two (at least 64) for its first "
          "8 pages");
  pthread_t t;
  CHECK(pthread_create(&t, NULL, young_thread, NULL) == 0);
  CHECK(pthread_join(t, NULL) == 0);
  SECTION("a new thread grows up when a young size class needs a second page");
  CHECK(pthread_create(&t, NULL, young_thread_outgrown, NULL) == 0);
  CHECK(pthread_join(t, NULL) == 0);
}

int main(void) {
  printf("%s: size-class properties through the public API\n", TEST_NAME);
  test_good_size();
  test_alignment();
  test_usable_is_good();
  test_young_thread();
  CHECK(mi_heap_check(mi_heap_get_default()));
  return tu_finish();
}
