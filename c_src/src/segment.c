/* shardalloc: segments. Address space comes from the OS in SEGMENT_SIZE-aligned segments;
 * a segment is carved into 64 KiB slices; a page is a run of slices. Also here: the segment
 * map (which addresses are ours), delayed purging, the caches of empty and of huge segments,
 * and the abandoned list through which the memory of exited threads is reclaimed.
 *
 * Locks: `segments_lock` guards the two caches and the abandoned list. It is taken only on
 * slow paths (a new or an empty segment, thread exit, reclaim, a due purge of segments no
 * thread owns, which madvises under it: those segments must not be taken meanwhile). */
#include <pthread.h>

#include "internal.h"

/* ---- Segment map (internal.h): the segment starting in each SEGMENT_SIZE unit -----------
 * Plus one bit per unit covered by a segment at all: a huge segment spans several units, and
 * only its first has a map entry. Written on segment creation and release only. */
_Atomic(segment_t *) _sa_segment_map[SEGMENT_MAP_UNITS];
static _Atomic(uint64_t) segment_covered[SEGMENT_MAP_UNITS / 64];

static void covered_set(uintptr_t unit, bool on) {
  uint64_t bit = (uint64_t)1 << (unit % 64);
  if (on) atomic_fetch_or_explicit(&segment_covered[unit / 64], bit, memory_order_release);
  else atomic_fetch_and_explicit(&segment_covered[unit / 64], ~bit, memory_order_release);
}

static bool covered_get(uintptr_t unit) {
  if (unit >= SEGMENT_MAP_UNITS) return false;
  return (atomic_load_explicit(&segment_covered[unit / 64], memory_order_acquire) >> (unit % 64)) & 1;
}

/* Enter (or remove) a segment; false if it lies beyond the mapped address range. */
static bool segment_map_set(segment_t *segment, bool on) {
  uintptr_t start = (uintptr_t)segment >> SEGMENT_SHIFT;
  uintptr_t end = ((uintptr_t)segment + segment->segment_size - 1) >> SEGMENT_SHIFT;
  if (end >= SEGMENT_MAP_UNITS) return false;
  for (uintptr_t unit = start; unit <= end; unit++) covered_set(unit, on);
  atomic_store_explicit(&_sa_segment_map[start], on ? segment : NULL, memory_order_release);
  return true;
}

/* The segment holding any address `p`, interior pointers deep into huge blocks included;
 * NULL if `p` is not in memory of ours. */
segment_t *_sa_segment_of_any(const void *p) {
  uintptr_t unit = (uintptr_t)p >> SEGMENT_SHIFT;
  if (!covered_get(unit)) return NULL;
  segment_t *segment;
  while ((segment = atomic_load_explicit(&_sa_segment_map[unit], memory_order_acquire)) == NULL)
    unit--; /* bounded by the huge block's size */
  /* a huge segment need not fill its last unit: the rest may be anyone's mapping */
  if ((uintptr_t)p >= (uintptr_t)segment + segment->segment_size) return NULL;
  return segment;
}

/* ---- Global lists: empty segments kept for reuse, abandoned segments -------------------- */
pthread_mutex_t _sa_segments_lock = PTHREAD_MUTEX_INITIALIZER; /* init.c: fork */
#define segments_lock _sa_segments_lock
static segment_t *segment_cache;
static _Atomic(size_t) segment_cache_count; /* read without the lock for a cheap peek */
static segment_t *abandoned;
static _Atomic(size_t) abandoned_count;
#define HUGE_CACHE_MAX 4
static segment_t *huge_cache; /* freed huge segments, see "Huge segments" */
static size_t huge_cache_count;
static void huge_cache_collect(int64_t now, bool all);
static void huge_release(segment_t *segment);
/* ms: earliest purge due in a cached or abandoned segment; 0: none. Read without the lock so
 * that housekeeping takes the lock only when a purge is due. */
static _Atomic(int64_t) unowned_purge_next;

