/* test_zero: every zeroing entry point returns zeroed memory, also when it reuses memory that
 * earlier blocks dirtied. For each size range (small, medium, large, huge) the test mallocs a
 * batch of blocks, fills them with 0xAA, frees them, then asks each zeroing variant for the
 * same sizes and checks every byte it is owed. */
#define TEST_NAME "test_zero"
#include "testutil.h"

#include "shardalloc.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

typedef enum variant_e {
  V_ZALLOC,
  V_CALLOC,
  V_ZALLOC_ALIGNED,
  V_CALLOC_ALIGNED,
  V_REZALLOC_NULL, /* rezalloc(NULL, n) */
  V_REZALLOC_GROW, /* rezalloc(zalloc(small), n) */
  V_RECALLOC_GROW,
  V_REZALLOC_ALIGNED_GROW,
  V_RECALLOC_ALIGNED_GROW,
  V_HEAP_ZALLOC,
  V_HEAP_CALLOC,
  V_ZALLOC_SMALL,
  V_COUNT
} variant_t;

static const char *variant_name[V_COUNT] = {
    "mi_zalloc",         "mi_calloc",          "mi_zalloc_aligned",
    "mi_calloc_aligned", "mi_rezalloc(NULL)",  "mi_rezalloc(grow)",
    "mi_recalloc(grow)", "mi_rezalloc_aligned(grow)", "mi_recalloc_aligned(grow)",
    "mi_heap_zalloc",    "mi_heap_calloc",     "mi_zalloc_small",
};

/* A zeroed block of `n` bytes through variant `v` (for the grow variants: a small zeroed block
 * first, grown to n). `heap` is used by the heap variants. */
static void *zero_alloc(variant_t v, size_t n, mi_heap_t *heap) {
  void *p;
  switch (v) {
  case V_ZALLOC: return mi_zalloc(n);
  case V_CALLOC: return (n % 8 == 0) ? mi_calloc(n / 8, 8) : mi_calloc(n, 1);
  case V_ZALLOC_ALIGNED: return mi_zalloc_aligned(n, n >= 4096 ? 4096 : 32);
  case V_CALLOC_ALIGNED: return (n % 2 == 0) ? mi_calloc_aligned(2, n / 2, 64) : mi_calloc_aligned(1, n, 64);
  case V_REZALLOC_NULL: return mi_rezalloc(NULL, n);
  case V_REZALLOC_GROW:
    p = mi_zalloc(n / 3 + 1);
    return mi_rezalloc(p, n);
  case V_RECALLOC_GROW:
    p = mi_calloc(1, n / 3 + 1);
    return mi_recalloc(p, n, 1);
  case V_REZALLOC_ALIGNED_GROW:
    p = mi_zalloc_aligned(n / 3 + 1, 128);
    return mi_rezalloc_aligned(p, n, 128);
  case V_RECALLOC_ALIGNED_GROW:
    p = mi_calloc_aligned(1, n / 3 + 1, 128);
    return mi_recalloc_aligned(p, 1, n, 128);
  case V_HEAP_ZALLOC: return mi_heap_zalloc(heap, n);
  case V_HEAP_CALLOC: return mi_heap_calloc(heap, 1, n);
  case V_ZALLOC_SMALL: return n <= MI_SMALL_SIZE_MAX ? mi_zalloc_small(n) : NULL;
  default: return NULL;
  }
}

/* Fill `count` blocks of size n with 0xAA (all their usable bytes) and free them, so the next
 * allocations of that size come from dirty memory. */
static void dirty(size_t n, size_t count, mi_heap_t *heap) {
  void **ps = malloc(count * sizeof(void *));
  for (size_t i = 0; i < count; i++) {
    ps[i] = heap ? mi_heap_malloc(heap, n) : mi_malloc(n);
    if (ps[i]) memset(ps[i], 0xAA, mi_usable_size(ps[i]));
  }
  for (size_t i = 0; i < count; i++) mi_free(ps[i]);
  free(ps);
}

static long checked_blocks, checked_bytes;

