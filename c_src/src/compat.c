/* shardalloc: the rest of mimalloc's API, as thin wrappers: heap variants of every entry
 * point, offset-aligned (`_at`) variants, other platforms' names, realpath. Nothing here is
 * on a fast path; each function reaches the same helpers as its counterpart in alloc.c. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "internal.h"

/* ---- Helpers --------------------------------------------------------------------------------- */
static bool mul_checked(size_t count, size_t size, size_t *total) {
  if (!sa_mul_overflow(count, size, total)) return true;
  errno = ENOMEM;
  return false;
}

/* Reallocation keeping `p + offset` aligned. Offset 0 is alloc.c's aligned realloc (which can
 * resize in place); otherwise: in place when the block fits and is aligned, else move. */
static void *heap_realloc_aligned_at(mi_heap_t *heap, void *p, size_t newsize, size_t alignment,
                                     size_t offset, bool zero) {
  heap_t *instance = sa_heap_instance(heap);
  if (offset == 0) return _sa_heap_realloc_aligned(instance, p, newsize, alignment, zero);
  if (p == NULL) return _sa_heap_malloc_aligned_at(instance, newsize, alignment, offset, zero);
  size_t usable = mi_usable_size(p);
  if (usable == 0) { /* not a live block of ours */
    errno = EINVAL;
    return NULL;
  }
  if (newsize <= usable && newsize >= usable / 2 && sa_is_power_of_two(alignment) &&
      (((uintptr_t)p + offset) & (alignment - 1)) == 0) {
    if (zero) memset((uint8_t *)p + newsize, 0, usable - newsize);
    return p;
  }
  void *q = _sa_heap_malloc_aligned_at(instance, newsize, alignment, offset, zero);
  if (q == NULL) return NULL;
  memcpy(q, p, usable < newsize ? usable : newsize);
  mi_free(p);
  return q;
}

static char *heap_strndup(mi_heap_t *heap, const char *s, size_t n) {
  if (s == NULL) return NULL;
  size_t len = strnlen(s, n);
  char *t = mi_heap_malloc(heap, len + 1);
  if (t != NULL) {
    memcpy(t, s, len);
    t[len] = 0;
  }
  return t;
}

/* ---- Other names of existing functions -------------------------------------------------------- */
size_t mi_malloc_size(const void *p) { return mi_usable_size(p); }
size_t mi_malloc_good_size(size_t size) { return mi_good_size(size); }
void *mi__expand(void *p, size_t newsize) { return mi_expand(p, newsize); }
bool mi_check_owned(const void *p) { return mi_heap_check_owned(mi_heap_get_default(), p); }

void mi_cfree(void *p) {
  if (mi_is_in_heap_region(p)) mi_free(p);
}

char *mi_realpath(const char *path, char *resolved) {
  return mi_heap_realpath(mi_heap_get_default(), path, resolved);
}

/* ---- Offset-aligned allocation (default heap) ------------------------------------------------- */
void *mi_zalloc_aligned_at(size_t size, size_t alignment, size_t offset) {
  return mi_heap_zalloc_aligned_at(mi_heap_get_default(), size, alignment, offset);
}
void *mi_calloc_aligned_at(size_t count, size_t size, size_t alignment, size_t offset) {
  return mi_heap_calloc_aligned_at(mi_heap_get_default(), count, size, alignment, offset);
}
void *mi_realloc_aligned_at(void *p, size_t newsize, size_t alignment, size_t offset) {
  return mi_heap_realloc_aligned_at(mi_heap_get_default(), p, newsize, alignment, offset);
}
void *mi_rezalloc_aligned_at(void *p, size_t newsize, size_t alignment, size_t offset) {
  return mi_heap_rezalloc_aligned_at(mi_heap_get_default(), p, newsize, alignment, offset);
}
void *mi_recalloc_aligned_at(void *p, size_t count, size_t size, size_t alignment,
                             size_t offset) {
  return mi_heap_recalloc_aligned_at(mi_heap_get_default(), p, count, size, alignment, offset);
}
void *mi_aligned_recalloc(void *p, size_t count, size_t size, size_t alignment) {
  return mi_recalloc_aligned(p, count, size, alignment);
}
void *mi_aligned_offset_recalloc(void *p, size_t count, size_t size, size_t alignment,
                                 size_t offset) {
  return mi_recalloc_aligned_at(p, count, size, alignment, offset);
}

/* ---- Heap variants ---------------------------------------------------------------------------- */
void *mi_heap_malloc_small(mi_heap_t *heap, size_t size) {
  sa_assert(size <= MI_SMALL_SIZE_MAX);
  return mi_heap_malloc(heap, size);
}