static void unowned_note_purge(int64_t expire) {
  if (expire == 0) return;
  _sa_housekeeper_note(0, expire);
  int64_t next = atomic_load_explicit(&unowned_purge_next, memory_order_relaxed);
  while ((next == 0 || expire < next) &&
         !atomic_compare_exchange_weak_explicit(&unowned_purge_next, &next, expire,
                                                memory_order_relaxed, memory_order_relaxed)) {
  }
}

static void list_push(segment_t **list, segment_t *segment) {
  segment->prev = NULL;
  segment->next = *list;
  if (*list != NULL) (*list)->prev = segment;
  *list = segment;
}

static void list_remove(segment_t **list, segment_t *segment) {
  if (segment->prev != NULL) segment->prev->next = segment->next;
  else *list = segment->next;
  if (segment->next != NULL) segment->next->prev = segment->prev;
  segment->next = segment->prev = NULL;
}

/* ---- All owned segments, so that any thread can purge any thread's free memory -----------
 * (mi_collect(true) from any thread, the background purge). `owned_lock` guards the list;
 * a segment leaves it (detach) before it is cached, abandoned or unmapped, so a purge that
 * holds the lock never touches a segment that is going away. Lock order: owned_lock, then a
 * segment's purge_lock; segments_lock and owned_lock are never held together. */
pthread_mutex_t _sa_owned_lock = PTHREAD_MUTEX_INITIALIZER; /* init.c: fork */
#define owned_lock _sa_owned_lock
static segment_t *owned_all;

static void segment_lock(segment_t *segment) {
  while (atomic_exchange_explicit(&segment->purge_lock, true, memory_order_acquire))
    _sa_os_yield();
}
static void segment_unlock(segment_t *segment) {
  atomic_store_explicit(&segment->purge_lock, false, memory_order_release);
}

/* ---- Slice bitmaps -------------------------------------------------------------------- */
static bool bit_get(const uint64_t *bm, size_t i) { return (bm[i / 64] >> (i % 64)) & 1; }

static void bits_set(uint64_t *bm, size_t start, size_t n, bool on) {
  while (n > 0) {
    size_t bit = start % 64, take = 64 - bit < n ? 64 - bit : n;
    uint64_t mask = (take == 64 ? ~(uint64_t)0 : (((uint64_t)1 << take) - 1)) << bit;
    if (on) bm[start / 64] |= mask;
    else bm[start / 64] &= ~mask;
    start += take;
    n -= take;
  }
}

/* Where to put `n` slices: the first free slice for n == 1; otherwise the start of the
 * smallest run of >= n clear bits (best fit keeps large holes for large pages: first fit
 * let mixed page sizes spread over, and touch, far more of a segment). SIZE_MAX if none.
 * Word at a time: O(words + runs), never a bit-by-bit walk. */
static size_t bits_find_clear_run(const uint64_t *bm, size_t n) {
  const size_t words = SEGMENT_BITMAP_WORDS;
  if (n == 1) {
    for (size_t w = 0; w < words; w++)
      if (~bm[w] != 0) return w * 64 + (size_t)__builtin_ctzll(~bm[w]);
    return SIZE_MAX;
  }
  size_t best = SIZE_MAX, best_len = SIZE_MAX;
  size_t i = 0;
  while (i < SLICES_PER_SEGMENT) {
    /* the next clear bit at or after i */
    size_t w = i / 64;
    uint64_t clear = ~bm[w] & (~(uint64_t)0 << (i % 64));
    while (clear == 0 && ++w < words) clear = ~bm[w];
    if (clear == 0) break;
    size_t run_start = w * 64 + (size_t)__builtin_ctzll(clear);
    /* the next set bit after it: the end of the run */
    w = run_start / 64;
    uint64_t set = bm[w] & (~(uint64_t)0 << (run_start % 64));
    while (set == 0 && ++w < words) set = bm[w];
    size_t run_end = set == 0 ? SLICES_PER_SEGMENT : w * 64 + (size_t)__builtin_ctzll(set);
    size_t len = run_end - run_start;
    if (len >= n && len < best_len) {
      best = run_start;
      best_len = len;
      if (len == n) break;
    }
    i = run_end;
  }
  return best;
}

