/* shardalloc: the out-of-line functions of the core, grouped by the file that defines them,
 * with the few small inline helpers that belong to those files. Included by internal.h, after
 * the types and the pointer arithmetic, before the inline fast paths that call into these. */
#ifndef SHARDALLOC_PROTOTYPES_H
#define SHARDALLOC_PROTOTYPES_H

/* ---- os.c: the only file that talks to the kernel ---------------------------------------
 * It calls nothing above it: no statistics, options or messages. Its callers count the
 * mappings and purges and report the failures (segment.c, purge.c, arena.c, heap.c). */
size_t _sa_os_page_size(void);
/* Milliseconds of a monotonic clock (coarse: a few ms resolution, no system call). */
int64_t _sa_clock_ms(void);
/* Reserve a region for the arena: explicit large OS pages if asked (`*explicit_large` says
 * whether it got them; if not, normal pages marked for transparent huge pages), pre-faulted
 * if `populate`. */
void *_sa_os_reserve(size_t size, size_t align, bool large_pages, bool populate,
                     bool *explicit_large);
/* Reserve `size` bytes (read/write, lazily committed) aligned to `align`; NULL on failure. */
void *_sa_os_alloc_aligned(size_t size, size_t align);
/* The same, placed so that the address plus `offset` is aligned to `align`. */
void *_sa_os_alloc_aligned_at(size_t size, size_t align, size_t offset);
/* Unmap; 0, or the errno of the failure. */
int _sa_os_free(void *p, size_t size);
/* Move the mapping [p, p + size) onto `to`, a reservation of `new_size` >= size bytes (the
 * caller picks the place, so it can check it first): its pages go along (what was resident
 * stays so), the rest of the new range is fresh zero memory. NULL, the old mapping as it was
 * and the reservation released, where the kernel cannot (mremap). */
void *_sa_os_move_to(void *p, size_t size, size_t new_size, void *to);
/* Ask for transparent huge pages on [p, p+size) (on), or stop asking (off). */
void _sa_os_advise_huge_pages(void *p, size_t size, bool on);
/* Give the physical memory of [p, p+size) back; it reads as zero when next touched. 0, or
 * the errno of the failure. */
int _sa_os_purge(void *p, size_t size);
/* Which of the `pages` OS pages from p (page-aligned) are resident (mincore): bit 0 of
 * vec[i] for page i; false if the OS cannot tell. */
bool _sa_os_resident_map(void *p, size_t pages, uint8_t *vec);
/* [p, p+size) no-access (`noaccess`) or read-write again: secure mode's guard pages. */
int _sa_os_protect(void *p, size_t size, bool noaccess);
/* `n` random bytes from the kernel (getrandom); false if it has none to give. */
bool _sa_os_random(void *buf, size_t n);
void _sa_os_write_stderr(const char *msg, size_t len);
/* The process's resident size now, from /proc/self/statm (0 if unreadable). */
size_t _sa_os_current_rss(void);
/* CPU times, peak RSS and page faults of the process, from getrusage. */
typedef struct sa_os_usage_s {
  size_t user_ms, system_ms, peak_rss, page_faults;
} sa_os_usage_t;
void _sa_os_usage(sa_os_usage_t *usage);
void _sa_os_yield(void);

/* ---- arena.c: the optional reservation segments are carved from ------------------------ */
void _sa_arena_init(void);
segment_t *_sa_arena_alloc_segment(void);
/* Take back a segment carved from the arena (purging it); false if it is not from there. */
bool _sa_arena_free_segment(segment_t *segment);

/* ---- segmap.c ----------------------------------------------------------------------------- */
segment_t *_sa_segment_of_any(const void *p);

/* ---- segment.c: address space -> segments -> slices -> pages ---------------------------- */
size_t _sa_page_size_of_bin(size_t bin);
/* Purge the cached empty segments whose delay is over (all if `force`). */
void _sa_segment_cache_purge(bool force);
/* A fresh page for `block_size` blocks in a segment of `thread`, or NULL. `zero`: for calloc;
 * a large page then comes with its block zero (is_zero), cleared only where it was used. */
