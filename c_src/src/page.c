/* shardalloc: pages. Free-list collection, lazy extension, the page queues of a heap, the
 * full queue and the delayed-free protocol (states in types.h), retirement of empty pages,
 * and the generic allocation path that every fast-path miss lands in. */
#include <errno.h>

#include "internal.h"

/* The page every empty direct-table slot points at: no free block, so the fast path falls
 * through to the generic path without an extra test. Never written. */
page_t _sa_page_empty;

/* ---- Delayed-free state ------------------------------------------------------------------ */

/* Set the page's delayed state (owner only). Waits out a concurrent DELAYED_FREEING, whose
 * thread still reads page->heap; leaves NEVER_DELAYED alone unless `override_never`. */
void _sa_page_set_delayed(page_t *page, delayed_state_t state, bool override_never) {
  uintptr_t old = atomic_load_explicit(&page->xthread_free, memory_order_relaxed);
  for (;;) {
    delayed_state_t cur = sa_xthread_state(old);
    if (cur == DELAYED_FREEING) {
      _sa_os_yield();
      old = atomic_load_explicit(&page->xthread_free, memory_order_relaxed);
      continue;
    }
    if (cur == state || (cur == DELAYED_NEVER && !override_never)) return;
    uintptr_t desired = sa_xthread_with_state(old, state);
    if (atomic_compare_exchange_weak_explicit(&page->xthread_free, &old, desired,
                                              memory_order_acq_rel, memory_order_relaxed))
      return;
  }
}

/* ---- Collecting the free lists ----------------------------------------------------------- */

/* The last block of a taken cross-thread list that should hold `count` blocks: found chain by
 * chain where the pushes wrote chain headers (types.h), block by block otherwise. NULL if the
 * list is longer than `count` (it may loop: a block freed twice), shorter, or leads out of
 * the page's blocks. */
static block_t *xthread_list_tail(const page_t *page, block_t *b, size_t count) {
  block_t *tail = NULL;
  size_t n = 0;
  if (sa_page_has_chain_headers(page)) {
    const uint8_t *start = sa_page_start(page);
    size_t area = (size_t)page->reserved * sa_block_size(page);
    for (; b != NULL; b = sa_block_next(page, tail)) {
      if ((size_t)((const uint8_t *)b - start) >= area) return NULL;
      uintptr_t header = sa_chain_header(b); /* the list word's layout (types.h) */
      size_t blocks = sa_xthread_count(header);
      tail = sa_xthread_block(header);
      if (blocks == 0 || blocks > count - n || (size_t)((const uint8_t *)tail - start) >= area)
        return NULL;
      n += blocks;
    }
  } else {
    for (; b != NULL; b = sa_block_next(page, b)) {
      if (++n > count) return NULL;
      tail = b;
    }
  }
  return n == count ? tail : NULL;
}

/* Move blocks other threads freed into `free` (owner only). */
static void page_collect_xthread(page_t *page) {
  uintptr_t x = atomic_load_explicit(&page->xthread_free, memory_order_relaxed);
  if (sa_xthread_block(x) == NULL) return;
  while (!atomic_compare_exchange_weak_explicit(
      &page->xthread_free, &x, sa_xthread_taken(x),
      memory_order_acq_rel, memory_order_relaxed)) {
  }
  page->is_zero = 0; /* recycled blocks join the free list */
  block_t *head = sa_xthread_block(x);
  size_t count = sa_xthread_count(x);
  block_t *tail = xthread_list_tail(page, head, count);
  /* a list that is not `count` blocks long, or more frees than blocks in use: a double free */
  if (sa_unlikely(tail == NULL || count > page->used)) {
    _sa_misuse("free", head, "double free from another thread (its page's blocks are dropped)");
    return; /* the list may loop: never walk it again; its blocks are lost, nothing breaks */
  }
  sa_block_set_next(page, tail, page->free);
  page->free = head;
  page->used = (uint16_t)(page->used - count);
}

/* Same-thread frees become the free list, which is empty (owner only): no walk. */
static void page_local_free_to_free(page_t *page) {
  sa_assert(page->free == NULL);
  page->is_zero = 0; /* recycled blocks join the free list */
  page->free = page->local_free;
  page->local_free = NULL;
}

