/* shardalloc: huge blocks, one to a segment, owned by no thread: any thread frees them
 * directly. The block starts at slice 1 (right after the header), so its descriptor is
 * pages[1]. Huge blocks get transparent huge pages (a first touch costs per 2 MiB instead of
 * per 4 KiB), and a freed one waits its purge delay in a small cache for a request of about its
 * size, so a program that frees and allocates big buffers in a loop reuses warm memory. The
 * wait is that of large runs of memory no thread owns (purge.c): a huge block mapped fresh
 * soon after a cached segment expired raises it, up to 8 times the option.
 *
 * Also here: the lists through which a heap finds its huge blocks, and their allocation
 * (called from the generic path, page.c).
 *
 * Locks: the cache is guarded by _sa_segments_lock (segment.c), the heaps' lists by
 * _sa_huge_lock. */
#include <errno.h>
#include <pthread.h>

#include "segment.h"

#define segments_lock _sa_segments_lock
#define HUGE_CACHE_MAX 4
static segment_t *huge_cache; /* freed huge segments, waiting for reuse */
/* When a cached segment last expired (ms; 0: none since a fresh one was mapped): a huge
 * block mapped fresh soon after wanted that memory, and raises the delay (purge.c). */
static _Atomic(int64_t) huge_expired_at;
static size_t huge_cache_count;
static void huge_release(segment_t *segment);

/* ---- Huge segments ------------------------------------------------------------------------- */
/* A cached segment smaller than `total` made `total` bytes long: its mapping moves to a fresh
 * aligned place (mremap) with fresh memory after it, so the memory the last block touched is
 * used again instead of being given back while as much is faulted in anew. NULL (the segment
 * released) where the move fails, or where the mapping is more than one (secure mode's guard
 * page) or a memory checker follows its contents. */
static segment_t *huge_segment_grow(segment_t *segment, size_t total) {
#if !SA_SECURE && !SA_TRACK
  size_t old = segment->segment_size;
  _sa_segment_map_set(segment, false);
  /* the mapping ends inside a 2 MiB unit (the block's last 64 KiB), which the kernel can map
   * only 4 KiB at a time: once inside the longer mapping, those pages would keep the whole
   * unit from a huge page, so they go first (free memory: nothing to keep) */
  size_t whole = old & ~(THP_SIZE - 1);
  if (whole < old) _sa_purge_range((uint8_t *)segment + whole, old - whole);
  segment_t *moved = _sa_os_move_grow(segment, old, total, SEGMENT_SIZE);
  if (moved != NULL) {
    _sa_stat_add(SA_STAT_mmaps, 1);
    _sa_os_advise_huge_pages(moved, total, true); /* the new part's first touches too */
    moved->segment_size = total;
    if (_sa_segment_map_set(moved, true)) {
      _sa_stat_add(SA_STAT_reserved, (int64_t)(total - old));
      _sa_stat_add(SA_STAT_committed, (int64_t)(total - old));
      return moved;
    }
    moved->segment_size = old; /* beyond the map's range: released as it was counted */
    segment = moved;
  }
#else
  (void)total;
#endif
  huge_release(segment);
  return NULL;
}

static segment_t *huge_cache_take(size_t total) {
  segment_t *best = NULL, *smaller = NULL, *smallest = NULL;
  pthread_mutex_lock(&segments_lock);
  for (segment_t *s = huge_cache; s != NULL; s = s->next) {
    if (s->segment_size >= total && s->segment_size - total <= total / 2 &&
        (best == NULL || s->segment_size < best->segment_size))
      best = s;
    if (s->segment_size < total && (smaller == NULL || s->segment_size > smaller->segment_size))
      smaller = s;
    if (smallest == NULL || s->segment_size < smallest->segment_size) smallest = s;
  }
  /* None fits: the largest smaller one grows into the request; failing that, the smallest
   * (the least likely to fit a later request) goes back now, before the peak grows. */
  segment_t *taken = best != NULL ? best : smaller != NULL ? smaller : smallest;
  if (taken != NULL) {
    list_remove(&huge_cache, taken);
    huge_cache_count--;
  }
  pthread_mutex_unlock(&segments_lock);
  if (best != NULL || taken == NULL) return best;
  if (taken == smaller) return huge_segment_grow(taken, total);
  huge_release(taken);
  return NULL;
}

/* A fresh huge segment of `total` bytes, placed so that segment + at is aligned to `align`. */
static segment_t *huge_segment_new(size_t total, size_t align, size_t at) {
  segment_t *segment = _sa_os_alloc_or_release(total, align, at);
  if (segment == NULL) return NULL;
  _sa_os_advise_huge_pages(segment, total, true); /* before the first touch, the header's */
  segment->segment_size = total;
  if (!_sa_segment_map_set(segment, true)) {
    _sa_os_unmap(segment, total);
    return NULL;
  }
#if SA_SECURE
  _sa_secure_segment_guard(segment, total);
#endif
  segment->kind = SEGMENT_HUGE;
  _sa_stat_add(SA_STAT_reserved, (int64_t)total);
  _sa_stat_add(SA_STAT_committed, (int64_t)total);
  _sa_stat_add(SA_STAT_segments, 1);
  return segment;
}

