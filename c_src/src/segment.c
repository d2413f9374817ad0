/* shardalloc: segments. Address space comes from the OS in SEGMENT_SIZE-aligned segments;
 * a segment is carved into 64 KiB slices; a page is a run of slices. Here: a segment's life
 * (from the OS or the arena, attached to a thread, cached when empty, released), the placement
 * of pages in a thread's segments, and the abandoned list through which the memory of exited
 * threads is reclaimed. The segment map is in segmap.c, purging in purge.c, huge segments in
 * huge.c; segment.h holds what these files share.
 *
 * Locks: `segments_lock` guards the caches (of empty segments here, of huge ones in huge.c)
 * and the abandoned list. It is taken only on slow paths (a new or an empty segment, thread
 * exit, reclaim, a due purge of segments no thread owns, which madvises under it: those
 * segments must not be taken meanwhile). */
#include <pthread.h>

#include "segment.h"

/* ---- Global lists: empty segments kept for reuse, abandoned segments -------------------- */
pthread_mutex_t _sa_segments_lock = PTHREAD_MUTEX_INITIALIZER; /* init.c: fork */
#define segments_lock _sa_segments_lock
static segment_t *segment_cache; /* newest first: a thread takes the warmest */
static _Atomic(size_t) segment_cache_count; /* read without the lock for a cheap peek */
/* Segments owned by threads now, and the most ever at once: how many a wave of exiting
 * threads can leave empty, and a wave of new ones want (the cache's size, below). */
static _Atomic(size_t) owned_count;
static _Atomic(size_t) owned_peak;
static segment_t *abandoned;
static _Atomic(size_t) abandoned_count;
/* ms: earliest purge due in a cached or abandoned segment; 0: none. Read without the lock so
 * that housekeeping takes the lock only when a purge is due. */
static _Atomic(int64_t) unowned_purge_next;

/* Called with no lock of ours held: it may wake the housekeeper (hk_lock). */
void _sa_unowned_note_purge(int64_t expire) {
  if (expire == 0) return;
  _sa_housekeeper_note(0, expire);
  int64_t next = atomic_load_explicit(&unowned_purge_next, memory_order_relaxed);
  while ((next == 0 || expire < next) &&
         !atomic_compare_exchange_weak_explicit(&unowned_purge_next, &next, expire,
                                                memory_order_relaxed, memory_order_relaxed)) {
  }
}

int64_t _sa_unowned_purge_next(void) {
  return atomic_load_explicit(&unowned_purge_next, memory_order_relaxed);
}

/* ---- The size of the segment cache ---------------------------------------------------------
 * The segment_cache option's count of empty segments stays cached for good. Beyond it the
 * cache holds up to as many as threads have owned at once, so that when hundreds of threads
 * exit and hundreds start, the new ones take the old ones' segments warm (the header and
 * the free memory not purged yet: no mmap, no munmap, fewer page faults) instead of mapping
 * fresh ones. Those extras cost address space and their header pages only (their free
 * memory is purged after the delay as any), and go back to the OS once they sat in the cache
 * CACHE_EXTRA_DELAYS purge delays (1 s by default); with a purge delay of 0 there are none,
 * with purging off (< 0) they stay. An option of 0 caches nothing. */
#define CACHE_EXTRA_DELAYS 40

static size_t cache_keep(void) {
  return (size_t)mi_option_get_clamp(mi_option_segment_cache, 0, 64);
}

/* ms an extra cached segment may sit unused; 0: none may be kept; -1: no limit. */
static int64_t cache_extra_ms(void) {
  long delay = mi_option_get(mi_option_purge_delay);
  return delay < 0 ? -1 : (int64_t)delay * CACHE_EXTRA_DELAYS;
}

static size_t cache_capacity(void) {
  size_t keep = cache_keep();
  if (keep == 0 || cache_extra_ms() == 0) return keep;
  size_t peak = atomic_load_explicit(&owned_peak, memory_order_relaxed);
  return peak > keep ? peak : keep;
}

/* Unlink the extras (beyond the option's count) that sat in the cache `extra_ms` or longer
 * into `*expired` (segments_lock held); returns the earliest time another one is due (0:
 * none). The list is newest first, so those are at its end. */
