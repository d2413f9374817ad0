/* shardalloc: free. The fast path (owner thread, no rare flag) is inline in internal.h; this
 * file has what it falls into: pointers the segment map does not know, interior (aligned)
 * pointers, full pages, pages of one block, cross-thread frees with the delayed-free
 * protocol, huge blocks; and the checks that turn a misused pointer into a defined answer.
 *
 * What is checked where:
 *   every build  a pointer that is not in memory of ours (wild, stack, static, foreign mmap),
 *                one into a free slice (its page is gone), one outside the page's blocks, a
 *                second free of a large or huge block, a cross-thread list longer than the
 *                page's used count (page.c): ignored, and reported under SHOW_ERRORS;
 *   debug        also a pointer inside a block, and any double free (the block is on one of
 *                its page's free lists): the process aborts with a message.              */
#include "internal.h"

/* ---- Reporting ------------------------------------------------------------------------- */
void _sa_misuse(const char *call, const void *p, const char *what) {
#if SA_DEBUG > 0 || SA_SECURE
  _sa_fatal("%s(%p): %s", call, p, what);
#else
  _sa_error("%s(%p): %s; ignored", call, p, what);
#endif
}

/* ---- Finding the page of a pointer that is not on the fast path ------------------------- */
/* `page` (of `segment`) if it is allocated and in use, for a free of `p`; NULL (reported)
 * otherwise. */
static page_t *checked_page_in_use(segment_t *segment, page_t *page, const void *p,
                                   const char *call) {
  if (segment->kind == SEGMENT_HUGE) page = sa_huge_page(segment);
  if (page->slice_count == 0) {
    _sa_misuse(call, p, "double free or invalid pointer: not in an allocated block");
    return NULL;
  }
  if (!page->flags.x.in_use && !sa_page_is_huge(page)) { /* a spare page (spare.c) */
    _sa_misuse(call, p, "free of a block of a destroyed heap");
    return NULL;
  }
  return page;
}

/* Whether `p` lies within the blocks of the page whose blocks are [start, end); reported
 * when not. */
static bool checked_within(const uint8_t *start, const uint8_t *end, const void *p,
                           const char *call) {
  if ((const uint8_t *)p >= start && (const uint8_t *)p < end) return true;
  _sa_misuse(call, p, "invalid pointer: not in an allocated block");
  return false;
}

/* The page of `p` in `segment` if `p` lies within the blocks of an allocated page; NULL
 * (reported) otherwise. Cheap: no division, so every build runs it. */
static page_t *checked_page_any(segment_t *segment, page_t *page, const void *p,
                                const char *call) {
  page = checked_page_in_use(segment, page, p, call);
  if (page == NULL) return NULL;
  const uint8_t *start = sa_page_start(page);
  if (!checked_within(start, start + (size_t)page->reserved * sa_block_size(page), p, call))
    return NULL;
  return page;
}

/* checked_page_any, with the generic free's common case first: the block of a page of one
 * block (a large block), which every free of one comes here for (types.h, check_free). Its
 * block starts the page, unless the page has aligned blocks; the descriptor of a free or
 * spare slice has neither check_free nor in_use set, nor has a huge segment's page. */
sa_inline page_t *checked_page(segment_t *segment, page_t *page, const void *p,
                               const char *call) {
  /* the bit-fields only: other threads free here too, and in_full is the owner's to write */
  if (sa_likely(page->flags.x.check_free && page->flags.x.in_use && !page->flags.x.has_aligned &&
                (const uint8_t *)p == sa_page_start(page)))
    return page;
  return checked_page_any(segment, page, p, call);
}

/* The segment and page of a pointer the segment map has no entry for; NULL if not ours. */
static page_t *unmapped_page(const void *p, segment_t **segment, const char *call) {
  *segment = _sa_segment_of_any(p);
  if (*segment == NULL) {
    _sa_misuse(call, p, "invalid pointer: not allocated by shardalloc");
    return NULL;
  }
  return checked_page_any(*segment, sa_huge_page(*segment), p, call);
}

/* ---- Debug checks ------------------------------------------------------------------------- */
#if SA_DEBUG > 0
static bool list_contains(const page_t *page, const block_t *list, const block_t *block) {
  size_t limit = page->capacity;
  const uint8_t *start = sa_page_start(page);
  for (size_t n = 0; list != NULL && n <= limit; list = sa_block_next(page, list), n++) {
    if (list == block) return true;
    const uint8_t *next = (const uint8_t *)sa_block_next(page, list);
    if (next != NULL && (next < start || next >= start + (size_t)page->capacity * sa_block_size(page)))
      return false; /* a corrupted list: stop rather than wander */
  }
  return false;
}