/* local_free put in front of a free list that is not empty (owner only): its tail is found
 * by a walk, which also catches a loop (a block freed twice). */
static void page_local_free_prepend(page_t *page) {
  page->is_zero = 0; /* recycled blocks join the free list */
  block_t *tail = page->local_free;
  size_t n = 1;
  while (sa_block_next(page, tail) != NULL && n <= page->capacity) {
    tail = sa_block_next(page, tail);
    n++;
  }
  if (sa_unlikely(n > page->capacity)) {
    _sa_misuse("free", tail, "double free (the page's recently freed blocks are dropped)");
    page->local_free = NULL;
    return;
  }
  sa_block_set_next(page, tail, page->free);
  page->free = page->local_free;
  page->local_free = NULL;
}

void _sa_page_collect(page_t *page) {
  if (page->local_free != NULL) {
    if (sa_likely(page->free == NULL)) page_local_free_to_free(page);
    else page_local_free_prepend(page);
  }
  page_collect_xthread(page);
}

/* ---- Lazy initialisation: thread never-used blocks into `free`, a few KiB at a time -------
 * A link written into a block of fresh (or purged) memory is a page fault inside malloc. So
 * the free list grows only over OS pages (PAGE_EXTEND_BYTES) that already hold the start of
 * a block handed out before; the first block that starts in an untouched OS page is handed
 * out untouched instead (page_take_unused), and the fault, if any, is the program's, at its
 * first write and only where it writes (a buffer used in part, calloc of fresh memory). The
 * next extension then threads the rest of that OS page. The page's first OS page is threaded
 * at once, though: its first block handed out alone would leave a free list of none, and a
 * thread that allocates and frees one block would then take the same-thread free list back on
 * every call. Blocks of PAGE_EXTEND_BYTES and more are all handed out untouched. Secure
 * builds thread PAGE_EXTEND_BYTES at a time, in random order, from the start (fresh blocks
 * must not come out in address order). */
static size_t page_extend_count(const page_t *page) {
  size_t remaining = (size_t)page->reserved - page->capacity;
  size_t bsize = sa_block_size(page);
  if (remaining == 0 || bsize >= PAGE_EXTEND_BYTES) return 0;
#if SA_SECURE
  size_t count = PAGE_EXTEND_BYTES / bsize;
  if (count < PAGE_EXTEND_MIN_BLOCKS) count = PAGE_EXTEND_MIN_BLOCKS;
#else
  size_t next = (size_t)page->capacity * bsize; /* offsets in the page (slice aligned) */
  size_t last_os_page = next == 0 ? 0 : (next - bsize) & ~(PAGE_EXTEND_BYTES - 1);
  size_t touched_end = last_os_page + PAGE_EXTEND_BYTES;
  size_t count = touched_end > next ? (touched_end - next + bsize - 1) / bsize : 0;
#endif
  return count < remaining ? count : remaining;
}

static void page_extend(page_t *page) {
  size_t count = page_extend_count(page);
  if (count == 0) return;
  size_t bsize = sa_block_size(page);
  uint8_t *first = sa_page_start(page) + (size_t)page->capacity * bsize;
#if SA_SECURE
  page->free = _sa_secure_thread_blocks(page, first, count, bsize); /* in random order */
#else
  uint8_t *p = first;
  for (size_t i = 1; i < count; i++, p += bsize)
    sa_block_set_next(page, (block_t *)p, (block_t *)(p + bsize));
  sa_block_set_next(page, (block_t *)p, page->free);
  page->free = (block_t *)first;
#endif
  page->capacity = (uint16_t)(page->capacity + count);
}

/* ---- Page queues ------------------------------------------------------------------------- */
/* Point the direct-table slots of a small bin at the queue's first page. A young heap's
 * slots lead to its young bins only (sa_bin_young: a page of another bin, reclaimed from an
 * exited thread say, waits in its queue until the heap grows up). */
