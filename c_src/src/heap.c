/* shardalloc: thread heaps, the per-thread instances of heaps. The pool that thread, instance
 * and heap objects come from, instance set-up and tear-down (merge into the backing heap,
 * destroy, abandon at thread exit, adopting pages), collection, the validity walk, and the
 * questions about a block's heap. The process-wide heaps above them are in sharedheap.c. */
#include <pthread.h>

#include "internal.h"

/* The default heap of a thread that has not allocated yet: every direct slot points at the
 * empty page, so the first allocation lands in the generic path, which sets the thread up. */
heap_t _sa_heap_empty = {
    .pages_direct = {[0 ... DIRECT_WSIZE_MAX] = &_sa_page_empty},
};

/* ---- The pool of thread_t objects (heaps use the same slots) ------------------------------
 * Objects are carved from OS chunks and never given back, so thread churn reuses warm
 * memory instead of paying page faults for every new thread. */
#define POOL_CHUNK_SIZE ((size_t)256 << 10)
pthread_mutex_t _sa_pool_lock = PTHREAD_MUTEX_INITIALIZER; /* init.c: fork */
static thread_t *pool_free_list;
static uint8_t *pool_chunk_next;
static uint8_t *pool_chunk_end;

thread_t *_sa_pool_alloc(void) {
  const size_t size = sa_align_up(sizeof(thread_t), 64);
  pthread_mutex_lock(&_sa_pool_lock);
  thread_t *obj = pool_free_list;
  if (obj != NULL) {
    pool_free_list = obj->next_free;
  } else {
    if (pool_chunk_next == NULL || pool_chunk_next + size > pool_chunk_end) {
      uint8_t *chunk = _sa_os_alloc_aligned(POOL_CHUNK_SIZE, _sa_os_page_size());
      if (chunk != NULL) _sa_stat_add(SA_STAT_mmaps, 1);
      if (chunk == NULL) {
        pthread_mutex_unlock(&_sa_pool_lock);
        return NULL;
      }
      pool_chunk_next = chunk;
      pool_chunk_end = chunk + POOL_CHUNK_SIZE;
    }
    obj = (thread_t *)pool_chunk_next;
    pool_chunk_next += size;
  }
  pthread_mutex_unlock(&_sa_pool_lock);
  memset(obj, 0, sizeof(*obj));
  return obj;
}

void _sa_pool_free(thread_t *obj) {
  pthread_mutex_lock(&_sa_pool_lock);
  obj->next_free = pool_free_list;
  pool_free_list = obj;
  pthread_mutex_unlock(&_sa_pool_lock);
}

/* A heap per request takes two objects (the heap and its instance) and gives both back: the
 * thread keeps a few for itself, so that this costs no lock and no clearing of the object. */
#define POOL_LOCAL_MAX 4

thread_t *_sa_pool_alloc_local(thread_t *thread) {
  thread_t *obj = thread->pool_local;
  if (obj == NULL) return _sa_pool_alloc();
  thread->pool_local = obj->next_free;
  thread->pool_local_count--;
  return obj;
}

void _sa_pool_free_local(thread_t *thread, thread_t *obj) {
  if (thread->pool_local_count >= POOL_LOCAL_MAX) {
    _sa_pool_free(obj);
    return;
  }
  obj->next_free = thread->pool_local;
  thread->pool_local = obj;
  thread->pool_local_count++;
}

void _sa_pool_local_release(thread_t *thread) {
  while (thread->pool_local != NULL) {
    thread_t *obj = thread->pool_local;
    thread->pool_local = obj->next_free;
    _sa_pool_free(obj);
  }
  thread->pool_local_count = 0;
}

/* ---- Set-up -------------------------------------------------------------------------------- */
/* An instance with no page, copied into each new one: making one costs a copy, not a loop
 * over the bins (made once, before the first instance). */
static heap_t heap_template;
static pthread_once_t heap_template_once = PTHREAD_ONCE_INIT;

static void heap_template_init(void) {
  heap_t *heap = &heap_template;
  for (size_t w = 0; w <= DIRECT_WSIZE_MAX; w++) heap->pages_direct[w] = &_sa_page_empty;
  for (size_t bin = 0; bin < BIN_COUNT; bin++) heap->pages[bin].block_size = sa_bin_size(bin);
  heap->pages[BIN_FULL].block_size = LARGE_BLOCK_MAX + 1;
}