page_t *_sa_segment_page_alloc(thread_t *thread, size_t block_size, size_t bin, bool zero);
/* A fresh page of one `block_size` block at the start (or the middle, after another page of
 * one block) of the longest free run of `thread`'s segments (regrow.c), or NULL. */
page_t *_sa_segment_page_alloc_growing(thread_t *thread, size_t block_size, size_t bin);
/* Return a page's slices to its segment (the segment may be cached or released). */
void _sa_segment_page_free(page_t *page, thread_t *thread);
/* Extend a page to `slices` slices for blocks of `block_size` if the next slices are free. */
bool _sa_segment_page_grow(page_t *page, size_t slices, size_t block_size);
/* Shrink a page of one block to `slices` slices for a block of `block_size`; the slices after
 * go back to the segment. */
void _sa_segment_page_shrink(page_t *page, size_t slices, size_t block_size, thread_t *thread);
/* Abandon every segment of `thread` (their pages must be detached from heaps already). */
void _sa_segments_abandon(thread_t *thread);
/* Take one abandoned segment into `heap`'s thread, each page into the thread's instance of
 * the page's heap; true if one was reclaimed. */
bool _sa_segment_try_reclaim(heap_t *heap);
/* The same for a thread about to take a fresh page: a segment the reclaim empties stays the
 * thread's, warm, when it owns no other (instead of the cache or the OS). */
bool _sa_segment_reclaim_for_page(heap_t *heap);
/* Release every cached segment (empty and huge) to the OS. */
void _sa_segment_caches_release(void);

/* ---- purge.c: free slices go back to the OS after a delay ------------------------------- */
/* The thread's next frees are of memory about to have no owner (thread exit, the
 * housekeeper's reclaim): they get the delay of such memory if it is longer than its own. */
void _sa_thread_frees_unowned(thread_t *thread);
/* Purge [p, p+size) (os.c), counting it and reporting a failure. */
void _sa_purge_range(void *p, size_t size);
/* Purge the thread's segments whose delay is over (all pending ones if `force`), and the
 * segment cache's; cheap when nothing is pending. */
void _sa_purge_housekeeping(thread_t *thread, bool force);
/* Purge what is due in every thread's segments and the caches (all pending if `force`);
 * returns the earliest due time still pending (0: none). */
int64_t _sa_segments_purge_all(bool force);
/* fork (init.c): hold every owned segment's purge lock, or release them all. */
void _sa_segments_fork_purge_locks(bool hold);

/* ---- huge.c: huge blocks, a segment each ------------------------------------------------ */
/* A huge segment with one block of `size` bytes (not owned by any thread), or NULL;
 * `*dirty`: bytes from the block's start that may hold an earlier block's data (0: fresh). */
page_t *_sa_segment_huge_page_alloc(size_t size, size_t *dirty);
/* The same for an alignment of SEGMENT_SIZE or more: `*p`, the pointer to hand out, is
 * interior, with *p + offset aligned to `alignment`. */
page_t *_sa_segment_huge_page_alloc_aligned(size_t size, size_t alignment, size_t offset,
                                            void **p);
void _sa_segment_huge_free(segment_t *segment);
void _sa_segment_huge_interior(page_t *page, const void *p);
void _sa_heap_huge_add(heap_t *heap, page_t *page);
void _sa_heap_huge_remove(page_t *page);
/* Move every huge page of `from` to `to` (NULL: the orphans). */
void _sa_heap_huge_move(heap_t *from, heap_t *to);
/* A huge block of `size` bytes for `heap` (the generic path); NULL and ENOMEM if none. */
void *_sa_malloc_huge(heap_t *heap, size_t size, bool zero);
/* The huge block `p` resized to `newsize` (a huge size too) without a copy: in its mapping, or
 * with the mapping moved; its new address, or NULL where it cannot (the caller copies). */
void *_sa_huge_realloc(void *p, size_t newsize, bool zero);

