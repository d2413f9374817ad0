/* shardalloc: huge blocks, one to a segment, owned by no thread: any thread frees them
 * directly. The header has the segment's first 2 MiB unit to itself and the block starts at
 * the second (HUGE_BLOCK_OFFSET), so its descriptor is pages[HUGE_PAGE_INDEX]. The mapping
 * spans whole 2 MiB units; the block's get transparent huge pages (a first touch costs per
 * 2 MiB instead of per 4 KiB), the header's does not: at its first write the kernel would
 * map all 2 MiB of it for a few KiB of header (a block of 8 MiB took 10 MiB when it started
 * right after the header, sharing that unit). A freed one waits its purge delay in a
 * cache, from which a later request takes a segment cut to its size, or grown to it, so a
 * program that frees and allocates big buffers in a loop reuses warm memory. The wait is that
 * of large runs of memory no thread owns (purge.c): a huge block mapped fresh soon after a
 * cached segment expired raises it, up to 8 times the option.
 *
 * Also here: realloc between huge sizes (in place, or the mapping moved), the lists through
 * which a heap finds its huge blocks, and their allocation (called from the generic path,
 * page.c).
 *
 * Locks: the cache is guarded by _sa_segments_lock (segment.c), the heaps' lists by
 * _sa_huge_lock. */
#include <errno.h>
#include <pthread.h>

#include "segment.h"

#define segments_lock _sa_segments_lock
/* Freed huge segments kept for reuse at most (each until its purge delay): 4 sent half of a
 * program's eight 8 MiB buffers back to the OS each round (bench/c/realloc_heavy). */
#define HUGE_CACHE_MAX 16
static segment_t *huge_cache; /* freed huge segments, waiting for reuse */
/* When a cached segment last expired (ms; 0: none since a fresh one was mapped): a huge
 * block mapped fresh soon after wanted that memory, and raises the delay (purge.c). */
static _Atomic(int64_t) huge_expired_at;
static size_t huge_cache_count;
static void huge_release(segment_t *segment);

/* ---- Huge segments ------------------------------------------------------------------------- */
/* The memory a huge segment of `total` bytes counts as committed: its header's unit as the one
 * slice the header spans, the rest whole. */
static int64_t huge_committed(size_t total) {
  return (int64_t)(total - HUGE_BLOCK_OFFSET + SLICE_SIZE);
}

/* Make `segment` (`total` bytes mapped there, its header zero) a huge segment of ours. False,
 * and nothing changed, where the segment map cannot cover it. */
static bool huge_segment_setup(segment_t *segment, size_t total) {
  segment->segment_size = total;
  if (!_sa_segment_map_set(segment, true)) return false;
#if SA_SECURE
  _sa_secure_segment_guard(segment, total);
#endif
  segment->kind = SEGMENT_HUGE;
  _sa_stat_add(SA_STAT_reserved, (int64_t)total);
  _sa_stat_add(SA_STAT_committed, huge_committed(total));
  _sa_stat_add(SA_STAT_segments, 1);
  return true;
}

/* The mapping of a block of `block_size` bytes: the header's unit and the block, in whole
 * 2 MiB units, and in secure builds a unit more for the guard at the end. In the block's last
 * unit the guard would split the mapping there, and the kernel maps a unit that a mapping
 * covers only in part 4 KiB at a time: large_blocks took 51,581 page faults for 575. */
static size_t huge_total(size_t block_size) {
  return HUGE_BLOCK_OFFSET + sa_align_up(block_size, THP_SIZE) + (SA_SECURE ? THP_SIZE : 0);
}

/* A fresh huge segment of `total` bytes, placed so that segment + at is aligned to `align`. */
static segment_t *huge_segment_new(size_t total, size_t align, size_t at) {
  segment_t *segment = _sa_os_alloc_or_release(total, align, at);
  if (segment == NULL) return NULL;
  /* the block's units, before their first touch; not the header's */
  _sa_os_advise_huge_pages((uint8_t *)segment + HUGE_BLOCK_OFFSET, total - HUGE_BLOCK_OFFSET,
                           true);
  if (!huge_segment_setup(segment, total)) {
    _sa_os_unmap(segment, total);
    return NULL;
  }
  return segment;
}