void _sa_heap_init(heap_t *heap, thread_t *thread, struct mi_heap_s *of) {
  pthread_once(&heap_template_once, heap_template_init);
  memcpy(heap, &heap_template, sizeof(*heap));
  heap->thread = thread;
  atomic_store_explicit(&heap->heap, of, memory_order_relaxed);
  if (thread == NULL) return;
  heap->next = thread->heaps;
  thread->heaps = heap;
  pthread_mutex_lock(&_sa_heaps_lock);
  heap->next_instance = of->instances;
  of->instances = heap;
  pthread_mutex_unlock(&_sa_heaps_lock);
}

#define heap_for_each_page(heap, queue, page, next)                                         \
  for (page_queue_t *queue = &(heap)->pages[0]; queue <= &(heap)->pages[BIN_FULL]; queue++) \
    for (page_t *page = queue->first, *next = page ? page->next : NULL; page != NULL;       \
         page = next, next = page ? page->next : NULL)

/* The same, ending once `left` pages have been seen (`left` counts down; page_count at most). */
#define heap_for_each_page_upto(heap, queue, page, next, left)                               \
  for (page_queue_t *queue = &(heap)->pages[0]; left != 0 && queue <= &(heap)->pages[BIN_FULL]; \
       queue++)                                                                               \
    for (page_t *page = queue->first, *next = page ? page->next : NULL; page != NULL;         \
         page = next, next = page ? page->next : NULL, left--)

/* Stop other threads from reaching this heap through its pages, then take in the blocks
 * they handed over already. After this no thread reads `heap` through a page. */
static void heap_close_delayed(heap_t *heap) {
  heap_for_each_page(heap, queue, page, next) _sa_page_set_delayed(page, DELAYED_NEVER, true);
  _sa_heap_delayed_free_all(heap);
}

/* fork, in the child: a thread that was between the two steps of the delayed-free hand-off
 * (types.h) left a page DELAYED_FREEING, and it does not exist here, so the owner would wait
 * on it for ever. Put such a page back to USE_DELAYED, where that thread found it: if its
 * block reached the heap's delayed list, the owner frees it as usual (un-fulling the page);
 * if not, the block stays lost, as a free that never happened. Only full pages hand off. */
void _sa_heaps_fork_child(thread_t *thread) {
  for (heap_t *heap = thread->heaps; heap != NULL; heap = heap->next) {
    for (page_t *page = heap->pages[BIN_FULL].first; page != NULL; page = page->next) {
      uintptr_t x = atomic_load_explicit(&page->xthread_free, memory_order_relaxed);
      if (sa_xthread_state(x) == DELAYED_FREEING)
        atomic_store_explicit(&page->xthread_free, sa_xthread_with_state(x, DELAYED_USE),
                              memory_order_relaxed);
    }
  }
}

void _sa_heap_adopt_page(heap_t *heap, page_t *page) {
  atomic_store_explicit(&page->heap, heap, memory_order_relaxed);
  page->flags.x.in_full = 0;
  page->retire_expire = 0;
  _sa_page_set_delayed(page, DELAYED_NORMAL, true);
  _sa_page_queue_push(heap, &heap->pages[page->bin], page);
  heap->page_count++;
}

/* Thread exit: free the empty pages, detach the rest (their segments get abandoned). Pages of
 * a heap other than the main one keep pointing at it, through its detached instance, so that
 * a reclaim gives them back to that heap and its delete or destroy finds them. */
void _sa_heap_detach_pages(heap_t *heap) {
  struct mi_heap_s *of = sa_instance_of(heap);
  heap_t *detached = of == &_sa_heap_main ? NULL : &of->detached;
  _sa_heap_huge_move(heap, detached);
  heap_close_delayed(heap);
  int64_t detached_pages = 0;
  heap_for_each_page(heap, queue, page, next) {
    _sa_page_collect(page);
    if (page->used == 0) {
      _sa_page_free(page, queue);
    } else {
      sa_page_count_used(page, heap->thread);
      _sa_page_queue_remove(heap, queue, page);
      page->flags.x.in_full = 0;
      page->retire_expire = 0;
      atomic_store_explicit(&page->heap, detached, memory_order_relaxed);
      heap->page_count--;
      detached_pages++;
    }
  }
  if (detached != NULL && detached_pages != 0) { /* counted before the segments are abandoned */
    pthread_mutex_lock(&_sa_heaps_lock);
    of->abandoned_pages += detached_pages;
    pthread_mutex_unlock(&_sa_heaps_lock);
  }
}

