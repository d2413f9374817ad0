/* shardalloc: purging. Free slices go back to the OS purge_delay ms after they were freed.
 * A slice is pending (purge_slices) while it is free and dirty; allocating it again cancels
 * that. Each pending slice is due purge_delay after its own free, so memory that is reused
 * within the delay is never purged (and never faulted in again): only memory that stays idle
 * goes back. Runs of due slices are purged with one madvise each. The owner thread purges
 * its segments (from the generic path, page frees and thread exit); the cache is purged by
 * any thread's housekeeping, mi_collect, and the optional background thread.
 *
 * Also here: the list of all owned segments, which exists so that any thread can purge any
 * thread's segments, and the purge locks around fork. */
#include <pthread.h>

#include "segment.h"

/* ---- All owned segments, so that any thread can purge any thread's free memory -----------
 * (mi_collect(true) from any thread, the housekeeper). `owned_lock` guards the list; a
 * segment leaves it (detach) before it is cached, abandoned or unmapped, so a purge that
 * holds the lock never touches a segment that is going away. Lock order: owned_lock, then a
 * segment's purge_lock. segments_lock and owned_lock are taken one after the other, never
 * one inside the other, except by the fork handlers, which take every lock in the order of
 * init.c's list. */
pthread_mutex_t _sa_owned_lock = PTHREAD_MUTEX_INITIALIZER; /* init.c: fork */
#define owned_lock _sa_owned_lock
static segment_t *owned_all;

void _sa_owned_add(segment_t *segment) {
  pthread_mutex_lock(&owned_lock);
  segment->owned_prev = NULL;
  segment->owned_next = owned_all;
  if (owned_all != NULL) owned_all->owned_prev = segment;
  owned_all = segment;
  pthread_mutex_unlock(&owned_lock);
}

void _sa_owned_remove(segment_t *segment) {
  pthread_mutex_lock(&owned_lock);
  if (segment->owned_prev != NULL) segment->owned_prev->owned_next = segment->owned_next;
  else owned_all = segment->owned_next;
  if (segment->owned_next != NULL) segment->owned_next->owned_prev = segment->owned_prev;
  segment->owned_next = segment->owned_prev = NULL;
  pthread_mutex_unlock(&owned_lock);
}

/* ---- Purging ------------------------------------------------------------------------------- */
void _sa_purge_range(void *p, size_t size) {
  int err = _sa_os_purge(p, size);
  if (err != 0) _sa_error("madvise(DONTNEED) of %zu bytes at %p failed (errno %d)", size, p, err);
  _sa_stat_add(SA_STAT_purges, 1);
}

/* Free and never touched since its last purge (by our books: a huge page may still back it). */
static bool slice_untouched(const segment_t *segment, size_t slice) {
  return !bit_get(segment->used_slices, slice) && !bit_get(segment->dirty_slices, slice);
}

/* The range one madvise gives back for the due run [i, j): the run, widened over the free
 * slices nobody touched since their last purge up to the 2 MiB unit boundaries around it
 * - on an advised unit, always: a huge page may back them (mapped whole at the first touch of
 *   the unit), and giving back only the rest would split it and leave them resident for good;
 * - on any other unit, where that makes the call cover the whole unit: the kernel frees a
 *   unit's page table only when one call gives back the whole unit (Linux's PT_RECLAIM), and
 *   while the table is there, every later first touch of the unit maps 4 KiB, even under
 *   huge page advice. Purged slice by slice as its pages were freed, a unit small pages had
 *   used stayed so for good: a large page made there later faulted in 4 KiB at a time, 512
 *   faults a unit instead of 1 (test_thp_advice).
 * The slices it widens over hold nothing: the call costs the kernel a walk of empty entries. */
static void purge_run_widen(const segment_t *segment, size_t i, size_t j, size_t *from,
                            size_t *to) {
  const size_t unit = THP_SIZE / SLICE_SIZE;
  size_t lo = i, hi = j;
  while (lo % unit != 0 && slice_untouched(segment, lo - 1)) lo--;
  while (hi % unit != 0 && slice_untouched(segment, hi)) hi++;
  bool whole_unit = sa_align_up(lo, unit) + unit <= hi; /* covers a unit from its start */
  *from = whole_unit || _sa_thp_slice_advised(segment, i) ? lo : i;
  *to = whole_unit || _sa_thp_slice_advised(segment, j - 1) ? hi : j;
}