static size_t bits_count(const uint64_t *bm) {
  size_t n = 0;
  for (size_t w = 0; w < SEGMENT_BITMAP_WORDS; w++) n += (size_t)__builtin_popcountll(bm[w]);
  return n;
}

/* Descriptors of free slices: zero, and a free of a pointer into them takes the checked
 * path (a double free of a block whose page is gone; a pointer never handed out). */
static void slices_mark_free(page_t *first, size_t slices) {
  memset(first, 0, slices * sizeof(page_t));
  for (size_t i = 0; i < slices; i++) first[i].flags.x.check_free = 1;
}

/* ---- Purging: free slices go back to the OS purge_delay ms after they were freed ---------
 * A slice is pending (purge_slices) while it is free and dirty; allocating it again cancels
 * that. Each pending slice is due purge_delay after its own free, so memory that is reused
 * within the delay is never purged (and never faulted in again): only memory that stays idle
 * goes back. Runs of due slices are purged with one madvise each. The owner thread purges
 * its segments (from the generic path, page frees and thread exit); the cache is purged by
 * any thread's housekeeping, mi_collect, and the optional background thread.             */
static void segment_purge(segment_t *segment, int64_t now, bool force) {
  int64_t next = 0;
  for (size_t i = 0; i < SLICES_PER_SEGMENT;) {
    if (segment->purge_slices[i / 64] == 0) {
      i = (i / 64 + 1) * 64;
      continue;
    }
    if (!bit_get(segment->purge_slices, i)) {
      i++;
      continue;
    }
    if (!force && segment->purge_at[i] > now) {
      if (next == 0 || segment->purge_at[i] < next) next = segment->purge_at[i];
      i++;
      continue;
    }
    size_t j = i;
    while (j < SLICES_PER_SEGMENT && bit_get(segment->purge_slices, j) &&
           (force || segment->purge_at[j] <= now))
      j++;
    _sa_os_purge((uint8_t *)segment + i * SLICE_SIZE, (j - i) * SLICE_SIZE);
    bits_set(segment->dirty_slices, i, j - i, false);
    bits_set(segment->purge_slices, i, j - i, false);
    _sa_stat_add(SA_STAT_committed, -(int64_t)((j - i) * SLICE_SIZE));
    i = j;
  }
  segment->purge_expire = next;
}

/* Mark [start, start+n) pending; returns the segment's expiry (0: purged at once or never). */
static int64_t segment_schedule_purge(segment_t *segment, size_t start, size_t n) {
  long delay = mi_option_get(mi_option_purge_delay);
  if (delay < 0) return 0;
  bits_set(segment->purge_slices, start, n, true);
  int64_t due = _sa_clock_ms() + delay;
  for (size_t i = start; i < start + n; i++) segment->purge_at[i] = due;
  if (delay == 0) {
    segment_purge(segment, due, true);
    return 0;
  }
  if (segment->purge_expire == 0 || due < segment->purge_expire) segment->purge_expire = due;
  return segment->purge_expire;
}

/* Pending slices taken into use again no longer count against the thread's budget. */
static void thread_unpend(thread_t *thread, size_t slices) {
  if (thread == NULL) return;
  thread->purge_pending = thread->purge_pending > slices ? thread->purge_pending - slices : 0;
}

static void thread_note_purge(thread_t *thread, int64_t expire) {
  if (expire != 0 && (thread->purge_next == 0 || expire < thread->purge_next)) {
    thread->purge_next = expire;
    _sa_housekeeper_note(0, expire);
  }
}

/* Purge what is due in `segment` (everything pending if `force`); returns its next expiry
 * and adds the slices still pending to `*pending` (if not NULL). */