/* ---- regrow.c: where realloc moves a growing block ---------------------------------------- */
/* Blocks that realloc grows to more than this move into a page of their own placed to grow in
 * place (regrow.c). */
#define REGROW_PAGE_MIN ((size_t)8 << 10)
/* A block of `newsize` bytes (REGROW_PAGE_MIN < newsize <= LARGE_BLOCK_MAX) alone in a page
 * placed with free slices after it, zeroed if `zero`; NULL if none could be made. */
void *_sa_regrow_alloc(heap_t *heap, size_t newsize, bool zero);

/* ---- page.c: free lists, page queues, the generic path ---------------------------------- */
extern page_t _sa_page_empty;
void *_sa_malloc_generic(size_t size, heap_t *heap, bool zero) sa_cold;
/* A page its owner's free emptied: kept a while, or its slices given back (page.c). */
void _sa_page_retire(page_t *page) sa_cold;
/* The same, for a caller that holds the owner's house_lock. */
void _sa_page_retire_held(page_t *page);
void _sa_page_free(page_t *page, page_queue_t *queue);
void _sa_page_collect(page_t *page);
/* The next never-used block of a page whose free list cannot grow without touching a new OS
 * page (page.c's page_extend), handed out without a write into it unless `zero` needs one. */
void *_sa_page_take_unused(page_t *page, bool zero);
void _sa_page_unfull(page_t *page);
void _sa_page_set_delayed(page_t *page, delayed_state_t state, bool override_never);
void _sa_page_queue_push(heap_t *heap, page_queue_t *queue, page_t *page);
void _sa_page_queue_remove(heap_t *heap, page_queue_t *queue, page_t *page);
bool _sa_page_check(const page_t *page);
/* Realloc in place: resize the block at `p` (owner thread), alone in a large page or in a
 * page of a growing block (regrow.c), to hold `newsize` bytes: growing into the free slices
 * after its page, shrinking by giving slices back. */
bool _sa_page_try_resize(void *p, size_t newsize);

sa_inline page_queue_t *sa_page_queue_of(heap_t *heap, const page_t *page) {
  return &heap->pages[page->flags.x.in_full ? BIN_FULL : page->bin];
}

/* ---- free.c ----------------------------------------------------------------------------- */
/* Every free off the fast path; `segment` may be SA_SEGMENT_NONE (a pointer the segment map
 * does not know: NULL, not ours, or inside a huge block). */
void _sa_free_generic(segment_t *segment, page_t *page, void *p) sa_cold;
/* sa_free's path for a pointer of a segment this thread does not own (another thread's, a
 * huge block's, or none): a block joins this thread's gathered chain of its slice if there is
 * one (remote.c), else the generic free. */
void _sa_free_not_owned(segment_t *segment, page_t *page, void *p) sa_cold;
/* A free by the owner off the fast path (a full page, a checked one, a delayed block); the
 * caller holds the owner's house_lock. */
void _sa_free_block_local(page_t *page, block_t *block);
void _sa_heap_delayed_free_all(heap_t *heap);
/* Free `p`, not NULL, allocated (or last reallocated) with `size` bytes and an alignment
 * both at most 4 KiB through the mimalloc API: its page is the descriptor of its slice (free.c,
 * "Sized free"). The Rust crate's dealloc calls it when the Layout says so. */
void _sa_free_small(void *p, size_t size);
/* A chain of `count` blocks of `page` (head ... tail) freed by a thread that is not the
 * owner, with one CAS; tail's link is set here. */
void _sa_free_chain_mt(page_t *page, block_t *head, block_t *tail, size_t count);
/* The checks, debug fill and tracking of a cross-thread free of `p` in `page`: its block, or
 * NULL (reported) when `p` is no block to free. */
block_t *_sa_free_mt_prepare(segment_t *segment, page_t *page, void *p);
/* The blocks of a chain of `n` pointers gathered for `page` by a thread other than the owner,
 * checked and relinked: head returned, tail and count in *tail, *count (free.c). */
block_t *_sa_free_chain_prepare(segment_t *segment, page_t *page, block_t *first, size_t n,
                                block_t **tail, size_t *count);