#if !SA_SECURE && !SA_TRACK
/* What a huge segment's header holds: its fields and the descriptors up to the block's. */
#define HUGE_HEADER_BYTES (offsetof(segment_t, pages) + (HUGE_PAGE_INDEX + 1) * sizeof(page_t))

/* A fresh aligned place for a huge segment of `total` bytes that the segment map covers, or
 * NULL. Its header unit stays as mapped: fresh, without the huge page advice. */
static uint8_t *huge_place(size_t total) {
  uint8_t *to = _sa_os_alloc_aligned(total, SEGMENT_SIZE);
  if (to != NULL && !_sa_segment_map_covers(to, total)) {
    _sa_os_free(to, total); /* beyond the map's range */
    return NULL;
  }
  return to;
}

/* A huge segment made `total` > its size bytes long at a fresh place: the block's mapping
 * moves there (mremap), its pages and their advice along, the place's fresh rest after them
 * gets the advice too, and the header is copied in front. A failure leaves the segment as it
 * was (mapped, in the map): NULL then. Not in secure builds (the guard page is a mapping of
 * its own) nor under a memory checker (it follows contents, not moves). */
static segment_t *huge_segment_move_grow(segment_t *segment, size_t total) {
  size_t old = segment->segment_size;
  uint8_t *to = huge_place(total);
  if (to == NULL) return NULL;
  _sa_segment_map_set(segment, false); /* read through the old place, gone after the move */
  if (_sa_os_move_to((uint8_t *)segment + HUGE_BLOCK_OFFSET, old - HUGE_BLOCK_OFFSET,
                     old - HUGE_BLOCK_OFFSET, to + HUGE_BLOCK_OFFSET) == NULL) {
    _sa_os_free(to, HUGE_BLOCK_OFFSET);   /* the block's part of the place went with the */
    _sa_os_free(to + old, total - old);   /* failed move; its header's unit and the rest */
    _sa_segment_map_set(segment, true);   /* covered before */
    return NULL;
  }
  _sa_os_advise_huge_pages(to + old, total - old, true); /* the fresh rest */
  segment_t *moved = (segment_t *)to;
  memcpy(moved, segment, HUGE_HEADER_BYTES);
  moved->segment_size = total;
  moved->huge_dirty = total - HUGE_BLOCK_OFFSET; /* a live block's: it may grow into it */
  _sa_os_unmap(segment, HUGE_BLOCK_OFFSET); /* the old header's unit */
  _sa_stat_add(SA_STAT_mmaps, 1);
  _sa_stat_add(SA_STAT_reserved, (int64_t)(total - old));
  _sa_stat_add(SA_STAT_committed, (int64_t)(total - old));
  _sa_segment_map_set(moved, true); /* checked by huge_place */
  return moved;
}
#endif

/* Put a freed (or split off) huge segment into the cache; false where the cache is full. */
static bool huge_cache_put(segment_t *segment) {
  pthread_mutex_lock(&segments_lock);
  bool cached = huge_cache_count < HUGE_CACHE_MAX;
  if (cached) {
    list_push(&huge_cache, segment);
    huge_cache_count++;
  }
  pthread_mutex_unlock(&segments_lock);
  return cached;
}

#if !SA_SECURE && !SA_TRACK
/* A cached segment larger than the request cut to `total` bytes: its tail, memory the last
 * block touched, moves (mremap) to an aligned place of its own and waits in the cache as a
 * segment for a later request, or goes back to the OS where it is too small for any huge
 * block or the cache is full. Without the cut, a request of 6 MiB after a freed 24 MiB block
 * either mapped 6 MiB anew (faults) while the 24 MiB waited, or took all of it (resident
 * memory it never uses). Both parts are whole 2 MiB units (mi_good_size), so each keeps its
 * huge pages. Secure builds (a guard page ends the segment) and builds followed by a memory
 * checker do not cut. */
