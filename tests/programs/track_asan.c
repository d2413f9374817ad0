/* Run by tests/track_asan.rs: built with -fsanitize=address and linked with a
 * libshardalloc.a built with SA_TRACK=asan. It calls the mi_* API directly (malloc stays
 * ASan's own). The argument picks the case:
 *   use-after-free  reads a freed block: ASan must report it
 *   overflow        writes one byte past the usable end of a block, into the next block of
 *                   its page, which is free: ASan must report it
 *   clean           every kind of allocation (small to huge, zeroed, aligned at interior
 *                   addresses, grown and shrunk, freed by other threads, a destroyed heap),
 *                   each block written and read over its whole usable size: no report, exit 0 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "shardalloc.h"

static int fail(const char *what) {
  fprintf(stderr, "track_asan: %s\n", what);
  return 1;
}

/* Writes and reads back all usable bytes of `p`: ASan checks every one of them. */
static int touch(void *p) {
  if (p == NULL) return 0;
  size_t n = mi_usable_size(p);
  memset(p, 0xA5, n);
  volatile unsigned char *b = p;
  return b[0] == 0xA5 && b[n - 1] == 0xA5;
}

static int use_after_free(void) {
  unsigned char *p = mi_malloc(64);
  if (p == NULL) return fail("no memory");
  memset(p, 7, 64);
  mi_free(p);
  volatile unsigned char *dangling = p;
  printf("read %d\n", dangling[8]); /* the misuse under test */
  return 0;
}

static int overflow(void) {
  /* the only block of its size class: the next block of the page is free */
  unsigned char *p = mi_malloc(200);
  if (p == NULL) return fail("no memory");
  size_t n = mi_usable_size(p);
  volatile unsigned char *b = p;
  b[n - 1] = 1; /* the last usable byte: allowed */
  b[n] = 1;     /* the misuse under test */
  mi_free(p);
  return 0;
}

#define HANDOVER 256
static void *handover[HANDOVER];

static void *allocate_for_main(void *arg) {
  (void)arg;
  for (size_t i = 0; i < HANDOVER; i++) {
    handover[i] = mi_malloc(16 + i * 24);
    if (!touch(handover[i])) return NULL;
  }
  return handover;
}

static int clean(void) {
  /* every size class, small to large, and a huge block */
  for (size_t size = 1; size <= ((size_t)4 << 20); size += size / 4 + 1) {
    void *p = mi_malloc(size);
    if (!touch(p)) return fail("malloc");
    mi_free(p);
  }
  void *huge = mi_zalloc((size_t)40 << 20);
  if (huge == NULL || ((unsigned char *)huge)[12345] != 0 || !touch(huge)) return fail("huge");
  mi_free(huge);
  /* blocks that stay live while others come and go around them */
  void *keep[64];
  for (size_t i = 0; i < 64; i++) {
    keep[i] = i % 2 ? mi_calloc(i + 1, 24) : mi_malloc(i * 40 + 8);
    if (!touch(keep[i])) return fail("keep");
  }
  for (size_t i = 0; i < 64; i += 2) mi_free(keep[i]);
  for (size_t i = 0; i < 64; i += 2) {
    keep[i] = mi_malloc(i * 40 + 8);
    if (!touch(keep[i])) return fail("reuse");
  }
  /* aligned, including interior pointers (alignment above a slice, and an offset) */
  size_t aligns[] = {8, 64, 4096, (size_t)1 << 17, (size_t)1 << 20};
  for (size_t i = 0; i < sizeof(aligns) / sizeof(aligns[0]); i++) {
    void *a = mi_malloc_aligned(1000, aligns[i]);
    void *z = mi_zalloc_aligned(3000, aligns[i]);
    void *o = mi_malloc_aligned_at(500, aligns[i], 24);
    if (((uintptr_t)a % aligns[i]) != 0 || !touch(a) || !touch(z) || !touch(o))
      return fail("aligned");
    mi_free(a);
    mi_free(z);
    mi_free(o);
  }
  /* realloc: in place, by copy, growing a large block in place, shrinking */
  unsigned char *r = mi_malloc(10);
  for (size_t size = 16; size <= ((size_t)3 << 20); size = size * 3 / 2) {
    r = mi_realloc(r, size);
    if (!touch(r)) return fail("realloc grow");
  }
  r = mi_realloc(r, 100);
  if (!touch(r)) return fail("realloc shrink");
  mi_free(r);
  void *zr = mi_rezalloc(NULL, 100);
  zr = mi_rezalloc(zr, 5000);
  if (zr == NULL || ((unsigned char *)zr)[4999] != 0 || !touch(zr)) return fail("rezalloc");
  mi_free(zr);
  /* blocks freed by another thread than the one that allocated them */
  pthread_t t;
  void *got = NULL;
  if (pthread_create(&t, NULL, allocate_for_main, NULL) != 0) return fail("pthread_create");
  pthread_join(t, &got);
  if (got == NULL) return fail("thread");
  for (size_t i = 0; i < HANDOVER; i++) mi_free(handover[i]);
  /* a heap destroyed with live blocks, then its memory reused */
  mi_heap_t *heap = mi_heap_new();
  for (size_t i = 0; i < 100; i++)
    if (!touch(mi_heap_malloc(heap, 32 + i * 8))) return fail("heap");
  if (!touch(mi_heap_malloc(heap, (size_t)20 << 20))) return fail("heap huge");
  mi_heap_destroy(heap);
  for (size_t i = 0; i < 100; i++) {
    void *p = mi_malloc(32 + i * 8);
    if (!touch(p)) return fail("after destroy");
    mi_free(p);
  }
  for (size_t i = 1; i < 64; i += 2) mi_free(keep[i]);
  for (size_t i = 0; i < 64; i += 2) mi_free(keep[i]);
  mi_collect(true);
  printf("clean\n");
  return 0;
}

int main(int argc, char **argv) {
  const char *which = argc > 1 ? argv[1] : "";
  if (strcmp(which, "use-after-free") == 0) return use_after_free();
  if (strcmp(which, "overflow") == 0) return overflow();
  if (strcmp(which, "clean") == 0) return clean();
  fprintf(stderr, "usage: track_asan use-after-free|overflow|clean\n");
  return 2;
}