static void check_variant(variant_t v, size_t n, size_t count, mi_heap_t *heap) {
  if (v == V_ZALLOC_SMALL && n > MI_SMALL_SIZE_MAX) return;
  dirty(n, count, heap);
  if (v == V_REZALLOC_GROW || v == V_RECALLOC_GROW || v == V_REZALLOC_ALIGNED_GROW ||
      v == V_RECALLOC_ALIGNED_GROW)
    dirty(n / 3 + 1, count, heap);
  void **ps = malloc(count * sizeof(void *));
  int failed = 0;
  for (size_t i = 0; i < count; i++) {
    uint8_t *p = zero_alloc(v, n, heap);
    ps[i] = p;
    CHECKF(p != NULL, "%s(%zu) returned NULL", variant_name[v], n);
    if (p == NULL) continue;
    size_t nz = tu_first_nonzero(p, n);
    if (nz != n && failed++ < 3)
      CHECKF(nz == n, "%s(%zu): byte %zu is 0x%02x, not zero (block %zu of %zu, %p)",
             variant_name[v], n, nz, p[nz], i, count, (void *)p);
    checked_blocks++;
    checked_bytes += (long)n;
    /* Dirty it again before it is freed: the next variant reuses it. */
    memset(p, 0xAA, mi_usable_size(p));
  }
  CHECKF(failed == 0, "%s(%zu): %d of %zu blocks not zeroed", variant_name[v], n, failed, count);
  for (size_t i = 0; i < count; i++) mi_free(ps[i]);
  free(ps);
}

int main(void) {
  printf("%s: zeroing of every zalloc/calloc variant, on fresh and on reused dirty memory\n",
         TEST_NAME);
  double t0 = now_s();
  bool q = quick();
  mi_heap_t *heap = mi_heap_new();
  CHECK(heap != NULL);
  if (heap == NULL) return tu_finish();

  struct {
    const char *range;
    size_t sizes[8];
    size_t count;
  } ranges[] = {
      {"small", {1, 8, 16, 24, 100, 128, 1000, 1024}, 300},
      {"small/medium", {1500, 4096, 5000, 8192, 0}, 64},
      {"medium", {10 * KiB, 20 * KiB, 40000, 64 * KiB, 0}, q ? 8 : 24},
      {"large", {100 * KiB, 700 * KiB, 1 * MiB, q ? 0 : 3 * MiB, 0}, q ? 2 : 4},
      {"huge", {20 * MiB, q ? 0 : 40 * MiB, 0}, q ? 1 : 2},
  };
  for (size_t r = 0; r < sizeof ranges / sizeof ranges[0]; r++) {
    long before = tu_failures();
    for (size_t s = 0; s < 8 && ranges[r].sizes[s] != 0; s++) {
      size_t n = ranges[r].sizes[s];
      /* The first pass of a size also sees fresh memory (never used before). */
      for (int v = 0; v < V_COUNT; v++) {
        bool heapv = (v == V_HEAP_ZALLOC || v == V_HEAP_CALLOC);
        check_variant((variant_t)v, n, ranges[r].count, heapv ? heap : NULL);
      }
    }
    SECTION("%-12s sizes, %zu blocks per size and variant, %d variants: %s", ranges[r].range,
            ranges[r].count, V_COUNT, tu_failures() == before ? "all zero" : "FAILURES");
  }

  SECTION("zeroed blocks right after a cross-size mix of dirty frees");
  for (int round = 0; round < 3; round++) {
    enum { N = 2000 };
    void **ps = malloc(N * sizeof(void *));
    tu_rng_t rng = {(uint64_t)round + 1};
    for (int i = 0; i < N; i++) {
      size_t n = tu_below(&rng, 3000) + 1;
      ps[i] = mi_malloc(n);
      memset(ps[i], 0xAA, mi_usable_size(ps[i]));
    }
    for (int i = 0; i < N; i += 2) mi_free(ps[i]);
    for (int i = 0; i < N; i += 2) {
      size_t n = tu_below(&rng, 3000) + 1;
      ps[i] = (i % 4 == 0) ? mi_zalloc(n) : mi_calloc(1, n);
      CHECKF(tu_first_nonzero(ps[i], n) == n, "zeroed block of %zu bytes is dirty", n);
    }
    for (int i = 0; i < N; i++) mi_free(ps[i]);
    free(ps);
  }

  mi_heap_delete(heap);
  CHECK(mi_heap_check(mi_heap_get_default()));
  printf("    %ld blocks, %.1f MiB checked in %.2f s\n", checked_blocks,
         (double)checked_bytes / (double)MiB, now_s() - t0);
  return tu_finish();
}
