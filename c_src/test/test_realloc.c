/* test_realloc: grow and shrink chains from 1 byte to 32 MiB and back with several step
 * factors and with +1/-1 steps through the small sizes, verifying the content at every step;
 * what mi_realloc(p, 0) does; and that mi_rezalloc / mi_recalloc zero what they add. */
#define TEST_NAME "test_realloc"
#include "testutil.h"

#include "shardalloc.h"

#define MiB ((size_t)1 << 20)

/* Reference content: block content at offset i must equal ref[i] (the prefix survives every
 * resize, so one reference serves a whole chain). */
static uint8_t *ref;
static size_t ref_size;

static void fill_ref(uint8_t *p, size_t from, size_t to) { memcpy(p + from, ref + from, to - from); }

static size_t first_diff(const uint8_t *p, size_t n) {
  if (memcmp(p, ref, n) == 0) return n;
  for (size_t i = 0; i < n; i++)
    if (p[i] != ref[i]) return i;
  return n;
}

/* Resize one block from 1 byte up to `top` by `factor` (as a fraction num/den), then back
 * down. At every step: the common prefix is intact, usable size >= the new size, alignment
 * holds; then the block is filled to its new size. */
static void chain(size_t top, size_t num, size_t den, size_t *steps_out) {
  uint8_t *p = mi_realloc(NULL, 1);
  size_t cur = 1, steps = 0;
  CHECK(p != NULL);
  if (p == NULL) return;
  fill_ref(p, 0, 1);
  int failures_before = (int)tu_failures();
  for (int dir = 0; dir < 2; dir++) {
    for (;;) {
      size_t next;
      if (dir == 0) {
        next = cur * num / den;
        if (next <= cur) next = cur + 1;
        if (next > top) break;
      } else {
        next = cur * den / num;
        if (next >= cur) next = cur - 1;
        if (next < 1) break;
      }
      uint8_t *q = mi_realloc(p, next);
      CHECKF(q != NULL, "realloc(%zu -> %zu) returned NULL", cur, next);
      if (q == NULL) break;
      size_t keep = cur < next ? cur : next;
      size_t bad = first_diff(q, keep);
      CHECKF(bad == keep, "realloc(%zu -> %zu): byte %zu of the kept prefix changed", cur, next,
             bad);
      CHECKF(mi_usable_size(q) >= next, "realloc(%zu -> %zu): usable %zu", cur, next,
             mi_usable_size(q));
      CHECKF(tu_is_aligned(q, next >= 16 ? 16 : 8), "realloc(%zu -> %zu) = %p misaligned", cur,
             next, (void *)q);
      if (next > cur) fill_ref(q, cur, next);
      p = q;
      cur = next;
      steps++;
      if ((int)tu_failures() > failures_before + 10) break; /* one broken chain is enough */
    }
  }
  mi_free(p);
  *steps_out = steps;
}

/* +1 / -1 steps through the small and medium sizes, many blocks live at once so the resized
 * block's neighbours are checked too. */
static void small_steps(size_t top) {
  enum { LIVE = 16 };
  uint8_t *blocks[LIVE];
  size_t sizes[LIVE];
  for (int i = 0; i < LIVE; i++) {
    sizes[i] = 1;
    blocks[i] = mi_malloc(1);
    fill_ref(blocks[i], 0, 1);
  }
  for (size_t round = 0; round < 2 * top; round++) {
    for (int i = 0; i < LIVE; i++) {
      size_t cur = sizes[i];
      size_t next = round < top ? cur + 1 : (cur > 1 ? cur - 1 : 1);
      uint8_t *q = mi_realloc(blocks[i], next);
      CHECKF(q != NULL, "realloc(%zu -> %zu)", cur, next);
      if (q == NULL) continue;
      size_t keep = cur < next ? cur : next;
      size_t d = first_diff(q, keep);
      if (d != keep) CHECKF(d == keep, "realloc(%zu -> %zu) lost the prefix at %zu", cur, next, d);
      if (next > cur) fill_ref(q, cur, next);
      blocks[i] = q;
      sizes[i] = next;
    }
  }
  for (int i = 0; i < LIVE; i++) {
    CHECK(first_diff(blocks[i], sizes[i]) == sizes[i]);
    mi_free(blocks[i]);
  }
}

static void test_realloc_zero(void) {
  SECTION("mi_realloc(p, 0): returns a valid minimal block (not NULL), p is released");
  for (size_t n = 1; n <= (size_t)4 << 20; n *= 4) {
    void *p = mi_malloc(n);
    memset(p, 1, n);
    void *q = mi_realloc(p, 0);
    CHECKF(q != NULL, "realloc(malloc(%zu), 0) returned NULL", n);
    CHECK(mi_usable_size(q) < 4096 || q == p); /* small, unless resized in place */
    mi_free(q);
  }
  void *q = mi_realloc(NULL, 0);
  CHECK(q != NULL);
  mi_free(q);
  void *r = mi_malloc(100);
  r = mi_realloc(r, 0);
  CHECK(r != NULL);
  r = mi_realloc(r, 50); /* the minimal block resizes like any other */
  CHECK(r != NULL && mi_usable_size(r) >= 50);
  mi_free(r);
}

/* Grow a zeroed block step by step; everything beyond the previous size must read as zero.
 * Only grows: the contract of mi_rezalloc is about growth of a block whose bytes past its
 * size were never written, which is what this chain keeps true. */