static int64_t segment_purge_due(segment_t *segment, int64_t now, bool force, size_t *pending) {
  segment_lock(segment);
  if (segment->purge_expire != 0 && (force || segment->purge_expire <= now))
    segment_purge(segment, now, force);
  int64_t next = segment->purge_expire;
  if (next != 0 && pending != NULL) *pending += bits_count(segment->purge_slices);
  segment_unlock(segment);
  return next;
}

static void thread_purge(thread_t *thread, int64_t now, bool force) {
  int64_t next = 0;
  size_t pending = 0;
  for (segment_t *s = thread->segments; s != NULL; s = s->next) {
    int64_t expire = segment_purge_due(s, now, force, &pending);
    if (expire != 0 && (next == 0 || expire < next)) next = expire;
  }
  thread->purge_next = next;
  thread->purge_pending = pending;
}

/* The thread's pending count is an upper bound (the housekeeper and other threads purge its
 * segments too): count again before purging everything in the freeing call. */
static void thread_over_budget(thread_t *thread) {
  size_t pending = 0;
  for (segment_t *s = thread->segments; s != NULL; s = s->next) {
    segment_lock(s);
    pending += bits_count(s->purge_slices);
    segment_unlock(s);
  }
  thread->purge_pending = pending;
  if (pending * SLICE_SIZE > PURGE_PENDING_MAX) thread_purge(thread, 0, true);
}

int64_t _sa_segments_purge_all(bool force) {
  int64_t now = _sa_clock_ms();
  int64_t next = 0;
  pthread_mutex_lock(&owned_lock);
  for (segment_t *s = owned_all; s != NULL; s = s->owned_next) {
    int64_t expire = segment_purge_due(s, now, force, NULL);
    if (expire != 0 && (next == 0 || expire < next)) next = expire;
  }
  pthread_mutex_unlock(&owned_lock);
  _sa_segment_cache_purge(force);
  int64_t unowned = atomic_load_explicit(&unowned_purge_next, memory_order_relaxed);
  if (unowned != 0 && (next == 0 || unowned < next)) next = unowned;
  return next;
}

/* ---- Segment lifetime ---------------------------------------------------------------- */
static void segment_attach(segment_t *segment, thread_t *thread) {
  segment->owner = thread;
  atomic_store_explicit(&segment->thread_id, thread->thread_id, memory_order_release);
  list_push(&thread->segments, segment);
  thread->segment_count++;
  thread_note_purge(thread, segment->purge_expire);
  pthread_mutex_lock(&owned_lock);
  segment->owned_prev = NULL;
  segment->owned_next = owned_all;
  if (owned_all != NULL) owned_all->owned_prev = segment;
  owned_all = segment;
  pthread_mutex_unlock(&owned_lock);
}

static void segment_detach(segment_t *segment, thread_t *thread) {
  pthread_mutex_lock(&owned_lock);
  if (segment->owned_prev != NULL) segment->owned_prev->owned_next = segment->owned_next;
  else owned_all = segment->owned_next;
  if (segment->owned_next != NULL) segment->owned_next->owned_prev = segment->owned_prev;
  segment->owned_next = segment->owned_prev = NULL;
  pthread_mutex_unlock(&owned_lock);
  list_remove(&thread->segments, segment);
  thread->segment_count--;
  segment->owner = NULL;
  atomic_store_explicit(&segment->thread_id, 0, memory_order_release);
}

/* Address space from the OS. When it refuses, what we keep for reuse goes back first (cached
 * empty and huge segments, pending purges) and the request is tried once more: memory freed
 * just before must serve the next request, delays or not. No lock may be held. */
static void *os_alloc_or_release(size_t size, size_t align, size_t at) {
  void *p = _sa_os_alloc_aligned_at(size, align, at);
  if (p != NULL) return p;
  _sa_segment_caches_release();
  _sa_segments_purge_all(true);
  return _sa_os_alloc_aligned_at(size, align, at);
}