/* Give slices [from, to) of `segment` back to the OS (purge_lock held). `unlocked`: with the
 * lock released for the system call, the range marked as being purged; an owner that wants
 * any of it then waits for this one call (slices_take), and its other frees and mallocs do not
 * wait at all. */
static void purge_run_to_os(segment_t *segment, size_t from, size_t to, bool unlocked) {
  uint8_t *start = (uint8_t *)segment + from * SLICE_SIZE;
  if (!unlocked) {
    _sa_purge_range(start, (to - from) * SLICE_SIZE);
    return;
  }
  segment->purging_start = (uint16_t)from;
  segment->purging_end = (uint16_t)to;
  segment_unlock(segment);
  _sa_purge_range(start, (to - from) * SLICE_SIZE);
  segment_lock(segment);
  segment->purging_start = segment->purging_end = 0;
}

/* Purge the due slices of `segment` (every pending one if `force`), at most `*limit` slices
 * if `limit` is not NULL (counted down). Stopped by the limit, it leaves purge_expire as it
 * was: no later than the earliest slice left pending. `unlocked`: each system call with the
 * purge lock released (purge_run_to_os), for a segment another thread owns; the caller must
 * keep the segment from being freed meanwhile (owned_lock). */
static void segment_purge(segment_t *segment, int64_t now, bool force, size_t *limit,
                          bool unlocked) {
  int64_t next = 0;
  bool released = false;
  /* due slices of huge pages' units wait for the rest of their unit (thp.c), on demand too.
   * The waiting unit's pending slices not due yet set the next expiry, when the unit may be
   * due whole (a unit two large pages share, freed apart: without it, nothing came back for
   * it and the unit stayed resident for good, 150-180 MiB of an idle thread's 2-4 MB blocks).
   * A unit that waits only for a page in use sets none: that page's free schedules the next
   * purge. */
  uint32_t waiting = _sa_thp_units_partly_due(segment, now, force);
  const size_t unit = THP_SIZE / SLICE_SIZE;
  for (size_t i = 0; i < SLICES_PER_SEGMENT;) {
    if (limit != NULL && *limit == 0) return;
    if (segment->purge_slices[i / 64] == 0) {
      i = (i / 64 + 1) * 64;
      continue;
    }
    if (!bit_get(segment->purge_slices, i)) {
      i++;
      continue;
    }
    bool later = !force && purge_stamp_after(segment->purge_at[i], now);
    if (later || ((waiting >> (i / unit)) & 1)) { /* a waiting unit may come due whole */
      int64_t at = purge_stamp_ms(segment->purge_at[i], now);
      if (later && (next == 0 || at < next)) next = at;
      i++;
      continue;
    }
    size_t j = i;
    while (j < SLICES_PER_SEGMENT && bit_get(segment->purge_slices, j) &&
           (force || !purge_stamp_after(segment->purge_at[j], now)) &&
           !((waiting >> (j / unit)) & 1) &&
           (limit == NULL || j - i < *limit))
      j++;
    if (limit != NULL) *limit -= j - i;
    size_t from, to;
    purge_run_widen(segment, i, j, &from, &to);
    /* remembered for the delay's adaptation; a purge on demand is no sign of a short delay */
    for (size_t k = i; k < j; k++) segment->purge_at[k] = force ? 0 : purge_stamp(now);
    bits_set(segment->dirty_slices, i, j - i, false);
    bits_set(segment->purge_slices, i, j - i, false);
    _sa_stat_add(SA_STAT_committed, -(int64_t)((j - i) * SLICE_SIZE));
    purge_run_to_os(segment, from, to, unlocked);
    released |= unlocked;
    i = j;
  }
  if (released) { /* the owner may have freed or taken slices meanwhile: once more, locked */
    segment_purge(segment, now, force, limit, false);
    return;
  }
  segment->purge_expire = next;
}

