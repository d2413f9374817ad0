/* test_fork: fork while other threads keep taking every global lock of the library.
 *
 * A worker thread loops over operations that take each global lock through the API (new
 * segments from the reservation and back, a huge block, a heap object, the statistics list,
 * a purge of every segment), and one thread per lock takes it directly and holds it a while
 * (see holder), while the main thread forks many times. Each child takes the same paths (a
 * new segment from the reservation included), then exits 0. A lock the fork handlers do not
 * hold can be held by another thread at fork: the child then waits on it for ever. The child
 * arms an alarm as a deadlock detector, so the parent sees a child killed by SIGALRM instead
 * of hanging; in a passing run nothing waits for it. */
#define TEST_NAME "test_fork"
#include "testutil.h"

#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shardalloc.h"

#define LARGE ((size_t)4 << 20)  /* the largest non-huge block */
#define HUGE ((size_t)20 << 20)  /* a huge block: a segment of its own, not from the reservation */
#define LARGE_PER_ROUND 3
#define DEADLOCK_SECONDS 30 /* a child still running after this is stuck on a lock */

static _Atomic(bool) stop;
static _Atomic(long) rounds;

/* Segments from the reservation and back: the arena's, the segment lists' and the purge
 * locks, taken many times a second. Returns false if an allocation failed. */
static bool segment_round(void) {
  void *large[LARGE_PER_ROUND];
  bool ok = true;
  for (int i = 0; i < LARGE_PER_ROUND; i++) {
    large[i] = mi_malloc(LARGE);
    if (large[i] == NULL) ok = false;
  }
  for (int i = 0; i < LARGE_PER_ROUND; i++) mi_free(large[i]);
  return ok;
}

/* The other global locks: the huge lists, the pool of heap objects, heaps' lists of their
 * instances, the list of threads, every segment's purge lock and the caches. */
static bool other_round(void) {
  bool ok = true;
  void *huge = mi_malloc(HUGE);
  if (huge == NULL) ok = false;
  mi_free(huge);
  mi_heap_t *heap = mi_heap_new();
  if (heap == NULL) {
    ok = false;
  } else { /* the thread's instance of it: the list of a heap's instances */
    void *p = mi_heap_malloc(heap, 100);
    if (p == NULL) ok = false;
    mi_heap_delete(heap);
    mi_free(p);
  }
  mi_stats_merge();
  mi_collect(true);
  return ok;
}

static void *worker(void *arg) {
  (void)arg;
  while (!atomic_load(&stop)) {
    CHECK(segment_round() && other_round());
    atomic_fetch_add(&rounds, 1);
  }
  return NULL;
}

/* The library's global mutexes (internal.h; not in the public header). Through the API a
 * thread is almost never inside one of them alone when fork comes: each is taken next to
 * others that the fork handlers take first, so a thread inside one soon waits outside (a
 * lock left off the handlers' list then shows only when a thread is preempted inside it).
 * So a thread per lock takes it and holds it a little while, in a loop, taking no other: the
 * window is then wide open for each. */
extern pthread_mutex_t _sa_pool_lock, _sa_huge_lock, _sa_owned_lock, _sa_segments_lock,
    _sa_arena_lock, _sa_threads_lock, _sa_heaps_lock;
static pthread_mutex_t *const library_locks[] = {&_sa_pool_lock,     &_sa_huge_lock,
                                                  &_sa_owned_lock,    &_sa_segments_lock,
                                                  &_sa_arena_lock,    &_sa_threads_lock,
                                                  &_sa_heaps_lock};

#define LOCK_COUNT (sizeof(library_locks) / sizeof(library_locks[0]))

static void *holder(void *arg) {
  pthread_mutex_t *lock = arg;
  while (!atomic_load(&stop)) {
    pthread_mutex_lock(lock);
    for (volatile int spin = 0; spin < 20000; spin++) {
    }
    pthread_mutex_unlock(lock);
    sched_yield(); /* let a waiting fork_prepare in */
  }
  return NULL;
}

/* The child: the same paths, each of which would block on a lock left held at fork. */
static void child(void) {
  alarm(DEADLOCK_SECONDS);
  bool ok = segment_round() && other_round();
  void *p = mi_malloc(100);
  if (p == NULL) ok = false;
  mi_free(p);
  _exit(ok ? 0 : 2);
}

int main(void) {
  if (getenv("SA_TEST_RUNNER") != NULL) { /* make check RUNNER=qemu-...: see testutil.h */
    printf("%s: skipped: the emulator cannot fork a multi-threaded process\n", TEST_NAME);
    return tu_finish();
  }
  /* Before the first allocation: segments come from a reservation (the arena), and empty
   * ones go straight back to it instead of into the segment cache. */
  mi_option_set(mi_option_reserve_os_memory, 512 * 1024); /* KiB */
  mi_option_set(mi_option_segment_cache, 0);
  printf("%s\n", TEST_NAME);

  const int forks = quick() ? 40 : 300;
  SECTION("%d forks while other threads take every global lock in a loop", forks);
  pthread_t threads[1 + LOCK_COUNT];
  CHECK(pthread_create(&threads[0], NULL, worker, NULL) == 0);
  for (size_t i = 0; i < LOCK_COUNT; i++)
    CHECK(pthread_create(&threads[1 + i], NULL, holder, library_locks[i]) == 0);
  while (atomic_load(&rounds) == 0) sched_yield(); /* the worker is in its loop */
  int done = 0;
  for (; done < forks; done++) {
    pid_t pid = fork();
    if (pid == 0) child();
    CHECKF(pid > 0, "fork failed");
    if (pid < 0) break;
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    bool passed = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    CHECKF(passed, "child %d: %s %d%s", done,
           WIFSIGNALED(status) ? "killed by signal" : "exit status",
           WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
           WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM
               ? " (deadlocked: a lock was left held across fork)"
               : "");
    if (!passed) break; /* one deadlock says it all; do not wait out more */
  }
  atomic_store(&stop, true);
  for (size_t i = 0; i < 1 + LOCK_COUNT; i++) CHECK(pthread_join(threads[i], NULL) == 0);
  printf("  %d forks, %ld worker rounds\n", done, atomic_load(&rounds));
  return tu_finish();
}
