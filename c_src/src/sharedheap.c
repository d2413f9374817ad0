/* shardalloc: process-wide heaps. A heap (mi_heap_t) is an object any thread may allocate
 * from at once; a thread allocates from its own instance of it (a thread heap, heap_t, the
 * unit every fast path works on), made on the thread's first use. A one-entry thread-local
 * cache (heap id, instance) makes finding it one compare. The main heap is every thread's
 * default: its instance in a thread is that thread's backing heap.
 *
 * Delete and destroy reach every instance: the calling thread's own directly; another
 * thread's under that thread's house_lock, taken with a try while the instance is listed
 * (the owner is then on none of its slow paths and cannot exit); exited threads' pages
 * through the heap's abandoned count, by reclaiming them. Destroy frees another thread's
 * instance there and then (no thread may touch the heap or its blocks, so the owner's fast
 * paths cannot reach its pages); delete only re-labels it as the owner's to merge into its
 * backing heap at its next slow path, because the owner may be freeing into those pages from
 * its fast path right then. Invariants: types.h, struct mi_heap_s. */
#include <pthread.h>

#include "internal.h"

pthread_mutex_t _sa_heaps_lock = PTHREAD_MUTEX_INITIALIZER; /* init.c: fork */
struct mi_heap_s _sa_heap_main = {.id = 1};
static _Atomic(uint64_t) heap_next_id = 2;
__thread heap_cache_t _sa_heap_cache SA_TLS_MODEL;

/* The instance handed out when one cannot be made (no memory for it): no thread, so the
 * generic path fails with ENOMEM (page.c). */
static heap_t heap_none = {
    .pages_direct = {[0 ... DIRECT_WSIZE_MAX] = &_sa_page_empty},
    .heap = &_sa_heap_main,
};

/* The calling thread's state, set up if need be; NULL if it cannot be. */
static thread_t *self_thread(void) {
  heap_t *heap = _sa_heap_default;
  if (sa_unlikely(heap == &_sa_heap_empty)) heap = _sa_thread_heap_init();
  return heap == NULL ? NULL : heap->thread;
}

/* ---- The lists of instances (_sa_heaps_lock held) ----------------------------------------- */
static void list_push(mi_heap_t *heap, heap_t *instance) {
  instance->next_instance = heap->instances;
  heap->instances = instance;
}

static void list_remove(mi_heap_t *heap, heap_t *instance) {
  heap_t **link = &heap->instances;
  while (*link != NULL && *link != instance) link = &(*link)->next_instance;
  if (*link != NULL) *link = instance->next_instance; /* absent: a fork child's half-made one */
  instance->next_instance = NULL;
}

/* ---- Finding and making the calling thread's instance ------------------------------------ */
/* Its instance of `heap` (house_lock held), NULL if it has none yet. */
static heap_t *own_instance(thread_t *thread, mi_heap_t *heap) {
  if (heap == &_sa_heap_main) return &thread->heap;
  for (heap_t *h = thread->heaps; h != NULL; h = h->next)
    if (sa_instance_of(h) == heap && !h->merge) return h;
  return NULL;
}

static heap_t *instance_new(thread_t *thread, mi_heap_t *heap) {
  thread_t *obj = _sa_pool_alloc_local(thread); /* the calling thread's */
  if (obj == NULL) return NULL;
  _sa_heap_init(&obj->heap, thread, heap);
  return &obj->heap;
}

heap_t *_sa_heap_instance_lookup(mi_heap_t *heap) {
  heap_t *def = _sa_heap_default;
  if (sa_unlikely(def == &_sa_heap_empty)) {
    def = _sa_thread_heap_init();
    if (def == NULL) return &_sa_heap_empty; /* the generic path fails again: ENOMEM */
  }
  thread_t *thread = def->thread;
  sa_house_enter(thread);
  _sa_heap_merge_pending(thread);
  heap_t *instance = own_instance(thread, heap);
  if (instance == NULL) instance = instance_new(thread, heap);
  sa_house_exit(thread);
  if (instance == NULL) return &heap_none;
  _sa_heap_cache.id = heap->id;
  _sa_heap_cache.instance = instance;
  return instance;
}