static int64_t cache_expire(int64_t now, segment_t **expired) {
  int64_t extra_ms = cache_extra_ms();
  if (extra_ms < 0) return 0;
  int64_t next = 0;
  size_t position = 0, keep = cache_keep();
  segment_t *s = segment_cache;
  while (s != NULL) {
    segment_t *after = s->next;
    if (position++ >= keep) {
      int64_t due = s->cached_at + extra_ms;
      if (due <= now) {
        list_remove(&segment_cache, s);
        segment_cache_count--;
        list_push(expired, s);
      } else if (next == 0 || due < next) {
        next = due;
      }
    }
    s = after;
  }
  return next;
}

/* ---- Segment lifetime ---------------------------------------------------------------- */
static void segment_attach(segment_t *segment, thread_t *thread) {
  size_t owned = atomic_fetch_add_explicit(&owned_count, 1, memory_order_relaxed) + 1;
  size_t peak = atomic_load_explicit(&owned_peak, memory_order_relaxed);
  while (owned > peak && !atomic_compare_exchange_weak_explicit(&owned_peak, &peak, owned,
                                                                memory_order_relaxed,
                                                                memory_order_relaxed)) {
  }
  segment->owner = thread;
  segment->adopted_at = _sa_clock_ms();
  atomic_store_explicit(&segment->thread_id, thread->thread_id, memory_order_release);
  list_push(&thread->segments, segment);
  thread->segment_count++;
  _sa_thread_note_purge(thread, segment->purge_expire);
  _sa_owned_add(segment);
}

static void segment_detach(segment_t *segment, thread_t *thread) {
  atomic_fetch_sub_explicit(&owned_count, 1, memory_order_relaxed);
  _sa_owned_remove(segment);
  list_remove(&thread->segments, segment);
  thread->segment_count--;
  segment->owner = NULL;
  atomic_store_explicit(&segment->thread_id, 0, memory_order_release);
}

/* Address space from the OS. When it refuses, what we keep for reuse goes back first (cached
 * empty and huge segments, pending purges) and the request is tried once more: memory freed
 * just before must serve the next request, delays or not. No lock may be held. */
void *_sa_os_alloc_or_release(size_t size, size_t align, size_t at) {
  void *p = _sa_os_alloc_aligned_at(size, align, at);
  if (p == NULL) {
    _sa_segment_caches_release();
    _sa_segments_purge_all(true);
    p = _sa_os_alloc_aligned_at(size, align, at);
  }
  if (p != NULL) _sa_stat_add(SA_STAT_mmaps, 1);
  return p;
}

void _sa_os_unmap(void *p, size_t size) {
  int err = _sa_os_free(p, size);
  if (err != 0) _sa_error("munmap of %zu bytes at %p failed (errno %d)", size, p, err);
}

/* `large_first`: the page it is made for spans a 2 MiB unit or more (thp.c). */
static segment_t *segment_alloc(thread_t *thread, bool large_first) {
  segment_t *segment = NULL;
  pthread_mutex_lock(&segments_lock);
  if (segment_cache != NULL) {
    segment = segment_cache;
    list_remove(&segment_cache, segment);
    segment_cache_count--;
  }
  pthread_mutex_unlock(&segments_lock);
  if (segment == NULL) {
    bool in_arena = true;
    segment = _sa_arena_alloc_segment();
    if (segment == NULL) {
      in_arena = false;
      segment = _sa_os_alloc_or_release(SEGMENT_SIZE, SEGMENT_SIZE, 0);
      if (segment == NULL) return NULL;
      if (mi_option_is_enabled(mi_option_allow_large_os_pages))
        _sa_os_advise_huge_pages(segment, SEGMENT_SIZE, true);
      _sa_stat_add(SA_STAT_reserved, SEGMENT_SIZE);
    }
    if (large_first) _sa_thp_segment_advise(segment, true); /* its units but the header's */
    segment->segment_size = SEGMENT_SIZE;
    if (!_sa_segment_map_set(segment, true)) { /* beyond the map's address range: unusable */
      if (!in_arena || !_sa_arena_free_segment(segment)) _sa_os_unmap(segment, SEGMENT_SIZE);
      return NULL;
    }
    /* fresh (or purged) memory is zero: every descriptor reads as a free slice already */
#if SA_SECURE
    _sa_secure_segment_guard(segment, SEGMENT_SIZE);
#endif
    segment->kind = SEGMENT_NORMAL;
    segment->in_arena = in_arena;
    bits_set(segment->used_slices, 0, SEGMENT_HEADER_SLICES, true);
    bits_set(segment->dirty_slices, 0, SEGMENT_HEADER_SLICES, true);
    segment->used_slice_count = SEGMENT_HEADER_SLICES;
    _sa_stat_add(SA_STAT_segments, 1);
    _sa_stat_add(SA_STAT_committed, SEGMENT_HEADER_SLICES * SLICE_SIZE);
  } else if (large_first) {
    _sa_thp_segment_advise(segment, false); /* a cached one: the units it lacks */
  }
  sa_assert(segment->used_pages == 0 && segment->used_slice_count == SEGMENT_HEADER_SLICES);
  segment->large_first = large_first;
  segment_attach(segment, thread);
  return segment;
}