static void direct_update_slots(heap_t *heap, page_queue_t *queue) {
  size_t bin = (size_t)(queue - heap->pages);
  page_t *page = queue->first != NULL ? queue->first : &_sa_page_empty;
  size_t wmax = queue->block_size / SA_INTPTR_SIZE;
  size_t wmin = bin == 0 ? 0 : sa_bin_size(bin - 1) / SA_INTPTR_SIZE + 1;
  if (heap->young) {
    if (bin != sa_bin_young(queue->block_size)) return;
    wmin = queue->block_size == YOUNG_SIZE_MIN ? 0 : queue->block_size / 2 / SA_INTPTR_SIZE + 1;
  }
  for (size_t w = wmin; w <= wmax; w++) heap->pages_direct[w] = page;
}

/* Only small bins have slots (the full queue's block_size is above every class: no slots). */
static inline void direct_update(heap_t *heap, page_queue_t *queue) {
  if (queue->block_size <= DIRECT_SIZE_MAX) direct_update_slots(heap, queue);
}

/* The young heap holds YOUNG_PAGES_MAX pages, or a young class needs a second one: from now
 * on every size class serves its sizes (the pages of the young classes keep serving theirs). */
static void heap_grow_up(heap_t *heap) {
  heap->young = false;
  for (size_t w = 0; w <= DIRECT_WSIZE_MAX; w++) {
    page_t *first = heap->pages[sa_bin_of_wsize(w)].first;
    heap->pages_direct[w] = first != NULL ? first : &_sa_page_empty;
  }
}

static void queue_push_front(heap_t *heap, page_queue_t *queue, page_t *page) {
  page->prev = NULL;
  page->next = queue->first;
  if (queue->first != NULL) queue->first->prev = page;
  else queue->last = page;
  queue->first = page;
  direct_update(heap, queue);
}

static void queue_push_back(heap_t *heap, page_queue_t *queue, page_t *page) {
  page->next = NULL;
  page->prev = queue->last;
  if (queue->last != NULL) queue->last->next = page;
  else queue->first = page;
  queue->last = page;
  if (queue->first == page) direct_update(heap, queue);
}

void _sa_page_queue_remove(heap_t *heap, page_queue_t *queue, page_t *page) {
  bool was_first = queue->first == page;
  if (page->prev != NULL) page->prev->next = page->next;
  else queue->first = page->next;
  if (page->next != NULL) page->next->prev = page->prev;
  else queue->last = page->prev;
  page->next = page->prev = NULL;
  if (was_first) direct_update(heap, queue);
}

void _sa_page_queue_push(heap_t *heap, page_queue_t *queue, page_t *page) {
  queue_push_front(heap, queue, page);
}

static void queue_move_to_front(heap_t *heap, page_queue_t *queue, page_t *page) {
  if (queue->first == page) return;
  _sa_page_queue_remove(heap, queue, page);
  queue_push_front(heap, queue, page);
}

/* ---- Full pages ----------------------------------------------------------------------- */
static void page_to_full(heap_t *heap, page_queue_t *queue, page_t *page) {
  _sa_page_queue_remove(heap, queue, page);
  page->flags.x.in_full = 1;
  queue_push_back(heap, &heap->pages[BIN_FULL], page);
  /* a page of one block takes no delayed frees (_sa_free_chain_mt): no CAS either way */
  if (page->reserved != 1) _sa_page_set_delayed(page, DELAYED_USE, false);
}

/* A full page got a free block back (owner only). A page of one block, which that free
 * empties, goes to the front of its queue, where its retirement puts it. */
void _sa_page_unfull(page_t *page) {
  heap_t *heap = atomic_load_explicit(&page->heap, memory_order_relaxed);
  sa_assert(page->flags.x.in_full && heap != NULL);
  sa_page_count_used(page, heap->thread);
  _sa_page_queue_remove(heap, &heap->pages[BIN_FULL], page);
  page->flags.x.in_full = 0;
  if (page->reserved == 1) { /* no delayed state to reset (page_to_full) */
    queue_push_front(heap, &heap->pages[page->bin], page);
    return;
  }
  _sa_page_set_delayed(page, DELAYED_NORMAL, false);
  queue_push_back(heap, &heap->pages[page->bin], page);
}

/* ---- Freeing and retiring pages ------------------------------------------------------- */
static void page_unretire(heap_t *heap, page_t *page);
void _sa_page_free(page_t *page, page_queue_t *queue) {
  heap_t *heap = atomic_load_explicit(&page->heap, memory_order_relaxed);
  sa_assert(page->used == 0 && heap != NULL);
  page_unretire(heap, page);
  sa_page_count_used(page, heap->thread);
  sa_thread_stat_add(&heap->thread->stats.pages[page->bin], -1);
  _sa_page_queue_remove(heap, queue, page);
  heap->page_count--;
  _sa_segment_page_free(page, heap->thread);
}