/* ---- Exited threads' pages -------------------------------------------------------------- */
heap_t *_sa_heap_reclaim_home(thread_t *thread, page_t *page, bool adopt) {
  heap_t *old = atomic_load_explicit(&page->heap, memory_order_relaxed);
  if (old == NULL) return adopt ? &thread->heap : NULL; /* the main heap's */
  mi_heap_t *heap = sa_instance_of(old); /* old == &heap->detached */
  heap_t *home = NULL;
  if (adopt) {
    home = own_instance(thread, heap);
    if (home == NULL) home = instance_new(thread, heap); /* listed before the count drops */
    if (home == NULL) home = &thread->heap; /* no memory: the blocks live on in the main heap */
  }
  pthread_mutex_lock(&_sa_heaps_lock);
  heap->abandoned_pages--;
  pthread_mutex_unlock(&_sa_heaps_lock);
  return home;
}

void _sa_heap_instances_release(thread_t *thread, bool backing_too) {
  pthread_mutex_lock(&_sa_heaps_lock);
  for (heap_t *h = thread->heaps; h != NULL; h = h->next)
    if (backing_too || h != &thread->heap) list_remove(sa_instance_of(h), h);
  pthread_mutex_unlock(&_sa_heaps_lock);
  heap_t **link = &thread->heaps;
  while (*link != NULL) {
    heap_t *h = *link;
    if (h == &thread->heap) {
      link = &h->next;
    } else {
      *link = h->next;
      _sa_pool_free((thread_t *)h);
    }
  }
  atomic_store_explicit(&thread->merge_pending, false, memory_order_relaxed);
}

void _sa_heap_merge_pending(thread_t *thread) {
  if (!atomic_load_explicit(&thread->merge_pending, memory_order_relaxed)) return;
  atomic_store_explicit(&thread->merge_pending, false, memory_order_relaxed);
  pthread_mutex_lock(&_sa_heaps_lock);
  for (heap_t *h = thread->heaps; h != NULL; h = h->next)
    if (h->merge) list_remove(&_sa_heap_main, h);
  pthread_mutex_unlock(&_sa_heaps_lock);
  for (heap_t *h = thread->heaps, *next; h != NULL; h = next) {
    next = h->next;
    if (h->merge) _sa_heap_merge(h);
  }
}

static bool unlist_vanished(thread_t *thread, void *self) {
  if (thread == self) return true;
  pthread_mutex_lock(&_sa_heaps_lock);
  for (heap_t *h = thread->heaps; h != NULL; h = h->next) list_remove(sa_instance_of(h), h);
  pthread_mutex_unlock(&_sa_heaps_lock);
  return true;
}

/* Their memory stays where it is, as everything else of theirs (init.c); a heap's delete or
 * destroy in the child then covers the child's own blocks. */
void _sa_heaps_fork_child_unlist(thread_t *self) { _sa_threads_each(unlist_vanished, self); }

/* ---- Delete and destroy ------------------------------------------------------------------- */
static bool try_hold(thread_t *thread) {
  return !atomic_exchange_explicit(&thread->house_lock, true, memory_order_acquire);
}
static void release(thread_t *thread) {
  atomic_store_explicit(&thread->house_lock, false, memory_order_release);
}

/* Reclaim every abandoned segment into the calling thread (its pages go to its instances of
 * their heaps); true if one was taken. */
static bool take_abandoned(thread_t *self) {
  bool took = false;
  sa_house_enter(self);
  while (_sa_segment_try_reclaim(&self->heap)) took = true;
  sa_house_exit(self);
  return took;
}