void _sa_segment_release(segment_t *segment) {
  _sa_segment_map_set(segment, false);
  _sa_stat_add(SA_STAT_committed, -(int64_t)(bits_count(segment->dirty_slices) * SLICE_SIZE));
  _sa_stat_add(SA_STAT_segments, -1);
  if (segment->kind == SEGMENT_NORMAL && segment->in_arena) {
    _sa_thp_forget(segment); /* the arena keeps the mapping, and with it the advice */
#if SA_SECURE
    _sa_secure_segment_guards_drop(segment); /* and the protection, but not the header */
#endif
    if (_sa_arena_free_segment(segment)) return;
  }
  _sa_stat_add(SA_STAT_reserved, -(int64_t)segment->segment_size);
  _sa_os_unmap(segment, segment->segment_size);
}

/* An empty segment leaves its thread: into the cache (its free memory purged after the
 * delay, so that a thread that starts soon after reuses it warm), or back to the OS. */
static void segment_free(segment_t *segment, thread_t *thread) {
  sa_assert(segment->used_pages == 0);
  segment_detach(segment, thread);
  size_t capacity = cache_capacity();
  int64_t expire = segment->purge_expire; /* read while the segment is still ours */
  int64_t extra_due = 0;                  /* when it may go back as an extra */
  pthread_mutex_lock(&segments_lock);
  bool cached = segment_cache_count < capacity;
  if (cached) {
    segment->cached_at = _sa_clock_ms();
    list_push(&segment_cache, segment);
    segment_cache_count++;
    if (segment_cache_count > cache_keep()) extra_due = segment->cached_at + cache_extra_ms();
  }
  pthread_mutex_unlock(&segments_lock);
  if (cached) { /* may wake the housekeeper: outside the lock */
    _sa_unowned_note_purge(expire);
    if (extra_due > 0) _sa_unowned_note_purge(extra_due);
  } else {
    _sa_segment_release(segment);
  }
}

void _sa_segment_caches_release(void) {
  _sa_huge_cache_collect(0, true);
  pthread_mutex_lock(&segments_lock);
  segment_t *list = segment_cache;
  segment_cache = NULL;
  segment_cache_count = 0;
  pthread_mutex_unlock(&segments_lock);
  while (list != NULL) {
    segment_t *next = list->next;
    _sa_segment_release(list);
    list = next;
  }
}

/* Purge the segments that no thread owns: cached and abandoned ones (a thread that reclaims
 * an abandoned segment soon gets its free memory back warm, so it keeps its purge delay);
 * extra cached segments that sat unused long enough go back to the OS first. */
void _sa_segment_cache_purge(bool force) {
  int64_t due = atomic_load_explicit(&unowned_purge_next, memory_order_relaxed);
  if (due == 0) return;
  int64_t now = _sa_clock_ms();
  if (!force && now < due) return;
  segment_t *expired = NULL;
  pthread_mutex_lock(&segments_lock);
  int64_t next = cache_expire(now, &expired);
  segment_t *lists[2] = {segment_cache, abandoned};
  for (size_t l = 0; l < 2; l++) {
    for (segment_t *s = lists[l]; s != NULL; s = s->next) {
      int64_t expire = _sa_segment_purge_due(s, now, force, NULL, false);
      if (expire != 0 && (next == 0 || expire < next)) next = expire;
    }
  }
  next = _sa_huge_cache_next_due(next);
  atomic_store_explicit(&unowned_purge_next, next, memory_order_relaxed);
  pthread_mutex_unlock(&segments_lock);
  while (expired != NULL) { /* unmapped outside the lock */
    segment_t *after = expired->next;
    _sa_segment_release(expired);
    expired = after;
  }
  _sa_huge_cache_collect(now, force);
}