static void zero_chain(int use_recalloc, size_t start, size_t top, size_t num, size_t den,
                       size_t align) {
  size_t cur = start;
  uint8_t *p;
  if (align)
    p = mi_zalloc_aligned(cur, align);
  else
    p = use_recalloc ? mi_calloc(1, cur) : mi_zalloc(cur);
  CHECK(p != NULL);
  if (p == NULL) return;
  CHECK(tu_first_nonzero(p, cur) == cur);
  fill_ref(p, 0, cur);
  while (cur < top) {
    size_t next = cur * num / den;
    if (next <= cur) next = cur + 1 + cur / 64;
    if (next > top) next = top;
    uint8_t *q;
    if (align)
      q = use_recalloc ? mi_recalloc_aligned(p, 1, next, align) : mi_rezalloc_aligned(p, next, align);
    else if (use_recalloc)
      q = (next % 4 == 0) ? mi_recalloc(p, 4, next / 4) : mi_recalloc(p, next, 1);
    else
      q = mi_rezalloc(p, next);
    CHECKF(q != NULL, "%s(%zu -> %zu)", use_recalloc ? "recalloc" : "rezalloc", cur, next);
    if (q == NULL) break;
    if (align) CHECK(tu_is_aligned(q, align));
    CHECKF(first_diff(q, cur) == cur, "%s(%zu -> %zu, align %zu) lost the prefix",
           use_recalloc ? "recalloc" : "rezalloc", cur, next, align);
    size_t nz = tu_first_nonzero(q + cur, next - cur);
    CHECKF(nz == next - cur, "%s(%zu -> %zu, align %zu): byte %zu (new part) is 0x%02x, not zero",
           use_recalloc ? "recalloc" : "rezalloc", cur, next, align, cur + nz,
           nz < next - cur ? q[cur + nz] : 0);
    fill_ref(q, cur, next);
    p = q;
    cur = next;
  }
  mi_free(p);
}

static void test_zero_growth(size_t top) {
  SECTION("mi_rezalloc / mi_recalloc (and _aligned) growth is zero beyond the old size");
  const size_t factors[][2] = {{1, 1}, {9, 8}, {3, 2}, {2, 1}, {5, 1}};
  for (int rc = 0; rc < 2; rc++) {
    for (size_t f = 0; f < sizeof factors / sizeof factors[0]; f++) {
      size_t t = factors[f][0] == 1 ? 20000 : top; /* +1 (and +n/64) steps: small range */
      zero_chain(rc, 1, t, factors[f][0], factors[f][1], 0);
      zero_chain(rc, 3, t, factors[f][0], factors[f][1], 0);
      zero_chain(rc, 1, t < ((size_t)1 << 20) ? t : ((size_t)1 << 20), factors[f][0],
                 factors[f][1], 64);
      zero_chain(rc, 100, t < ((size_t)1 << 20) ? t : ((size_t)1 << 20), factors[f][0],
                 factors[f][1], 4096);
    }
  }
  /* Dirty the allocator first, so grown blocks come from reused memory, then grow again. */
  for (int round = 0; round < 2; round++) {
    void *dirty[200];
    for (int i = 0; i < 200; i++) {
      size_t n = (size_t)(i * 97 % 30000) + 1;
      dirty[i] = mi_malloc(n);
      memset(dirty[i], 0xdd, mi_usable_size(dirty[i]));
    }
    for (int i = 0; i < 200; i++) mi_free(dirty[i]);
    zero_chain(round, 1, 40000, 5, 4, 0);
    zero_chain(round, 1, 40000, 1, 1, 0);
  }
}

int main(void) {
  printf("%s: realloc chains with content checks, realloc to 0, zeroing reallocs\n", TEST_NAME);
  double t0 = now_s();
  size_t top = quick() ? 4 * MiB : 32 * MiB;
  ref_size = top + 4096;
  ref = malloc(ref_size);
  tu_fill(ref, ref_size, 0xfeedULL);

  const size_t factors[][2] = {{11, 10}, {3, 2}, {2, 1}, {4, 1}, {17, 3}};
  for (size_t f = 0; f < sizeof factors / sizeof factors[0]; f++) {
    size_t steps = 0;
    chain(top, factors[f][0], factors[f][1], &steps);
    SECTION("chain 1 B -> %zu MiB -> 1 B by x%zu/%zu: %zu resizes", top / MiB, factors[f][0],
            factors[f][1], steps);
  }
  size_t small_top = quick() ? 1500 : 5000;
  small_steps(small_top);
  SECTION("+1 steps 1 -> %zu and -1 steps back, 16 blocks interleaved", small_top);

  /* A chain through a thread's other heap. */
  mi_heap_t *h = mi_heap_new();
  CHECK(h != NULL);
  if (h != NULL) {
    uint8_t *p = mi_heap_malloc(h, 10);
    fill_ref(p, 0, 10);
    size_t cur = 10;
    for (size_t next = 17; next < 3 * MiB; next = next * 3 + 1) {
      uint8_t *q = mi_heap_realloc(h, p, next);
      CHECK(q != NULL && first_diff(q, cur) == cur);
      CHECK(mi_heap_contains_block(h, q));
      fill_ref(q, cur, next);
      p = q;
      cur = next;
    }
    mi_free(p);
    mi_heap_delete(h);
    SECTION("mi_heap_realloc chain 10 B -> 3 MiB in a second heap");
  }

  test_realloc_zero();
  test_zero_growth(quick() ? MiB : 8 * MiB);
  CHECK(mi_heap_check(mi_heap_get_default()));
  free(ref);
  printf("    %.2f s\n", now_s() - t0);
  return tu_finish();
}