/* Every instance goes, one at a time, until the heap has no instance and no abandoned page. */
static void heap_release(mi_heap_t *heap, thread_t *self, bool destroy) {
  for (;;) {
    pthread_mutex_lock(&_sa_heaps_lock);
    heap_t *instance = heap->instances;
    if (instance == NULL) {
      bool done = heap->abandoned_pages == 0;
      pthread_mutex_unlock(&_sa_heaps_lock);
      if (done) break;
      /* none taken: a reclaim in another thread holds them, and lists its instance soon */
      if (!take_abandoned(self)) _sa_os_yield();
      continue;
    }
    thread_t *owner = instance->thread;
    if (owner == self) { /* house_lock before _sa_heaps_lock */
      pthread_mutex_unlock(&_sa_heaps_lock);
      sa_house_enter(self);
      pthread_mutex_lock(&_sa_heaps_lock);
      list_remove(heap, instance);
      pthread_mutex_unlock(&_sa_heaps_lock);
      if (destroy) _sa_heap_destroy_pages(instance, true);
      else _sa_heap_merge(instance);
      sa_house_exit(self);
      continue;
    }
    if (!try_hold(owner)) { /* in a slow path, or exiting: its instance is listed until then */
      pthread_mutex_unlock(&_sa_heaps_lock);
      _sa_os_yield();
      continue;
    }
    /* _sa_heaps_lock stays held while another thread's lock is: a fork waits for both */
    list_remove(heap, instance);
    if (destroy) {
      _sa_heap_destroy_pages(instance, false);
    } else { /* the owner's to merge: it may be freeing into these pages right now */
      atomic_store_explicit(&instance->heap, &_sa_heap_main, memory_order_relaxed);
      instance->merge = true;
      list_push(&_sa_heap_main, instance);
      atomic_store_explicit(&owner->merge_pending, true, memory_order_relaxed);
    }
    release(owner);
    pthread_mutex_unlock(&_sa_heaps_lock);
  }
  /* the huge blocks of exited threads' instances */
  heap_t *detached = &heap->detached;
  if (!destroy) {
    _sa_heap_huge_move(detached, NULL);
  } else {
    while (detached->huge_pages != NULL) {
      page_t *page = detached->huge_pages;
      if (page->flags.x.has_aligned) sa_track_mem_noaccess(sa_page_start(page), sa_block_size(page));
      else sa_track_free(sa_page_start(page), sa_block_size(page));
      _sa_heap_huge_remove(page);
      _sa_segment_huge_free(sa_segment_of(page));
    }
  }
  if (_sa_heap_cache.id == heap->id) _sa_heap_cache.id = 0;
  _sa_pool_free_local(self, (thread_t *)heap);
}

void mi_heap_delete(mi_heap_t *heap) {
  if (heap == NULL || heap == &_sa_heap_main) return; /* the main heap lives as long as the process */
  thread_t *self = self_thread();
  if (self != NULL) heap_release(heap, self, false);
}

void mi_heap_destroy(mi_heap_t *heap) {
  if (heap == NULL) return;
  if (heap == &_sa_heap_main) { /* it cannot go: collect the caller's part instead */
    mi_heap_collect(heap, false);
    return;
  }
  thread_t *self = self_thread();
  if (self != NULL) heap_release(heap, self, true);
}

/* ---- Public functions ---------------------------------------------------------------------- */
mi_heap_t *mi_heap_new(void) {
  thread_t *self = self_thread();
  if (self == NULL) return NULL;
  _sa_remote_off(); /* a heap that can be destroyed: see remote.c */
  mi_heap_t *heap = (mi_heap_t *)_sa_pool_alloc_local(self);
  if (heap == NULL) return NULL;
  heap->id = atomic_fetch_add_explicit(&heap_next_id, 1, memory_order_relaxed);
  heap->instances = NULL;
  heap->abandoned_pages = 0;
  _sa_heap_init(&heap->detached, NULL, heap);
  return heap;
}

mi_heap_t *mi_heap_get_default(void) {
  heap_t *heap = _sa_heap_default;
  if (sa_unlikely(heap == &_sa_heap_empty)) heap = _sa_thread_heap_init();
  return heap == NULL ? NULL : sa_instance_of(heap);
}

mi_heap_t *mi_heap_set_default(mi_heap_t *heap) {
  mi_heap_t *old = mi_heap_get_default();
  if (heap != NULL && old != NULL) {
    heap_t *instance = sa_heap_instance(heap);
    if (instance->thread != NULL) _sa_heap_default = instance;
  }
  return old;
}