static segment_t *segment_alloc(thread_t *thread) {
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
      segment = os_alloc_or_release(SEGMENT_SIZE, SEGMENT_SIZE, 0);
      if (segment == NULL) return NULL;
      _sa_stat_add(SA_STAT_reserved, SEGMENT_SIZE);
    }
    segment->segment_size = SEGMENT_SIZE;
    if (!segment_map_set(segment, true)) { /* beyond the map's address range: unusable */
      if (!in_arena || !_sa_arena_free_segment(segment)) _sa_os_free(segment, SEGMENT_SIZE);
      return NULL;
    }
    /* fresh (or purged) memory is zero */
    segment->kind = SEGMENT_NORMAL;
    segment->in_arena = in_arena;
    slices_mark_free(segment->pages, SLICES_PER_SEGMENT);
    bits_set(segment->used_slices, 0, SEGMENT_HEADER_SLICES, true);
    bits_set(segment->dirty_slices, 0, SEGMENT_HEADER_SLICES, true);
    segment->used_slice_count = SEGMENT_HEADER_SLICES;
    _sa_stat_add(SA_STAT_segments, 1);
    _sa_stat_add(SA_STAT_committed, SEGMENT_HEADER_SLICES * SLICE_SIZE);
  }
  sa_assert(segment->used_pages == 0 && segment->used_slice_count == SEGMENT_HEADER_SLICES);
  segment_attach(segment, thread);
  return segment;
}

static void segment_release(segment_t *segment) {
  segment_map_set(segment, false);
  _sa_stat_add(SA_STAT_committed, -(int64_t)(bits_count(segment->dirty_slices) * SLICE_SIZE));
  _sa_stat_add(SA_STAT_segments, -1);
  if (segment->kind == SEGMENT_NORMAL && segment->in_arena && _sa_arena_free_segment(segment))
    return;
  _sa_stat_add(SA_STAT_reserved, -(int64_t)segment->segment_size);
  _sa_os_free(segment, segment->segment_size);
}

/* An empty segment leaves its thread: into the cache (its free memory purged after the
 * delay, so that a thread that starts soon after reuses it warm), or back to the OS. */
static void segment_free(segment_t *segment, thread_t *thread) {
  sa_assert(segment->used_pages == 0);
  segment_detach(segment, thread);
  pthread_mutex_lock(&segments_lock);
  bool cached = segment_cache_count < (size_t)mi_option_get_clamp(mi_option_segment_cache, 0, 64);
  if (cached) {
    list_push(&segment_cache, segment);
    segment_cache_count++;
    unowned_note_purge(segment->purge_expire);
  }
  pthread_mutex_unlock(&segments_lock);
  if (!cached) segment_release(segment);
}

void _sa_segment_caches_release(void) {
  huge_cache_collect(0, true);
  pthread_mutex_lock(&segments_lock);
  segment_t *list = segment_cache;
  segment_cache = NULL;
  segment_cache_count = 0;
  pthread_mutex_unlock(&segments_lock);
  while (list != NULL) {
    segment_t *next = list->next;
    segment_release(list);
    list = next;
  }
}

/* Purge the segments that no thread owns: cached and abandoned ones (a thread that reclaims
 * an abandoned segment soon gets its free memory back warm, so it keeps its purge delay). */
void _sa_segment_cache_purge(bool force) {
  int64_t due = atomic_load_explicit(&unowned_purge_next, memory_order_relaxed);
  if (due == 0) return;
  int64_t now = _sa_clock_ms();
  if (!force && now < due) return;
  pthread_mutex_lock(&segments_lock);
  int64_t next = 0;
  segment_t *lists[2] = {segment_cache, abandoned};
  for (size_t l = 0; l < 2; l++) {
    for (segment_t *s = lists[l]; s != NULL; s = s->next) {
      int64_t expire = segment_purge_due(s, now, force, NULL);
      if (expire != 0 && (next == 0 || expire < next)) next = expire;
    }
  }
  for (segment_t *s = huge_cache; s != NULL; s = s->next)
    if (next == 0 || s->purge_expire < next) next = s->purge_expire;
  atomic_store_explicit(&unowned_purge_next, next, memory_order_relaxed);
  pthread_mutex_unlock(&segments_lock);
  huge_cache_collect(now, force);
}

