/* shardalloc: what the files of the segment layer (segmap.c, segment.c, purge.c, huge.c,
 * thp.c) share and nothing above them uses: the segment list links, a segment's purge lock,
 * the slice bitmaps, and the functions these files call in each other. Pages, heaps and the
 * rest go through internal.h only. */
#ifndef SHARDALLOC_SEGMENT_H
#define SHARDALLOC_SEGMENT_H

#include "internal.h"

/* ---- Segment lists (a thread's segments, the caches, the abandoned list) ---------------- */
static inline void list_push(segment_t **list, segment_t *segment) {
  segment->prev = NULL;
  segment->next = *list;
  if (*list != NULL) (*list)->prev = segment;
  *list = segment;
}

static inline void list_remove(segment_t **list, segment_t *segment) {
  if (segment->prev != NULL) segment->prev->next = segment->next;
  else *list = segment->next;
  if (segment->next != NULL) segment->next->prev = segment->prev;
  segment->next = segment->prev = NULL;
}

/* ---- A segment's purge lock (purge.c): guards its slice bitmaps ------------------------- */
static inline void segment_lock(segment_t *segment) {
  while (atomic_exchange_explicit(&segment->purge_lock, true, memory_order_acquire))
    _sa_os_yield();
}
static inline void segment_unlock(segment_t *segment) {
  atomic_store_explicit(&segment->purge_lock, false, memory_order_release);
}

/* ---- Purge stamps (segment_t.purge_at) --------------------------------------------------
 * The coarse clock's ms modulo 2^32, compared by their difference: exact for times less than
 * 24 days apart, which purge delays (ms to seconds) and the regret window (twice a delay) are.
 * 0 is "none"; a time that falls on it is stamped 1 ms later. */
static inline uint32_t purge_stamp(int64_t ms) {
  uint32_t stamp = (uint32_t)ms;
  return stamp + (stamp == 0);
}
static inline bool purge_stamp_after(uint32_t stamp, int64_t now) {
  return (int32_t)(stamp - (uint32_t)now) > 0;
}
/* The time in ms a stamp stands for, taken as the one nearest to `now`. */
static inline int64_t purge_stamp_ms(uint32_t stamp, int64_t now) {
  return now + (int32_t)(stamp - (uint32_t)now);
}

/* ---- Slice bitmaps -------------------------------------------------------------------- */
static inline bool bit_get(const uint64_t *bm, size_t i) { return (bm[i / 64] >> (i % 64)) & 1; }

