/* shardalloc: free. The fast path (owner thread, no rare flag) is inline in internal.h; this
 * file has what it falls into: interior (aligned) pointers, full pages, cross-thread frees
 * with the delayed-free protocol, huge blocks, and in debug builds the checks that turn an
 * invalid or double free into a clear message instead of a corrupted heap. */
#include "internal.h"

/* ---- Debug checks ------------------------------------------------------------------------- */
#if SA_DEBUG > 0
static bool list_contains(const page_t *page, const block_t *list, const block_t *block) {
  size_t limit = page->capacity;
  const uint8_t *start = sa_page_start(page);
  for (size_t n = 0; list != NULL && n <= limit; list = sa_block_next(list), n++) {
    if (list == block) return true;
    const uint8_t *next = (const uint8_t *)sa_block_next(list);
    if (next != NULL && (next < start || next >= start + (size_t)page->capacity * sa_block_size(page)))
      return false; /* a corrupted list: stop rather than wander */
  }
  return false;
}

/* A freed block is filled with SA_DEBUG_FREED past its link word, and its link points into
 * its page (or is NULL). Only the owner can walk the page's lists safely, so it confirms by
 * finding the block there; another thread goes by the fill and the link alone (a live block
 * holding exactly that fill is not a case worth a race). */
static bool block_is_double_free(const page_t *page, const block_t *block, const void *p,
                                 bool owner) {
#if SA_TRACK
  /* the tool knows freed blocks; the bytes of a block in use are not ours to read */
  if (sa_track_is_noaccess(p)) return true;
  if (!owner) return false;
#else
  (void)p;
  size_t check = sa_block_size(page) < 64 ? sa_block_size(page) : 64;
  const uint8_t *bytes = (const uint8_t *)block;
  for (size_t i = sizeof(block_t); i < check; i++)
    if (bytes[i] != SA_DEBUG_FREED) return false;
  const uint8_t *next = (const uint8_t *)block->next;
  const uint8_t *start = sa_page_start(page);
  bool next_plausible =
      next == NULL || (next >= start && next < start + (size_t)page->reserved * sa_block_size(page));
  if (!owner) return next_plausible && check > sizeof(block_t);
#endif
  block_t *x = sa_xthread_block(atomic_load_explicit(&page->xthread_free, memory_order_acquire));
  return list_contains(page, x, block) || list_contains(page, page->free, block) ||
         list_contains(page, page->local_free, block);
}

/* Reject a pointer this allocator did not hand out, or hands out no more; returns its page. */
static page_t *checked_page_of(segment_t *segment, const void *p) {
  if (!_sa_segment_map_contains(p)) {
    _sa_fatal("invalid free: %p was not allocated by shardalloc (or was already freed)", p);
  }
  page_t *page = sa_page_of(segment, p);
  uint8_t *start = page->slice_count == 0 ? NULL : sa_page_start(page);
  size_t bsize = page->slice_count == 0 ? 0 : sa_block_size(page);
  if (start == NULL || bsize == 0 || (uint8_t *)p < start ||
      (uint8_t *)p >= start + (size_t)page->reserved * bsize) {
    _sa_fatal("invalid free: %p is not in an allocated block (or was already freed)", p);
  }
  size_t offset = (size_t)((uint8_t *)p - start);
  if (!page->flags.x.has_aligned && offset % bsize != 0) {
    _sa_fatal("invalid free: %p points inside a block of %zu bytes", p, bsize);
  }
  return page;
}

static void debug_fill_freed(const page_t *page, block_t *block) {
  if (sa_page_is_huge(page)) return;
  uint8_t *rest = (uint8_t *)block + sizeof(block_t);
  size_t n = sa_block_size(page) - sizeof(block_t);
  sa_track_mem_undefined(rest, n); /* a free block: opened for the fill only */
  memset(rest, SA_DEBUG_FREED, n);
  sa_track_mem_noaccess(rest, n);
}
#else
static void debug_fill_freed(const page_t *page, block_t *block) {
  (void)page;
  (void)block;
}
#endif

/* ---- Local free (owner thread) ---------------------------------------------------------- */
void _sa_free_block_local(page_t *page, block_t *block) {
  debug_fill_freed(page, block);
  sa_block_set_next(block, page->local_free);
  page->local_free = block;
  page->used--;
  if (sa_unlikely(page->flags.x.in_full)) _sa_page_unfull(page);
  if (page->used == 0) _sa_page_retire(page);
}