/* ---- The purge delay, adapted per thread --------------------------------------------------
 * A slice purged by its delay and taken into use again soon after was purged too early: the
 * program pays page faults and zeroing for memory it still wanted (buffers of a few MiB that
 * come and go every few tens of ms, say). So each thread's delay starts at the purge_delay
 * option and doubles, up to PURGE_DELAY_GROWTH times it, whenever PURGE_REGRET_SLICES slices it
 * purged were taken again within twice its delay of their purge; it halves again after eight
 * delays without that. Memory that stays free is still given back, only later; a program
 * whose memory is not reused (a pool that goes idle, a thread that exits) keeps the option's
 * delay. */
#define PURGE_DELAY_GROWTH 8         /* at most 200 ms with the default 25 ms */
#define PURGE_REGRET_SLICES 16       /* 1 MiB taken again soon doubles the delay */

/* Free runs of a 2 MiB unit or more (large and huge blocks, which get transparent huge pages)
 * wait at least PURGE_LARGE_FACTOR times the option, whatever the adaptation says: faulting a
 * unit in again costs the kernel a clear of 2 MiB (100-200 us on a virtual machine), programs
 * that churn big buffers reuse them every few tens to hundreds of ms, and the adaptation
 * learns that only after several purges too early (large_blocks: 1155 page faults at 25 ms,
 * 398 at 100 ms, mimalloc 3 with its 1 s: 351). Memory of small pages keeps the option's
 * delay: it is where a thread pool's idle memory sits. The longest wait stays
 * PURGE_DELAY_GROWTH times the option. */
#define PURGE_LARGE_FACTOR 4
#define PURGE_LARGE_SLICES (THP_SIZE / SLICE_SIZE)

/* Due times are rounded up to a multiple of this (ms): see _sa_segment_schedule_purge. */
#define PURGE_TICK_MS 8

/* The delay of a run of `slices` free (or purged) slices, from the delay the rules give. */
static int64_t run_delay(int64_t delay, long base, size_t slices) {
  int64_t floor = (int64_t)base * PURGE_LARGE_FACTOR;
  return slices >= PURGE_LARGE_SLICES && delay < floor ? floor : delay;
}

/* The rules both adaptations (per thread, and for memory no thread owns) follow. */
static bool delay_quiet(int64_t delay, int64_t regret_at, int64_t now) {
  return now - regret_at > 8 * delay; /* no regret for eight delays */
}
static int64_t delay_halved(int64_t delay, long base) { return delay / 2 > base ? delay / 2 : base; }
static int64_t delay_doubled(int64_t delay, long base) {
  return delay * 2 < base * PURGE_DELAY_GROWTH ? delay * 2 : base * PURGE_DELAY_GROWTH;
}
/* Slices purged at `purged_at` and taken again `now` were purged too early. */
static bool purged_too_soon(int64_t delay, int64_t purged_at, int64_t now) {
  return now - purged_at <= 2 * delay;
}

static long thread_purge_delay(thread_t *thread, long base, int64_t now) {
  if (thread == NULL || thread->purge_delay <= base) return base;
  if (delay_quiet(thread->purge_delay, thread->purge_regret_at, now)) {
    thread->purge_delay = delay_halved(thread->purge_delay, base);
    thread->purge_regret_at = now;
  }
  return (long)thread->purge_delay;
}

void _sa_thread_slices_taken(thread_t *thread, size_t pending, size_t purged, int64_t purged_at) {
  if (thread == NULL) return;
  thread->purge_pending = thread->purge_pending > pending ? thread->purge_pending - pending : 0;
  if (purged == 0) return;
  long base = mi_option_get(mi_option_purge_delay);
  if (base <= 0) return;
  int64_t delay = thread->purge_delay > base ? thread->purge_delay : base;
  int64_t now = _sa_clock_ms();
  if (!purged_too_soon(run_delay(delay, base, purged), purged_at, now)) return;
  thread->purge_regret_at = now;
  thread->purge_regret += purged;
  if (thread->purge_regret < PURGE_REGRET_SLICES) return;
  thread->purge_regret = 0;
  thread->purge_delay = delay_doubled(delay, base);
  _sa_stat_add(SA_STAT_purge_delay_raises, 1);
}