/* The one page of a huge segment, set up for a new block. */
static page_t *huge_page_init(segment_t *segment, bool fresh) {
  segment->used_pages = 1;
  segment->purge_expire = 0;
  page_t *page = &segment->pages[1];
  memset(page, 0, sizeof(*page));
  page->slice_count = 1;
  page->page_offset = sa_page_offset(page);
  page->bin = BIN_COUNT;
  page->capacity = 1;
  page->reserved = 1;
  page->used = 1;
  page->is_zero = fresh;
  _sa_stat_add(SA_STAT_huge_bytes, (int64_t)(segment->segment_size - SLICE_SIZE));
  return page;
}

page_t *_sa_segment_huge_page_alloc(size_t size) {
  if (size > HUGE_BLOCK_MAX) return NULL;
  size_t total = SLICE_SIZE + mi_good_size(size) + SA_GUARD_SIZE; /* see there */
  segment_t *segment = huge_cache_take(total);
  bool fresh = segment == NULL;
  if (fresh) {
    int64_t expired_at = atomic_exchange_explicit(&huge_expired_at, 0, memory_order_relaxed);
    if (expired_at != 0) _sa_unowned_slices_taken(total / SLICE_SIZE, expired_at);
    if ((segment = huge_segment_new(total, SEGMENT_SIZE, 0)) == NULL) return NULL;
  }
  return huge_page_init(segment, fresh);
}

/* A huge block handed out at `*p`, with *p + offset aligned to `alignment` >= SEGMENT_SIZE.
 * For offset 0 such a pointer starts a unit, so no header can share its unit and precede it:
 * the segment starts at the last unit start at least a slice before *p (its header there, the
 * block from slice 1 as in every huge segment), which puts *p 64 KiB to 32 MiB + 64 KiB in.
 * Where *p is in the segment's first unit, the slices up to it lead back to the page, as for
 * smaller alignments; where it is in the second, that unit has no segment-map entry, so free
 * and usable_size find the segment through _sa_segment_of_any (the unmapped path). The
 * mapping is always fresh: a cached segment's placement would not fit. */
page_t *_sa_segment_huge_page_alloc_aligned(size_t size, size_t alignment, size_t offset,
                                            void **p) {
  sa_assert(alignment >= SEGMENT_SIZE && sa_is_power_of_two(alignment));
  if (size > HUGE_BLOCK_MAX) return NULL;
  offset &= alignment - 1;
  size_t in_unit = (SEGMENT_SIZE - (offset & SEGMENT_MASK)) & SEGMENT_MASK; /* *p in its unit */
  size_t lead = in_unit >= SLICE_SIZE ? in_unit : in_unit + SEGMENT_SIZE;   /* *p - segment */
  size_t total = sa_align_up(lead + (size == 0 ? 1 : size), _sa_os_page_size()) + SA_GUARD_SIZE;
  segment_t *segment = huge_segment_new(total, alignment, lead + offset);
  if (segment == NULL) return NULL;
  page_t *page = huge_page_init(segment, true);
  *p = (uint8_t *)segment + lead;
  page->flags.x.has_aligned = 1;
  if (lead < SEGMENT_SIZE) _sa_segment_huge_interior(page, *p);
  return page;
}

static void huge_release(segment_t *segment) {
  _sa_stat_add(SA_STAT_committed, -(int64_t)segment->segment_size);
  _sa_segment_release(segment);
}

void _sa_huge_cache_collect(int64_t now, bool all) {
  segment_t *expired = NULL;
  pthread_mutex_lock(&segments_lock);
  for (segment_t *s = huge_cache, *next; s != NULL; s = next) {
    next = s->next;
    if (all || s->purge_expire <= now) {
      list_remove(&huge_cache, s);
      huge_cache_count--;
      list_push(&expired, s);
    }
  }
  pthread_mutex_unlock(&segments_lock);
  if (expired != NULL && !all) atomic_store_explicit(&huge_expired_at, now, memory_order_relaxed);
  while (expired != NULL) {
    segment_t *s = expired;
    expired = s->next;
    huge_release(s);
  }
}

/* An aligned pointer handed out at `p` inside a huge block: let the slices up to it lead
 * back to the page, so that page_of(p) finds it. */