/* The page's last block was freed by its owner. Keep it for a while, at the front of its
 * queue, if it is a small or medium page and the only one of its bin (a single object
 * allocated and freed in a loop must not free and re-create the page each time), or while the
 * heap's retired pages stay under PAGE_RETIRE_BYTES_MAX (a batch of blocks freed and
 * allocated again, large ones above all); otherwise give its slices back. A page emptied
 * again while still retired is left alone (inline in free, no call): it keeps its deadline,
 * and the collection frees it when its time is up only if it is empty then (it unretires a
 * page in use), so a lone object's page is re-made at most once per PAGE_RETIRE_CYCLES
 * generic-path calls. */
static size_t page_bytes(const page_t *page) { return (size_t)page->slice_count * SLICE_SIZE; }

/* Deadlines are ticks modulo 128 in 7 bits, 0 meaning "not retired" (a deadline that falls
 * on 0 moves one tick later), and lie less than 64 ticks ahead, so the sign of a 7-bit
 * difference tells whether one is due. */
static unsigned retire_tick(const heap_t *heap) { return heap->retire_clock / PAGE_RETIRE_TICK; }

static int retire_ticks_left(const page_t *page, unsigned tick) {
  _Static_assert(PAGE_RETIRE_TICKS > 0 && PAGE_RETIRE_TICKS < 64, "deadlines in half the range");
  int left = (int)((page->retire_expire - tick) & 127);
  return left >= 64 ? left - 128 : left;
}

static void page_unretire(heap_t *heap, page_t *page) {
  if (page->retire_expire == 0) return;
  page->retire_expire = 0;
  heap->retired_bytes -= page_bytes(page);
}

void _sa_page_retire_held(page_t *page) {
  sa_assert(page->retire_expire == 0);
  heap_t *heap = atomic_load_explicit(&page->heap, memory_order_relaxed);
  page_queue_t *queue = sa_page_queue_of(heap, page);
  size_t bytes = page_bytes(page);
  /* a growing block's page goes back at once (page_flags_t.grown); tested apart from in_full,
   * since a load of both bytes at once would wait for the store that just cleared in_full
   * (_sa_page_unfull) instead of taking its value from it: +12 % on 64 frees of 256 KiB */
  if (page->flags.x.grown) {
    _sa_page_free(page, queue);
    return;
  }
  if (!page->flags.x.in_full &&
      (heap->retired_bytes + bytes <= PAGE_RETIRE_BYTES_MAX ||
       (queue->first == page && queue->last == page && page->slice_count <= MEDIUM_PAGE_SLICES))) {
    queue_move_to_front(heap, queue, page);
    /* a page of one block: its block to `free`, for the next malloc to pop inline */
    if (page->free == NULL) page_local_free_to_free(page);
    unsigned deadline = retire_tick(heap) + PAGE_RETIRE_TICKS;
    size_t retired_before = heap->retired_bytes;
    /* every page retired before is due no later: only the first one sets the walk's time */
    if (retired_before == 0) heap->retire_due = deadline;
    unsigned expire = deadline % 128;
    page->retire_expire = expire + (expire == 0); /* 0 means not retired */
    heap->retired_bytes = retired_before + bytes;
    heap->retired_bins[page->bin / 64] |= (uint64_t)1 << (page->bin % 64);
    /* with two retired pages or more the housekeeper looks, in case the thread goes idle
     * (_sa_heap_release_idle: it never takes the first page of a queue, so a lone retired
     * page wakes no one). Tested on the value at hand, not on the pages themselves, and
     * last, so that the call is a tail call: one load a retirement once the flag is set */
    if (retired_before != 0) sa_housekeeper_note_work(HOUSE_RETIRED);
    return;
  }
  _sa_page_free(page, queue);
}

void _sa_page_retire(page_t *page) {
  thread_t *thread = atomic_load_explicit(&page->heap, memory_order_relaxed)->thread;
  sa_house_enter(thread);
  _sa_page_retire_held(page);
  sa_house_exit(thread);
  sa_housekeeper_start_if_wanted();
}

