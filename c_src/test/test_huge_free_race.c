/* test_huge_free_race: once a freed huge block's segment is in the (global) huge cache, any
 * other thread may take it out and unmap it, so the freeing thread must not touch the segment
 * after it released the lock that published it.
 *
 * The window between that unlock and the function's return is too short to hit by chance, so
 * the test opens it on purpose: this program interposes pthread_mutex_unlock (the library's
 * calls bind to this definition when it is linked statically), and while the main thread frees
 * a huge block, every unlock it does is followed by a full collection, mi_collect(true), on a
 * helper thread, which releases the cached huge segments. The main thread waits for the helper
 * with semaphores, so the interleaving is the same on every run, however the threads are
 * scheduled. A free that reads the segment after publishing it crashes here every time. */
#define _GNU_SOURCE
#define TEST_NAME "test_huge_free_race"
#include "testutil.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <sys/mman.h>
#include <unistd.h>

#include "shardalloc.h"

#define MiB ((size_t)1 << 20)

/* ---- The helper thread: runs one collection per request ---------------------------------- */
static sem_t request, done;
static atomic_bool quit;
static _Atomic(long) collections;

static void *helper_main(void *arg) {
  (void)arg;
  mi_free(mi_malloc(1)); /* a heap of its own, so mi_collect has one to start from */
  for (;;) {
    while (sem_wait(&request) != 0) {
    }
    if (atomic_load(&quit)) break;
    mi_collect(true);
    atomic_fetch_add(&collections, 1);
    sem_post(&done);
  }
  return NULL;
}

/* ---- The interposed unlock --------------------------------------------------------------- */
static _Thread_local bool interleave; /* set on the main thread around the free under test */

int pthread_mutex_unlock(pthread_mutex_t *mutex) {
  static int (*real_unlock)(pthread_mutex_t *);
  if (real_unlock == NULL)
    real_unlock = (int (*)(pthread_mutex_t *))dlsym(RTLD_NEXT, "pthread_mutex_unlock");
  int rc = real_unlock(mutex);
  if (interleave) { /* let the other thread run now, and wait until it is done */
    sem_post(&request);
    while (sem_wait(&done) != 0) {
    }
  }
  return rc;
}

/* True when [p, p+1) is mapped in this process. */
static bool is_mapped(const void *p) {
  long page = sysconf(_SC_PAGESIZE);
  unsigned char vec;
  void *base = (void *)((uintptr_t)p & ~(uintptr_t)(page - 1));
  return mincore(base, (size_t)page, &vec) == 0 || errno != ENOMEM;
}

int main(void) {
  /* freed huge blocks wait in the cache only with a purge delay */
  mi_option_set(mi_option_purge_delay, 1000);
  CHECK(sem_init(&request, 0, 0) == 0 && sem_init(&done, 0, 0) == 0);
  pthread_t helper;
  CHECK(pthread_create(&helper, NULL, helper_main, NULL) == 0);

  SECTION("free a huge block while another thread releases the huge cache after every unlock");
  for (int round = 0; round < 3; round++) {
    size_t size = 17 * MiB + (size_t)round * MiB; /* above the largest size class: huge */
    uint8_t *p = mi_malloc(size);
    CHECK(p != NULL);
    if (p == NULL) break;
    memset(p, 0x5a, size);
    long before = atomic_load(&collections);
    interleave = true;
    mi_free(p);
    interleave = false;
    /* the free took at least the lock that puts the segment into the cache */
    CHECKF(atomic_load(&collections) > before, "round %d: no unlock during the free", round);
    /* and the helper's collection after that unlock unmapped the segment: the situation the
     * free has to survive did arise */
    CHECKF(!is_mapped(p), "round %d: the freed huge block is still mapped", round);
  }

  SECTION("huge blocks still work afterwards");
  void *q = mi_malloc(20 * MiB);
  CHECK(q != NULL);
  if (q != NULL) memset(q, 1, 20 * MiB);
  mi_free(q);

  atomic_store(&quit, true);
  sem_post(&request);
  pthread_join(helper, NULL);
  sem_destroy(&request);
  sem_destroy(&done);
  return tu_finish();
}