void _sa_purge_housekeeping(thread_t *thread, bool force) {
  if (thread->purge_next != 0) {
    int64_t now = _sa_clock_ms();
    if (force || thread->purge_next <= now) thread_purge(thread, now, force);
  }
  _sa_segment_cache_purge(force);
}

/* ---- Pages ------------------------------------------------------------------------------ */
static page_t *segment_page_init(segment_t *segment, size_t start, size_t slices,
                                 size_t block_size, size_t bin) {
  page_t *page = &segment->pages[start];
  for (size_t i = 1; i < slices; i++) page[i].slice_offset = (uint16_t)(i * sizeof(page_t));
  page->slice_count = (uint16_t)slices;
  page->slice_offset = 0;
  page->flags.any = 0;
  page->flags.x.check_free = block_size > MEDIUM_BLOCK_MAX; /* one block: see page_flags_t */
  page->bin = (uint8_t)bin;
  page->reserved = (uint16_t)(slices * SLICE_SIZE / block_size);
  size_t fresh = 0, reused = 0;
  segment_lock(segment);
  for (size_t i = start; i < start + slices; i++) {
    fresh += !bit_get(segment->dirty_slices, i);
    reused += bit_get(segment->purge_slices, i);
  }
  bits_set(segment->used_slices, start, slices, true);
  bits_set(segment->dirty_slices, start, slices, true);
  bits_set(segment->purge_slices, start, slices, false);
  segment_unlock(segment);
  thread_unpend(segment->owner, reused);
  page->is_zero = fresh == slices;
  segment->used_slice_count += (uint32_t)slices;
  segment->used_pages++;
  if (fresh > 0) _sa_stat_add(SA_STAT_committed, (int64_t)(fresh * SLICE_SIZE));
  return page;
}

static size_t page_slices_for(size_t block_size) {
  if (block_size <= SMALL_BLOCK_MAX) return 1;
  if (block_size <= MEDIUM_BLOCK_MAX) return MEDIUM_PAGE_SLICES;
  return (block_size + SLICE_SIZE - 1) / SLICE_SIZE;
}

size_t _sa_page_size_of_bin(size_t bin) { return page_slices_for(sa_bin_size(bin)) * SLICE_SIZE; }

page_t *_sa_segment_page_alloc(thread_t *thread, size_t block_size, size_t bin) {
  size_t slices = page_slices_for(block_size);
  for (segment_t *s = thread->segments; s != NULL; s = s->next) {
    if (SLICES_PER_SEGMENT - s->used_slice_count < slices) continue;
    size_t start = bits_find_clear_run(s->used_slices, slices);
    if (start != SIZE_MAX) return segment_page_init(s, start, slices, block_size, bin);
  }
  segment_t *segment = segment_alloc(thread);
  if (segment == NULL) return NULL;
  size_t start = bits_find_clear_run(segment->used_slices, slices);
  sa_assert(start != SIZE_MAX);
  return segment_page_init(segment, start, slices, block_size, bin);
}

void _sa_segment_page_free(page_t *page, thread_t *thread) {
  segment_t *segment = sa_segment_of(page);
  sa_assert(segment->kind == SEGMENT_NORMAL && page->slice_count > 0);
  size_t start = (size_t)(page - segment->pages);
  size_t slices = page->slice_count;
  slices_mark_free(page, slices);
  segment->used_slice_count -= (uint32_t)slices;
  segment->used_pages--;
  segment_lock(segment);
  bits_set(segment->used_slices, start, slices, false);
  int64_t expire = segment_schedule_purge(segment, start, slices);
  segment_unlock(segment);
  thread_note_purge(thread, expire);
  if (expire != 0) {
    thread->purge_pending += slices;
    if (thread->purge_pending * SLICE_SIZE > PURGE_PENDING_MAX) thread_over_budget(thread);
  }
  if (segment->used_pages == 0) segment_free(segment, thread);
}