#if !SA_TRACK
/* `b` is the start of a block of a small, medium or large page of ours. */
static bool is_any_block(const void *b) {
  if ((uintptr_t)b >> SA_ADDRESS_BITS != 0 || (uintptr_t)b % sizeof(void *) != 0) return false;
  segment_t *segment = sa_segment_lookup(b);
  if (segment == NULL || segment->kind == SEGMENT_HUGE) return false;
  const page_t *page = sa_page_of(segment, b);
  if (page->slice_count == 0 || !page->flags.x.in_use) return false;
  const uint8_t *start = sa_page_start(page);
  size_t offset = (size_t)((const uint8_t *)b - start);
  return (const uint8_t *)b >= start && offset < (size_t)page->reserved * sa_block_size(page) &&
         offset % sa_block_size(page) == 0;
}
#endif

/* A freed block is filled with SA_DEBUG_FREED past its link word, and its link points into
 * its page or is NULL (or, in a heap's delayed list, to a block of another page). Only the
 * owner can walk the page's lists safely, so it confirms by finding the block there (the
 * delayed list: _sa_free_block_local); another thread goes by the fill and the link alone (a live block
 * holding exactly that fill is not a case worth a race). Under a memory checker (track.h)
 * the tool knows which blocks are free, and the bytes of a block in use are not ours to read. */
static bool block_is_double_free(const page_t *page, const block_t *block, const void *p,
                                 bool owner) {
#if SA_TRACK
  if (sa_track_is_noaccess(p)) return true;
  if (!owner) return false;
#else
  (void)p;
  size_t check = sa_block_size(page) < 64 ? sa_block_size(page) : 64;
  const uint8_t *bytes = (const uint8_t *)block;
  for (size_t i = sizeof(block_t); i < check; i++)
    if (bytes[i] != SA_DEBUG_FREED) return false;
#if SA_SECURE
  const uint8_t *next = (const uint8_t *)sa_secure_decode(page, block->next);
#else
  const uint8_t *next = (const uint8_t *)block->next;
#endif
  const uint8_t *start = sa_page_start(page);
  bool next_plausible =
      next == NULL || (next >= start && next < start + (size_t)page->reserved * sa_block_size(page));
  /* a block that waits in a heap's delayed list links to a block of any page */
  if (!owner) return (next_plausible || is_any_block(next)) && check > sizeof(block_t);
#endif
  block_t *x = sa_xthread_block(atomic_load_explicit(&page->xthread_free, memory_order_acquire));
  return list_contains(page, x, block) || list_contains(page, page->free, block) ||
         list_contains(page, page->local_free, block);
}

void _sa_debug_fill_freed(const page_t *page, block_t *block) {
  if (sa_page_is_huge(page)) return;
  uint8_t *rest = (uint8_t *)block + sizeof(block_t);
  size_t n = sa_block_size(page) - sizeof(block_t);
  sa_track_mem_undefined(rest, n); /* a free block: opened for the fill only */
  memset(rest, SA_DEBUG_FREED, n);
  sa_track_mem_noaccess(rest, n);
}

void _sa_debug_check_free(const page_t *page, const block_t *block, const void *p, bool owner) {
  if (checked_page(sa_segment_of(page), (page_t *)page, p, "free") == NULL) return;
  size_t offset = (size_t)((const uint8_t *)block - sa_page_start(page));
  if (!page->flags.x.has_aligned && offset % sa_block_size(page) != 0)
    _sa_misuse("free", p, "invalid pointer: inside a block");
  if (block_is_double_free(page, block, p, owner))
    _sa_misuse("free", p, "double free: the block is free already");
}
#endif

/* ---- Local free (owner thread) ---------------------------------------------------------- */
#if SA_DEBUG > 0 || SA_SECURE
/* `block` waits in the delayed list of `page`'s heap (owner only: it alone takes from it).
 * The list holds one block per full page at most (later frees go to the page's own list). */
static bool delayed_holds(const page_t *page, const block_t *block) {
  heap_t *heap = atomic_load_explicit(&page->heap, memory_order_relaxed);
  const block_t *b = atomic_load_explicit(&heap->thread_delayed_free, memory_order_acquire);
  for (; b != NULL; b = sa_delayed_next(sa_page_of(sa_segment_of(b), b), b))
    if (b == block) return true;
  return false;
}
#endif

