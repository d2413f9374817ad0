/* shardalloc: the allocation API. malloc and friends, zeroing, reallocation, aligned and
 * POSIX entry points. Each public function is a thin layer over a few heap-level helpers;
 * the fast path itself is inline in internal.h. */
#include <errno.h>

#include "internal.h"

/* ---- Core helpers --------------------------------------------------------------------------- */

static void *heap_calloc(heap_t *heap, size_t count, size_t size) {
  size_t total;
  if (sa_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return sa_heap_malloc_zero(heap, total, true);
}

static bool alignment_ok(size_t alignment) {
  return sa_is_power_of_two(alignment) && alignment <= MI_ALIGNMENT_MAX;
}

/* Alignment up to a slice needs no interior pointer: round the size up to a multiple of the
 * alignment. The class of such a size is itself a multiple of the alignment (within a power
 * of two the classes are multiples of their spacing; an alignment at least that spacing
 * makes the rounded size a class of its own), pages start slice-aligned, and blocks sit at
 * multiples of their size from the page start; large and huge blocks start their page. So
 * every block of that class is aligned and free stays on its fast path. Larger alignments,
 * and an offset, over-allocate and hand out an interior pointer; the page is marked so that
 * free finds the block start. */
sa_inline bool alignment_fits_class(size_t alignment) {
  return alignment - 1 < SLICE_SIZE && (alignment & (alignment - 1)) == 0; /* 0 fails */
}
sa_inline size_t aligned_class_size(size_t size, size_t alignment) {
  return sa_align_up(size == 0 ? 1 : size, alignment);
}

/* An alignment of a segment or more: a huge segment placed for it (huge.c). Its memory
 * is freshly mapped, so zero already. */
static void *heap_malloc_huge_aligned(heap_t *heap, size_t size, size_t alignment,
                                      size_t offset) {
  if (heap == &_sa_heap_empty) heap = _sa_thread_heap_init();
  void *p = NULL;
  page_t *page = heap == NULL || heap->thread == NULL /* no instance could be made */
                     ? NULL
                     : _sa_segment_huge_page_alloc_aligned(size, alignment, offset, &p);
  if (page == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  _sa_heap_huge_add(heap, page);
  return p;
}

static void *heap_malloc_aligned_at(heap_t *heap, size_t size, size_t alignment, size_t offset,
                                    bool zero) {
  if (sa_unlikely(!alignment_ok(alignment))) {
    errno = alignment == 0 || !sa_is_power_of_two(alignment) ? EINVAL : ENOMEM;
    return NULL;
  }
  if (sa_unlikely(size > HUGE_BLOCK_MAX)) {
    errno = ENOMEM;
    return NULL;
  }
  if (offset == 0 && alignment <= SLICE_SIZE)
    return sa_heap_malloc_zero(heap, aligned_class_size(size, alignment), zero);
  if (alignment >= SEGMENT_SIZE) return heap_malloc_huge_aligned(heap, size, alignment, offset);
  size_t over = size + alignment - 1 + offset % alignment;
  void *p = sa_heap_malloc_zero(heap, over, zero);
  if (p == NULL) return NULL;
  uintptr_t aligned = sa_align_up((uintptr_t)p + offset, alignment) - offset;
  if (aligned != (uintptr_t)p) {
    page_t *page = sa_page_of(sa_segment_of(p), p);
    page->flags.x.has_aligned = 1;
    if (sa_page_is_huge(page)) _sa_segment_huge_interior(page, (void *)aligned);
    /* a memory checker knows the block from the address handed out; the padding is free */
    sa_track_free(p, sa_block_size(page));
    sa_track_malloc((void *)aligned, sa_block_size(page) - (aligned - (uintptr_t)p), zero);
  }
  return (void *)aligned;
}

/* The usable size of `p` for realloc. A pointer within the blocks of a live page of small or
 * medium blocks without interior pointers is answered inline, without the misuse paths;
 * everything else goes to _sa_usable_size, which reports what is not a live block. The page
 * may be another thread's: only the flags that stay put while one of its blocks is live are
 * read (in_full, which its owner changes, is a byte of its own). */
sa_inline size_t realloc_usable_size(const void *p) {
  /* a pointer the map does not know leads to SA_SEGMENT_NONE's zero descriptor: not in use */
  const page_t *page = sa_page_of(sa_segment_map_get(p), p);
  if (sa_likely(page->flags.x.in_use && !page->flags.x.has_aligned &&
                !page->flags.x.check_free)) {
    size_t bsize = sa_bin_size(page->bin);
    if (sa_likely((size_t)((const uint8_t *)p - sa_page_start(page)) <
                  (size_t)page->reserved * bsize))
      return bsize; /* no interior pointers in such a page */
  }
  return _sa_usable_size(p, "realloc");
}

/* In place when the new size fits and does not waste more than half the block. Zeroing
 * reallocation keeps the tail of the block zero (see mi_rezalloc). */
static void *heap_realloc_zero(heap_t *heap, void *p, size_t newsize, size_t alignment,
                               bool zero) {
  if (p == NULL) {
    return alignment <= SA_INTPTR_SIZE ? sa_heap_malloc_zero(heap, newsize, zero)
                                       : heap_malloc_aligned_at(heap, newsize, alignment, 0, zero);
  }
  size_t usable = realloc_usable_size(p);
  if (sa_unlikely(usable == 0)) { /* not a live block of ours: leave it alone */
    errno = EINVAL;
    return NULL;
  }
  if (newsize <= usable && newsize >= usable / 2 && ((uintptr_t)p & (alignment - 1)) == 0) {
    if (zero && usable > newsize) memset((uint8_t *)p + newsize, 0, usable - newsize);
    return p;
  }
  if (newsize > HUGE_BLOCK_MAX) {
    errno = ENOMEM;
    return NULL;
  }
  bool resizable = newsize <= LARGE_BLOCK_MAX && alignment <= SLICE_SIZE;
  bool grows = resizable && newsize > usable;
  /* a block alone in its page grows into the slices after it, or shrinks giving some back */
  if (resizable && usable > REGROW_PAGE_MIN && newsize > REGROW_PAGE_MIN &&
      _sa_page_try_resize(p, newsize)) {
    size_t resized = _sa_usable_size(p, "realloc"), kept = newsize < usable ? newsize : usable;
    sa_track_resize(p, usable, resized);
    if (zero) memset((uint8_t *)p + kept, 0, resized - kept);
    return p;
  }
  /* a huge block that stays huge keeps its memory (huge.c) */
  if (newsize > LARGE_BLOCK_MAX && usable > LARGE_BLOCK_MAX && alignment <= SLICE_SIZE) {
    void *q = _sa_huge_realloc(p, newsize, zero);
    if (q != NULL) return q;
  }
  /* a growing block moves where it can grow in place next time (regrow.c) */
  void *q = grows && newsize > REGROW_PAGE_MIN ? _sa_regrow_alloc(heap, newsize, zero) : NULL;
  if (q == NULL)
    q = alignment <= SA_INTPTR_SIZE ? sa_heap_malloc_zero(heap, newsize, zero)
                                    : heap_malloc_aligned_at(heap, newsize, alignment, 0, zero);
  if (q == NULL) return NULL;
  memcpy(q, p, usable < newsize ? usable : newsize);
  sa_free(p);
  return q;
}

static void *heap_realloc_n(heap_t *heap, void *p, size_t count, size_t size, bool zero) {
  size_t total;
  if (sa_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return heap_realloc_zero(heap, p, total, 1, zero);
}

/* ---- Basic allocation ------------------------------------------------------------------------ */
void *mi_malloc(size_t size) { return sa_heap_malloc(_sa_heap_default, size); }
void *mi_zalloc(size_t size) { return sa_heap_malloc_zero(_sa_heap_default, size, true); }
void *mi_calloc(size_t count, size_t size) { return heap_calloc(_sa_heap_default, count, size); }

void *mi_mallocn(size_t count, size_t size) {
  size_t total;
  if (sa_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return mi_malloc(total);
}

void *mi_malloc_small(size_t size) {
  sa_assert(size <= MI_SMALL_SIZE_MAX);
  return sa_heap_malloc_small(_sa_heap_default, size);
}

void *mi_zalloc_small(size_t size) {
  sa_assert(size <= MI_SMALL_SIZE_MAX);
  return sa_heap_malloc_zero(_sa_heap_default, size, true);
}

void *mi_realloc(void *p, size_t newsize) {
  return heap_realloc_zero(_sa_heap_default, p, newsize, 1, false);
}

void *mi_reallocn(void *p, size_t count, size_t size) {
  return heap_realloc_n(_sa_heap_default, p, count, size, false);
}

void *mi_reallocarray(void *p, size_t count, size_t size) { return mi_reallocn(p, count, size); }

void *mi_reallocf(void *p, size_t newsize) {
  void *q = mi_realloc(p, newsize);
  if (q == NULL) mi_free(p);
  return q;
}

void *mi_expand(void *p, size_t newsize) {
  if (p == NULL || newsize > _sa_usable_size(p, "mi_expand")) return NULL;
  return p;
}

char *mi_strdup(const char *s) {
  if (s == NULL) return NULL;
  size_t n = strlen(s);
  char *t = mi_malloc(n + 1);
  if (t != NULL) memcpy(t, s, n + 1);
  return t;
}

char *mi_strndup(const char *s, size_t n) {
  if (s == NULL) return NULL;
  size_t len = strnlen(s, n);
  char *t = mi_malloc(len + 1);
  if (t != NULL) {
    memcpy(t, s, len);
    t[len] = 0;
  }
  return t;
}

size_t mi_good_size(size_t size) {
  if (size <= LARGE_BLOCK_MAX) return sa_bin_size(sa_bin(size));
  if (size > HUGE_BLOCK_MAX) return size;
  return sa_align_up(size, SLICE_SIZE); /* its mapping spans whole 2 MiB units: huge.c */
}

/* ---- Zero-preserving reallocation ----------------------------------------------------------- */
void *mi_rezalloc(void *p, size_t newsize) {
  return heap_realloc_zero(_sa_heap_default, p, newsize, 1, true);
}

void *mi_recalloc(void *p, size_t count, size_t size) {
  return heap_realloc_n(_sa_heap_default, p, count, size, true);
}

/* ---- Aligned allocation ---------------------------------------------------------------------- */
/* What heap_malloc_aligned's fast tests leave: a size of 0, a larger size or alignment, an
 * invalid alignment. */
static sa_cold void *heap_malloc_aligned_slow(heap_t *heap, size_t size, size_t alignment) {
  if (sa_likely(alignment_fits_class(alignment) && size <= HUGE_BLOCK_MAX))
    return sa_heap_malloc(heap, aligned_class_size(size, alignment));
  return heap_malloc_aligned_at(heap, size, alignment, 0, false);
}

/* Rust's GlobalAlloc calls this for every allocation, so its common case, a size and a
 * power-of-two alignment of 1 to DIRECT_SIZE_MAX (a power of two too), is the small malloc
 * of the size rounded up to the alignment, ((size - 1) | mask) + 1: one compare covers both
 * ranges, since the mask wraps for alignment 0 and size - 1 for a size of 0 (which the slow
 * path rounds up to the alignment). Blocks of that size's class are aligned: see
 * aligned_class_size. All the aligned entry points share this, so each is one call deep. */
static inline void *heap_malloc_aligned(heap_t *heap, size_t size, size_t alignment) {
  size_t mask = alignment - 1, last = (size - 1) | mask;
  if (sa_likely(last < DIRECT_SIZE_MAX && (mask & alignment) == 0))
    return sa_page_malloc(heap, heap->pages_direct[last / 8 + 1], last + 1, false);
  return heap_malloc_aligned_slow(heap, size, alignment);
}

void *mi_malloc_aligned(size_t size, size_t alignment) {
  return heap_malloc_aligned(_sa_heap_default, size, alignment);
}

void *mi_malloc_aligned_at(size_t size, size_t alignment, size_t offset) {
  return heap_malloc_aligned_at(_sa_heap_default, size, alignment, offset, false);
}

void *mi_zalloc_aligned(size_t size, size_t alignment) {
  return heap_malloc_aligned_at(_sa_heap_default, size, alignment, 0, true);
}

void *mi_calloc_aligned(size_t count, size_t size, size_t alignment) {
  size_t total;
  if (sa_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return mi_zalloc_aligned(total, alignment);
}

void *mi_realloc_aligned(void *p, size_t newsize, size_t alignment) {
  if (!alignment_ok(alignment)) {
    errno = EINVAL;
    return NULL;
  }
  return heap_realloc_zero(_sa_heap_default, p, newsize, alignment, false);
}

void *mi_rezalloc_aligned(void *p, size_t newsize, size_t alignment) {
  if (!alignment_ok(alignment)) {
    errno = EINVAL;
    return NULL;
  }
  return heap_realloc_zero(_sa_heap_default, p, newsize, alignment, true);
}

void *mi_recalloc_aligned(void *p, size_t count, size_t size, size_t alignment) {
  size_t total;
  if (sa_mul_overflow(count, size, &total)) {
    errno = ENOMEM;
    return NULL;
  }
  return mi_rezalloc_aligned(p, total, alignment);
}

/* ---- POSIX and C11 ---------------------------------------------------------------------------- */
int mi_posix_memalign(void **p, size_t alignment, size_t size) {
  if (p == NULL || alignment < sizeof(void *) || !sa_is_power_of_two(alignment)) return EINVAL;
  void *q = heap_malloc_aligned(_sa_heap_default, size, alignment);
  if (q == NULL) return ENOMEM;
  *p = q;
  return 0;
}

/* memalign and aligned_alloc: a non-power-of-two alignment fails with EINVAL. */
void *mi_memalign(size_t alignment, size_t size) {
  return heap_malloc_aligned(_sa_heap_default, size, alignment);
}

void *mi_aligned_alloc(size_t alignment, size_t size) {
  return heap_malloc_aligned(_sa_heap_default, size, alignment);
}

void *mi_valloc(size_t size) { return mi_malloc_aligned(size, _sa_os_page_size()); }

void *mi_pvalloc(size_t size) {
  size_t page = _sa_os_page_size();
  if (size > SIZE_MAX - page) {
    errno = ENOMEM;
    return NULL;
  }
  return mi_malloc_aligned(sa_align_up(size == 0 ? 1 : size, page), page);
}

/* ---- Entry points for compat.c (the remaining mimalloc API) ------------------------------------ */
void *_sa_heap_malloc_aligned_at(heap_t *heap, size_t size, size_t alignment, size_t offset,
                                 bool zero) {
  return heap_malloc_aligned_at(heap, size, alignment, offset, zero);
}

void *_sa_heap_realloc_aligned(heap_t *heap, void *p, size_t newsize, size_t alignment,
                               bool zero) {
  if (!alignment_ok(alignment)) {
    errno = EINVAL;
    return NULL;
  }
  return heap_realloc_zero(heap, p, newsize, alignment, zero);
}

/* ---- Heap allocation: the calling thread's instance of the heap (sharedheap.c) ----------------
 * The hot entry points test the thread's cache themselves and leave the lookup to a cold
 * function called last, so that a hit needs no stack frame: a compare and a load more than
 * the default heap's path. */
static sa_cold void *heap_malloc_lookup(mi_heap_t *heap, size_t size, bool zero) {
  return sa_heap_malloc_zero(_sa_heap_instance_lookup(heap), size, zero);
}
static sa_cold void *heap_malloc_aligned_lookup(mi_heap_t *heap, size_t size, size_t alignment) {
  return heap_malloc_aligned(_sa_heap_instance_lookup(heap), size, alignment);
}

void *mi_heap_malloc(mi_heap_t *heap, size_t size) {
  if (sa_likely(heap->id == _sa_heap_cache.id)) return sa_heap_malloc(_sa_heap_cache.instance, size);
  return heap_malloc_lookup(heap, size, false);
}
void *mi_heap_zalloc(mi_heap_t *heap, size_t size) {
  if (sa_likely(heap->id == _sa_heap_cache.id))
    return sa_heap_malloc_zero(_sa_heap_cache.instance, size, true);
  return heap_malloc_lookup(heap, size, true);
}
void *mi_heap_calloc(mi_heap_t *heap, size_t count, size_t size) {
  return heap_calloc(sa_heap_instance(heap), count, size);
}
void *mi_heap_realloc(mi_heap_t *heap, void *p, size_t newsize) {
  return heap_realloc_zero(sa_heap_instance(heap), p, newsize, 1, false);
}
void *mi_heap_malloc_aligned(mi_heap_t *heap, size_t size, size_t alignment) {
  if (sa_likely(heap->id == _sa_heap_cache.id))
    return heap_malloc_aligned(_sa_heap_cache.instance, size, alignment);
  return heap_malloc_aligned_lookup(heap, size, alignment);
}