/* ---- The purge delay of memory no thread owns ---------------------------------------------
 * Threads that exit leave their free memory in cached and abandoned segments, which threads
 * started later take. When threads come and go in waves, that memory is purged by the delay
 * of the thread that freed it and wanted again soon after by a thread that has just started,
 * whose own delay cannot learn from it. So slices purged while their segment had no owner
 * and taken again soon after count process-wide, and raise the delay of memory that is
 * about to have no owner, as a thread's regret raises its own delay (doubling, up to
 * PURGE_DELAY_GROWTH times the option; halving after eight delays without regret): the
 * frees of an exiting thread and of the housekeeper's reclaim get it
 * (_sa_thread_frees_unowned) when it is longer than the thread's own. The due time is set at
 * the free, as any, and nothing moves it later, so memory no new thread wants still goes
 * back within PURGE_DELAY_GROWTH times the option. */
static _Atomic(int64_t) unowned_delay;     /* ms; <= the option: the option */
static _Atomic(int64_t) unowned_regret_at; /* ms: when such slices were last taken again */
static _Atomic(size_t) unowned_regret;     /* slices taken again since the last raise */

static int64_t unowned_purge_delay(long base, int64_t now) {
  int64_t delay = atomic_load_explicit(&unowned_delay, memory_order_relaxed);
  if (delay <= base) return base;
  if (delay_quiet(delay, atomic_load_explicit(&unowned_regret_at, memory_order_relaxed), now)) {
    int64_t lower = delay_halved(delay, base);
    if (atomic_compare_exchange_strong_explicit(&unowned_delay, &delay, lower,
                                                memory_order_relaxed, memory_order_relaxed))
      atomic_store_explicit(&unowned_regret_at, now, memory_order_relaxed);
    return lower;
  }
  return delay;
}

long _sa_huge_purge_delay(size_t size) {
  long base = mi_option_get(mi_option_purge_delay);
  if (base <= 0) return base;
  return (long)run_delay(unowned_purge_delay(base, _sa_clock_ms()), base, size / SLICE_SIZE);
}

void _sa_unowned_slices_taken(size_t purged, int64_t purged_at) {
  long base = mi_option_get(mi_option_purge_delay);
  if (base <= 0) return;
  int64_t now = _sa_clock_ms();
  int64_t delay = unowned_purge_delay(base, now);
  if (!purged_too_soon(run_delay(delay, base, purged), purged_at, now)) return;
  atomic_store_explicit(&unowned_regret_at, now, memory_order_relaxed);
  size_t regret = atomic_fetch_add_explicit(&unowned_regret, purged, memory_order_relaxed) + purged;
  if (regret < PURGE_REGRET_SLICES) return;
  atomic_store_explicit(&unowned_regret, 0, memory_order_relaxed);
  int64_t raised = delay_doubled(delay, base);
  int64_t stored = atomic_load_explicit(&unowned_delay, memory_order_relaxed);
  if (raised > stored &&
      atomic_compare_exchange_strong_explicit(&unowned_delay, &stored, raised,
                                              memory_order_relaxed, memory_order_relaxed))
    _sa_stat_add(SA_STAT_purge_delay_raises, 1);
}

void _sa_thread_frees_unowned(thread_t *thread) {
  long base = mi_option_get(mi_option_purge_delay);
  if (base <= 0) return;
  int64_t now = _sa_clock_ms();
  int64_t delay = unowned_purge_delay(base, now);
  if (delay > thread_purge_delay(thread, base, now)) {
    thread->purge_delay = delay;
    thread->purge_regret_at = now; /* no halving before these frees */
  }
}

/* Mark [start, start+n) pending; returns the segment's expiry (0: purged at once or never). */
int64_t _sa_segment_schedule_purge(segment_t *segment, size_t start, size_t n) {
  long delay = mi_option_get(mi_option_purge_delay);
  if (delay < 0) return 0;
  bits_set(segment->purge_slices, start, n, true);
  int64_t now = _sa_clock_ms();
  if (delay > 0) delay = (long)run_delay(thread_purge_delay(segment->owner, delay, now), delay, n);
  int64_t due = now + delay;
  /* on a tick, so that the purges of a stream of frees come in rounds: the housekeeper wakes
   * at most once a tick for them */
  if (delay > 0) due = (due + PURGE_TICK_MS - 1) / PURGE_TICK_MS * PURGE_TICK_MS;
  uint32_t stamp = purge_stamp(due);
  /* four at a time: the compiler makes one 16-byte store of them (a large page's run is up
   * to 64 slices; a plain loop was a quarter of freeing such a page) */
  uint32_t *at = &segment->purge_at[start];
  size_t i = 0;
  for (; i + 4 <= n; i += 4) at[i] = at[i + 1] = at[i + 2] = at[i + 3] = stamp;
  for (; i < n; i++) at[i] = stamp;
  if (delay == 0) {
    segment_purge(segment, due, true, NULL, false);
    return 0;
  }
  if (segment->purge_expire == 0 || due < segment->purge_expire) segment->purge_expire = due;
  return segment->purge_expire;
}