/* Take the free slices [start, start + n) into use (owner, purge_lock held; released here).
 * Pending ones are no longer pending; purged ones tell the purge delay (purge.c) that they
 * were wanted again. Returns how many were fresh (never touched, or purged); their bits are
 * set in `fresh_out` if not NULL. */
static size_t slices_take(segment_t *segment, size_t start, size_t n, uint64_t *fresh_out) {
  /* free slices another thread is giving back to the OS right now (purge.c): wait for that
   * one system call, or a block written meanwhile would lose its data to it */
  while (segment->purging_start < start + n && start < segment->purging_end) {
    segment_unlock(segment);
    _sa_os_yield();
    segment_lock(segment);
  }
  size_t fresh = 0, pending = 0, purged = 0;
  uint32_t purged_at = 0; /* the latest stamp */
  for (size_t i = start, left = n; left > 0;) { /* a bitmap word at a time */
    size_t bit = i % 64, take = 64 - bit < left ? 64 - bit : left;
    uint64_t mask = (take == 64 ? ~(uint64_t)0 : (((uint64_t)1 << take) - 1)) << bit;
    uint64_t clean = ~segment->dirty_slices[i / 64] & mask;
    fresh += (size_t)__builtin_popcountll(clean);
    if (fresh_out != NULL) fresh_out[i / 64] |= clean;
    pending += (size_t)__builtin_popcountll(segment->purge_slices[i / 64] & mask);
    for (; clean != 0; clean &= clean - 1) { /* purged by its delay (purge.c)? */
      uint32_t at = segment->purge_at[i / 64 * 64 + (size_t)__builtin_ctzll(clean)];
      if (at == 0) continue;
      if (purged++ == 0 || (int32_t)(at - purged_at) > 0) purged_at = at;
    }
    i += take;
    left -= take;
  }
  bits_set(segment->used_slices, start, n, true);
  bits_set(segment->dirty_slices, start, n, true);
  bits_set(segment->purge_slices, start, n, false);
  segment_unlock(segment);
  int64_t purged_ms = purged != 0 ? purge_stamp_ms(purged_at, _sa_clock_ms()) : 0;
  _sa_thread_slices_taken(segment->owner, pending, purged, purged_ms);
  if (purged != 0 && purged_ms <= segment->adopted_at) _sa_unowned_slices_taken(purged, purged_ms);
  return fresh;
}

/* Clear the block of a new large page where its slices were in use before; fresh ones (never
 * touched, or purged) read as zero already, and writing them would fault them in. */
static void large_block_clear(segment_t *segment, size_t start, size_t block_size,
                              const uint64_t *fresh) {
  uint8_t *block = (uint8_t *)segment + start * SLICE_SIZE;
  size_t slices = (block_size + SLICE_SIZE - 1) / SLICE_SIZE;
  for (size_t i = 0; i < slices;) {
    if (bit_get(fresh, start + i)) {
      i++;
      continue;
    }
    size_t j = i + 1;
    while (j < slices && !bit_get(fresh, start + j)) j++;
    size_t end = j * SLICE_SIZE < block_size ? j * SLICE_SIZE : block_size;
    sa_track_mem_undefined(block + i * SLICE_SIZE, end - i * SLICE_SIZE); /* freed earlier */
    memset(block + i * SLICE_SIZE, 0, end - i * SLICE_SIZE);
    i = j;
  }
}

/* `one_block`: a large page, or a growing block's (regrow.c); `zero`: the page is for calloc
 * (pages of one block make their block zero here). */