/* ---- remote.c: the remote-free buffer (gathered cross-thread frees) ------------------------ */
void _sa_remote_free(segment_t *segment, page_t *page, void *p);
/* Join `p` to this thread's chain of its slice, if there is one with room; true if joined. */
bool _sa_remote_join(page_t *page, void *p);
/* Hand this thread's gathered frees over now (its slow path, mi_collect, thread exit). */
void _sa_remote_flush(void);
/* The first heap other than a backing heap is made: gathering stops for good. */
void _sa_remote_off(void);
/* The usable size of `p`; 0 (reported, see _sa_misuse) if `p` is not a live block of ours. */
size_t _sa_usable_size(const void *p, const char *call);
/* A pointer that is not a live block of ours, met by `call` ("free", "realloc", ...): debug
 * builds abort with the message; release builds report it under SHOW_ERRORS and go on. */
void _sa_misuse(const char *call, const void *p, const char *what) sa_cold;
#if SA_DEBUG > 0
/* Debug builds: abort with a message if freeing `p` (the start of `block`, or an interior
 * pointer into it) on this thread (`owner`) or another is invalid or a double free. */
void _sa_debug_check_free(const page_t *page, const block_t *block, const void *p, bool owner);
/* Debug builds: fill a freed block with SA_DEBUG_FREED past its link. */
void _sa_debug_fill_freed(const page_t *page, block_t *block);
#endif

#if SA_SECURE
/* ---- secure.c (SA_SECURE=1 only) -------------------------------------------------------- */
/* The process secret and the block-size table: before the first page is made (init.c). */
void _sa_secure_init(void);
/* Thread `count` never-used blocks from `first` in random order in front of page->free;
 * returns the new head. */
block_t *_sa_secure_thread_blocks(page_t *page, uint8_t *first, size_t count, size_t bsize);
/* A page of `slices` slices at `start` in `segment` was made or grown (owner): the guards
 * left inside it by earlier pages go, its own (see sa_guard_bytes) is set unless it is there
 * already. A freed page keeps its guard: the next page made there most often wants it too. */
void _sa_secure_page_guards(segment_t *segment, size_t start, size_t slices, size_t block_size);
/* Every page guard of the segment removed: before its memory leaves it (the arena). */
void _sa_secure_segment_guards_drop(segment_t *segment);
/* The segment's own guard at its end. */
void _sa_secure_segment_guard(void *segment, size_t size);
#endif

/* ---- heap.c: thread heaps (instances) ----------------------------------------------------- */
extern heap_t _sa_heap_empty;
/* Set up `heap` as `thread`'s instance of `of` (listed in both; NULL thread: a heap's
 * detached instance, listed nowhere). */
void _sa_heap_init(heap_t *heap, thread_t *thread, struct mi_heap_s *of);
/* The heap `heap` is an instance of. */
sa_inline struct mi_heap_s *sa_instance_of(const heap_t *heap) {
  return atomic_load_explicit(&heap->heap, memory_order_relaxed);
}
void _sa_heap_collect_retired(heap_t *heap, bool force);
/* Collect the instance (its owner's thread, house_lock held). */
void _sa_heap_collect(heap_t *heap, bool force);
/* Detach every page of `heap` (abandon: pages keep their blocks; page->heap becomes the
 * heap's detached instance, counted in its abandoned_pages, or NULL for the main heap). */
void _sa_heap_detach_pages(heap_t *heap);
/* Give a page to `heap` (reclaim, or a deleted heap's pages). */
void _sa_heap_adopt_page(heap_t *heap, page_t *page);
/* The owner merges `heap` into its backing heap: blocks move there, `heap` is freed. */
void _sa_heap_merge(heap_t *heap);
/* Free every page and block of `heap` and `heap` itself (owner's house_lock held; no thread
 * uses the heap's blocks). */