static segment_t *huge_segment_split(segment_t *segment, size_t total) {
  size_t old = segment->segment_size, tail = old - total;
  sa_assert(total % THP_SIZE == 0 && tail % THP_SIZE == 0 && tail > 0);
  size_t head_bytes = total - HUGE_BLOCK_OFFSET, dirty = segment->huge_dirty;
  _sa_segment_map_set(segment, false);
  segment->segment_size = total;
  segment->huge_dirty = dirty < head_bytes ? dirty : head_bytes;
  _sa_segment_map_set(segment, true); /* a part of what it covered: cannot fail */
  _sa_stat_add(SA_STAT_reserved, -(int64_t)tail);
  _sa_stat_add(SA_STAT_committed, -(int64_t)tail);
  uint8_t *rest = (uint8_t *)segment + total;
  /* a cached segment's expiry, or (a live block shrunk) one of its own; 0: no wait */
  int64_t expire = segment->purge_expire;
  if (expire == 0) {
    long delay = _sa_huge_purge_delay(tail);
    if (delay > 0) expire = _sa_clock_ms() + delay;
  }
  /* the tail's units are a block's: they move behind a header unit of their own */
  uint8_t *to =
      tail > LARGE_BLOCK_MAX && expire != 0 ? huge_place(HUGE_BLOCK_OFFSET + tail) : NULL;
  if (to != NULL) {
    if (_sa_os_move_to(rest, tail, tail, to + HUGE_BLOCK_OFFSET) == NULL) {
      _sa_os_free(to, HUGE_BLOCK_OFFSET);
    } else {
      segment_t *moved = (segment_t *)to; /* a fresh header: zero */
      _sa_stat_add(SA_STAT_mmaps, 1);
      moved->purge_expire = expire;
      moved->huge_dirty = dirty > head_bytes ? dirty - head_bytes : 0;
      if (!huge_segment_setup(moved, HUGE_BLOCK_OFFSET + tail)) {
        _sa_os_unmap(moved, HUGE_BLOCK_OFFSET + tail);
      } else if (huge_cache_put(moved)) {
        _sa_unowned_note_purge(expire);
      } else {
        huge_release(moved);
      }
      return segment;
    }
  }
  _sa_os_unmap(rest, tail);
  return segment;
}
#endif

#if !SA_SECURE && !SA_TRACK
/* Cached segments, none large enough alone, gathered into one of `total` bytes: each one's
 * block units move (mremap) behind the one before, in a fresh place whose rest gets the huge
 * page advice. (Moved, not grown: a gathered segment spans several mappings, which Linux
 * moves together, since 6.17, but never resizes in one call.) The memory the earlier
 * blocks touched is used again, and only the rest is faulted in anew: a program whose big
 * buffers vary in size (`large_blocks`: 5-25 MiB) had its new blocks take a freed smaller one
 * grown by a fault of every 2 MiB past it, while the tails cut off other blocks waited in the
 * cache until they expired. Where a move fails, the pieces go back to the OS: NULL. */
static segment_t *huge_segment_gather(segment_t **pieces, size_t n, size_t total) {
  uint8_t *to = huge_place(total);
  size_t at = HUGE_BLOCK_OFFSET, dirty = 0, i = 0;
  for (; to != NULL && i < n; i++) {
    segment_t *piece = pieces[i];
    size_t size = piece->segment_size, bytes = size - HUGE_BLOCK_OFFSET;
    _sa_segment_map_set(piece, false); /* read through the old place, gone after the move */
    if (_sa_os_move_to((uint8_t *)piece + HUGE_BLOCK_OFFSET, bytes, bytes, to + at) == NULL) {
      _sa_segment_map_set(piece, true); /* covered before; it goes back below */
      if (at + bytes < total) _sa_os_free(to + at + bytes, total - at - bytes);
      _sa_os_free(to, at); /* the header's unit and the pieces moved so far */
      to = NULL;
      break;
    }
    size_t piece_dirty = at - HUGE_BLOCK_OFFSET + piece->huge_dirty;
    if (piece_dirty > dirty) dirty = piece_dirty;
    _sa_os_unmap(piece, HUGE_BLOCK_OFFSET); /* its header's unit: the piece is gone */
    _sa_stat_add(SA_STAT_committed, -huge_committed(size));
    _sa_stat_add(SA_STAT_reserved, -(int64_t)size);
    _sa_stat_add(SA_STAT_segments, -1);
    at += bytes;
  }
  for (; i < n; i++) huge_release(pieces[i]);
  if (to == NULL) return NULL;
  if (at < total) _sa_os_advise_huge_pages(to + at, total - at, true); /* the fresh rest */
  segment_t *segment = (segment_t *)to; /* a fresh header: zero */
  _sa_stat_add(SA_STAT_mmaps, 1);
  if (!huge_segment_setup(segment, total)) { /* cannot fail: huge_place checked the range */
    _sa_os_unmap(segment, total);
    return NULL;
  }
  segment->huge_dirty = dirty;
  return segment;
}

