/* shardalloc: the housekeeper. Memory goes back to the OS while the threads that freed it
 * live on, whether they stay on the fast paths, block, or have exited.
 *
 * Without it, three kinds of memory wait for the slow path of the thread that owns them:
 * slices pending purge (due purge_delay after their free), pages whose blocks other threads
 * freed (they sit in the pages' cross-thread lists until the owner collects them), and the
 * segments of exited threads (until a thread reclaims one). A thread that stays on the fast
 * path, or blocks, never gets there. So one thread of ours does it:
 *
 *   - it is started the first time memory waits (a page freed, a cross-thread free), from a
 *     point where the caller holds no lock of ours; it sleeps on a condition variable while
 *     nothing waits, with no timeout: no thread of ours runs while no memory is waiting;
 *   - purges: it sleeps until the earliest due time that any thread noted, then purges what
 *     is due in every segment (owned, abandoned, cached);
 *   - cross-thread frees: the first such free after a sweep sets a flag and wakes it; at most
 *     once per purge delay it sweeps every live thread's heaps (_sa_heap_sweep, below) under
 *     that thread's house_lock, taken with a try (a thread in its slow path is skipped and
 *     retried next round), freeing every page whose handed-out blocks all wait in its
 *     cross-thread list; those pages' slices then go back after the purge delay;
 *   - exited threads: a free into an abandoned page sets a flag; at most once per purge
 *     delay it takes the abandoned segments in (collecting their pages, freeing the empty
 *     ones) and abandons what is still in use again;
 *   - retired pages of idle threads: a page retired sets a flag; at most once per
 *     RETIRED_LOOK_SWEEPS purge delays it looks at every live thread's heaps, and gives back
 *     the retired pages of those whose owner made no generic-path call since the last look
 *     (the owner's own deadlines count those calls, so a thread that stops allocating would
 *     keep up to PAGE_RETIRE_BYTES_MAX per heap for good); while an owner is busy it looks
 *     again later.
 * Owners leave due purges to it while it runs (their slow paths do no purging beyond the
 * per-thread pending budget), which also keeps that work out of the allocating call.
 *
 * Cost on the owners: none on the fast paths; one uncontended atomic exchange per slow path
 * (the house_lock); on a cross-thread free, one relaxed load of a flag (and a wake-up once per
 * sweep); on a page's retirement, the same (a wake-up only while it sleeps with no
 * deadline). The housekeeper's own work is bounded by the purge delay: one sweep per delay. */
#define _GNU_SOURCE /* pthread_setname_np */
#include <pthread.h>
#include <time.h>

#include "internal.h"

static pthread_mutex_t hk_lock = PTHREAD_MUTEX_INITIALIZER; /* guards hk_cond's predicate */
static pthread_cond_t hk_cond;
static bool hk_cond_ready;
_Atomic(unsigned) _sa_hk_work;      /* internal.h */
#define hk_work _sa_hk_work
static _Atomic(int64_t) hk_due;     /* earliest purge due noted since the last purge; 0: none */
static _Atomic(bool) hk_sleeping;   /* waiting with no deadline, or a later one than noted */
_Atomic(int) _sa_hk_state;          /* HK_* (internal.h) */
#define hk_state _sa_hk_state
static pthread_t hk_thread;
static uintptr_t hk_forking_thread; /* in a fork child: the thread that forked */

static void wake(void) {
  pthread_mutex_lock(&hk_lock);
  if (hk_cond_ready) pthread_cond_signal(&hk_cond);
  pthread_mutex_unlock(&hk_lock);
}