void _sa_heap_destroy_pages(heap_t *heap, bool own);
bool _sa_heap_check(heap_t *heap);
thread_t *_sa_pool_alloc(void);
void _sa_pool_free(thread_t *obj);
/* A pool object for a heap or an instance, from the calling thread's (`thread`) recently
 * freed ones first (not zeroed: the caller sets it up); and the free that keeps it there. */
thread_t *_sa_pool_alloc_local(thread_t *thread);
void _sa_pool_free_local(thread_t *thread, thread_t *obj);
/* Thread exit: its pool objects back to the pool. */
void _sa_pool_local_release(thread_t *thread);
/* fork, in the child: no page of `thread`'s heaps waits on a cross-thread free that was
 * half done (its thread is gone). */
void _sa_heaps_fork_child(thread_t *thread);

/* ---- spare.c: empty pages of destroyed instances, kept for the thread's next pages -------
 * All owner only, house_lock held. */
/* Keep `page` (empty, of `heap`'s owner, in `queue`) as a spare page: it leaves the queue.
 * Its bytes if kept (the caller adds them up for _sa_spare_counted), 0 if over the bound. */
size_t _sa_spare_put(heap_t *heap, page_queue_t *queue, page_t *page);
void _sa_spare_counted(int64_t bytes);
/* A destroy sets how much its thread may keep: its instance's small and medium page bytes
 * (bounded in spare.c). */
void _sa_spare_limit_set(thread_t *thread, size_t page_bytes);
/* A spare page of `bin`, flags set as a fresh page's, to be set up as one; NULL if none. */
page_t *_sa_spare_take(thread_t *thread, size_t bin);
/* Every spare page back to its segment. */
void _sa_spare_release(thread_t *thread);
/* One generic-path call of the thread (spare_bytes != 0): release when they expire. */
void _sa_spare_tick(thread_t *thread);
bool _sa_spare_check(const thread_t *thread);

/* ---- sharedheap.c: process-wide heaps and their per-thread instances ------------------------ */
extern struct mi_heap_s _sa_heap_main;
/* The calling thread's last heap used by id and its instance there: mi_heap_malloc's one
 * compare. Ids are never reused, so a stale entry never matches. */
typedef struct heap_cache_s {
  uint64_t id;
  heap_t *instance;
} heap_cache_t;
extern __thread heap_cache_t _sa_heap_cache SA_TLS_MODEL;
/* The calling thread's instance of `heap`, found or made (the cold side of sa_heap_instance). */
heap_t *_sa_heap_instance_lookup(struct mi_heap_s *heap) sa_cold;
sa_inline heap_t *sa_heap_instance(struct mi_heap_s *heap) {
  if (sa_likely(heap->id == _sa_heap_cache.id)) return _sa_heap_cache.instance;
  return _sa_heap_instance_lookup(heap);
}
/* The instance of `thread` that takes a reclaimed page of an exited thread (the page's heap's;
 * made if need be), taking the page off its heap's abandoned count; with !adopt the page is
 * about to be freed and NULL is returned. Caller holds thread's house_lock. */
heap_t *_sa_heap_reclaim_home(thread_t *thread, page_t *page, bool adopt);
/* Thread exit (`backing_too`) or the housekeeper's re-abandon: unlist the thread's instances
 * from their heaps and free all but the backing heap. Pages are detached already. */
void _sa_heap_instances_release(thread_t *thread, bool backing_too);
/* Merge the instances other threads deleted (the owner, its house_lock held). */
void _sa_heap_merge_pending(thread_t *thread);
/* The same, as a slow path's one load when there is nothing to merge. */
sa_inline void sa_heap_merge_if_pending(thread_t *thread) {
  if (sa_unlikely(atomic_load_explicit(&thread->merge_pending, memory_order_relaxed)))
    _sa_heap_merge_pending(thread);
}
/* fork, in the child: unlist the instances of the threads that did not survive. */
void _sa_heaps_fork_child_unlist(thread_t *self);

/* ---- init.c ----------------------------------------------------------------------------- */
/* Set up the process (once) and the calling thread; returns its default heap or NULL. */
heap_t *_sa_thread_heap_init(void) sa_cold;
void _sa_process_init(void);