void _sa_free_block_local(page_t *page, block_t *block) {
  /* nothing of the page is in use, or its one block waits in the cross-thread list */
  if (sa_unlikely(page->used == 0 ||
                  sa_one_block_waits(page, atomic_load_explicit(&page->xthread_free,
                                                                memory_order_relaxed)))) {
    _sa_misuse("free", block, "double free: the block is free already");
    return;
  }
  if (sa_unlikely(page->flags.x.in_full)) {
#if SA_DEBUG > 0 || SA_SECURE
    /* another thread freed it into the page while the page was full */
    if (delayed_holds(page, block)) {
      _sa_misuse("free", block, "double free: the block is free already");
      return;
    }
#endif
    _sa_page_unfull(page);
  }
  if (sa_page_free_local_push(page, block)) _sa_page_retire_held(page);
}

/* ---- Cross-thread free: one CAS, plus the delayed-free hand-off for full pages ---------
 * A chain of `count` blocks of one page (head ... tail, linked, tail's link to be set) goes
 * in with the same single CAS as one block: the remote-free buffer (remote.c) hands over the
 * frees it gathered for a page this way. */
void _sa_free_chain_mt(page_t *page, block_t *head, block_t *tail, size_t count) {
  sa_chain_header_set(page, head, tail, count); /* published by the CAS (release) */
  uintptr_t old = atomic_load_explicit(&page->xthread_free, memory_order_relaxed);
  uintptr_t desired;
  bool use_delayed;
  do {
    /* a page of one block whose block waits in the list already: a second free */
    if (sa_unlikely((page->reserved == 1 && count > 1) || sa_one_block_waits(page, old))) {
      _sa_misuse("free", head, "double free: the block is free already");
      return;
    }
    /* a page of one block never: its block must wait in the page's own list, where a second
     * free sees it; the housekeeper's sweep takes such a page back (count == used) */
    use_delayed = sa_xthread_state(old) == DELAYED_USE && page->reserved != 1;
    if (use_delayed) {
      desired = sa_xthread_with_state(old, DELAYED_FREEING);
    } else {
      sa_block_set_next(page, tail, sa_xthread_block(old));
      desired = (uintptr_t)head | (old & XTHREAD_STATE_MASK) |
                ((uintptr_t)(sa_xthread_count(old) + count) << XTHREAD_COUNT_SHIFT);
    }
  } while (!atomic_compare_exchange_weak_explicit(&page->xthread_free, &old, desired,
                                                  memory_order_release, memory_order_relaxed));
  /* tell the housekeeper: the owner may never come back for these blocks on its own */
  sa_housekeeper_note_work(sa_xthread_state(old) == DELAYED_NEVER ? HOUSE_ABANDONED
                                                                 : HOUSE_REMOTE_FREES);
  if (sa_likely(!use_delayed)) return;

  /* The page is in its owner's full queue: tell the owner through its heap. The owner does
   * not free or re-home the heap while the page is DELAYED_FREEING. */
  heap_t *heap = atomic_load_explicit(&page->heap, memory_order_acquire);
  sa_assert(heap != NULL);
  block_t *first = atomic_load_explicit(&heap->thread_delayed_free, memory_order_relaxed);
  do {
    sa_block_set_next(page, tail, first); /* keyed by the holder's page (see _sa_heap_delayed_free_all) */
  } while (!atomic_compare_exchange_weak_explicit(&heap->thread_delayed_free, &first, head,
                                                  memory_order_release, memory_order_relaxed));
  old = atomic_load_explicit(&page->xthread_free, memory_order_relaxed);
  do {
    desired = sa_xthread_with_state(old, DELAYED_NORMAL);
  } while (!atomic_compare_exchange_weak_explicit(&page->xthread_free, &old, desired,
                                                  memory_order_release, memory_order_relaxed));
}

static void free_block_mt(page_t *page, block_t *block) {
#if SA_DEBUG > 0
  _sa_debug_fill_freed(page, block);
#endif
  _sa_free_chain_mt(page, block, block, 1);
}

/* The block of `p` as a cross-thread free would take it in (checks, debug fill, tracking), or
 * NULL when `p` is no block to free (reported). */
block_t *_sa_free_mt_prepare(segment_t *segment, page_t *page, void *p) {
  page = checked_page(segment, page, p, "free");
  if (page == NULL) return NULL;
  block_t *block = sa_block_start(page, p);
#if SA_DEBUG > 0
  _sa_debug_check_free(page, block, p, false);
  _sa_debug_fill_freed(page, block);
#endif
  sa_track_free(p, sa_block_size(page) - (size_t)((uint8_t *)p - (uint8_t *)block));
  return block;
}