void _sa_housekeeper_note(unsigned what, int64_t due_ms) {
  /* lazy work alone: retired pages start no thread (a program that never gave memory back to
   * a segment has no housekeeper, and forks as a single thread), but their flag is set for
   * the day one starts (and so that the callers' check of it stays one load); their look
   * waits for its time anyway, so no wake-up (a system call inside the free that retired
   * the page) while the thread sleeps to a deadline */
  bool lazy = due_ms == 0 && (what & ~(unsigned)HOUSE_LAZY) == 0;
  int state = atomic_load_explicit(&hk_state, memory_order_relaxed);
  if (state == HK_OFF) {
    if (lazy) {
      atomic_fetch_or_explicit(&hk_work, what, memory_order_relaxed);
      return;
    }
    if (!mi_option_is_enabled(mi_option_background_purge)) return;
    int off = HK_OFF;
    atomic_compare_exchange_strong_explicit(&hk_state, &off, HK_WANTED, memory_order_relaxed,
                                            memory_order_relaxed);
  }
  bool news = false;
  if (what != 0 && (atomic_load_explicit(&hk_work, memory_order_relaxed) & what) != what)
    news = (atomic_fetch_or_explicit(&hk_work, what, memory_order_relaxed) & what) != what;
  if (due_ms != 0) {
    int64_t due = atomic_load_explicit(&hk_due, memory_order_relaxed);
    while ((due == 0 || due_ms < due) &&
           !atomic_compare_exchange_weak_explicit(&hk_due, &due, due_ms, memory_order_relaxed,
                                                  memory_order_relaxed)) {
    }
    news |= due == 0 || due_ms < due;
  }
  if (news && lazy && atomic_load_explicit(&hk_due, memory_order_relaxed) != 0) news = false;
  if (news && atomic_load_explicit(&hk_sleeping, memory_order_acquire)) wake();
}

/* ---- The sweep of a live thread's heap -----------------------------------------------------
 * The caller holds the owner's house_lock, so the owner is in none of its slow paths; it may
 * be in a fast path. Those touch the first page of a queue (malloc) and pages where the owner
 * holds a live block (free), and nothing else. A page whose `used` equals its cross-thread
 * count has no live block: every block handed out waits in the list. The owner cannot touch
 * it, and its `used` cannot change, so the sweep may read it without the owner's help: a
 * stale value can only be larger (here only the owner's frees change it, downwards), which
 * skips the page. Such a page is freed whole (its lists are not walked). Pages emptied by the
 * owner (count 0) are the owner's to retire. Blocks that full pages handed over through the
 * heap's delayed list join their pages' lists first, so that those pages count too; the page
 * stays full and asks for the owner's attention at the next cross-thread free. */
void _sa_heap_delayed_to_pages(heap_t *heap) {
  if (atomic_load_explicit(&heap->thread_delayed_free, memory_order_relaxed) == NULL) return;
  block_t *block = atomic_exchange_explicit(&heap->thread_delayed_free, NULL, memory_order_acquire);
  while (block != NULL) {
    page_t *page = sa_page_of(sa_segment_of(block), block);
    block_t *next = sa_delayed_next(page, block);
    uintptr_t x = atomic_load_explicit(&page->xthread_free, memory_order_relaxed);
    uintptr_t desired;
    sa_chain_header_set(page, block, block, 1); /* a chain of one (types.h) */
    do {
      while (sa_xthread_state(x) == DELAYED_FREEING) { /* its pusher still resets the state */
        _sa_os_yield();
        x = atomic_load_explicit(&page->xthread_free, memory_order_relaxed);
      }
      sa_block_set_next(page, block, sa_xthread_block(x));
      desired = sa_xthread_push(x, block);
      /* still full: the next cross-thread free tells the owner again */
      if (page->flags.x.in_full) desired = sa_xthread_with_state(desired, DELAYED_USE);
    } while (!atomic_compare_exchange_weak_explicit(&page->xthread_free, &x, desired,
                                                    memory_order_acq_rel, memory_order_relaxed));
    block = next;
  }
}