/* The largest cached segments that fit together in `total` (whole units, at most
 * HUGE_GATHER_MAX), taken out of the cache into `pieces`; how many. Under segments_lock. */
#define HUGE_GATHER_MAX 8
static size_t huge_cache_pick(size_t total, segment_t **pieces) {
  size_t n = 0, room = total - HUGE_BLOCK_OFFSET;
  while (n < HUGE_GATHER_MAX) {
    segment_t *best = NULL;
    for (segment_t *s = huge_cache; s != NULL; s = s->next) {
      size_t bytes = s->segment_size - HUGE_BLOCK_OFFSET;
      if (s->segment_size % THP_SIZE == 0 && bytes <= room &&
          (best == NULL || s->segment_size > best->segment_size))
        best = s;
    }
    if (best == NULL) break;
    list_remove(&huge_cache, best);
    huge_cache_count--;
    room -= best->segment_size - HUGE_BLOCK_OFFSET;
    pieces[n++] = best;
  }
  return n;
}
#endif

/* A cached segment for `total` bytes (whole 2 MiB units): the smallest one at least that
 * large, cut to size (huge_segment_split), so that the block is as large as mi_good_size
 * says; else the largest ones that fit together, gathered (huge_segment_gather). NULL: map a
 * fresh one. */
static segment_t *huge_cache_take(size_t total) {
  segment_t *fit = NULL, *smallest = NULL;
  pthread_mutex_lock(&segments_lock);
  for (segment_t *s = huge_cache; s != NULL; s = s->next) {
    /* a segment of an aligned block may end inside a unit: taken only at its exact size */
    bool cuttable = s->segment_size == total || s->segment_size % THP_SIZE == 0;
    if (s->segment_size >= total && cuttable &&
        (fit == NULL || s->segment_size < fit->segment_size))
      fit = s;
    if (smallest == NULL || s->segment_size < smallest->segment_size) smallest = s;
  }
#if SA_SECURE || SA_TRACK
  /* one mapping per segment (secure mode's guard), or a checker that follows its contents:
   * no cutting or gathering, and a larger one only up to 1.5 times the request */
  if (fit != NULL && fit->segment_size - total > total / 2) fit = NULL;
  size_t n = 0;
#else
  segment_t *pieces[HUGE_GATHER_MAX];
  size_t n = fit == NULL ? huge_cache_pick(total, pieces) : 0;
#endif
  /* none fits, alone or gathered: the smallest (the least likely to fit a later request)
   * goes back now, before the peak grows */
  segment_t *taken = fit != NULL ? fit : n == 0 ? smallest : NULL;
  if (taken != NULL) {
    list_remove(&huge_cache, taken);
    huge_cache_count--;
  }
  pthread_mutex_unlock(&segments_lock);
#if !SA_SECURE && !SA_TRACK
  if (n > 0) return huge_segment_gather(pieces, n, total);
#endif
  if (taken == NULL) return NULL;
  if (taken == fit) {
#if !SA_SECURE && !SA_TRACK
    if (taken->segment_size > total) return huge_segment_split(taken, total);
#endif
    return taken;
  }
  huge_release(taken);
  return NULL;
}

