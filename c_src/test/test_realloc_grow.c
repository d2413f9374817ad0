/* test_realloc_grow: growth by realloc through small, medium, large and huge sizes keeps the
 * contents; a block that realloc grows past the small sizes moves into a page of its own
 * placed with free slices after it, and from there grows in place (same address) while the
 * slices after it are free; it moves when a block in use follows it; two such blocks growing
 * by turns both stay in place; shrinking stays in place (below half the block by giving
 * slices back); blocks grown within a slice (strings) lie side by side. The heap checker
 * runs after every step (and SA_DEBUG=2 builds walk the heap on every slow path). */
#define TEST_NAME "test_realloc_grow"
#include "testutil.h"

#include <pthread.h>

#include "shardalloc.h"

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)

static uint8_t pattern(size_t i, size_t seed) { return (uint8_t)(i * 131 + seed * 7 + (i >> 11)); }

static void fill(uint8_t *p, size_t from, size_t to, size_t seed) {
  for (size_t i = from; i < to; i++) p[i] = pattern(i, seed);
}

static bool intact(const uint8_t *p, size_t n, size_t seed) {
  for (size_t i = 0; i < n; i++)
    if (p[i] != pattern(i, seed)) return false;
  return true;
}

/* Grow from 1 byte to `top` by a factor of 3/2 (plus one), checking every byte at each step. */
static void grow_through_classes(size_t top, size_t seed) {
  size_t size = 1;
  uint8_t *p = mi_malloc(size);
  CHECK(p != NULL);
  fill(p, 0, size, seed);
  while (size < top) {
    size_t next = size + size / 2 + 1;
    uint8_t *q = mi_realloc(p, next);
    CHECKF(q != NULL, "growth to %zu failed", next);
    if (q == NULL) break;
    CHECKF(intact(q, size, seed), "contents lost growing %zu -> %zu", size, next);
    fill(q, size, next, seed);
    p = q;
    size = next;
    CHECK(mi_heap_check(mi_heap_get_default()));
  }
  while (size > 1) { /* and back down */
    size_t next = size / 3 + 1;
    uint8_t *q = mi_realloc(p, next);
    CHECK(q != NULL);
    CHECKF(intact(q, next, seed), "contents lost shrinking %zu -> %zu", size, next);
    p = q;
    size = next;
  }
  mi_free(p);
  CHECK(mi_heap_check(mi_heap_get_default()));
}

/* Runs in a thread of its own: its first segment has free slices only, so the placement of
 * the pages below is known. */
static void *in_place(void *arg) {
  (void)arg;
  SECTION("a growing block moves once, then grows in place into the free slices after it");
  uint8_t *p = mi_malloc(4 * KiB);
  CHECK(p != NULL);
  fill(p, 0, 4 * KiB, 1);
  p = mi_realloc(p, 24 * KiB); /* past the small sizes: into a page of its own */
  CHECK(p != NULL && intact(p, 4 * KiB, 1));
  fill(p, 4 * KiB, 24 * KiB, 1);
  uint8_t *home = p;
  size_t size = 24 * KiB;
  for (size_t next = 40 * KiB; next <= 4 * MiB; next *= 2) {
    uint8_t *q = mi_realloc(p, next);
    CHECKF(q == home, "growth %zu -> %zu moved the block (%p -> %p)", size, next, (void *)home,
           (void *)q);
    CHECKF(q != NULL && intact(q, size, 1), "contents lost growing %zu -> %zu", size, next);
    if (q == NULL) return NULL;
    fill(q, size, next, 1);
    p = q;
    size = next;
    CHECK(mi_usable_size(p) >= size);
    CHECK(mi_heap_check(mi_heap_get_default()));
  }

  SECTION("shrinking stays in place: to half the block, and below, giving slices back");
  uint8_t *q = mi_realloc(p, size / 2 + 1);
  CHECK(q == p && intact(q, size / 2 + 1, 1));
  size = size / 2 + 1;
  q = mi_realloc(p, 300 * KiB);
  CHECKF(q == p, "shrinking %zu -> %zu moved the block", size, 300 * KiB);
  CHECK(q != NULL && intact(q, 300 * KiB, 1));
  CHECK(mi_usable_size(q) < 1 * MiB);
  CHECK(mi_heap_check(mi_heap_get_default()));
  p = q;
  q = mi_realloc(p, 2 * MiB); /* the slices given back are free to grow into again */
  CHECKF(q == p, "growth after a shrink moved the block");
  CHECK(q != NULL && intact(q, 300 * KiB, 1));
  p = q;
  q = mi_realloc(p, 20 * KiB); /* down to a page of one slice */
  CHECK(q == p && intact(q, 20 * KiB, 1));
  CHECK(mi_heap_check(mi_heap_get_default()));
  mi_free(q);
  CHECK(mi_heap_check(mi_heap_get_default()));

  return NULL;
}

