/* shardalloc: process and thread life cycle. The process is set up once, on the first
 * allocation of any thread; a thread on its first allocation (the empty default heap sends
 * it to the generic path, see heap.c). A pthread key's destructor tears the thread down at
 * exit: its empty pages are freed and segments still holding blocks are abandoned for other
 * threads to reclaim. A thread that never allocates costs nothing. */
#include <pthread.h>
#include <time.h>

#include "internal.h"

__thread heap_t *_sa_heap_default SA_TLS_MODEL = &_sa_heap_empty;

static pthread_once_t process_once = PTHREAD_ONCE_INIT;
static pthread_key_t thread_key;
static bool thread_key_ok;

static void thread_done(thread_t *thread) {
  _sa_remote_flush();
  _sa_heap_default = &_sa_heap_empty;
  _sa_heap_cache.id = 0;
  /* held to the end: neither the housekeeper nor a heap's delete or destroy in another thread
   * may touch what goes away */
  sa_house_enter(thread);
  _sa_thread_frees_unowned(thread); /* what it frees now, a new thread may want (purge.c) */
  /* the backing heap goes last: other heaps of the thread are listed before it */
  for (heap_t *heap = thread->heaps; heap != NULL; heap = heap->next)
    _sa_heap_detach_pages(heap);
  _sa_spare_release(thread);
  _sa_segments_abandon(thread);
  _sa_heap_instances_release(thread, true); /* off their heaps' lists; instances freed */
  _sa_stats_thread_done(thread); /* off the live list: no sweep reaches it any more */
  sa_house_exit(thread);
  _sa_pool_local_release(thread);
  _sa_pool_free(thread);
}

static void thread_key_destructor(void *value) {
  if (value != NULL) thread_done((thread_t *)value);
}

/* ---- fork ----------------------------------------------------------------------------------
 * Every global mutex (internal.h), in lock order: a thread that holds one takes only those
 * listed after it (the housekeeper's sweep holds the list of threads while it frees pages).
 * Across fork the handlers hold them all, then every segment's purge spin lock (purge.c),
 * so that the child, which has only the forking thread, finds each lock free and the lists
 * they guard consistent; other threads' heaps stay as they were, their blocks still freeable.
 * The housekeeper needs no lock of its own here: it is between rounds whenever the handlers
 * hold the list of threads and the segment locks, and the child starts its own. Reverse
 * order to release. */
static pthread_mutex_t *const fork_locks[] = {
    &_sa_threads_lock, /* the housekeeper sweeps under it, taking the others */
    &_sa_heaps_lock,   /* heaps' instance lists; a collect sweeps under it */
    &_sa_pool_lock,    &_sa_huge_lock,  &_sa_owned_lock, &_sa_segments_lock, &_sa_arena_lock,
};
#define FORK_LOCK_COUNT (sizeof(fork_locks) / sizeof(fork_locks[0]))

static void fork_prepare(void) {
  for (size_t i = 0; i < FORK_LOCK_COUNT; i++) pthread_mutex_lock(fork_locks[i]);
  _sa_segments_fork_purge_locks(true);
}
static void fork_parent(void) {
  _sa_segments_fork_purge_locks(false);
  for (size_t i = FORK_LOCK_COUNT; i-- > 0;) pthread_mutex_unlock(fork_locks[i]);
}
static void fork_child(void) {
  _sa_housekeeper_fork_child();
  _sa_segments_fork_purge_locks(false);
  for (size_t i = FORK_LOCK_COUNT; i-- > 0;) pthread_mutex_init(fork_locks[i], NULL);
  heap_t *heap = _sa_heap_default;
  if (heap != &_sa_heap_empty) {
    /* a walk of a heap by a thread that did not survive may have held this thread's lock
     * (mi_heap_visit_blocks only reads): this thread is in none of its slow paths */
    if (heap->thread->house_depth == 0)
      atomic_store_explicit(&heap->thread->house_lock, false, memory_order_relaxed);
    _sa_heaps_fork_child(heap->thread);
    _sa_heaps_fork_child_unlist(heap->thread); /* no delete or destroy waits on a lost thread */
  }
}

/* At exit (a destructor, not atexit: registering may allocate, inside our own malloc). */
__attribute__((destructor)) static void process_done(void) {
  _sa_housekeeper_stop(); /* a library unloaded by dlclose takes its code with it */
  if (mi_option_is_enabled(mi_option_show_stats)) mi_stats_print(NULL);
}

static void process_init_once(void) {
#if SA_SECURE
  _sa_secure_init(); /* the keys of every free list: before the first page */
#endif
  _sa_stats_process_start();
  _sa_options_init();
  thread_key_ok = pthread_key_create(&thread_key, thread_key_destructor) == 0;
  _sa_arena_init();
  _sa_verbose("shardalloc %d.%d.%d (%s build) initialised", SHARDALLOC_VERSION_MAJOR,
              SHARDALLOC_VERSION_MINOR, SHARDALLOC_VERSION_PATCH,
              SA_DEBUG > 0 ? (SA_SECURE ? "secure debug" : "debug") : (SA_SECURE ? "secure" : "release"));
}

/* What may allocate runs once the first thread's heap exists, outside pthread_once: a
 * nested allocation is then served instead of re-entering the once (pthread_atfork may grow
 * its list; creating a thread allocates its TLS). */
static void process_start_late(void) { pthread_atfork(fork_prepare, fork_parent, fork_child); }

void _sa_process_init(void) { pthread_once(&process_once, process_init_once); }

heap_t *_sa_thread_heap_init(void) {
  if (_sa_heap_default != &_sa_heap_empty) return _sa_heap_default;
  _sa_process_init();
  thread_t *thread = _sa_pool_alloc();
  if (thread == NULL) return NULL;
  thread->thread_id = sa_thread_id();
  _sa_heap_init(&thread->heap, thread, &_sa_heap_main);
  thread->heap.young = true; /* power-of-two size classes for its first pages (types.h) */
  _sa_heap_default = &thread->heap;
  if (thread_key_ok) pthread_setspecific(thread_key, thread);
  _sa_stats_thread_start(thread);
  _sa_housekeeper_thread_started();
  static _Atomic(bool) late_started;
  if (!atomic_exchange_explicit(&late_started, true, memory_order_relaxed)) process_start_late();
  return &thread->heap;
}

void mi_thread_init(void) { (void)mi_heap_get_default(); }

void mi_thread_done(void) {
  heap_t *heap = _sa_heap_default;
  if (heap == &_sa_heap_empty) return;
  thread_t *thread = heap->thread;
  if (thread_key_ok) pthread_setspecific(thread_key, NULL);
  thread_done(thread);
}

int mi_version(void) { return SHARDALLOC_VERSION; }