/* Other threads' instances: the pages whose blocks have all been freed, as the housekeeper's
 * sweep does (the rest is their owners' business, on their own slow paths). A busy owner is
 * skipped. */
static void sweep_others(mi_heap_t *heap, thread_t *self) {
  pthread_mutex_lock(&_sa_heaps_lock);
  for (heap_t *h = heap->instances; h != NULL; h = h->next_instance) {
    if (h->thread == self || !try_hold(h->thread)) continue;
    _sa_heap_sweep(h);
    release(h->thread);
  }
  pthread_mutex_unlock(&_sa_heaps_lock);
}

void mi_heap_collect(mi_heap_t *heap, bool force) {
  _sa_remote_flush();
  _sa_deferred_free(force);
  if (heap == NULL || _sa_heap_default == &_sa_heap_empty) return;
  thread_t *self = _sa_heap_default->thread;
  sa_house_enter(self);
  _sa_heap_merge_pending(self);
  heap_t *own = own_instance(self, heap);
  if (own != NULL) _sa_heap_collect(own, force);
  sa_house_exit(self);
  if (heap != &_sa_heap_main) sweep_others(heap, self);
}

void mi_collect(bool force) {
  _sa_remote_flush();
  _sa_deferred_free(force);
  heap_t *heap = _sa_heap_default;
  if (heap == &_sa_heap_empty) return;
  thread_t *self = heap->thread;
  sa_house_enter(self);
  _sa_heap_merge_pending(self);
  _sa_heap_collect(_sa_heap_default, force); /* the default may have been merged just now */
  sa_house_exit(self);
}

/* ---- Walks over every instance: mi_heap_check, mi_heap_visit_blocks ----------------------
 * They hold the house_lock of every thread with an instance, all at once (taken with a try;
 * all given back and tried again when one is busy, so two walkers never wait on each other):
 * while they are held no listed instance can be unlisted, and new ones are only ever pushed
 * in front of the list, so the list from its first instance stays as it is. The main heap is
 * walked in the calling thread only: every thread allocates from it all the time. */
static bool thread_seen(const heap_t *first, const heap_t *instance, const thread_t *self) {
  if (instance->thread == self) return true;
  for (const heap_t *h = first; h != instance; h = h->next_instance)
    if (h->thread == instance->thread) return true;
  return false;
}

static void release_until(heap_t *first, heap_t *stop, thread_t *self) {
  for (heap_t *h = first; h != stop; h = h->next_instance)
    if (!thread_seen(first, h, self)) release(h->thread);
}

static heap_t *hold_all(mi_heap_t *heap, thread_t *self) {
  if (heap == &_sa_heap_main) {
    sa_house_enter(self);
    return &self->heap;
  }
  for (;;) {
    sa_house_enter(self);
    pthread_mutex_lock(&_sa_heaps_lock);
    heap_t *first = heap->instances, *busy = NULL;
    for (heap_t *h = first; h != NULL && busy == NULL; h = h->next_instance)
      if (!thread_seen(first, h, self) && !try_hold(h->thread)) busy = h;
    /* with every owner held, no abandoned page means every page is in a listed instance, and
     * none can leave it or be abandoned until they are released */
    bool abandoned = busy == NULL && heap->abandoned_pages != 0;
    pthread_mutex_unlock(&_sa_heaps_lock);
    if (busy == NULL && !abandoned) return first;
    release_until(first, busy, self);
    sa_house_exit(self);
    /* exited threads' pages join this thread's instance; none taken: another thread's
     * reclaim holds them, and lists its instance soon */
    if (!abandoned || !take_abandoned(self)) _sa_os_yield();
  }
}

static void release_all(mi_heap_t *heap, heap_t *first, thread_t *self) {
  if (heap != &_sa_heap_main) release_until(first, NULL, self);
  sa_house_exit(self);
}

bool mi_heap_check(mi_heap_t *heap) {
  if (heap == NULL || _sa_heap_default == &_sa_heap_empty) return true;
  thread_t *self = _sa_heap_default->thread;
  heap_t *first = hold_all(heap, self);
  bool ok = true;
  if (heap == &_sa_heap_main) ok = _sa_heap_check(first);
  else
    for (heap_t *h = first; h != NULL && ok; h = h->next_instance) ok = _sa_heap_check(h);
  release_all(heap, first, self);
  return ok;
}