/* The first retired page from `page` on (itself included) in its queue, or NULL at the end of
 * the queue or once the walk passed more than PAGE_QUEUE_SEARCH_MAX pages not retired
 * (counted in *passed across calls; the caller tells the two ends apart by it). Pages are
 * retired at the front of their queue, but a page taken into use or adopted later comes
 * before them, so both walks below bound what they pass. */
static page_t *retired_from(page_t *page, size_t *passed) {
  for (; page != NULL; page = page->next) {
    if (page->retire_expire != 0) return page;
    if (++*passed > PAGE_QUEUE_SEARCH_MAX) return NULL;
  }
  return NULL;
}

/* Free the retired pages that are due (all of them if `force`); a retired page in use again
 * is simply kept. Runs when the earliest deadline comes (heap_t.retire_due), and sets the
 * next one. A bin whose walk stops at the bound keeps its bit and brings the next walk to
 * the next tick (retired pages may lie further on; they are seen when the pages before them
 * have moved). */
void _sa_heap_collect_retired(heap_t *heap, bool force) {
  unsigned tick = retire_tick(heap);
  int next = PAGE_RETIRE_TICKS; /* ticks to the earliest deadline left */
  for (size_t w = 0; w < sizeof(heap->retired_bins) / sizeof(uint64_t); w++) {
    uint64_t bins = heap->retired_bins[w], still = 0;
    for (; bins != 0; bins &= bins - 1) { /* only the bins with retired pages */
      page_queue_t *queue = &heap->pages[w * 64 + (size_t)__builtin_ctzll(bins)];
      size_t passed = 0;
      page_t *page_next;
      for (page_t *page = retired_from(queue->first, &passed); page != NULL;
           page = retired_from(page_next, &passed)) {
        page_next = page->next;
        if (page->used != 0) {
          page_unretire(heap, page);
          continue;
        }
        int left = retire_ticks_left(page, tick);
        if (force || left <= 0) {
          _sa_page_free(page, queue);
        } else {
          still |= bins & -bins;
          if (left < next) next = left;
        }
      }
      if (passed > PAGE_QUEUE_SEARCH_MAX) {
        still |= bins & -bins;
        next = 1;
      }
    }
    heap->retired_bins[w] = still;
  }
  heap->retire_due = tick + (unsigned)next;
}

/* The retired pages the owner's fast paths cannot reach are those after the first of their
 * queue (malloc takes blocks from the first page only; free touches only pages where the
 * owner holds a live block, and a retired one with `used` 0 has none): the housekeeper may
 * free those while it holds the house_lock. The owner's deadlines count its generic-path
 * calls, so a thread that stops allocating (a pool thread waiting for work) would keep them
 * for good; idle between two looks, it no longer does. Frees up to `max` of them (counted in
 * *freed) unless `busy`; true if some are left to look at again later (none left: nothing
 * to watch for). */
static bool release_idle_pages(heap_t *heap, bool busy, size_t max, size_t *freed) {
  for (size_t w = 0; w < sizeof(heap->retired_bins) / sizeof(uint64_t); w++) {
    for (uint64_t bins = heap->retired_bins[w]; bins != 0; bins &= bins - 1) {
      page_queue_t *queue = &heap->pages[w * 64 + (size_t)__builtin_ctzll(bins)];
      if (queue->first == NULL) continue;
      size_t passed = 0;
      page_t *page_next;
      for (page_t *page = retired_from(queue->first->next, &passed); page != NULL;
           page = retired_from(page_next, &passed)) {
        page_next = page->next;
        if (sa_owner_used(page) != 0) continue;
        if (busy || *freed >= max) return true;
        _sa_page_free(page, queue);
        ++*freed;
      }
    }
  }
  return false;
}

bool _sa_heap_release_idle(heap_t *heap, size_t max, size_t *freed) {
  if (heap->retired_bytes == 0) {
    heap->look_bytes = 0; /* the next retirement then reads as news */
    return false;
  }
  if (*freed >= max) return true; /* a look for the caller's next hold of the lock */
  /* busy: it made a generic-path call or retired a page since the last look (a retirement
   * adds to retired_bytes), and collects its retired pages itself */
  bool busy = heap->retire_clock != heap->look_clock || heap->retired_bytes != heap->look_bytes;
  heap->look_clock = heap->retire_clock;
  bool left = release_idle_pages(heap, busy, max, freed);
  heap->look_bytes = heap->retired_bytes; /* after the pages freed here */
  return left;
}