/* ---- Collection ------------------------------------------------------------------------- */
void _sa_heap_collect(heap_t *heap, bool force) {
  if (force) { /* take in exited threads' memory: their empty pages go back below */
    while (_sa_segment_try_reclaim(heap)) {
    }
  }
  _sa_heap_delayed_free_all(heap);
  _sa_heap_collect_retired(heap, true);
  _sa_spare_release(heap->thread);
  heap_for_each_page(heap, queue, page, next) {
    _sa_page_collect(page);
    if (page->used == 0) _sa_page_free(page, queue);
    else sa_page_count_used(page, heap->thread);
  }
  _sa_purge_housekeeping(heap->thread, force);
  if (force) {
    _sa_segments_purge_all(true); /* other threads' free memory too, as malloc_trim does */
    _sa_segment_caches_release();
  }
}

/* ---- Merge and destroy -------------------------------------------------------------------
 * Both run with the owner's house_lock held, by the owner (merge) or by any thread (destroy:
 * its caller guarantees that no thread touches the heap or its blocks, so the owner's fast
 * paths cannot reach its pages). Neither takes the house_lock again: a thread that holds
 * another's lock is not its owner, and must not count in its house_depth. */
static void heap_unlink(heap_t *heap) {
  heap_t **link = &heap->thread->heaps;
  while (*link != heap) link = &(*link)->next;
  *link = heap->next;
}

/* The instance stops existing; its live blocks move to its thread's backing heap. The owner
 * does this (it may free into these pages from its fast path at any time). */
void _sa_heap_merge(heap_t *heap) {
  thread_t *thread = heap->thread;
  sa_assert(heap != &thread->heap);
  _sa_heap_huge_move(heap, &thread->heap);
  heap_close_delayed(heap);
  int64_t spare = 0;
  heap_for_each_page(heap, queue, page, next) {
    _sa_page_collect(page); /* an empty page is kept as a spare one, not merged */
    if (page->used == 0 && !page->flags.x.in_full) {
      size_t kept = _sa_spare_put(heap, queue, page);
      spare += (int64_t)kept;
      if (kept != 0) continue;
    }
    _sa_page_queue_remove(heap, queue, page);
    heap->page_count--;
    _sa_heap_adopt_page(&thread->heap, page);
  }
  _sa_spare_counted(spare);
  if (_sa_heap_default == heap) _sa_heap_default = &thread->heap;
  heap_unlink(heap);
  _sa_pool_free_local(thread, (thread_t *)heap);
}

#if SA_TRACK
/* A memory checker must see the blocks still in use in a destroyed heap freed. They are the
 * blocks up to `capacity` that are in no free list (the page is collected first). A block of
 * a page with interior (aligned) pointers is known to the tool by an address not stored
 * anywhere: it is only made no-access, and the tool keeps counting it as allocated. */
static void track_free_live_blocks(page_t *page) {
  uint64_t is_free[SLICE_SIZE / SA_INTPTR_SIZE / 64] = {0}; /* the most blocks in a page */
  sa_assert(page->capacity <= SLICE_SIZE / SA_INTPTR_SIZE);
  _sa_page_collect(page);
  uint8_t *start = sa_page_start(page);
  size_t bsize = sa_block_size(page);
  for (const block_t *b = page->free; b != NULL; b = sa_block_next(page, b)) {
    size_t i = (size_t)((const uint8_t *)b - start) / bsize;
    is_free[i / 64] |= (uint64_t)1 << (i % 64);
  }
  for (size_t i = 0; i < page->capacity; i++) {
    if ((is_free[i / 64] >> (i % 64)) & 1) continue;
    if (page->flags.x.has_aligned) sa_track_mem_noaccess(start + i * bsize, bsize);
    else sa_track_free(start + i * bsize, bsize);
  }
}
#else
#define track_free_live_blocks(page) ((void)0)
#endif

/* The instance stops existing and so do all its blocks. Blocks other threads handed over
 * through the delayed list go back to their pages first, so that every block is in exactly
 * one list or live when the pages go (what a memory checker is told, track_free_live_blocks). */
