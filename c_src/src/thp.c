/* shardalloc: transparent huge page advice for large pages. A large page asks the kernel for
 * huge pages (madvise MADV_HUGEPAGE) on the 2 MiB units it covers, so that its first touches
 * fault 2 MiB at a time, as a huge block's do; a segment made for a large page asks for them
 * on all its units but the header's at once, in one call.
 *
 * The unit that holds a segment's header never gets the advice: the header is written when
 * the segment is made, inside the allocating call, and on an advised unit that first write
 * made the kernel map and clear the whole unit as one huge page there (115-140 us, the slowest
 * `malloc` of a bench/c/latency.c run). Without it the header maps 4 KiB at a time and large
 * pages start at the next unit (as a huge block's header has its unit to itself, huge.c). In a
 * segment made for large pages, small pages count the header's unit as advised: they gather
 * in the segments that hold small pages already (spread over the header units of segments of
 * large blocks, they kept those segments from ever emptying: 1,020 faults a two-thread
 * latency phase against 670) and come there only when nothing else fits.
 *
 * The advice outlives the page and the purge: once on, it stays on a unit until a page too
 * small for huge pages is carved there (MADV_NOHUGEPAGE first, so that its first touches map
 * 4 KiB, not 2 MiB) or the segment goes back to the arena. So the large pages made again and
 * again on a unit cost one system call over the segment's life, not one each time the unit
 * was purged in between: each such call (3-30 us on a virtual machine) was one of the calls
 * that made malloc's slowest 0.01 % (bench/results/latency.md), and the kernel keeps a VMA per
 * run of units that differ in advice. Small pages stay off the advised units of all the
 * thread's segments while any other slices fit (segment.c's page placement), so the advice
 * is seldom dropped. What it costs: a purged unit keeps the advice, so the next large page
 * on it that covers it only in part maps it whole (up to 2 MiB less the page, which the next
 * pages placed there use).
 *
 * segment->thp_units remembers which units carry the advice (the invariant is in types.h);
 * it changes under the segment's purge_lock. Segments that asked for huge pages as a whole
 * (allow_large_os_pages) keep that and leave the bitmap empty. */
#include "segment.h"

#define UNIT_SLICES (THP_SIZE / SLICE_SIZE)
#define SEGMENT_UNITS (SLICES_PER_SEGMENT / UNIT_SLICES)
/* The units that may carry the advice: all but the header's. */
#define ADVISABLE_UNITS (((uint32_t)1 << SEGMENT_UNITS) - 2)
_Static_assert(SEGMENT_HEADER_SLICES <= UNIT_SLICES, "the header lies in the first unit");
_Static_assert(SEGMENT_UNITS <= 8 * sizeof(((segment_t *)0)->thp_units),
               "thp_units has a bit for every unit of a segment");
_Static_assert(64 % UNIT_SLICES == 0, "a bitmap word holds whole units");

/* thp_units changes under the purge lock, but the owner peeks at it without the lock. */
static uint16_t units_get(const segment_t *segment) {
  return __atomic_load_n(&segment->thp_units, __ATOMIC_RELAXED);
}
static void units_put(segment_t *segment, uint32_t units) {
  __atomic_store_n(&segment->thp_units, (uint16_t)units, __ATOMIC_RELAXED);
}

/* Bits first .. end-1. */
static uint32_t units_mask(size_t first, size_t end) {
  return (uint32_t)(((uint64_t)1 << end) - ((uint64_t)1 << first));
}

/* One madvise per run of consecutive units in `units`. */
static void advise_units(segment_t *segment, uint32_t units, bool on) {
  while (units != 0) {
    size_t first = (size_t)__builtin_ctz(units);
    size_t end = first;
    while (end < SEGMENT_UNITS && ((units >> end) & 1)) end++;
    _sa_os_advise_huge_pages((uint8_t *)segment + first * THP_SIZE, (end - first) * THP_SIZE, on);
    _sa_stat_add(SA_STAT_thp_advice, 1);
    units &= ~units_mask(first, end);
  }
}

/* A page of a unit or more goes where page_place's best fit puts it, but starts at the next
 * unit boundary instead when the unit it would start in holds memory already touched without
 * the advice (the first segment's header and small pages, say): the kernel maps only 4 KiB
 * pages on such a unit, so the page's part there would fault 4 KiB at a time each time it is
 * made (about 500 faults a unit), while the slices it leaves before the boundary suit smaller
 * pages. */