/* ---- Resizing a block alone in its page in place ---------------------------------------- */
static bool page_try_resize(segment_t *segment, void *p, size_t newsize) {
  page_t *page = sa_page_of(segment, p);
#if SA_SECURE
  size_t old_size = sa_block_size(page);
#endif
  if (sa_page_is_huge(page) || !page->flags.x.check_free || page->flags.x.has_aligned ||
      page->capacity != 1 || page->used != 1 || p != sa_page_start(page))
    return false;
  size_t bin = sa_bin(newsize);
  size_t block_size = sa_bin_size(bin);
  /* one block: a block of a medium class keeps to its slice(s), not a medium page's 512 KiB
   * (strings grown to 16 KiB took 512 KiB each and spread over a whole segment) */
  size_t slices = sa_one_block_slices(block_size);
  heap_t *heap = atomic_load_explicit(&page->heap, memory_order_relaxed);
  page_unretire(heap, page); /* in use, and about to change size */
  if (slices > page->slice_count && !_sa_segment_page_grow(page, slices, block_size))
    return false;
  if (slices < page->slice_count) _sa_segment_page_shrink(page, slices, block_size, heap->thread);
  /* the page changes size class: move it between queues and keep the counters true */
  thread_t *thread = heap->thread;
  sa_page_count_used(page, thread);
  sa_thread_stat_add(&thread->stats.in_use[page->bin], -(int64_t)page->used_counted);
  sa_thread_stat_add(&thread->stats.pages[page->bin], -1);
  if (!page->flags.x.in_full) _sa_page_queue_remove(heap, &heap->pages[page->bin], page);
  page->bin = (uint8_t)bin;
  page->reserved = 1; /* a page of one block (page_flags_t.check_free) */
  page->flags.x.grown = 1;
  if (!page->flags.x.in_full) queue_push_back(heap, &heap->pages[bin], page);
  sa_thread_stat_add(&thread->stats.in_use[bin], (int64_t)page->used_counted);
  sa_thread_stat_add(&thread->stats.pages[bin], 1);
  /* page space past the resized block is unused (the caller opens the block's growth) */
  sa_track_mem_noaccess((uint8_t *)p + block_size,
                        (size_t)page->slice_count * SLICE_SIZE - block_size);
#if SA_SECURE
  /* the growth may hold what earlier pages there held: no data passes between owners */
  if (block_size > old_size) {
    sa_track_mem_undefined((uint8_t *)p + old_size, block_size - old_size);
    sa_secure_clear((uint8_t *)p + old_size, block_size - old_size);
  }
#endif
  return true;
}

bool _sa_page_try_resize(void *p, size_t newsize) {
  segment_t *segment = sa_segment_lookup(p); /* NULL: deep in a huge block, never resized */
  if (segment == NULL ||
      atomic_load_explicit(&segment->thread_id, memory_order_relaxed) != sa_thread_id())
    return false;
  thread_t *thread = segment->owner;
  sa_house_enter(thread);
  bool resized = page_try_resize(segment, p, newsize);
  sa_house_exit(thread);
  return resized;
}

/* ---- The generic path -------------------------------------------------------------------- */

/* Find a page with a free block in `queue`, looking at a bounded number of pages: each page
 * looked at either serves (and moves to the front) or moves to the full queue. */
static page_t *queue_find_free_page(heap_t *heap, page_queue_t *queue) {
  page_t *page = queue->first;
  for (size_t n = 0; page != NULL && n < PAGE_QUEUE_SEARCH_MAX; n++) {
    page_t *next = page->next;
    page_unretire(heap, page);
    /* tested here: most pages passed on the way (a batch of large blocks) have nothing */
    if (page->local_free != NULL ||
        sa_xthread_block(atomic_load_explicit(&page->xthread_free, memory_order_relaxed)) != NULL)
      _sa_page_collect(page);
    sa_page_count_used(page, heap->thread);
    /* a single collected block would send the next allocation straight back here */
    if (page->capacity < page->reserved &&
        (page->free == NULL || sa_block_next(page, page->free) == NULL))
      page_extend(page);
    if (page->free != NULL || page->capacity < page->reserved) {
      queue_move_to_front(heap, queue, page);
      return page;
    }
    page_to_full(heap, queue, page);
    page = next;
  }
  return NULL;
}