void _sa_heap_destroy_pages(heap_t *heap, bool own) {
  thread_t *thread = heap->thread;
  while (heap->huge_pages != NULL) {
    page_t *page = heap->huge_pages;
    if (page->flags.x.has_aligned) sa_track_mem_noaccess(sa_page_start(page), sa_block_size(page));
    else sa_track_free(sa_page_start(page), sa_block_size(page));
    _sa_heap_huge_remove(page);
    _sa_segment_huge_free(sa_segment_of(page));
  }
  /* Both walks end at the last page: a short-lived heap leaves most of its queues empty. */
  size_t left = heap->page_count, small_bytes = 0;
  heap_for_each_page_upto(heap, queue, page, next, left) {
    _sa_page_set_delayed(page, DELAYED_NEVER, true);
    if (!page->flags.x.check_free) small_bytes += (size_t)page->slice_count * SLICE_SIZE;
  }
  if (own) _sa_spare_limit_set(thread, small_bytes); /* the next request may be as large */
  _sa_heap_delayed_to_pages(heap);
  int64_t spare = 0;
  left = heap->page_count;
  heap_for_each_page_upto(heap, queue, page, next, left) {
    track_free_live_blocks(page);
    page->used = 0;
    page->flags.x.in_full = 0;
    /* the owner keeps empty pages for its next ones (spare.c); another thread cannot */
    size_t kept = own ? _sa_spare_put(heap, queue, page) : 0;
    if (kept == 0) _sa_page_free(page, queue);
    spare += (int64_t)kept;
  }
  _sa_spare_counted(spare);
  if (_sa_heap_default == heap) _sa_heap_default = &thread->heap; /* the owner destroying */
  heap_unlink(heap);
  if (own) _sa_pool_free_local(thread, (thread_t *)heap);
  else _sa_pool_free((thread_t *)heap);
}

/* The page whose blocks hold `p`, for any address; NULL if `p` is not in a page in use. */
static page_t *live_page_of(const void *p) {
  segment_t *segment = _sa_segment_of_any(p);
  if (segment == NULL) return NULL;
  if (segment->kind == SEGMENT_HUGE) return sa_huge_page(segment);
  page_t *page = sa_page_of(segment, p);
  if (page->slice_count == 0) return NULL;
  const uint8_t *start = sa_page_start(page);
  const uint8_t *end = start + (size_t)page->reserved * sa_block_size(page);
  if ((const uint8_t *)p < start || (const uint8_t *)p >= end) return NULL;
  return page;
}

/* The heap a live page belongs to: its instance's, or the main heap for a page of an exited
 * thread's main instance (page->heap NULL); NULL for a free huge block. */
bool mi_heap_contains_block(mi_heap_t *heap, const void *p) {
  const page_t *page = live_page_of(p);
  if (page == NULL) return false;
  const heap_t *instance = atomic_load_explicit(&page->heap, memory_order_relaxed);
  return (instance != NULL ? sa_instance_of(instance) : &_sa_heap_main) == heap;
}

bool mi_heap_check_owned(mi_heap_t *heap, const void *p) {
  if (((uintptr_t)p & (SA_INTPTR_SIZE - 1)) != 0) return false;
  return mi_heap_contains_block(heap, p);
}

bool mi_is_in_heap_region(const void *p) { return live_page_of(p) != NULL; }

/* ---- The validity walk: every invariant of types.h that one thread can see -------------
 * Each condition is one SA_CHECK, so a failure names the invariant with its file and line. */
bool _sa_heap_check(heap_t *heap) {
  size_t pages = 0, retired_bytes = 0;
  for (size_t bin = 0; bin < BIN_QUEUES; bin++) {
    page_queue_t *queue = &heap->pages[bin];
    page_t *prev = NULL;
    for (page_t *page = queue->first; page != NULL; prev = page, page = page->next) {
      pages++;
      if (page->retire_expire != 0) {
        retired_bytes += (size_t)page->slice_count * SLICE_SIZE;
        SA_CHECK((heap->retired_bins[bin / 64] >> (bin % 64)) & 1);
      }
      SA_CHECK(page->prev == prev);
      SA_CHECK(atomic_load_explicit(&page->heap, memory_order_relaxed) == heap);
      SA_CHECK(page->flags.x.in_full == (bin == BIN_FULL));
      SA_CHECK(bin == BIN_FULL || page->bin == bin);
      if (!_sa_page_check(page)) return false;
      segment_t *segment = sa_segment_of(page);
      SA_CHECK(sa_segment_lookup(segment) == segment);
      SA_CHECK(atomic_load_explicit(&segment->thread_id, memory_order_relaxed) ==
               heap->thread->thread_id);
    }
    SA_CHECK(queue->last == prev);
  }
  SA_CHECK(pages == heap->page_count);
  SA_CHECK(retired_bytes == heap->retired_bytes);
  if (heap->thread != NULL && !_sa_spare_check(heap->thread)) return false;
  for (size_t w = 0; w <= DIRECT_WSIZE_MAX; w++) {
    const page_t *page = heap->pages_direct[w];
    size_t bin = heap->young ? sa_bin_young(w == 0 ? 1 : w * 8) : sa_bin_of_wsize(w);
    const page_queue_t *queue = &heap->pages[bin];
    SA_CHECK(page == &_sa_page_empty || page == queue->first);
    SA_CHECK(page != &_sa_page_empty || queue->first == NULL);
  }
  return true;
}