void _sa_thread_note_purge(thread_t *thread, int64_t expire) {
  if (expire != 0 && (thread->purge_next == 0 || expire < thread->purge_next)) {
    thread->purge_next = expire;
    _sa_housekeeper_note(0, expire);
  }
}

/* Purge what is due in `segment` (everything pending if `force`); returns its next expiry
 * and adds the slices still pending to `*pending` (if not NULL). `unlocked`: as for
 * segment_purge. */
int64_t _sa_segment_purge_due(segment_t *segment, int64_t now, bool force, size_t *pending,
                              bool unlocked) {
  segment_lock(segment);
  if (segment->purge_expire != 0 && (force || segment->purge_expire <= now))
    segment_purge(segment, now, force, NULL, unlocked);
  int64_t next = segment->purge_expire;
  if (next != 0 && pending != NULL) *pending += bits_count(segment->purge_slices);
  segment_unlock(segment);
  return next;
}

static void thread_purge(thread_t *thread, int64_t now, bool force) {
  int64_t next = 0;
  size_t pending = 0;
  for (segment_t *s = thread->segments; s != NULL; s = s->next) {
    int64_t expire = _sa_segment_purge_due(s, now, force, &pending, false);
    if (expire != 0 && (next == 0 || expire < next)) next = expire;
  }
  thread->purge_next = next;
  thread->purge_pending = pending;
}

/* The thread's pending count is an upper bound (the housekeeper and other threads purge its
 * segments too): count again, then purge PURGE_CALL_MAX bytes in the freeing call,
 * whatever their delays: a burst of large frees purges as it goes, each call that finds the
 * thread over its budget a bounded part, never the whole 128 MiB at once. */
void _sa_thread_over_budget(thread_t *thread) {
  size_t pending = 0;
  for (segment_t *s = thread->segments; s != NULL; s = s->next) {
    segment_lock(s);
    pending += bits_count(s->purge_slices);
    segment_unlock(s);
  }
  if (pending * SLICE_SIZE > PURGE_PENDING_MAX) {
    size_t limit = PURGE_CALL_MAX / SLICE_SIZE, left = limit;
    for (segment_t *s = thread->segments; s != NULL && left > 0; s = s->next) {
      segment_lock(s);
      segment_purge(s, 0, true, &left, false);
      segment_unlock(s);
    }
    pending = pending > limit - left ? pending - (limit - left) : 0;
  }
  thread->purge_pending = pending;
}

int64_t _sa_segments_purge_all(bool force) {
  int64_t now = _sa_clock_ms();
  int64_t next = 0;
  pthread_mutex_lock(&owned_lock); /* keeps every segment of the list from being freed */
  for (segment_t *s = owned_all; s != NULL; s = s->owned_next) {
    /* other threads' segments: each system call outside the purge lock, so that their
     * owners' frees do not wait for it (the caller's own: no harm either) */
    int64_t expire = _sa_segment_purge_due(s, now, force, NULL, true);
    if (expire != 0 && (next == 0 || expire < next)) next = expire;
  }
  pthread_mutex_unlock(&owned_lock);
  _sa_segment_cache_purge(force);
  int64_t unowned = _sa_unowned_purge_next();
  if (unowned != 0 && (next == 0 || unowned < next)) next = unowned;
  return next;
}

void _sa_purge_housekeeping(thread_t *thread, bool force) {
  if (thread->purge_next != 0) {
    int64_t now = _sa_clock_ms();
    if (force || thread->purge_next <= now) thread_purge(thread, now, force);
  }
  _sa_segment_cache_purge(force);
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