/* In a thread of its own, whose segment holds only what this part puts there. */
static void *neighbour_moves(void *arg) {
  (void)arg;
  SECTION("a block in use right after it makes the growing block move");
  uint8_t *p = mi_malloc(8 * KiB);
  CHECK(p != NULL);
  p = mi_realloc(p, 100 * KiB); /* a page of its own, at a 2 MiB boundary of the free run */
  CHECK(p != NULL);
  fill(p, 0, 100 * KiB, 2);
  /* grown over its 2 MiB unit and back, the page leaves huge page advice on the unit, so a
   * page of 2 MiB is placed best-fit right after it (the slices before p are too few) */
  uint8_t *q = mi_realloc(p, 2 * MiB);
  CHECK(q == p);
  q = mi_realloc(p, 100 * KiB);
  CHECK(q == p && intact(p, 100 * KiB, 2));
  size_t page_end = ((size_t)(p - (uint8_t *)0) + 100 * KiB + 64 * KiB - 1) & ~(64 * KiB - 1);
  uint8_t *neighbour = mi_malloc(2 * MiB);
  CHECK(neighbour != NULL);
  CHECKF((size_t)(neighbour - (uint8_t *)0) == page_end,
         "precondition: the neighbour %p follows the page ending at %p", (void *)neighbour,
         (void *)page_end);
  neighbour[0] = 0x5A;
  q = mi_realloc(p, 400 * KiB);
  CHECKF(q != NULL && q != p, "growth into a used neighbour stayed at %p", (void *)p);
  CHECK(q != NULL && intact(q, 100 * KiB, 2));
  CHECK(neighbour[0] == 0x5A);
  CHECK(mi_heap_check(mi_heap_get_default()));
  mi_free(neighbour);
  mi_free(q);
  return NULL;
}

/* In a thread of its own: buffers grown and freed again and again (strings, vectors built
 * per request) take the same memory each time, and a growing page starts at a 2 MiB boundary,
 * so that a block grown to megabytes covers whole huge-page units. */
static void *grown_again(void *arg) {
  (void)arg;
  SECTION("a buffer grown, shrunk and freed in a loop takes the same memory each time");
  uint8_t *first = NULL;
  size_t moved = 0;
  for (int round = 0; round < 64; round++) {
    uint8_t *p = mi_malloc(8 * KiB);
    CHECK(p != NULL);
    for (size_t size = 16 * KiB; p != NULL && size <= 512 * KiB; size *= 2) {
      p = mi_realloc(p, size);
      CHECK(p != NULL);
      if (p != NULL) p[size - 1] = (uint8_t)round;
    }
    if (p == NULL) break;
    if (round == 0) {
      first = p;
      CHECKF(((uintptr_t)p & (2 * MiB - 1)) == 0, "a growing page at %p, off a 2 MiB boundary",
             (void *)p);
    }
    moved += p != first;
    p = mi_realloc(p, 100 * KiB); /* shrunk in place, then freed */
    mi_free(p);
  }
  CHECKF(moved == 0, "%zu of 64 rounds took other memory than the first", moved);

  SECTION("an empty large page kept for reuse before the free run leaves it whole");
  uint8_t *big = mi_malloc(256 * KiB); /* freed, its page is kept (retired), not growing */
  CHECK(big != NULL);
  mi_free(big);
  uint8_t *g = mi_realloc(mi_malloc(8 * KiB), 100 * KiB);
  CHECK(g != NULL);
  /* the growing page goes to the run's first 2 MiB boundary, not to its middle (16 MiB on) */
  CHECKF(g != NULL && (size_t)(g > big ? g - big : big - g) < 4 * MiB,
         "a growing page at %p, %zu MiB from the empty page at %p", (void *)g,
         (size_t)(g > big ? g - big : big - g) >> 20, (void *)big);
  mi_free(g);
  CHECK(mi_heap_check(mi_heap_get_default()));
  return NULL;
}

/* In a thread of its own too: two blocks growing by turns both grow in place (the second
 * one's page goes to the middle of the free run that starts right after the first). */