/* A chain of `n` pointers that a thread other than the owner gathered for the small page
 * `page` (remote.c), linked from `first`: each becomes its block, what is no block of the
 * page is reported and left out, and the rest is relinked, returned with its tail and count
 * (the tail's link is left for _sa_free_chain_mt). The checks are _sa_free_mt_prepare's, but
 * against one read of the descriptor for the whole chain: the owner writes that line on every
 * allocation from the page, so reading it for each block moved it between the two cores up
 * to once a block while the owner allocated there (a producer and its consumer, one page
 * apart). Release builds only: debug and memory-checker builds check each block as it is
 * freed. */
block_t *_sa_free_chain_prepare(segment_t *segment, page_t *page, block_t *first, size_t n,
                                block_t **tail, size_t *count) {
  *tail = NULL;
  *count = 0;
  if (checked_page_in_use(segment, page, first, "free") == NULL) return NULL;
  uint8_t *start = sa_page_start(page);
  const size_t block_size = sa_block_size(page);
  const uint8_t *end = start + (size_t)page->reserved * block_size;
  const bool interior = page->flags.x.has_aligned; /* set before any such pointer was handed
                                                      out, so before the chain got it */
  block_t *head = NULL;
  block_t *p = first;
  for (size_t i = 0; i < n && p != NULL; i++) { /* NULL early: a block freed twice */
    block_t *next = sa_block_next(page, p); /* read before a block start's link is written */
    if (checked_within(start, end, p, "free")) {
      block_t *block = interior ? sa_block_start_in(start, block_size, p) : p;
      if (*tail == NULL) *tail = block;
      sa_block_set_next(page, block, head);
      head = block;
      (*count)++;
    }
    p = next;
  }
  return head;
}