static page_t *segment_page_init(segment_t *segment, size_t start, size_t slices,
                                 size_t block_size, size_t bin, bool one_block, bool zero) {
  page_t *page = &segment->pages[start];
  slices_point_to(segment, start, slices, page);
  page->slice_count = (uint16_t)slices;
  page->flags.any = PAGE_FLAGS_FAST;
  page->flags.x.check_free = one_block; /* see page_flags_t */
  page->bin = (uint8_t)bin;
  page->reserved = one_block ? 1
                             : (uint16_t)((slices * SLICE_SIZE -
                                           sa_guard_bytes(start, slices, block_size)) /
                                          block_size);
#if SA_SECURE
  _sa_secure_page_guards(segment, start, slices, block_size);
#endif
  uint64_t fresh_slices[SEGMENT_BITMAP_WORDS] = {0};
  bool clear = zero && page->flags.x.check_free && !SA_SECURE; /* secure: page.c clears */
  segment_lock(segment);
  size_t fresh = slices_take(segment, start, slices, clear ? fresh_slices : NULL);
  page->is_zero = fresh == slices;
  segment->used_slice_count += (uint32_t)slices;
  segment->used_pages++;
  if (fresh > 0) _sa_stat_add(SA_STAT_committed, (int64_t)(fresh * SLICE_SIZE));
  /* large pages ask for transparent huge pages on the units they cover; a smaller page on
   * an advised unit drops the advice (thp.c) */
  _sa_thp_page_init(segment, start, slices, page->flags.x.check_free, fresh > 0);
  if (clear && !page->is_zero) {
    large_block_clear(segment, start, block_size, fresh_slices);
    page->is_zero = 1;
  }
  return page;
}

/* Large pages hold one block; so do the pages of growing blocks (regrow.c). */
static bool page_of_one_block(size_t block_size) { return block_size > MEDIUM_BLOCK_MAX; }

size_t _sa_page_size_of_bin(size_t bin) { return sa_page_slices_for(sa_bin_size(bin)) * SLICE_SIZE; }

/* A page of fewer slices than a 2 MiB unit goes off the units with huge page advice in any
 * of the thread's segments if it fits there, else anywhere (dropping a unit's advice, thp.c);
 * a larger one where thp.c's placement puts it. Segments made for large pages carry the advice
 * on all their units, so small pages fill the others first. */
page_t *_sa_segment_page_alloc(thread_t *thread, size_t block_size, size_t bin, bool zero) {
  size_t slices = sa_page_slices_for(block_size);
  bool large = slices >= THP_SIZE / SLICE_SIZE;
  for (int anywhere = large; anywhere <= 1; anywhere++) {
    for (segment_t *s = thread->segments; s != NULL; s = s->next) {
      if (SLICES_PER_SEGMENT - s->used_slice_count < slices) continue;
      size_t start = _sa_thp_find_slices(s, slices, anywhere);
      if (start != SIZE_MAX)
        return segment_page_init(s, start, slices, block_size, bin,
                                 page_of_one_block(block_size), zero);
    }
  }
  segment_t *segment = segment_alloc(thread, large);
  if (segment == NULL) return NULL;
  size_t start = _sa_thp_find_slices(segment, slices, true);
  sa_assert(start != SIZE_MAX);
  return segment_page_init(segment, start, slices, block_size, bin,
                           page_of_one_block(block_size), zero);
}

/* The start of the segment's longest run of free slices (the first of equal ones) in *start;
 * returns its length. */
static size_t longest_free_run(const segment_t *segment, size_t *start) {
  size_t best_len = 0, i = bits_next_clear(segment->used_slices, 0);
  *start = SIZE_MAX;
  while (i < SLICES_PER_SEGMENT) {
    size_t end = bits_next_set(segment->used_slices, i);
    if (end - i > best_len) {
      best_len = end - i;
      *start = i;
    }
    i = bits_next_clear(segment->used_slices, end);
  }
  return best_len;
}

/* A page of one block that is growing by realloc (regrow.c): at the start of the longest free
 * run of the thread's segments, so that the slices after it stay free for it to grow into
 * (page placement is best-fit, so other pages take smaller holes first). When the run starts
 * right after another page of one block in use, which may be growing too, the page goes to
 * the middle of the run instead, leaving each of them half of it. Either way it starts at the
 * next 2 MiB unit boundary if the run holds a unit or the page from there: a block grown to
 * a megabyte or more then covers whole units, which huge page advice maps whole (thp.c);
 * from anywhere else, each of its two end units would come in as 2 MiB for a part of it
 * (realloc_heavy's peak RSS was 125 MiB for 100 MiB of mimalloc's, now 104). A page of one
 * slice goes to no middle: it stays right after the growing block before it (regrow.c). */