static size_t large_find_slices(segment_t *segment, size_t slices) {
  size_t start = bits_find_clear_run(segment->used_slices, slices);
  if (start == SIZE_MAX || start % UNIT_SLICES == 0) return start;
  size_t unit = start / UNIT_SLICES;
  if ((units_get(segment) >> unit) & 1) return start;
  const uint64_t unit_bits = ((uint64_t)1 << UNIT_SLICES) - 1;
  segment_lock(segment); /* the purge cleans dirty slices */
  bool touched = (segment->dirty_slices[unit * UNIT_SLICES / 64] >> (unit * UNIT_SLICES % 64)) &
                 unit_bits;
  segment_unlock(segment);
  if (!touched) return start;
  size_t aligned = (unit + 1) * UNIT_SLICES;
  if (aligned + slices <= SLICES_PER_SEGMENT &&
      bits_next_set(segment->used_slices, aligned) >= aligned + slices)
    return aligned;
  return start;
}

/* Pages too small to cover a unit stay off the advised units unless `anywhere`: a small
 * page's first touch there would map 2 MiB, and carving it there costs a call to drop the
 * advice. */
size_t _sa_thp_find_slices(segment_t *segment, size_t slices, bool anywhere) {
  if (slices >= UNIT_SLICES && !mi_option_is_enabled(mi_option_allow_large_os_pages))
    return large_find_slices(segment, slices);
  uint32_t advised = units_get(segment);
  if (advised == 0 || anywhere || slices >= UNIT_SLICES)
    return bits_find_clear_run(segment->used_slices, slices);
  /* the header's unit of a segment made for large pages counts as advised too: small pages
   * gather in the segments that hold small pages already, and land there only when no other
   * slices fit (no advice to drop then) */
  if (segment->large_first) advised |= 1;
  const size_t units_per_word = 64 / UNIT_SLICES;
  const uint64_t unit_bits = ((uint64_t)1 << UNIT_SLICES) - 1;
  uint64_t taken[SEGMENT_BITMAP_WORDS];
  for (size_t w = 0; w < SEGMENT_BITMAP_WORDS; w++) { /* the advised units' slices: taken */
    uint64_t units = (advised >> (w * units_per_word)) & ((1u << units_per_word) - 1), mask = 0;
    for (size_t u = 0; u < units_per_word; u++)
      if ((units >> u) & 1) mask |= unit_bits << (u * UNIT_SLICES);
    taken[w] = segment->used_slices[w] | mask;
  }
  return bits_find_clear_run(taken, slices);
}

/* Units with no dirty slice outside [start, start + slices) (the page's own are dirty now). */
static uint32_t units_clean_but(const segment_t *segment, size_t start, size_t slices) {
  uint64_t others[SEGMENT_BITMAP_WORDS];
  for (size_t w = 0; w < SEGMENT_BITMAP_WORDS; w++) others[w] = segment->dirty_slices[w];
  bits_set(others, start, slices, false);
  uint32_t clean = 0;
  const uint64_t unit_bits = ((uint64_t)1 << UNIT_SLICES) - 1;
  for (size_t u = 0; u < SEGMENT_UNITS; u++)
    if (((others[u * UNIT_SLICES / 64] >> (u * UNIT_SLICES % 64)) & unit_bits) == 0)
      clean |= (uint32_t)1 << u;
  return clean;
}

/* With the purge lock held (a purge may clean a unit's other slices meanwhile): marks as
 * advised the units of `sure` and those of `if_clean` with no dirty slice outside the page at
 * [start, start + slices); returns the units it marked, for the caller to advise. */
static uint32_t units_mark_locked(segment_t *segment, size_t start, size_t slices, uint32_t sure,
                                  uint32_t if_clean) {
  if (if_clean != 0) sure |= if_clean & units_clean_but(segment, start, slices);
  uint32_t units = units_get(segment), add = sure & ~units;
  units_put(segment, units | add);
  return add;
}

/* A large page of a unit or more adds the advice on the units it covers at least half of (not
 * the header's, see the top): a block of 5 MiB placed anywhere covers two units whole and two
 * in part, and the parts faulted 4 KiB at a time would be a quarter of its faults; at most half
 * a unit of memory past the page may come in with it. It also advises the units it covers less
 * than half of where nothing else of the unit was touched yet: a 4 KiB page the block maps
 * there would keep the kernel from ever mapping a huge page on that unit (until a purge cleans
 * it whole), so every later large page over it would fault 4 KiB at a time (about 500 faults a
 * unit); the rest of the unit that comes in with it serves the next page placed there. Smaller
 * large pages leave the units as they are (their advice, if any, serves a neighbour that may
 * come back). Any other page carved on an advised unit (only when no other slices fit,
 * _sa_thp_find_slices) with a `fresh` slice (never touched, or purged) drops the unit's advice
 * first, so its first touches map 4 KiB, not 2 MiB. One whose slices were all in use since
 * their last purge leaves the advice: the madvise would change nothing for memory that is
 * mapped, and it is a call that waits for the process's memory map lock, behind the page faults
 * of every other thread (up to 5 ms in bench/c/latency.c's two-thread phase, the slowest malloc
 * of the run). */