void _sa_heap_sweep(heap_t *heap) {
  _sa_heap_delayed_to_pages(heap);
  for (size_t bin = 0; bin < BIN_QUEUES; bin++) {
    page_queue_t *queue = &heap->pages[bin];
    /* the first page of a size class is where the owner's malloc takes blocks from */
    page_t *page = bin == BIN_FULL || queue->first == NULL ? queue->first : queue->first->next;
    while (page != NULL) {
      page_t *next = page->next;
      uintptr_t x = atomic_load_explicit(&page->xthread_free, memory_order_acquire);
      size_t count = sa_xthread_count(x);
      if (count != 0 && sa_owner_used(page) == count &&
          atomic_compare_exchange_strong_explicit(&page->xthread_free, &x, sa_xthread_taken(x),
                                                  memory_order_acq_rel, memory_order_relaxed)) {
        page->used = 0;
        page->free = page->local_free = NULL;
        page->flags.x.in_full = 0;
        _sa_page_free(page, queue);
      }
      page = next;
    }
  }
}

/* Take the abandoned segments into `heap` (the housekeeper's own), free their empty pages,
 * and abandon what is still in use again. */
static void take_abandoned(heap_t *heap) {
  thread_t *thread = heap->thread;
  sa_house_enter(thread);
  _sa_thread_frees_unowned(thread); /* the pages it frees here belong to no thread */
  bool took = false;
  while (_sa_segment_try_reclaim(heap)) took = true; /* collects, frees the empty pages */
  if (took) { /* the pages went to its instances of their heaps: detach them all again */
    for (heap_t *h = thread->heaps; h != NULL; h = h->next) _sa_heap_detach_pages(h);
    _sa_spare_release(thread); /* none in practice: it destroys no heap */
    _sa_segments_abandon(thread);
    _sa_heap_instances_release(thread, false);
  }
  sa_house_exit(thread);
}

/* ---- The sweep of one live thread --------------------------------------------------------- */
static bool sweep_thread(thread_t *thread, void *arg) {
  bool *busy = arg;
  if (atomic_exchange_explicit(&thread->house_lock, true, memory_order_acquire)) {
    *busy = true; /* in its slow path (or exiting): next round */
    return true;
  }
  for (heap_t *heap = thread->heaps; heap != NULL; heap = heap->next) _sa_heap_sweep(heap);
  atomic_store_explicit(&thread->house_lock, false, memory_order_release);
  return true;
}

/* ---- Retired pages of one live thread -----------------------------------------------------
 * The retired pages of its heaps go back to their segments if it made no generic-path call
 * since the last look (_sa_heap_release_idle), RELEASE_BATCH pages per hold of its house_lock:
 * the owner's next slow path waits for at most one batch (a few microseconds). */
#define RELEASE_BATCH 8

typedef struct release_pass_s {
  bool busy;  /* a thread was in its slow path: again next round */
  bool watch; /* a busy owner has retired pages: look again later, in case it goes idle */
} release_pass_t;

static bool release_thread(thread_t *thread, void *arg) {
  release_pass_t *pass = arg;
  size_t done = 0; /* heaps looked at in an earlier hold: a second look at once would find a
                      busy owner idle (the list may change meanwhile: then one is missed) */
  for (bool more = true; more;) {
    if (atomic_exchange_explicit(&thread->house_lock, true, memory_order_acquire)) {
      pass->busy = true;
      return true;
    }
    size_t freed = 0, index = 0;
    more = false;
    for (heap_t *heap = thread->heaps; heap != NULL && !more; heap = heap->next, index++) {
      if (index < done) continue;
      bool left = _sa_heap_release_idle(heap, RELEASE_BATCH, &freed);
      if (freed >= RELEASE_BATCH) more = left;
      else pass->watch |= left;
      done = more ? index : index + 1;
    }
    atomic_store_explicit(&thread->house_lock, false, memory_order_release);
  }
  return true;
}

/* ---- The thread ---------------------------------------------------------------------------- */
static int64_t sweep_interval(void) { return mi_option_get_clamp(mi_option_purge_delay, 1, 1000); }
/* Retired pages of live threads are looked at less often: an owner that makes generic-path
 * calls frees its own, and an idle one is found at the second look. */