void _sa_segment_huge_interior(page_t *page, const void *p) {
  segment_t *segment = sa_segment_of(page);
  size_t last = ((uintptr_t)p - (uintptr_t)segment) >> SLICE_SHIFT;
  sa_assert(last < SLICES_PER_SEGMENT);
  for (size_t i = 2; i <= last; i++) segment->pages[i].page_offset = sa_page_offset(page);
}

void _sa_segment_huge_free(segment_t *segment) {
  sa_assert(segment->kind == SEGMENT_HUGE);
  atomic_store_explicit(&segment->pages[1].xthread_free, HUGE_FREED, memory_order_relaxed);
  _sa_stat_add(SA_STAT_huge_bytes, -(int64_t)(segment->segment_size - SLICE_SIZE));
  long delay = _sa_huge_purge_delay(segment->segment_size);
  if (delay > 0) {
    if (segment->pages[1].flags.x.has_aligned) /* forget the interior pointers' slices */
      memset(&segment->pages[2], 0, (SLICES_PER_SEGMENT - 2) * sizeof(page_t));
    int64_t expire = _sa_clock_ms() + delay;
    segment->purge_expire = expire;
    pthread_mutex_lock(&segments_lock);
    bool cached = huge_cache_count < HUGE_CACHE_MAX;
    if (cached) {
      list_push(&huge_cache, segment);
      huge_cache_count++;
    }
    pthread_mutex_unlock(&segments_lock);
    /* from here another thread may take the segment out of the cache and unmap it
     * (huge_cache_take, huge_cache_collect): only the local copy of its expiry is read */
    if (cached) {
      _sa_unowned_note_purge(expire); /* may wake the housekeeper: outside the lock */
      return;
    }
  }
  huge_release(segment);
}

int64_t _sa_huge_cache_next_due(int64_t next) {
  for (segment_t *s = huge_cache; s != NULL; s = s->next)
    if (next == 0 || s->purge_expire < next) next = s->purge_expire;
  return next;
}

/* ---- The huge pages of each heap ----------------------------------------------------------
 * A huge block has no owner thread: any thread frees it at once (returning its memory then).
 * So that mi_heap_delete and mi_heap_destroy can find them, the huge pages of a heap are
 * linked into heap->huge_pages under one global lock: every huge allocation and free calls
 * mmap or munmap anyway, so the lock costs nothing that shows. Pages of exited threads'
 * heaps wait in `huge_orphans` (heap NULL). */
pthread_mutex_t _sa_huge_lock = PTHREAD_MUTEX_INITIALIZER; /* init.c: fork */
static page_t *huge_orphans;

static page_t **huge_list_of(heap_t *heap) { return heap != NULL ? &heap->huge_pages : &huge_orphans; }

static void huge_push(page_t **list, page_t *page) {
  page->prev = NULL;
  page->next = *list;
  if (*list != NULL) (*list)->prev = page;
  *list = page;
}

void _sa_heap_huge_add(heap_t *heap, page_t *page) {
  pthread_mutex_lock(&_sa_huge_lock);
  atomic_store_explicit(&page->heap, heap, memory_order_relaxed);
  huge_push(huge_list_of(heap), page);
  pthread_mutex_unlock(&_sa_huge_lock);
}

void _sa_heap_huge_remove(page_t *page) {
  pthread_mutex_lock(&_sa_huge_lock);
  page_t **list = huge_list_of(atomic_load_explicit(&page->heap, memory_order_relaxed));
  if (page->prev != NULL) page->prev->next = page->next;
  else *list = page->next;
  if (page->next != NULL) page->next->prev = page->prev;
  pthread_mutex_unlock(&_sa_huge_lock);
}

/* Move every huge page of `from` to `to` (NULL: the orphans). */
void _sa_heap_huge_move(heap_t *from, heap_t *to) {
  pthread_mutex_lock(&_sa_huge_lock);
  while (from->huge_pages != NULL) {
    page_t *page = from->huge_pages;
    from->huge_pages = page->next;
    atomic_store_explicit(&page->heap, to, memory_order_relaxed);
    huge_push(huge_list_of(to), page);
  }
  pthread_mutex_unlock(&_sa_huge_lock);
}

/* ---- Allocation ---------------------------------------------------------------------------- */
void *_sa_malloc_huge(heap_t *heap, size_t size, bool zero) {
  page_t *page = _sa_segment_huge_page_alloc(size);
  if (page == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  _sa_heap_huge_add(heap, page);
  void *p = sa_page_start(page);
  sa_track_malloc(p, sa_block_size(page), zero && page->is_zero);
  if (zero && !page->is_zero) memset(p, 0, size); /* fresh OS memory is zero already */
#if SA_SECURE
  /* a cached segment holds its last owner's data: cleared where that owner touched it */
  else if (!page->is_zero)
    _sa_secure_clear_large(p, sa_block_size(page));
#endif
  return p;
}