page_t *_sa_segment_page_alloc_growing(thread_t *thread, size_t block_size, size_t bin) {
  size_t slices = sa_one_block_slices(block_size);
  segment_t *best = NULL;
  size_t best_start = SIZE_MAX, best_len = 0;
  for (segment_t *s = thread->segments; s != NULL; s = s->next) {
    if (SLICES_PER_SEGMENT - s->used_slice_count <= best_len) continue;
    size_t start, len = longest_free_run(s, &start);
    if (len > best_len) {
      best = s;
      best_start = start;
      best_len = len;
    }
  }
  if (best_len < slices) {
    best = segment_alloc(thread, slices >= THP_SIZE / SLICE_SIZE);
    if (best == NULL) return NULL;
    best_len = longest_free_run(best, &best_start);
  }
  const page_t *before = sa_page_of(best, (uint8_t *)best + (best_start - 1) * SLICE_SIZE);
  bool after_growing = before->flags.x.check_free && before->used != 0;
  if (slices > 1 || !after_growing) {
    size_t run_end = best_start + best_len;
    if (after_growing && best_len >= 2 * slices) best_start += best_len / 2;
    const size_t unit = THP_SIZE / SLICE_SIZE;
    size_t aligned = sa_align_up(best_start, unit);
    if (aligned + (slices > unit ? slices : unit) <= run_end) best_start = aligned;
  }
  page_t *page = segment_page_init(best, best_start, slices, block_size, bin, true, false);
  page->flags.x.grown = 1;
  if (slices > 1 && page->is_zero) _sa_thp_growing_page(best, best_start, slices);
  return page;
}

/* Slices [start, start + n), marked free, go back to the segment: free, pending purge. */
static void slices_release(segment_t *segment, size_t start, size_t n, thread_t *thread) {
  segment->used_slice_count -= (uint32_t)n;
  segment_lock(segment);
  bits_set(segment->used_slices, start, n, false);
  int64_t expire = _sa_segment_schedule_purge(segment, start, n);
  segment_unlock(segment);
  _sa_thread_note_purge(thread, expire);
  if (expire != 0) {
    thread->purge_pending += n;
    if (thread->purge_pending * SLICE_SIZE > PURGE_PENDING_MAX) _sa_thread_over_budget(thread);
  }
}

/* Give a page's slices back to its segment; true if that left the segment without pages. */
static bool page_slices_free(page_t *page, thread_t *thread) {
  segment_t *segment = sa_segment_of(page);
  sa_assert(segment->kind == SEGMENT_NORMAL && page->slice_count > 0);
  size_t start = (size_t)(page - segment->pages);
  size_t slices = page->slice_count;
  slices_mark_free(segment, start, slices);
  segment->used_pages--;
  slices_release(segment, start, slices, thread);
  return segment->used_pages == 0;
}

void _sa_segment_page_free(page_t *page, thread_t *thread) {
  if (page_slices_free(page, thread)) segment_free(sa_segment_of(page), thread);
}

/* Grow a large page in place to `slices` slices when the slices after it are free (owner
 * only): realloc of a large block then keeps its memory instead of copying it. */
bool _sa_segment_page_grow(page_t *page, size_t slices, size_t block_size) {
  segment_t *segment = sa_segment_of(page);
  size_t start = (size_t)(page - segment->pages);
  size_t old = page->slice_count;
  (void)block_size; /* for the guard (secure mode) */
  if (start + slices > SLICES_PER_SEGMENT) return false;
  segment_lock(segment);
  for (size_t i = start + old; i < start + slices; i++) {
    if (bit_get(segment->used_slices, i)) {
      segment_unlock(segment);
      return false;
    }
  }
  size_t fresh = slices_take(segment, start + old, slices - old, NULL);
  slices_point_to(segment, start + old, slices - old, page);
#if SA_SECURE
  _sa_secure_page_guards(segment, start, slices, block_size); /* moves to the new end */
#endif
  page->slice_count = (uint16_t)slices;
  page->reserved = 1; /* one block */
  segment->used_slice_count += (uint32_t)(slices - old);
  _sa_thp_page_init(segment, start, slices, true, fresh > 0);
  if (fresh > 0) _sa_stat_add(SA_STAT_committed, (int64_t)(fresh * SLICE_SIZE));
  return true;
}