/* Grow a large page in place to `slices` slices when the slices after it are free (owner
 * only): realloc of a large block then keeps its memory instead of copying it. */
bool _sa_segment_page_grow(page_t *page, size_t slices, size_t block_size) {
  segment_t *segment = sa_segment_of(page);
  size_t start = (size_t)(page - segment->pages);
  size_t old = page->slice_count;
  if (start + slices > SLICES_PER_SEGMENT) return false;
  segment_lock(segment);
  for (size_t i = start + old; i < start + slices; i++) {
    if (bit_get(segment->used_slices, i)) {
      segment_unlock(segment);
      return false;
    }
  }
  size_t fresh = 0, reused = 0;
  for (size_t i = start + old; i < start + slices; i++) {
    fresh += !bit_get(segment->dirty_slices, i);
    reused += bit_get(segment->purge_slices, i);
  }
  bits_set(segment->used_slices, start + old, slices - old, true);
  bits_set(segment->dirty_slices, start + old, slices - old, true);
  bits_set(segment->purge_slices, start + old, slices - old, false);
  segment_unlock(segment);
  thread_unpend(segment->owner, reused);
  for (size_t i = old; i < slices; i++) page[i].slice_offset = (uint16_t)(i * sizeof(page_t));
  page->slice_count = (uint16_t)slices;
  page->reserved = (uint16_t)(slices * SLICE_SIZE / block_size);
  segment->used_slice_count += (uint32_t)(slices - old);
  if (fresh > 0) _sa_stat_add(SA_STAT_committed, (int64_t)(fresh * SLICE_SIZE));
  return true;
}

/* ---- Huge segments: one block each, no owner; any thread frees them directly ------------
 * The block starts at slice 1 (right after the header), so its descriptor is pages[1]. Huge
 * blocks get transparent huge pages (a first touch costs per 2 MiB instead of per 4 KiB), and
 * a freed one waits purge_delay ms in a small cache for a request of about its size, so a
 * program that frees and allocates big buffers in a loop reuses warm memory.            */
static segment_t *huge_cache_take(size_t total) {
  segment_t *best = NULL;
  pthread_mutex_lock(&segments_lock);
  for (segment_t *s = huge_cache; s != NULL; s = s->next) {
    if (s->segment_size >= total && s->segment_size - total <= total / 2 &&
        (best == NULL || s->segment_size < best->segment_size))
      best = s;
  }
  segment_t *misfits = NULL;
  if (best != NULL) {
    list_remove(&huge_cache, best);
    huge_cache_count--;
  } else { /* none fits: the sizes moved on, so keeping these would only raise the peak */
    misfits = huge_cache;
    huge_cache = NULL;
    huge_cache_count = 0;
  }
  pthread_mutex_unlock(&segments_lock);
  while (misfits != NULL) {
    segment_t *next = misfits->next;
    huge_release(misfits);
    misfits = next;
  }
  return best;
}

/* A fresh huge segment of `total` bytes, placed so that segment + at is aligned to `align`. */
static segment_t *huge_segment_new(size_t total, size_t align, size_t at) {
  segment_t *segment = os_alloc_or_release(total, align, at);
  if (segment == NULL) return NULL;
  segment->segment_size = total;
  if (!segment_map_set(segment, true)) {
    _sa_os_free(segment, total);
    return NULL;
  }
  _sa_os_advise_huge_pages(segment, total);
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
  size_t total = sa_align_up(SLICE_SIZE + size, _sa_os_page_size());
  segment_t *segment = huge_cache_take(total);
  bool fresh = segment == NULL;
  if (fresh && (segment = huge_segment_new(total, SEGMENT_SIZE, 0)) == NULL) return NULL;
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
  size_t total = sa_align_up(lead + (size == 0 ? 1 : size), _sa_os_page_size());
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
  segment_release(segment);
}