/* Free the blocks other threads handed over through the delayed list (owner only). */
void _sa_heap_delayed_free_all(heap_t *heap) {
  if (atomic_load_explicit(&heap->thread_delayed_free, memory_order_relaxed) == NULL) return;
  block_t *block = atomic_exchange_explicit(&heap->thread_delayed_free, NULL, memory_order_acquire);
  while (block != NULL) {
    page_t *page = sa_page_of(sa_segment_of(block), block);
    block_t *next = sa_delayed_next(page, block);
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
static void free_huge(segment_t *segment, page_t *page, const void *p) {
  if (atomic_exchange_explicit(&page->xthread_free, HUGE_FREED, memory_order_acq_rel) ==
      HUGE_FREED) {
    _sa_misuse("free", p, "double free: the block is free already");
    return;
  }
  sa_track_free(p, sa_block_size(page) - (size_t)((const uint8_t *)p - sa_page_start(page)));
  _sa_heap_huge_remove(page);
  _sa_segment_huge_free(segment);
}

/* A pointer the segment map has no segment for: NULL, not ours, or inside a huge block. */
static void free_unmapped(void *p) {
  if (p == NULL) return;
  segment_t *segment;
  page_t *page = unmapped_page(p, &segment, "free");
  if (page != NULL) free_huge(segment, page, p);
}

void _sa_free_generic(segment_t *segment, page_t *page, void *p) {
  if (segment == SA_SEGMENT_NONE) { /* NULL, not ours, or deep inside a huge block */
    free_unmapped(p);
    return;
  }
  page = checked_page(segment, page, p, "free");
  if (page == NULL) return;
  if (sa_unlikely(sa_page_is_huge(page))) {
    free_huge(segment, page, p);
    return;
  }
  bool owner = atomic_load_explicit(&segment->thread_id, memory_order_relaxed) == sa_thread_id();
#if !SA_SECURE
  /* Another live thread's block of a small page (reserved 1: a page of one block; the flags
   * are not read, in_full is the owner's to write): gathered per page (remote.c). A block of
   * an exited thread's goes back now, so that its segment can be taken in or given back. */
  if (!owner && page->slice_count == 1 && page->reserved != 1 &&
      sa_xthread_state(atomic_load_explicit(&page->xthread_free, memory_order_relaxed)) !=
          DELAYED_NEVER) {
    _sa_remote_free(segment, page, p);
    return;
  }
#endif
  block_t *block = sa_block_start(page, p);
#if SA_DEBUG > 0
  _sa_debug_check_free(page, block, p, owner);
#endif
#if SA_SECURE
  sa_secure_check_free(page, block, owner); /* aborts on an invalid or double free */
#endif
  /* from here on the block is free memory: links go through sa_block_set_next */
  sa_track_free(p, sa_block_size(page) - (size_t)((uint8_t *)p - (uint8_t *)block));
  if (owner) {
    thread_t *thread = segment->owner;
    sa_house_enter(thread);
    _sa_free_block_local(page, block);
    sa_house_exit(thread);
  } else {
    free_block_mt(page, block);
  }
  sa_housekeeper_start_if_wanted();
}

void _sa_free_not_owned(segment_t *segment, page_t *page, void *p) {
#if !SA_SECURE
  /* a block of a slice whose chain this thread gathers: checked with the chain (remote.c) */
  if (segment != SA_SEGMENT_NONE && _sa_remote_join(page, p)) return;
#endif
  _sa_free_generic(segment, page, p);
}

size_t _sa_usable_size(const void *p, const char *call) {
  if (p == NULL) return 0;
  segment_t *segment = sa_segment_lookup(p);
  const page_t *page = segment != NULL ? checked_page(segment, sa_page_of(segment, p), p, call)
                                       : unmapped_page(p, &segment, call);
  if (page == NULL) return 0;
  const block_t *block = sa_block_start(page, p);
  return sa_block_size(page) - (size_t)((const uint8_t *)p - (const uint8_t *)block);
}

/* ---- Public entry points ---------------------------------------------------------------- */
void mi_free(void *p) { sa_free(p); }

void mi_free_size(void *p, size_t size) {
  sa_assert(p == NULL || _sa_usable_size(p, "mi_free_size") >= size);
  (void)size;
  sa_free(p);
}

void mi_free_aligned(void *p, size_t alignment) {
  sa_assert(((uintptr_t)p & (alignment - 1)) == 0);
  (void)alignment;
  sa_free(p);
}

/* ---- Sized free ---------------------------------------------------------------------------
 * A block allocated (or last reallocated) with `size` bytes and `alignment` both at most
 * SIZED_SMALL_MAX lies in a small page: its class is at most 8 KiB, and in-place shrinking
 * keeps a block only down to half its size, so no medium block (10 KiB and up) is ever left
 * with a size that small. A small page is one slice, so the descriptor of the block's slice
 * is its page: neither the segment map nor the slice offset is read. The caller's word is
 * all that guards this, so debug builds check it against the tables. */
#define SIZED_SMALL_MAX ((size_t)4 << 10)
/* the smallest medium class is 5/4 of SMALL_BLOCK_MAX; realloc keeps a block in place down
 * to half its size (alloc.c) */
_Static_assert(SIZED_SMALL_MAX * 2 < SMALL_BLOCK_MAX + SMALL_BLOCK_MAX / 4,
               "a block sized SIZED_SMALL_MAX or less is small even after in-place shrinking");

#if SA_DEBUG > 0
static void debug_check_size(const page_t *page, const void *p, size_t size) {
  segment_t *segment = sa_segment_lookup(p);
  const page_t *real = segment == NULL ? NULL : sa_page_of(segment, p);
  size_t usable = _sa_usable_size(p, "sized free");
  if (real != page || size > usable)
    _sa_fatal("sized free of %p with size %zu: the size does not match the block (%zu usable "
              "bytes%s)", p, size, usable, real != page ? ", not in a small page" : "");
}
#endif

void _sa_free_small(void *p, size_t size) {
  segment_t *segment = sa_segment_of(p);
  page_t *page = &segment->pages[((uintptr_t)p & SEGMENT_MASK) >> SLICE_SHIFT];
#if SA_DEBUG > 0
  debug_check_size(page, p, size);
#else
  (void)size;
#endif
#if SA_SECURE
  sa_free(p); /* every free takes the same checks, and nothing is gathered unchecked */
  return;
#endif
  if (sa_likely(atomic_load_explicit(&segment->thread_id, memory_order_relaxed) ==
                sa_thread_id())) {
    if (sa_likely(page->flags.any == PAGE_FLAGS_FAST)) {
      sa_free_owned(page, p);
      return;
    }
    _sa_free_generic(segment, page, p);
    return;
  }
  /* another thread's: gathered per page, no field of the page read (remote.c) */
  _sa_remote_free(segment, page, p);
}

void mi_free_size_aligned(void *p, size_t size, size_t alignment) {
  sa_assert(((uintptr_t)p & (alignment - 1)) == 0);
  if (sa_likely((size | alignment) <= SIZED_SMALL_MAX && p != NULL)) _sa_free_small(p, size);
  else mi_free_size(p, size);
}

size_t mi_usable_size(const void *p) { return _sa_usable_size(p, "mi_usable_size"); }
size_t mi_malloc_usable_size(const void *p) { return _sa_usable_size(p, "malloc_usable_size"); }