/* The one page of a huge segment, set up for a new block. */
static page_t *huge_page_init(segment_t *segment, size_t block_size) {
  segment->used_pages = 1;
  segment->purge_expire = 0;
  page_t *page = sa_huge_page(segment);
  memset(page, 0, sizeof(*page));
  page->slice_count = 1;
  slices_point_to(segment, HUGE_PAGE_INDEX, 1, page);
  page->bin = BIN_COUNT;
  page->capacity = 1;
  page->reserved = 1;
  page->used = 1;
  page->is_zero = segment->huge_dirty == 0;
  segment->huge_dirty = segment->segment_size - HUGE_BLOCK_OFFSET; /* live: may all be written */
  segment->huge_block_size = block_size;
  _sa_stat_add(SA_STAT_huge_bytes, (int64_t)block_size);
  return page;
}

page_t *_sa_segment_huge_page_alloc(size_t size, size_t *dirty) {
  if (size > HUGE_BLOCK_MAX) return NULL;
  /* The mapping (header unit, block, secure guard) spans whole transparent huge pages: one
   * that ended inside a 2 MiB unit could never have a huge page there, and once the kernel
   * had mapped 4 KiB pages in that unit, its page table kept the unit at 4 KiB pages even
   * after a growth made it whole (huge_segment_grow), fault after fault (`large_blocks`: 17
   * such units took 8,000 of 9,300 faults). The rest of the last unit is address space: the
   * block is mi_good_size (64 KiB steps), and a later, larger block may use it. */
  size_t block_size = mi_good_size(size);
  size_t total = huge_total(block_size);
  segment_t *segment = huge_cache_take(total);
  if (segment == NULL) {
    int64_t expired_at = atomic_exchange_explicit(&huge_expired_at, 0, memory_order_relaxed);
    if (expired_at != 0) _sa_unowned_slices_taken(total / SLICE_SIZE, expired_at);
    if ((segment = huge_segment_new(total, SEGMENT_SIZE, 0)) == NULL) return NULL;
  }
  *dirty = segment->huge_dirty;
  return huge_page_init(segment, block_size);
}

/* A huge block handed out at `*p`, with *p + offset aligned to `alignment` >= SEGMENT_SIZE.
 * For offset 0 such a pointer starts a unit, so no header can share its unit and precede it:
 * the segment starts at the last unit start at least HUGE_BLOCK_OFFSET before *p (its header
 * there, the block from HUGE_BLOCK_OFFSET as in every huge segment), which puts *p 2 MiB to
 * 34 MiB in.
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
  size_t lead = in_unit >= HUGE_BLOCK_OFFSET ? in_unit : in_unit + SEGMENT_SIZE; /* *p - seg */
  size_t total = sa_align_up(lead + (size == 0 ? 1 : size), _sa_os_page_size()) + SA_GUARD_SIZE;
  segment_t *segment = huge_segment_new(total, alignment, lead + offset);
  if (segment == NULL) return NULL;
  page_t *page = huge_page_init(segment, total - HUGE_BLOCK_OFFSET - SA_GUARD_SIZE); /* fresh */
  *p = (uint8_t *)segment + lead;
  page->flags.x.has_aligned = 1;
  if (lead < SEGMENT_SIZE) _sa_segment_huge_interior(page, *p);
  return page;
}

static void huge_release(segment_t *segment) {
  _sa_stat_add(SA_STAT_committed, -huge_committed(segment->segment_size));
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
  slices_point_to(segment, HUGE_PAGE_INDEX + 1, last - HUGE_PAGE_INDEX, page);
}