static page_t *page_fresh(heap_t *heap, page_queue_t *queue, size_t bin, bool zero) {
  page_t *page = _sa_spare_take(heap->thread, bin); /* a destroyed instance's (spare.c) */
  if (page == NULL) page = _sa_segment_page_alloc(heap->thread, queue->block_size, bin, zero);
  if (page == NULL) return NULL;
  atomic_store_explicit(&page->heap, heap, memory_order_relaxed);
  heap->page_count++;
  sa_thread_stat_add(&heap->thread->stats.pages[bin], 1);
  /* never-used page space is no-access to a memory checker (track.h) */
  sa_track_mem_noaccess(sa_page_start(page), (size_t)page->slice_count * SLICE_SIZE);
  page_extend(page);
  queue_push_front(heap, queue, page);
  return page;
}

void *_sa_page_take_unused(page_t *page, bool zero) {
  sa_assert(page->capacity < page->reserved && page_extend_count(page) == 0);
  size_t bsize = sa_block_size(page);
  uint8_t *p = sa_page_start(page) + (size_t)page->capacity * bsize;
  page->capacity++;
  page->used++;
  sa_track_malloc(p, bsize, zero);
  if (!page->is_zero) { /* memory an earlier page used */
#if SA_SECURE
    sa_secure_clear(p, bsize); /* no data of its owner reaches the new one */
    (void)zero;
#else
    if (zero) memset(p, 0, bsize);
#endif
  }
#if SA_DEBUG > 0
  if (!zero) memset(p, SA_DEBUG_UNINIT, bsize);
#endif
  return p;
}

/* A page with a free block for `size` from the heap's queues, or NULL; `*bin` is the size
 * class to make one of. A young heap serves small sizes from its young classes (sa_bin_young)
 * and grows up here, the one place that decides it: once it holds YOUNG_PAGES_MAX pages
 * (however it came by them), or once a young class that has a page needs another (no small
 * thread after all). */
static page_t *heap_find_page(heap_t *heap, size_t size, size_t *bin) {
  if (sa_unlikely(heap->young) && heap->page_count >= YOUNG_PAGES_MAX) heap_grow_up(heap);
  bool young = sa_unlikely(heap->young) && size <= DIRECT_SIZE_MAX;
  *bin = young ? sa_bin_young(size) : sa_bin(size);
  page_t *page = queue_find_free_page(heap, &heap->pages[*bin]);
  if (page == NULL && young &&
      atomic_load_explicit(&heap->thread->stats.pages[*bin], memory_order_relaxed) > 0) {
    heap_grow_up(heap);
    *bin = sa_bin(size);
    page = queue_find_free_page(heap, &heap->pages[*bin]);
  }
  return page;
}

/* A block of `page`, which has one: popped from `free`, or the next never-used one. */
static void *page_take(page_t *page, bool zero) {
  block_t *block = page->free;
  if (block == NULL) return _sa_page_take_unused(page, zero);
  void *p = sa_page_pop(page, block);
  if (zero) {
    /* a free list of never-used blocks of fresh memory: only the link word was written
     * (debug builds fill popped blocks, so they always clear) */
    if ((page->is_zero || SA_SECURE) && SA_DEBUG == 0) { /* secure: cleared in sa_page_pop */
      block->next = NULL;
      sa_track_mem_defined(p, sa_block_size(page)); /* the rest is zero already */
    } else {
      memset(p, 0, sa_block_size(page));
    }
  }
  return p;
}

