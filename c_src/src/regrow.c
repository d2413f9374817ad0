/* shardalloc: where realloc puts a block that grows out of its page. A block that realloc
 * must move to more than REGROW_PAGE_MIN bytes goes into a page of its own (one block, like a
 * large page) placed at the start of the longest free run of the thread's segments, or in its
 * middle when another page of one block in use ends right before the run, and from the next
 * 2 MiB boundary where the run allows (segment.c). Its next growths then stay in place:
 * within the page's slices first, then into the free slices after it (_sa_page_try_resize,
 * page.c), so a buffer doubled from there to megabytes is copied once instead of at every
 * step.
 *
 * A page of one slice (a block of up to 64 KiB: strings grown by appends) that would go to
 * the middle goes right after the growing block in use instead: it has its slice to grow in,
 * and spread as the larger ones, 64 strings of 16 KiB touched every unit of a segment with 4
 * KiB pages, after which no block grown there ever got a huge page. When such a block grows
 * out of its slice with a neighbour after it, it moves, to a page spread and aligned as above
 * that asks for huge pages on its unit (thp.c).
 *
 * Such a page (page_flags_t.grown, also set on any page that realloc resized in place) goes
 * back to its segment as soon as its block is freed, instead of being retired like other
 * pages: the next growing block never takes a retired page, so a retired one only held its
 * slices (and, in front of the free run, pushed the next growing block to fresh memory: a
 * buffer grown and freed in a loop walked through 16 MiB of pages). Freed, its slices are
 * the start of the free run again, and the next growing block reuses them.
 *
 * The price is memory: such a page is at least one slice (64 KiB) for one block of more than
 * REGROW_PAGE_MIN bytes (the next class is 10 KiB: up to 6.4 times the block in slices; only
 * what is touched is resident), and only for blocks that realloc grew. Blocks allocated at
 * their size stay in shared pages.
 *
 * Secure mode: the page gets the guard of a page of blocks over SMALL_BLOCK_MAX when it is
 * made, and resizing in place moves it (segment.c, _sa_segment_page_grow and _shrink). */
#include "internal.h"

void *_sa_regrow_alloc(heap_t *heap, size_t newsize, bool zero) {
  thread_t *thread = heap->thread;
  if (thread == NULL) return NULL; /* no instance yet: the generic path sets one up */
  size_t bin = sa_bin(newsize);
  sa_house_enter(thread);
  page_t *page = _sa_segment_page_alloc_growing(thread, sa_bin_size(bin), bin);
  void *p = NULL;
  if (page != NULL) {
    atomic_store_explicit(&page->heap, heap, memory_order_relaxed);
    heap->page_count++;
    sa_thread_stat_add(&thread->stats.pages[bin], 1);
    /* never-used page space is no-access to a memory checker (track.h) */
    sa_track_mem_noaccess(sa_page_start(page), (size_t)page->slice_count * SLICE_SIZE);
    _sa_page_queue_push(heap, &heap->pages[bin], page);
    p = _sa_page_take_unused(page, zero);
  }
  sa_assert_expensive(_sa_heap_check(heap));
  sa_house_exit(thread);
  return p;
}