static void huge_cache_collect(int64_t now, bool all) {
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
  for (size_t i = 2; i <= last; i++)
    segment->pages[i].slice_offset = (uint16_t)((i - 1) * sizeof(page_t));
}

void _sa_segment_huge_free(segment_t *segment) {
  sa_assert(segment->kind == SEGMENT_HUGE);
  atomic_store_explicit(&segment->pages[1].xthread_free, HUGE_FREED, memory_order_relaxed);
  _sa_stat_add(SA_STAT_huge_bytes, -(int64_t)(segment->segment_size - SLICE_SIZE));
  long delay = mi_option_get(mi_option_purge_delay);
  if (delay > 0) {
    if (segment->pages[1].flags.x.has_aligned) /* forget the interior pointers' slices */
      memset(&segment->pages[2], 0, (SLICES_PER_SEGMENT - 2) * sizeof(page_t));
    segment->purge_expire = _sa_clock_ms() + delay;
    pthread_mutex_lock(&segments_lock);
    bool cached = huge_cache_count < HUGE_CACHE_MAX;
    if (cached) {
      list_push(&huge_cache, segment);
      huge_cache_count++;
      /* under the lock: once it is released, another thread may take the segment out of the
       * cache and unmap it (huge_cache_take, huge_cache_collect) */
      unowned_note_purge(segment->purge_expire);
    }
    pthread_mutex_unlock(&segments_lock);
    if (cached) return;
  }
  huge_release(segment);
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
    pthread_mutex_lock(&segments_lock);
    list_push(&abandoned, segment);
    atomic_fetch_add_explicit(&abandoned_count, 1, memory_order_relaxed);
    unowned_note_purge(segment->purge_expire);
    pthread_mutex_unlock(&segments_lock);
    _sa_stat_add(SA_STAT_abandoned, 1);
  }
}

bool _sa_segment_try_reclaim(heap_t *heap) {
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
  segment_attach(segment, thread);
  /* Walk the pages: collect what other threads freed meanwhile; free empty pages, adopt the
   * rest. Freeing the last page frees the segment, so stop on that. */
  size_t i = SEGMENT_HEADER_SLICES;
  while (i < SLICES_PER_SEGMENT) {
    page_t *page = &segment->pages[i];
    if (page->slice_count == 0) {
      i++;
      continue;
    }
    i += page->slice_count;
    bool last = segment->used_pages == 1;
    _sa_page_collect(page);
    if (page->used == 0) {
      /* the exited thread counted this page and its blocks; the totals are what count */
      sa_thread_stat_add(&thread->stats.in_use[page->bin], -(int64_t)page->used_counted);
      sa_thread_stat_add(&thread->stats.pages[page->bin], -1);
      _sa_segment_page_free(page, thread);
      if (last) break;
    } else {
      _sa_heap_adopt_page(heap, page);
      sa_page_count_used(page, thread);
    }
  }
  return true;
}

/* ---- fork: the purge locks ------------------------------------------------------------
 * A segment's purge_lock is a spin lock, held for a bounded time and never while waiting for
 * a mutex or another purge_lock. Once fork_prepare (init.c) holds owned_lock and
 * segments_lock, only owner threads still take one, of their own (owned) segments: purges by
 * other threads run under those mutexes. So this walk holds every one that can be taken.
 * Without it, a purge_lock held by another thread at fork stays locked in the child, where
 * that thread is gone, and the child's mi_collect(true) would spin on it for ever. */
void _sa_segments_fork_purge_locks(bool hold) {
  for (segment_t *s = owned_all; s != NULL; s = s->owned_next) {
    if (hold) segment_lock(s);
    else segment_unlock(s);
  }
}