#define RETIRED_LOOK_SWEEPS 4

/* When the work in `work` is due: the sweeps at `sweep_at`, the look at retired pages at
 * `look_at`; 0 if none. */
static int64_t work_due(unsigned work, int64_t sweep_at, int64_t look_at) {
  int64_t due = 0;
  if (work & (HOUSE_REMOTE_FREES | HOUSE_ABANDONED)) due = sweep_at;
  if ((work & HOUSE_RETIRED) && (due == 0 || look_at < due)) due = look_at;
  return due;
}

/* Sleep until there is something to do: a purge due, work once it is due (work_due), or a
 * stop. */
static void sleep_until_work(int64_t sweep_at, int64_t look_at) {
  pthread_mutex_lock(&hk_lock);
  atomic_store_explicit(&hk_sleeping, true, memory_order_seq_cst);
  for (;;) {
    if (atomic_load_explicit(&hk_state, memory_order_relaxed) == HK_STOPPING) break;
    unsigned work = atomic_load_explicit(&hk_work, memory_order_relaxed);
    int64_t deadline = atomic_load_explicit(&hk_due, memory_order_relaxed);
    int64_t work_at = work_due(work, sweep_at, look_at);
    if (work_at != 0 && (deadline == 0 || work_at < deadline)) deadline = work_at;
    int64_t now = _sa_clock_ms();
    if (deadline != 0 && now >= deadline) break;
    if (deadline == 0) {
      pthread_cond_wait(&hk_cond, &hk_lock);
    } else {
      struct timespec ts; /* the condition variable runs on CLOCK_MONOTONIC */
      clock_gettime(CLOCK_MONOTONIC, &ts);
      int64_t wait_ms = deadline - now + 1; /* the coarse clock may lag the fine one */
      ts.tv_sec += wait_ms / 1000;
      ts.tv_nsec += (wait_ms % 1000) * 1000000L;
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
      }
      pthread_cond_timedwait(&hk_cond, &hk_lock, &ts);
    }
  }
  atomic_store_explicit(&hk_sleeping, false, memory_order_relaxed);
  pthread_mutex_unlock(&hk_lock);
}

static void *housekeeper_main(void *arg) {
  (void)arg;
  pthread_setname_np(pthread_self(), "shardalloc-hk"); /* as top and ps show it */
  /* abandoned segments are taken in through its backing heap */
  heap_t *own = mi_heap_get_default() != NULL ? _sa_heap_default : NULL;
  int64_t last_sweep = 0, last_look = 0;
  unsigned busy_rounds = 0, release_busy_rounds = 0;
  while (atomic_load_explicit(&hk_state, memory_order_relaxed) != HK_STOPPING) {
    /* a sweep of live or exited threads' memory waits for the interval since the last one
     * (threads that come and go by hundreds would otherwise keep it busy, contending for
     * their locks); purges are done when due */
    int64_t sweep_at = last_sweep + sweep_interval();
    int64_t look_at = last_look + RETIRED_LOOK_SWEEPS * sweep_interval();
    sleep_until_work(sweep_at, look_at);
    if (atomic_load_explicit(&hk_state, memory_order_relaxed) == HK_STOPPING) break;

    int64_t now = _sa_clock_ms();
    unsigned take = (now >= sweep_at ? HOUSE_ABANDONED | HOUSE_REMOTE_FREES : 0) |
                    (now >= look_at ? HOUSE_RETIRED : 0);
    unsigned work = atomic_fetch_and_explicit(&hk_work, ~take, memory_order_acquire) & take;
    if (own != NULL && (work & HOUSE_ABANDONED)) take_abandoned(own);
    if (work & HOUSE_ABANDONED) last_sweep = now;
    if (work & HOUSE_REMOTE_FREES) {
      bool busy = false;
      _sa_threads_each(sweep_thread, &busy);
      /* a thread in its slow path was skipped: again next round, a few times at most (a
       * fork child may list threads that no longer run, their locks held for good) */
      busy_rounds = busy ? busy_rounds + 1 : 0;
      if (busy && busy_rounds <= 8)
        atomic_fetch_or_explicit(&hk_work, HOUSE_REMOTE_FREES, memory_order_relaxed);
      last_sweep = now;
    }
    if (work & HOUSE_RETIRED) {
      release_pass_t pass = {false, false};
      _sa_threads_each(release_thread, &pass);
      release_busy_rounds = pass.busy ? release_busy_rounds + 1 : 0;
      if (pass.watch || (pass.busy && release_busy_rounds <= 8))
        atomic_fetch_or_explicit(&hk_work, HOUSE_RETIRED, memory_order_relaxed);
      last_look = now;
    }
    int64_t due = atomic_load_explicit(&hk_due, memory_order_relaxed);
    if (due != 0 && due <= _sa_clock_ms()) {
      atomic_store_explicit(&hk_due, 0, memory_order_relaxed);
      int64_t next = _sa_segments_purge_all(false);
      if (next != 0) _sa_housekeeper_note(0, next);
    }
  }
  return NULL;
}