void _sa_segment_huge_free(segment_t *segment) {
  sa_assert(segment->kind == SEGMENT_HUGE);
  page_t *page = sa_huge_page(segment);
  atomic_store_explicit(&page->xthread_free, HUGE_FREED, memory_order_relaxed);
  _sa_stat_add(SA_STAT_huge_bytes, -(int64_t)segment->huge_block_size);
  long delay = _sa_huge_purge_delay(segment->segment_size);
  if (delay > 0) {
    if (page->flags.x.has_aligned) /* forget the interior pointers' slices */
      memset(&segment->page_offsets[HUGE_PAGE_INDEX + 1], 0,
             (SLICES_PER_SEGMENT - HUGE_PAGE_INDEX - 1) * sizeof(segment->page_offsets[0]));
    int64_t expire = _sa_clock_ms() + delay;
    segment->purge_expire = expire;
    bool cached = huge_cache_put(segment);
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

/* ---- Reallocation -------------------------------------------------------------------------
 * A huge block resized to another huge size keeps its memory, as glibc's mremap of its mmapped
 * chunks does: within its mapping (whole 2 MiB units) only its size changes, and a shrink
 * cuts the units it no longer needs (huge_segment_split); beyond it, the mapping moves
 * (mremap) to a larger aligned place with fresh memory after it, pages and all, instead of a
 * copy (huge_segment_move_grow). The block's page descriptor lies in the segment header, which
 * is copied to the new place, so it leaves its heap's list of huge pages for the move. NULL where it cannot (an aligned block,
 * secure and memory-checker builds outside the mapping, a failed move): the caller copies. */
void *_sa_huge_realloc(void *p, size_t newsize, bool zero) {
  /* not sa_segment_of: a block aligned to 32 MiB or more may start in its mapping's second
   * unit (such blocks are not resized here, but must be told apart first) */
  segment_t *segment = _sa_segment_of_any(p);
  if (segment == NULL || segment->kind != SEGMENT_HUGE) return NULL;
  page_t *page = sa_huge_page(segment);
  if (page->flags.x.has_aligned || p != sa_page_start(page)) return NULL;
  size_t old_block = segment->huge_block_size, old_total = segment->segment_size;
  size_t block_size = mi_good_size(newsize);
  size_t total = huge_total(block_size);
  /* the part of the old mapping the block now takes may hold an earlier block's data */
  size_t stale_end = old_total - HUGE_BLOCK_OFFSET - SA_GUARD_SIZE;
#if SA_SECURE || SA_TRACK
  if (total > old_total) return NULL;
#else
  if (total > old_total) {
    heap_t *heap = atomic_load_explicit(&page->heap, memory_order_relaxed);
    _sa_heap_huge_remove(page);
    segment_t *moved = huge_segment_move_grow(segment, total);
    if (moved != NULL) segment = moved;
    page = sa_huge_page(segment);
    _sa_heap_huge_add(heap, page); /* moved or, the move failed, where it was */
    if (moved == NULL) return NULL;
  } else if (total < old_total) {
    huge_segment_split(segment, total);
  }
#endif
  if (zero && block_size > old_block)
    memset((uint8_t *)sa_page_start(page) + old_block, 0,
           (block_size < stale_end ? block_size : stale_end) - old_block);
  segment->huge_block_size = block_size;
  _sa_stat_add(SA_STAT_huge_bytes, (int64_t)block_size - (int64_t)old_block);
  void *q = sa_page_start(page);
  sa_track_resize(q, old_block, block_size);
  return q;
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
  size_t dirty;
  page_t *page = _sa_segment_huge_page_alloc(size, &dirty);
  if (page == NULL) {
    errno = ENOMEM;
    return NULL;
  }
  _sa_heap_huge_add(heap, page);
  void *p = sa_page_start(page);
  sa_track_malloc(p, sa_block_size(page), zero && page->is_zero);
  /* fresh OS memory is zero already; what a cached segment's earlier blocks may have written
   * is cleared up to the block's end, beyond `size` too (mi_rezalloc's growth in place
   * relies on a zero tail) */
  size_t stale = dirty < sa_block_size(page) ? dirty : sa_block_size(page);
  if (zero && stale != 0) memset(p, 0, stale);
#if SA_SECURE
  /* a cached segment holds its last owner's data: cleared where that owner touched it */
  else if (stale != 0)
    _sa_secure_clear_large(p, stale);
#endif
  return p;
}