/* ---- stats.c ------------------------------------------------------------------------------
 * Process-wide counters, defined once: the enum here, the storage, reset and printout in
 * stats.c. Updated only where a system call or a slow path happens anyway.              */
#define SA_PROCESS_COUNTERS(X)                                              \
  X(reserved, "reserved", true)   /* address space mapped */                \
  X(committed, "committed", true) /* touched and not purged */              \
  X(huge_bytes, "huge", true)     /* bytes in huge blocks */                \
  X(segments, "segments", false)  /* segments mapped */                     \
  X(abandoned, "abandoned", false) /* segments waiting to be reclaimed */   \
  X(threads, "threads", false)    /* threads with a heap */                 \
  X(purges, "purges", false)      /* madvise calls giving memory back */    \
  X(purge_delay_raises, "purge delay raised", false) /* purge.c */          \
  X(mmaps, "mmaps", false)        /* mappings made (mmap) */                \
  X(thp_advice, "thp advice", false) /* madvise calls changing large pages' THP advice */ \
  X(spare, "spare bytes", false)  /* bytes of spare pages (spare.c) */
typedef enum sa_stat_e {
#define SA_STAT_ENUM(name, label, bytes) SA_STAT_##name,
  SA_PROCESS_COUNTERS(SA_STAT_ENUM)
#undef SA_STAT_ENUM
} sa_stat_t;
void _sa_stat_add(sa_stat_t stat, int64_t amount);
void _sa_stats_thread_start(thread_t *thread);
void _sa_stats_thread_done(thread_t *thread);
void _sa_stats_process_start(void);
/* Call `fn` on every live thread, under the lock of the list (stats.c). */
void _sa_threads_each(bool (*fn)(thread_t *thread, void *arg), void *arg);

/* A per-thread counter: only its thread writes it, so no read-modify-write is needed. */
sa_inline void sa_thread_stat_add(_Atomic(int64_t) *counter, int64_t amount) {
  atomic_store_explicit(counter, atomic_load_explicit(counter, memory_order_relaxed) + amount,
                        memory_order_relaxed);
}
/* Bring the thread's in-use count of the page's size class up to date with `used`. */
sa_inline void sa_page_count_used(page_t *page, thread_t *thread) {
  int64_t delta = (int64_t)page->used - (int64_t)page->used_counted;
  if (delta != 0) {
    sa_thread_stat_add(&thread->stats.in_use[page->bin], delta);
    page->used_counted = page->used;
  }
}

/* ---- housekeeper.c: memory goes back while threads live ----------------------------------
 * One thread of ours, started when memory first waits to go back and asleep while none does:
 * it purges due slices in every segment, frees pages whose every block other threads freed
 * (in live threads' heaps, busy or idle), and takes in the memory of exited threads. */
enum {
  HOUSE_REMOTE_FREES = 1, /* blocks were freed into another live thread's pages */
  HOUSE_ABANDONED = 2,    /* blocks were freed into an exited thread's pages */
  HOUSE_RETIRED = 4,      /* a live thread retired empty pages (page.c) */
  /* work that waits for the housekeeper's own time: noted alone, it starts no thread and
   * wakes none that sleeps to a deadline */
  HOUSE_LAZY = HOUSE_RETIRED,
};
/* Work for the housekeeper: `what` (HOUSE_*), or a purge due at `due_ms` (0: none). Cheap
 * when nothing changes (one relaxed load); wakes the thread at most once per change. */
void _sa_housekeeper_note(unsigned what, int64_t due_ms);
/* A page's `used` read by a thread that holds its owner's house_lock. An acquire load: in
 * ThreadSanitizer builds the owner's free stores `used` with release
 * (sa_page_free_local_push), and a page taken is then ordered after the owner's last free
 * into it in its view too, whatever the timing. */
sa_inline uint16_t sa_owner_used(const page_t *page) {
  return __atomic_load_n(&page->used, __ATOMIC_ACQUIRE);
}
/* Free the pages of `heap` whose handed-out blocks all wait in their cross-thread lists (any
 * thread holding the owner's house_lock). */