void _sa_housekeeper_start(void) {
  int wanted = HK_WANTED;
  if (!atomic_compare_exchange_strong_explicit(&hk_state, &wanted, HK_STARTING,
                                               memory_order_acq_rel, memory_order_relaxed))
    return;
  pthread_mutex_lock(&hk_lock);
  if (!hk_cond_ready) {
    pthread_condattr_t cattr;
    pthread_condattr_init(&cattr);
    pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
    pthread_cond_init(&hk_cond, &cattr);
    pthread_condattr_destroy(&cattr);
    hk_cond_ready = true;
  }
  pthread_mutex_unlock(&hk_lock);
  atomic_store_explicit(&hk_state, HK_RUNNING, memory_order_release);
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 128 << 10);
  if (pthread_create(&hk_thread, &attr, housekeeper_main, NULL) != 0) {
    _sa_error("could not start the housekeeper thread: threads purge their own memory");
    atomic_store_explicit(&hk_state, HK_OFF, memory_order_release);
    mi_option_set(mi_option_background_purge, 0);
  }
  pthread_attr_destroy(&attr);
}

/* At unload (dlclose of a library holding shardalloc) or exit: the thread must not outlive
 * its code. */
void _sa_housekeeper_stop(void) {
  int running = HK_RUNNING;
  if (!atomic_compare_exchange_strong_explicit(&hk_state, &running, HK_STOPPING,
                                               memory_order_acq_rel, memory_order_relaxed))
    return;
  wake();
  pthread_join(hk_thread, NULL);
  atomic_store_explicit(&hk_state, HK_OFF, memory_order_release);
}

/* The child of a fork has no housekeeper: it starts one when it needs one. */
void _sa_housekeeper_fork_child(void) {
  pthread_mutex_init(&hk_lock, NULL);
  hk_cond_ready = false;
  atomic_store_explicit(&hk_sleeping, false, memory_order_relaxed);
  int state = atomic_load_explicit(&hk_state, memory_order_relaxed);
  if (state != HK_OFF) atomic_store_explicit(&hk_state, HK_FORKED, memory_order_relaxed);
  hk_forking_thread = sa_thread_id();
}

void _sa_housekeeper_thread_started(void) {
  int forked = HK_FORKED;
  if (atomic_load_explicit(&hk_state, memory_order_relaxed) == HK_FORKED &&
      sa_thread_id() != hk_forking_thread)
    atomic_compare_exchange_strong_explicit(&hk_state, &forked, HK_WANTED, memory_order_relaxed,
                                            memory_order_relaxed);
}

void _sa_house_wait(thread_t *thread) {
  while (atomic_exchange_explicit(&thread->house_lock, true, memory_order_acquire)) _sa_os_yield();
}