static void *two_in_place(void *arg) {
  (void)arg;
  SECTION("two blocks growing by turns both stay in place");
  uint8_t *b[2], *home[2];
  for (int i = 0; i < 2; i++) {
    /* past a slice (one of a slice would go right after the other, as strings do) */
    b[i] = mi_realloc(mi_malloc(4 * KiB), 96 * KiB);
    CHECK(b[i] != NULL);
    fill(b[i], 0, 96 * KiB, 10 + (size_t)i);
    home[i] = b[i];
  }
  size_t size = 96 * KiB;
  for (size_t next = 192 * KiB; next <= 2 * MiB; next *= 2) {
    for (int i = 0; i < 2; i++) {
      uint8_t *q = mi_realloc(b[i], next);
      CHECKF(q == home[i], "block %d moved growing %zu -> %zu", i, size, next);
      CHECK(q != NULL && intact(q, size, 10 + (size_t)i));
      if (q == NULL) return NULL;
      fill(q, size, next, 10 + (size_t)i);
      b[i] = q;
    }
    size = next;
  }
  CHECK(mi_heap_check(mi_heap_get_default()));
  for (int i = 0; i < 2; i++) mi_free(b[i]);
  return NULL;
}

/* In a thread of its own too, for the same reason. */
static void *zero_in_place(void *arg) {
  (void)arg;
  SECTION("zeroing growth keeps the tail zero in place");
  uint8_t *p = mi_zalloc(20 * KiB);
  CHECK(p != NULL);
  p = mi_rezalloc(p, 30 * KiB);
  CHECK(p != NULL);
  memset(p, 0x11, 30 * KiB);
  uint8_t *home = p;
  uint8_t *q = mi_rezalloc(p, 500 * KiB);
  CHECK(q == home);
  bool zero_tail = q != NULL;
  for (size_t i = 30 * KiB; zero_tail && i < 500 * KiB; i++) zero_tail = q[i] == 0;
  CHECK(zero_tail && q[30 * KiB - 1] == 0x11);
  mi_free(q);
  CHECK(mi_heap_check(mi_heap_get_default()));
  return NULL;
}

/* In a thread of its own: strings grown by small appends to 16 KiB each, by turns. */
static void *strings_side_by_side(void *arg) {
  (void)arg;
  SECTION("blocks grown within a slice lie side by side, a slice each");
  enum { STRINGS = 32 };
  uint8_t *s[STRINGS], *home[STRINGS];
  for (int i = 0; i < STRINGS; i++) s[i] = mi_malloc(4 * KiB);
  size_t moved = 0;
  for (size_t size = 9 * KiB; size <= 16 * KiB; size += 512) {
    for (int i = 0; i < STRINGS; i++) {
      uint8_t *q = mi_realloc(s[i], size);
      CHECK(q != NULL);
      if (q == NULL) return NULL;
      if (size == 9 * KiB) home[i] = q; /* past the small sizes: a page of one slice */
      moved += q != home[i];
      s[i] = q;
      s[i][size - 1] = (uint8_t)i;
    }
  }
  CHECKF(moved == 0, "%zu growths within a slice moved the string", moved);
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  for (int i = 0; i < STRINGS; i++) {
    if ((uintptr_t)s[i] < lo) lo = (uintptr_t)s[i];
    if ((uintptr_t)s[i] > hi) hi = (uintptr_t)s[i];
  }
  /* spread like blocks that grow out of their slice, they took the whole segment (32 MiB) */
  CHECKF(hi - lo < 2 * STRINGS * 64 * KiB, "%d strings of 16 KiB spread over %zu KiB", STRINGS,
         (size_t)(hi - lo) >> 10);
  CHECK(mi_heap_check(mi_heap_get_default()));
  for (int i = 0; i < STRINGS; i++) mi_free(s[i]);
  return NULL;
}

int main(void) {
  printf("%s: growth by realloc\n", TEST_NAME);
  void *(*parts[])(void *) = {in_place,      neighbour_moves, grown_again,
                              two_in_place,  zero_in_place,   strings_side_by_side};
  for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, parts[i], NULL) == 0);
    CHECK(pthread_join(t, NULL) == 0);
  }
  SECTION("contents kept from 1 byte to 40 MiB (small, medium, large, huge) and back");
  grow_through_classes(quick() ? 20 * MiB : 40 * MiB, 3);
  SECTION("the same with another block of each class in use");
  void *others[4] = {mi_malloc(100), mi_malloc(20 * KiB), mi_malloc(300 * KiB),
                     mi_malloc(20 * MiB)};
  grow_through_classes(quick() ? 20 * MiB : 40 * MiB, 4);
  for (int i = 0; i < 4; i++) mi_free(others[i]);
  CHECK(mi_heap_check(mi_heap_get_default()));
  return tu_finish();
}