/* ---- Cross-thread free: one CAS, plus the delayed-free hand-off for full pages --------- */
static void free_block_mt(page_t *page, block_t *block) {
  debug_fill_freed(page, block);
  uintptr_t old = atomic_load_explicit(&page->xthread_free, memory_order_relaxed);
  uintptr_t desired;
  bool use_delayed;
  do {
    use_delayed = sa_xthread_state(old) == DELAYED_USE;
    if (use_delayed) {
      desired = sa_xthread_make(sa_xthread_block(old), DELAYED_FREEING);
    } else {
      sa_block_set_next(block, sa_xthread_block(old));
      desired = sa_xthread_make(block, sa_xthread_state(old));
    }
  } while (!atomic_compare_exchange_weak_explicit(&page->xthread_free, &old, desired,
                                                  memory_order_release, memory_order_relaxed));
  if (sa_likely(!use_delayed)) return;

  /* The page is in its owner's full queue: tell the owner through its heap. The owner does
   * not free or re-home the heap while the page is DELAYED_FREEING. */
  heap_t *heap = atomic_load_explicit(&page->heap, memory_order_acquire);
  sa_assert(heap != NULL);
  block_t *head = atomic_load_explicit(&heap->thread_delayed_free, memory_order_relaxed);
  do {
    sa_block_set_next(block, head);
  } while (!atomic_compare_exchange_weak_explicit(&heap->thread_delayed_free, &head, block,
                                                  memory_order_release, memory_order_relaxed));
  old = atomic_load_explicit(&page->xthread_free, memory_order_relaxed);
  do {
    desired = sa_xthread_make(sa_xthread_block(old), DELAYED_NORMAL);
  } while (!atomic_compare_exchange_weak_explicit(&page->xthread_free, &old, desired,
                                                  memory_order_release, memory_order_relaxed));
}

/* Free the blocks other threads handed over through the delayed list (owner only). */
void _sa_heap_delayed_free_all(heap_t *heap) {
  if (atomic_load_explicit(&heap->thread_delayed_free, memory_order_relaxed) == NULL) return;
  block_t *block = atomic_exchange_explicit(&heap->thread_delayed_free, NULL, memory_order_acquire);
  while (block != NULL) {
    block_t *next = sa_block_next(block);
    page_t *page = sa_page_of(sa_segment_of(block), block);
    /* the pusher may still be about to reset the state: wait, so the page cannot be freed
     * under its final CAS */
    while (sa_xthread_state(atomic_load_explicit(&page->xthread_free, memory_order_acquire)) ==
           DELAYED_FREEING)
      _sa_os_yield();
    _sa_free_block_local(page, block);
    block = next;
  }
}

/* ---- The generic free ------------------------------------------------------------------- */
void _sa_free_generic(segment_t *segment, page_t *page, void *p) {
  if (p == NULL) return;
#if SA_DEBUG > 0
  page = checked_page_of(segment, p);
#endif
  bool owner = atomic_load_explicit(&segment->thread_id, memory_order_relaxed) == sa_thread_id();
  block_t *block = sa_block_start(page, p);
#if SA_DEBUG > 0
  if (block_is_double_free(page, block, p, owner)) {
    _sa_fatal("double free: the block at %p (size %zu) is already free", p, sa_block_size(page));
  }
#endif
  /* from here on the block is free memory: links go through sa_block_set_next */
  sa_track_free(p, sa_block_size(page) - (size_t)((uint8_t *)p - (uint8_t *)block));
  if (sa_unlikely(sa_page_is_huge(page))) {
    _sa_heap_huge_remove(page);
    _sa_segment_huge_free(segment);
    return;
  }
  if (owner) _sa_free_block_local(page, block);
  else free_block_mt(page, block);
}

size_t _sa_usable_size(const void *p) {
  if (p == NULL) return 0;
  segment_t *segment = sa_segment_of(p);
#if SA_DEBUG > 0
  const page_t *page = checked_page_of(segment, p);
#else
  const page_t *page = sa_page_of(segment, p);
#endif
  const block_t *block = sa_block_start(page, p);
  return sa_block_size(page) - (size_t)((const uint8_t *)p - (const uint8_t *)block);
}

/* ---- Public entry points ---------------------------------------------------------------- */
void mi_free(void *p) { sa_free(p); }

void mi_free_size(void *p, size_t size) {
  sa_assert(p == NULL || _sa_usable_size(p) >= size);
  (void)size;
  sa_free(p);
}

void mi_free_aligned(void *p, size_t alignment) {
  sa_assert(((uintptr_t)p & (alignment - 1)) == 0);
  (void)alignment;
  sa_free(p);
}

void mi_free_size_aligned(void *p, size_t size, size_t alignment) {
  sa_assert(((uintptr_t)p & (alignment - 1)) == 0);
  (void)alignment;
  mi_free_size(p, size);
}

size_t mi_usable_size(const void *p) { return _sa_usable_size(p); }
size_t mi_malloc_usable_size(const void *p) { return _sa_usable_size(p); }