void *mi_heap_mallocn(mi_heap_t *heap, size_t count, size_t size) {
  size_t total;
  return mul_checked(count, size, &total) ? mi_heap_malloc(heap, total) : NULL;
}

void *mi_heap_reallocn(mi_heap_t *heap, void *p, size_t count, size_t size) {
  size_t total;
  return mul_checked(count, size, &total) ? mi_heap_realloc(heap, p, total) : NULL;
}

void *mi_heap_reallocf(mi_heap_t *heap, void *p, size_t newsize) {
  void *q = mi_heap_realloc(heap, p, newsize);
  if (q == NULL) mi_free(p);
  return q;
}

char *mi_heap_strdup(mi_heap_t *heap, const char *s) {
  return s == NULL ? NULL : heap_strndup(heap, s, strlen(s));
}
char *mi_heap_strndup(mi_heap_t *heap, const char *s, size_t n) { return heap_strndup(heap, s, n); }

/* realpath(3) resolves into a buffer of its own (libc malloc when `resolved` is NULL, which
 * may not be ours): resolve into a stack buffer, then copy into `heap`. */
char *mi_heap_realpath(mi_heap_t *heap, const char *path, char *resolved) {
  if (resolved != NULL) return realpath(path, resolved);
  char buf[PATH_MAX];
  if (realpath(path, buf) == NULL) return NULL;
  return mi_heap_strdup(heap, buf);
}

void *mi_heap_malloc_aligned_at(mi_heap_t *heap, size_t size, size_t alignment, size_t offset) {
  return _sa_heap_malloc_aligned_at(sa_heap_instance(heap), size, alignment, offset, false);
}
void *mi_heap_zalloc_aligned(mi_heap_t *heap, size_t size, size_t alignment) {
  return _sa_heap_malloc_aligned_at(sa_heap_instance(heap), size, alignment, 0, true);
}
void *mi_heap_zalloc_aligned_at(mi_heap_t *heap, size_t size, size_t alignment, size_t offset) {
  return _sa_heap_malloc_aligned_at(sa_heap_instance(heap), size, alignment, offset, true);
}
void *mi_heap_calloc_aligned(mi_heap_t *heap, size_t count, size_t size, size_t alignment) {
  return mi_heap_calloc_aligned_at(heap, count, size, alignment, 0);
}
void *mi_heap_calloc_aligned_at(mi_heap_t *heap, size_t count, size_t size, size_t alignment,
                                size_t offset) {
  size_t total;
  if (!mul_checked(count, size, &total)) return NULL;
  return _sa_heap_malloc_aligned_at(sa_heap_instance(heap), total, alignment, offset, true);
}

void *mi_heap_realloc_aligned(mi_heap_t *heap, void *p, size_t newsize, size_t alignment) {
  return heap_realloc_aligned_at(heap, p, newsize, alignment, 0, false);
}
void *mi_heap_realloc_aligned_at(mi_heap_t *heap, void *p, size_t newsize, size_t alignment,
                                 size_t offset) {
  return heap_realloc_aligned_at(heap, p, newsize, alignment, offset, false);
}
void *mi_heap_rezalloc(mi_heap_t *heap, void *p, size_t newsize) {
  return heap_realloc_aligned_at(heap, p, newsize, 1, 0, true);
}
void *mi_heap_recalloc(mi_heap_t *heap, void *p, size_t count, size_t size) {
  size_t total;
  return mul_checked(count, size, &total) ? mi_heap_rezalloc(heap, p, total) : NULL;
}
void *mi_heap_rezalloc_aligned(mi_heap_t *heap, void *p, size_t newsize, size_t alignment) {
  return heap_realloc_aligned_at(heap, p, newsize, alignment, 0, true);
}
void *mi_heap_rezalloc_aligned_at(mi_heap_t *heap, void *p, size_t newsize, size_t alignment,
                                  size_t offset) {
  return heap_realloc_aligned_at(heap, p, newsize, alignment, offset, true);
}
void *mi_heap_recalloc_aligned(mi_heap_t *heap, void *p, size_t count, size_t size,
                               size_t alignment) {
  return mi_heap_recalloc_aligned_at(heap, p, count, size, alignment, 0);
}
void *mi_heap_recalloc_aligned_at(mi_heap_t *heap, void *p, size_t count, size_t size,
                                  size_t alignment, size_t offset) {
  size_t total;
  if (!mul_checked(count, size, &total)) return NULL;
  return heap_realloc_aligned_at(heap, p, total, alignment, offset, true);
}