void _sa_heap_sweep(heap_t *heap);
/* Move the blocks of `heap`'s delayed list into their pages' cross-thread lists (the same). */
void _sa_heap_delayed_to_pages(heap_t *heap);
/* The housekeeper's look at `heap`'s retired pages (owner's house_lock held): if the owner
 * made no generic-path call since the last look, up to `max` retired pages that its fast
 * paths cannot reach go back to their segments. True if such pages are left for a later look
 * (the owner was busy, or `max` pages went); *freed counts the pages given back. */
bool _sa_heap_release_idle(heap_t *heap, size_t max, size_t *freed);
extern _Atomic(unsigned) _sa_hk_work; /* HOUSE_* flags not yet handled */
/* `_sa_housekeeper_note(what, 0)` for the cross-thread free path: one load while the flag is
 * set already (from the first such free after a sweep to the next sweep). */
sa_inline void sa_housekeeper_note_work(unsigned what) {
  if (sa_likely((atomic_load_explicit(&_sa_hk_work, memory_order_relaxed) & what) == what))
    return;
  _sa_housekeeper_note(what, 0);
}
/* The housekeeper's life: off (or never needed yet), wanted (work waits, not started),
 * starting, running, stopping; and in the child of a fork, forked: started again only once
 * the child makes a thread of its own (a single-threaded child, which most are until they
 * exec, gives memory back on its own slow paths and gets no thread it did not ask for). */
enum { HK_OFF, HK_WANTED, HK_STARTING, HK_RUNNING, HK_STOPPING, HK_FORKED };
/* A thread other than the first starts allocating (init.c). */
void _sa_housekeeper_thread_started(void);
extern _Atomic(int) _sa_hk_state;
void _sa_housekeeper_start(void) sa_cold;
/* True while the housekeeper runs: owners then leave due purges to it. */
sa_inline bool sa_housekeeper_active(void) {
  return atomic_load_explicit(&_sa_hk_state, memory_order_relaxed) == HK_RUNNING;
}
/* Start the housekeeper if work waits and it does not run yet: called where the caller holds
 * no lock of ours (pthread_create may allocate). One load when there is nothing to do. */
sa_inline void sa_housekeeper_start_if_wanted(void) {
  if (sa_unlikely(atomic_load_explicit(&_sa_hk_state, memory_order_relaxed) == HK_WANTED))
    _sa_housekeeper_start();
}
void _sa_housekeeper_stop(void);
void _sa_housekeeper_fork_child(void);
/* The contended case of sa_house_enter (the housekeeper is sweeping this thread). */
void _sa_house_wait(thread_t *thread) sa_cold;

sa_inline void sa_house_enter(thread_t *thread) {
  if (thread->house_depth++ == 0 &&
      atomic_exchange_explicit(&thread->house_lock, true, memory_order_acquire))
    _sa_house_wait(thread);
}
sa_inline void sa_house_exit(thread_t *thread) {
  if (--thread->house_depth == 0) atomic_store_explicit(&thread->house_lock, false, memory_order_release);
}

/* ---- alloc.c: the helpers compat.c wraps ------------------------------------------------- */
/* Allocate from `heap` so that `p + offset` is aligned (zeroed when `zero`). */
void *_sa_heap_malloc_aligned_at(heap_t *heap, size_t size, size_t alignment, size_t offset,
                                 bool zero);
/* Reallocate within `heap` keeping `alignment`; EINVAL for a bad alignment. */
void *_sa_heap_realloc_aligned(heap_t *heap, void *p, size_t newsize, size_t alignment,
                               bool zero);

/* ---- options.c: options and messages ---------------------------------------------------- */
void _sa_options_init(void);
/* Write the NUL-terminated `msg` to the registered output function (default: stderr). */
void _sa_output(const char *msg);
/* Call the registered deferred-free function (heap.c, at each collect). */
void _sa_deferred_free(bool force);
void _sa_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void _sa_fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn, cold));
void _sa_verbose(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif /* SHARDALLOC_PROTOTYPES_H */