static inline void bits_set(uint64_t *bm, size_t start, size_t n, bool on) {
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
static inline size_t bits_find_clear_run(const uint64_t *bm, size_t n) {
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

/* The first clear bit at or after `i`; SLICES_PER_SEGMENT if none. */
static inline size_t bits_next_clear(const uint64_t *bm, size_t i) {
  if (i >= SLICES_PER_SEGMENT) return SLICES_PER_SEGMENT;
  size_t w = i / 64;
  uint64_t clear = ~bm[w] & (~(uint64_t)0 << (i % 64));
  while (clear == 0 && ++w < SEGMENT_BITMAP_WORDS) clear = ~bm[w];
  return clear == 0 ? SLICES_PER_SEGMENT : w * 64 + (size_t)__builtin_ctzll(clear);
}

/* The first set bit at or after `i`; SLICES_PER_SEGMENT if none. */
static inline size_t bits_next_set(const uint64_t *bm, size_t i) {
  if (i >= SLICES_PER_SEGMENT) return SLICES_PER_SEGMENT;
  size_t w = i / 64;
  uint64_t set = bm[w] & (~(uint64_t)0 << (i % 64));
  while (set == 0 && ++w < SEGMENT_BITMAP_WORDS) set = bm[w];
  return set == 0 ? SLICES_PER_SEGMENT : w * 64 + (size_t)__builtin_ctzll(set);
}

static inline size_t bits_count(const uint64_t *bm) {
  size_t n = 0;
  for (size_t w = 0; w < SEGMENT_BITMAP_WORDS; w++) n += (size_t)__builtin_popcountll(bm[w]);
  return n;
}

/* Slices [start, start + n) lead to `page` (types.h, page_offsets). */
static inline void slices_point_to(segment_t *segment, size_t start, size_t n, const page_t *page) {
  uint16_t offset = sa_page_offset(page);
  for (size_t i = start; i < start + n; i++) segment->page_offsets[i] = offset;
}

/* Free slices [start, start + n): their descriptors zero (as in fresh memory; the slices but
 * the first of a page have nothing else written), and so their offsets, so a free of a pointer
 * into them takes the checked path (page_flags_t.in_use). */
static inline void slices_mark_free(segment_t *segment, size_t start, size_t n) {
  memset(&segment->pages[start], 0, sizeof(page_t));
  memset(&segment->page_offsets[start], 0, n * sizeof(segment->page_offsets[0]));
}

/* ---- segmap.c ------------------------------------------------------------------------------ */
/* Whether the map's address range holds [p, p + size). */
bool _sa_segment_map_covers(const void *p, size_t size);
/* Enter (or remove) a segment; false if it lies beyond the mapped address range. */
bool _sa_segment_map_set(segment_t *segment, bool on);

/* ---- segment.c ----------------------------------------------------------------------------- */
/* Address space from the OS; when it refuses, the caches and pending purges go back first and
 * the request is tried once more. No lock may be held. */
void *_sa_os_alloc_or_release(size_t size, size_t align, size_t at);
/* Unmap (os.c), reporting a failure. */
void _sa_os_unmap(void *p, size_t size);
/* Unmap a segment (or give it back to the arena). */
void _sa_segment_release(segment_t *segment);
/* A purge due at `expire` in a segment no thread owns (cached, abandoned, huge cached); the
 * caller holds _sa_segments_lock. */
void _sa_unowned_note_purge(int64_t expire);
/* The earliest purge due in a segment no thread owns (0: none). */
int64_t _sa_unowned_purge_next(void);

/* ---- purge.c ------------------------------------------------------------------------------- */
/* Mark [start, start+n) pending; returns the segment's expiry (0: purged at once or never). */
int64_t _sa_segment_schedule_purge(segment_t *segment, size_t start, size_t n);
/* Purge what is due in `segment` (everything pending if `force`); returns its next expiry
 * and adds the slices still pending to `*pending` (if not NULL). `unlocked`: each system call
 * with the purge lock released, the range marked (segment_t.purging_start); the caller keeps
 * the segment from being freed meanwhile (owned_lock). */
int64_t _sa_segment_purge_due(segment_t *segment, int64_t now, bool force, size_t *pending,
                              bool unlocked);
/* Pending slices taken into use again no longer count against the thread's budget. */
/* The owner took free slices into use: `pending` of them were pending purge, `purged` had been
 * purged by their delay, the latest at `purged_at` (ms). */
void _sa_thread_slices_taken(thread_t *thread, size_t pending, size_t purged, int64_t purged_at);
void _sa_thread_note_purge(thread_t *thread, int64_t expire);
/* A thread took `purged` slices purged while their segment had no owner, the latest at
 * `purged_at`: counts towards raising the unowned delay. */
void _sa_unowned_slices_taken(size_t purged, int64_t purged_at);
/* How long a freed huge segment of `size` bytes waits in the cache (ms; the option's where it
 * is not positive): the delay of memory no thread owns, as for any run of 2 MiB or more. */
long _sa_huge_purge_delay(size_t size);
/* Count the thread's pending slices again; purge them all if they are over budget. */
void _sa_thread_over_budget(thread_t *thread);
/* Enter a segment into (or take it out of) the list of all owned segments. */
void _sa_owned_add(segment_t *segment);
void _sa_owned_remove(segment_t *segment);

/* ---- huge.c -------------------------------------------------------------------------------- */
/* Release the cached huge segments whose delay is over (all of them if `all`). */
void _sa_huge_cache_collect(int64_t now, bool all);
/* The earlier of `next` and the earliest expiry in the huge cache (0 counts as none for
 * `next`); the caller holds _sa_segments_lock. */
int64_t _sa_huge_cache_next_due(int64_t next);

/* ---- thp.c --------------------------------------------------------------------------------- */
/* Where to put a page of `slices` with huge pages in mind: a page of fewer than a 2 MiB unit
 * outside the units that carry the advice unless `anywhere`, a larger one from a unit
 * boundary where the unit it would start in was touched without it; as bits_find_clear_run
 * otherwise. SIZE_MAX if none (owner). */
size_t _sa_thp_find_slices(segment_t *segment, size_t slices, bool anywhere);
/* The advised units a purge at `now` (or on demand, `force`) would clean only in part (purge
 * lock held): their due slices wait for the rest of the unit, since giving back part of a huge
 * page splits it, and the kernel then maps the whole unit 4 KiB at a time until a purge cleans
 * it whole (most of the large_blocks program's page faults were that). The cost: up to a unit
 * less 64 KiB kept per unit a live large page shares with free slices (docs/design.md). */
uint32_t _sa_thp_units_partly_due(const segment_t *segment, int64_t now, bool force);
/* The unit of `slice` carries the advice (purge lock held). */
bool _sa_thp_slice_advised(const segment_t *segment, size_t slice);
/* A page was made on slices [start, start+slices) (owner; takes the purge lock): a large one
 * of a unit or more advises huge pages on the units it covers at least half of that lack the
 * advice; any other page with a `fresh` slice (never touched, or purged) drops the advice of
 * the units it overlaps. */
void _sa_thp_page_init(segment_t *segment, size_t start, size_t slices, bool large,
                       bool fresh);
/* A page of a block that realloc grows (regrow.c) was made on fresh slices [start, start +
 * slices) (owner; takes the purge lock): at the start of a unit where nothing else was touched
 * since the last purge, it asks for huge pages on that unit. */
void _sa_thp_growing_page(segment_t *segment, size_t start, size_t slices);
/* A segment made for a large page of a unit or more (owner): all its units but the header's
 * ask for huge pages, in one call. `fresh`: fresh memory, before anything is read or written
 * there (a read would map the zero page, which keeps a huge page off the unit too). */
void _sa_thp_segment_advise(segment_t *segment, bool fresh);
/* The segment's memory goes back to the arena, header included: drop all its advice. */
void _sa_thp_forget(segment_t *segment);

#endif /* SHARDALLOC_SEGMENT_H */