/* Shrink a page of one block in place to `slices` slices for a block of `block_size` (owner
 * only): the slices after go back to the segment, as a freed page's do. */
void _sa_segment_page_shrink(page_t *page, size_t slices, size_t block_size, thread_t *thread) {
  segment_t *segment = sa_segment_of(page);
  size_t start = (size_t)(page - segment->pages);
  size_t old = page->slice_count;
  sa_assert(slices > 0 && slices < old && page->flags.x.check_free);
#if SA_SECURE
  /* the guard moves to the new end; the old end's stays on what is now a free slice */
  _sa_secure_page_guards(segment, start, slices, block_size);
#endif
  (void)block_size;
  slices_mark_free(segment, start + slices, old - slices);
  page->slice_count = (uint16_t)slices;
  slices_release(segment, start + slices, old - slices, thread);
}

/* ---- Abandon and reclaim ------------------------------------------------------------- */
void _sa_segments_abandon(thread_t *thread) {
  while (thread->segments != NULL) {
    segment_t *segment = thread->segments;
    if (segment->used_pages == 0) {
      segment_free(segment, thread);
      continue;
    }
    segment_detach(segment, thread);
    int64_t expire = segment->purge_expire;
    pthread_mutex_lock(&segments_lock);
    list_push(&abandoned, segment);
    atomic_fetch_add_explicit(&abandoned_count, 1, memory_order_relaxed);
    pthread_mutex_unlock(&segments_lock);
    _sa_unowned_note_purge(expire); /* may wake the housekeeper: outside the lock */
    _sa_stat_add(SA_STAT_abandoned, 1);
  }
}

/* Take one abandoned segment into `heap`'s thread. `for_page`: the thread is about to take a
 * page; then a segment that the reclaim leaves without pages stays with it if it owns no
 * other (it would get one from the cache or the OS right after). */
static bool segment_reclaim(heap_t *heap, bool for_page) {
  if (atomic_load_explicit(&abandoned_count, memory_order_relaxed) == 0) return false;
  pthread_mutex_lock(&segments_lock);
  segment_t *segment = abandoned;
  if (segment != NULL) {
    list_remove(&abandoned, segment);
    atomic_fetch_sub_explicit(&abandoned_count, 1, memory_order_relaxed);
  }
  pthread_mutex_unlock(&segments_lock);
  if (segment == NULL) return false;
  _sa_stat_add(SA_STAT_abandoned, -1);

  thread_t *thread = heap->thread;
  bool keep_empty = for_page && thread->segment_count == 0;
  segment_attach(segment, thread);
  /* Walk the pages: collect what other threads freed meanwhile; free empty pages, adopt the
   * rest. Freeing the last page may free the segment, so stop on that. Only the descriptors
   * of used slices are read (the bitmap is ours now): those of free slices may lie on header
   * pages no thread ever touched, and reading them would fault each one in. */
  size_t i = bits_next_set(segment->used_slices, SEGMENT_HEADER_SLICES);
  while (i < SLICES_PER_SEGMENT) {
    page_t *page = &segment->pages[i];
    sa_assert(page->slice_count > 0); /* a used slice after a whole page starts a page */
    i = bits_next_set(segment->used_slices, i + page->slice_count);
    bool last = segment->used_pages == 1;
    _sa_page_collect(page);
    /* the thread's instance of the page's heap takes it (sharedheap.c) */
    heap_t *home = _sa_heap_reclaim_home(thread, page, page->used != 0);
    if (page->used == 0) {
      /* the exited thread counted this page and its blocks; the totals are what count */
      sa_thread_stat_add(&thread->stats.in_use[page->bin], -(int64_t)page->used_counted);
      sa_thread_stat_add(&thread->stats.pages[page->bin], -1);
      if (page_slices_free(page, thread) && !keep_empty) segment_free(segment, thread);
      if (last) break;
    } else {
      _sa_heap_adopt_page(home, page);
      sa_page_count_used(page, thread);
    }
  }
  return true;
}

bool _sa_segment_try_reclaim(heap_t *heap) { return segment_reclaim(heap, false); }

bool _sa_segment_reclaim_for_page(heap_t *heap) { return segment_reclaim(heap, true); }
