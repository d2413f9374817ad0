/* shardalloc: spare pages. A heap made per request and destroyed at its end would otherwise
 * take a fresh page from a segment for every size class it uses, and give each back (with a
 * purge scheduled) when it goes: per request, the same pages made and unmade again. When the
 * owner thread destroys or deletes an instance, its empty small and medium pages are kept
 * instead, reset to empty (capacity 0: their free lists are rebuilt lazily, as a fresh page's
 * are), in the thread's lists of spare pages (thread_t, types.h, with the invariants). The
 * thread's next fresh page of that size class, for any of its instances, comes from there.
 *
 * Bounds: what the thread's last destroyed instance had in small and medium pages, at least
 * SPARE_BYTES_MIN and at most SPARE_BYTES_MAX per thread (a request of 100,000 objects fills
 * about 10 MiB of pages: a fixed 4 MiB sent most of them back to their segments at every
 * destroy, to be taken from there again by the next request); the rest goes back to the
 * segment as before. Spare pages go back to their segments when the thread's generic path has
 * run SPARE_CYCLES times since a page was last kept or taken (a large request takes its pages
 * one at a time, a page every few dozen slow paths: counting from the last one kept released
 * the pool early in the request that was using it), at any collect of the thread, and at
 * thread exit. */
#include "internal.h"

/* What a thread keeps: at least a small request's worth of pages (64 pages of 64 KiB), at
 * most a large one's, whatever its last destroyed instance had. */
#define SPARE_BYTES_MIN ((size_t)4 << 20)
#define SPARE_BYTES_MAX ((size_t)32 << 20)
/* Generic-path calls of the thread before unused spare pages go back (as retired pages). */
#define SPARE_CYCLES PAGE_RETIRE_CYCLES

static size_t page_bytes(const page_t *page) { return (size_t)page->slice_count * SLICE_SIZE; }

static size_t spare_limit(const thread_t *thread) {
  return thread->spare_limit > SPARE_BYTES_MIN ? thread->spare_limit : SPARE_BYTES_MIN;
}

void _sa_spare_limit_set(thread_t *thread, size_t page_bytes) {
  thread->spare_limit = page_bytes < SPARE_BYTES_MAX ? page_bytes : SPARE_BYTES_MAX;
}

size_t _sa_spare_put(heap_t *heap, page_queue_t *queue, page_t *page) {
  thread_t *thread = heap->thread;
  sa_assert(page->used == 0 && !page->flags.x.in_full);
  size_t bytes = page_bytes(page);
  if (page->flags.x.check_free || thread->spare_bytes + bytes > spare_limit(thread)) /* large */
    return 0;
  if (page->retire_expire != 0) heap->retired_bytes -= bytes;
  sa_page_count_used(page, thread);
  sa_thread_stat_add(&thread->stats.pages[page->bin], -1);
  _sa_page_queue_remove(heap, queue, page);
  heap->page_count--;
  /* empty, as a page fresh from its segment but for is_zero: the memory was used */
  page->flags.any = 0;
  page->retire_expire = 0;
  page->is_zero = 0;
  page->capacity = 0;
  page->used_counted = 0;
  page->free = NULL;
  page->local_free = NULL;
  atomic_store_explicit(&page->xthread_free, 0, memory_order_relaxed);
  atomic_store_explicit(&page->heap, NULL, memory_order_relaxed);
  page->prev = NULL;
  page->next = thread->spare[page->bin];
  thread->spare[page->bin] = page;
  thread->spare_bytes += bytes;
  thread->spare_expire = SPARE_CYCLES;
  return bytes;
}

void _sa_spare_counted(int64_t bytes) {
  if (bytes != 0) _sa_stat_add(SA_STAT_spare, bytes);
}

page_t *_sa_spare_take(thread_t *thread, size_t bin) {
  page_t *page = thread->spare[bin];
  if (page == NULL) return NULL;
  thread->spare[bin] = page->next;
  page->next = NULL;
  thread->spare_bytes -= page_bytes(page);
  thread->spare_expire = SPARE_CYCLES; /* the pool is in use: the rest waits from now */
  /* a block of a destroyed heap freed by another thread that read the page as in use just
   * before it was kept (the free itself reports it once the page is kept: free.c) */
  if (sa_unlikely(atomic_load_explicit(&page->xthread_free, memory_order_relaxed) != 0)) {
    uintptr_t x = atomic_exchange_explicit(&page->xthread_free, 0, memory_order_acquire);
    _sa_misuse("free", sa_xthread_block(x), "free of a block of a destroyed heap");
  }
  page->flags.any = PAGE_FLAGS_FAST; /* no large page is kept: check_free stays clear */
  _sa_stat_add(SA_STAT_spare, -(int64_t)page_bytes(page));
  return page;
}

void _sa_spare_release(thread_t *thread) {
  if (thread->spare_bytes == 0) return;
  int64_t released = 0;
  for (size_t bin = 0; bin < BIN_COUNT; bin++) {
    while (thread->spare[bin] != NULL) {
      page_t *page = thread->spare[bin];
      thread->spare[bin] = page->next;
      page->next = NULL;
      released += (int64_t)page_bytes(page);
      _sa_segment_page_free(page, thread);
    }
  }
  thread->spare_bytes = 0;
  _sa_stat_add(SA_STAT_spare, -released);
}

void _sa_spare_tick(thread_t *thread) {
  if (thread->spare_expire > 1) thread->spare_expire--;
  else _sa_spare_release(thread);
}

/* The invariants of thread_t's spare lists (types.h), one SA_CHECK each. */
bool _sa_spare_check(const thread_t *thread) {
  size_t bytes = 0;
  for (size_t bin = 0; bin < BIN_COUNT; bin++) {
    for (const page_t *page = thread->spare[bin]; page != NULL; page = page->next) {
      SA_CHECK(page->bin == bin);
      SA_CHECK(page->slice_count != 0 && sa_block_size(page) <= MEDIUM_BLOCK_MAX);
      SA_CHECK(page->flags.any == 0 && page->retire_expire == 0);
      SA_CHECK(page->used == 0 && page->capacity == 0 && page->used_counted == 0);
      SA_CHECK(page->free == NULL && page->local_free == NULL);
      SA_CHECK(atomic_load_explicit(&page->xthread_free, memory_order_relaxed) == 0);
      SA_CHECK(atomic_load_explicit(&page->heap, memory_order_relaxed) == NULL);
      SA_CHECK(page->prev == NULL);
      const segment_t *segment = sa_segment_of(page);
      SA_CHECK(segment->owner == thread);
      size_t index = (size_t)(page - segment->pages);
      SA_CHECK((segment->used_slices[index / 64] >> (index % 64)) & 1);
      bytes += page_bytes(page);
    }
  }
  SA_CHECK(bytes == thread->spare_bytes);
  SA_CHECK(bytes <= SPARE_BYTES_MAX); /* a destroy may lower the limit below what is kept */
  SA_CHECK(thread->spare_limit <= SPARE_BYTES_MAX);
  return true;
}