static void *malloc_generic(heap_t *heap, size_t size, bool zero) {
  if (sa_unlikely(size > LARGE_BLOCK_MAX)) {
    if (size > HUGE_BLOCK_MAX) {
      errno = ENOMEM;
      return NULL;
    }
    return _sa_malloc_huge(heap, size, zero);
  }
  /* bounded housekeeping, paced by the regular refills of the free list */
  _sa_remote_flush(); /* frees this thread gathered for other threads' pages */
  _sa_heap_delayed_free_all(heap);
  if (heap->retired_bytes != 0 &&
      (int)(++heap->retire_clock / PAGE_RETIRE_TICK - heap->retire_due) >= 0)
    _sa_heap_collect_retired(heap, false);
  if (heap->thread->spare_bytes != 0) _sa_spare_tick(heap->thread);
  if (!sa_housekeeper_active()) _sa_purge_housekeeping(heap->thread, false);

  size_t bin;
  page_t *page = heap_find_page(heap, size, &bin);
  page_queue_t *queue = &heap->pages[bin];
  if (page == NULL) {
    while (_sa_segment_reclaim_for_page(heap)) { /* pages of exited threads first */
      page = queue_find_free_page(heap, queue);
      if (page != NULL) break;
      if (heap->thread->segment_count > 0) break; /* one reclaim per call is enough */
    }
  }
  if (page == NULL) page = page_fresh(heap, queue, bin, zero);
  if (page == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  sa_assert_expensive(_sa_heap_check(heap));
  return page_take(page, zero);
}


void *_sa_malloc_generic(size_t size, heap_t *heap, bool zero) {
  if (sa_unlikely(heap->thread == NULL)) { /* no thread yet, or an instance could not be made */
    heap = heap == &_sa_heap_empty ? _sa_thread_heap_init() : NULL;
    if (heap == NULL) {
      errno = ENOMEM;
      return NULL;
    }
  }
  thread_t *thread = heap->thread;
  sa_house_enter(thread);
  void *p = malloc_generic(heap, size, zero);
  sa_heap_merge_if_pending(thread); /* instances other threads deleted (sharedheap.c) */
  sa_house_exit(thread);
  sa_housekeeper_start_if_wanted();
  return p;
}

/* ---- Checks ------------------------------------------------------------------------------- */
static bool block_in_page(const page_t *page, const block_t *b) {
  const uint8_t *p = (const uint8_t *)b;
  if (p < sa_page_start(page)) return false;
  size_t offset = (size_t)(p - sa_page_start(page));
  return offset < (size_t)page->capacity * sa_block_size(page) && offset % sa_block_size(page) == 0;
}

/* Walk a free list: every block in the page's initialised blocks, no more than capacity. */
static bool list_check(const page_t *page, const block_t *b, size_t *count) {
  size_t limit = page->capacity;
  for (; b != NULL; b = sa_block_next(page, b)) {
    SA_CHECK(block_in_page(page, b));
    SA_CHECK(++*count <= limit);
  }
  return true;
}

/* Owner only: the accounting equation and list membership of types.h. */
bool _sa_page_check(const page_t *page) {
  SA_CHECK(page->slice_count != 0);
  SA_CHECK(page->bin < BIN_COUNT);
  SA_CHECK(page->capacity <= page->reserved);
  /* pages of one block: large ones and those of growing blocks (regrow.c) */
  SA_CHECK(page->flags.x.check_free == (page->reserved == 1));
  SA_CHECK(!page->flags.x.grown || page->flags.x.check_free);
  SA_CHECK(page->flags.x.check_free || sa_block_size(page) <= MEDIUM_BLOCK_MAX);
  const segment_t *segment = sa_segment_of(page);
  size_t index = (size_t)(page - segment->pages);
  for (size_t i = 0; i < page->slice_count; i++) { /* every slice of it leads here */
    SA_CHECK(segment->page_offsets[index + i] == sa_page_offset(page));
    if (i > 0) SA_CHECK(page[i].slice_count == 0 && page[i].flags.any == 0); /* unused */
  }
  size_t nfree = 0, nlocal = 0, nx = 0;
  if (!list_check(page, page->free, &nfree)) return false;
  if (!list_check(page, page->local_free, &nlocal)) return false;
  block_t *x = sa_xthread_block(atomic_load_explicit(&page->xthread_free, memory_order_acquire));
  /* another thread may push meanwhile: xthread blocks only ever get more */
  if (!list_check(page, x, &nx)) return false;
  SA_CHECK((size_t)page->used + nfree + nlocal == page->capacity);
  SA_CHECK(page->used >= nx);
  return true;
}