/* ---- mi_heap_visit_blocks -------------------------------------------------------------------- */
#define VISIT_WORDS (SLICE_SIZE / SA_INTPTR_SIZE / 64) /* a bit per block of the fullest page */

static size_t mark_free(const page_t *page, const block_t *b, uint64_t *is_free) {
  const uint8_t *start = sa_page_start(page);
  size_t bsize = sa_block_size(page), n = 0;
  for (; b != NULL && n < page->capacity; b = sa_block_next(page, b), n++) {
    size_t i = (size_t)((const uint8_t *)b - start) / bsize;
    is_free[i / 64] |= (uint64_t)1 << (i % 64);
  }
  return n;
}

static bool visit_page(const mi_heap_t *heap, page_t *page, bool all, mi_block_visit_fun *visitor,
                       void *arg) {
  uint8_t *start = sa_page_start(page);
  size_t bsize = sa_block_size(page);
  mi_heap_area_t area = {.blocks = start, .block_size = bsize, .full_block_size = bsize};
  if (sa_page_is_huge(page)) {
    bool live = atomic_load_explicit(&page->xthread_free, memory_order_acquire) != HUGE_FREED;
    area.reserved = area.committed = bsize;
    area.used = live;
    if (!visitor(heap, &area, NULL, bsize, arg)) return false;
    return !all || !live || visitor(heap, &area, start, bsize, arg);
  }
  uint64_t is_free[VISIT_WORDS] = {0};
  sa_assert(page->capacity <= VISIT_WORDS * 64);
  size_t nfree = mark_free(page, page->free, is_free) + mark_free(page, page->local_free, is_free);
  nfree += mark_free(page, sa_xthread_block(atomic_load_explicit(&page->xthread_free,
                                                                  memory_order_acquire)),
                     is_free);
  area.reserved = (size_t)page->reserved * bsize;
  area.committed = (size_t)page->capacity * bsize;
  area.used = page->capacity - nfree;
  if (!visitor(heap, &area, NULL, bsize, arg)) return false;
  if (!all) return true;
  for (size_t i = 0; i < page->capacity; i++) {
    if ((is_free[i / 64] >> (i % 64)) & 1) continue;
    if (!visitor(heap, &area, start + i * bsize, bsize, arg)) return false;
  }
  return true;
}

static bool visit_instance(const mi_heap_t *heap, heap_t *instance, bool all,
                           mi_block_visit_fun *visitor, void *arg) {
  _sa_heap_delayed_to_pages(instance); /* so that each page's lists hold all its free blocks */
  for (size_t bin = 0; bin < BIN_QUEUES; bin++)
    for (page_t *page = instance->pages[bin].first; page != NULL; page = page->next)
      if (!visit_page(heap, page, all, visitor, arg)) return false;
  for (page_t *page = instance->huge_pages; page != NULL; page = page->next)
    if (!visit_page(heap, page, all, visitor, arg)) return false;
  return true;
}

bool mi_heap_visit_blocks(const mi_heap_t *heap, bool visit_all_blocks, mi_block_visit_fun *visitor,
                          void *arg) {
  if (heap == NULL || visitor == NULL) return false;
  thread_t *self = self_thread();
  if (self == NULL) return false;
  mi_heap_t *h = (mi_heap_t *)heap; /* walked, not changed: the lists are only read */
  heap_t *first = hold_all(h, self);
  bool ok = true;
  if (h == &_sa_heap_main) {
    ok = visit_instance(heap, first, visit_all_blocks, visitor, arg);
  } else {
    for (heap_t *i = first; i != NULL && ok; i = i->next_instance)
      ok = visit_instance(heap, i, visit_all_blocks, visitor, arg);
    ok = ok && visit_instance(heap, &h->detached, visit_all_blocks, visitor, arg);
  }
  release_all(h, first, self);
  return ok;
}