void _sa_thp_page_init(segment_t *segment, size_t start, size_t slices, bool large,
                       bool fresh) {
  uint32_t covered = 0, ends = 0;
  uint32_t overlapped = units_mask(start / UNIT_SLICES, (start + slices - 1) / UNIT_SLICES + 1);
  if (large && slices >= UNIT_SLICES && !mi_option_is_enabled(mi_option_allow_large_os_pages)) {
    /* units it covers at least half of (its ends: rounded to the nearer unit boundary) */
    size_t first = (start + UNIT_SLICES / 2) / UNIT_SLICES;
    size_t end = (start + slices + UNIT_SLICES / 2) / UNIT_SLICES;
    if (end > first) covered = units_mask(first, end) & ADVISABLE_UNITS;
    ends = overlapped & ~covered & ADVISABLE_UNITS;
  }
  /* nothing to add, and nothing to drop: a small page off the advised units, or one whose
   * slices were all in use since their last purge (their memory is mapped as it is; the
   * advice only decides how untouched memory comes in, and the next page made on a purged
   * slice there drops it) */
  if (covered == 0 && ends == 0 &&
      (large || !fresh || (units_get(segment) & overlapped) == 0))
    return;
  /* The page's slices are used, so no purge changes these units before we advise them (the
   * lock: a purge may clean the other slices of an end unit meanwhile). */
  segment_lock(segment);
  uint32_t add = units_mark_locked(segment, start, slices, covered, ends);
  uint32_t drop = large || !fresh ? 0 : units_get(segment) & overlapped; /* no add then */
  if (drop != 0) units_put(segment, units_get(segment) & ~drop);
  segment_unlock(segment);
  if (drop != 0) advise_units(segment, drop, false);
  if (add != 0) advise_units(segment, add, true);
}

/* A block that realloc moves to a page of its own of more than a slice (regrow.c), placed at
 * the start of a unit with nothing else touched in it, asks for huge pages on that unit before
 * its first write, like a large page of a unit: such a block is on its way to megabytes (a
 * vector doubled), and growing in place from there it would otherwise fault 4 KiB at a time
 * over the whole first unit, since the kernel maps a huge page only on a unit that has no 4
 * KiB page yet (realloc_heavy: 5,400 page faults without it, 1,700 with it). The price: a
 * block that stops growing early keeps the whole unit resident (2 MiB for a block of 128 KiB
 * to 2 MiB; bench/c/realloc_held.c's 100 blocks doubled to 128 KiB in turns: 27 MiB peak RSS
 * against 19 without the advice, mimalloc 3 23). */
void _sa_thp_growing_page(segment_t *segment, size_t start, size_t slices) {
  if (start % UNIT_SLICES != 0 || mi_option_is_enabled(mi_option_allow_large_os_pages)) return;
  uint32_t unit = units_mask(start / UNIT_SLICES, start / UNIT_SLICES + 1) & ADVISABLE_UNITS;
  if (unit == 0 || (units_get(segment) & unit) != 0) return;
  segment_lock(segment);
  uint32_t add = units_mark_locked(segment, start, slices, 0, unit);
  segment_unlock(segment);
  if (add != 0) advise_units(segment, add, true);
}

/* Every unit but the header's, in one call. */
void _sa_thp_segment_advise(segment_t *segment, bool fresh) {
  if (mi_option_is_enabled(mi_option_allow_large_os_pages)) return; /* the whole of it is */
  const uint32_t all = ADVISABLE_UNITS;
  if (fresh) {
    advise_units(segment, all, true);
    units_put(segment, all);
    return;
  }
  segment_lock(segment); /* a cached segment: the housekeeper may be purging it */
  uint32_t units = units_get(segment);
  units_put(segment, all);
  segment_unlock(segment);
  advise_units(segment, all & ~units, true);
}

bool _sa_thp_slice_advised(const segment_t *segment, size_t slice) {
  return (units_get(segment) >> (slice / UNIT_SLICES)) & 1;
}

uint32_t _sa_thp_units_partly_due(const segment_t *segment, int64_t now, bool force) {
  uint32_t units = units_get(segment), partly = 0;
  for (uint32_t left = units; left != 0; left &= left - 1) {
    size_t u = (size_t)__builtin_ctz(left);
    for (size_t k = u * UNIT_SLICES; k < (u + 1) * UNIT_SLICES; k++) {
      if (bit_get(segment->dirty_slices, k) &&
          (!bit_get(segment->purge_slices, k) ||
           (!force && purge_stamp_after(segment->purge_at[k], now)))) { /* in use */
        partly |= (uint32_t)1 << u;
        break;
      }
    }
  }
  return partly;
}

void _sa_thp_forget(segment_t *segment) {
  uint32_t units = units_get(segment);
  if (units != 0) advise_units(segment, units, false);
  units_put(segment, 0);
}
