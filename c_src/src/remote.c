/* shardalloc: the remote-free buffer. A thread that frees blocks of other threads' small
 * pages (through the sized free, _sa_free_small, the Rust crate's dealloc, or the plain free's
 * generic path, free.c) gathers them per page, in chains linked through the blocks themselves,
 * and hands each chain to its page with one CAS (_sa_free_chain_mt, free.c). A chain goes in
 * when it is REMOTE_CHAIN_MAX long, when a free for another page wants its slot, before the
 * thread's own allocation slow path, at mi_collect and at thread exit.
 *
 * Why: each cross-thread free is a CAS on the page descriptor, the cache line that the owner
 * writes on every allocation from the page; in a producer/consumer pair that line moved
 * between the two cores once per block. And the owner that takes the page's list in walks it
 * chain by chain (types.h), so the longer the chains, the fewer blocks it reads. Gathering
 * reads no page descriptor either, the line the owner writes on every allocation from the
 * page: the slice number of an address names the page (a slice belongs to one page), so a
 * free that joins a chain writes only the block's own link word. The sized free knows a small
 * block's page without reading it; the plain free reads it for the first block of a chain
 * only (its checks that the page is in use and small), and a block of the same slice joins
 * without them (_sa_remote_join). Release builds check a chain's pointers when it goes in,
 * against one read of the descriptor (free.c, _sa_free_chain_prepare). Read once a block, the
 * line moved between the cores once a block while the owner allocated from the page: the
 * work of `producer_consumer 100 64000 64` (bench/c) took 1.25x as long through the sized free
 * and 1.9x through the plain free, which also read it on every free (medians of 5-7 runs,
 * interleaved).
 *
 * What a chain may hold: blocks whose free would be the plain cross-thread push (the callers
 * keep huge and large blocks and the owner's own frees out). Debug and memory-checker builds
 * check and fill each block as it is freed, as before.
 *
 * Blocks in a chain count as in use, so their page cannot go away under the chain: no page
 * with blocks in use is ever freed, except by mi_heap_destroy. Chains are therefore only
 * gathered while the process has no heap but the threads' backing heaps, which are never
 * destroyed: the first mi_heap_new turns gathering off for good (_sa_remote_off; a thread
 * that then frees the block of such a heap got it through some synchronisation after the
 * heap was made, so it sees the flag). Chains gathered before stay safe because a page of a
 * backing heap never moves into another heap (an abandoned page is reclaimed into the
 * reclaiming thread's instance of its own heap, segment.c: a backing heap's page into a
 * backing heap).                                                                         */
#include <pthread.h>

#include "internal.h"

/* Chains a thread keeps, one per slot (direct-mapped by slice number), and their length:
 * bounds what a thread that stops freeing holds back (at most 32 * 32 blocks) and the static
 * TLS this costs (32 * 32 bytes). Small pages are one slice each and a thread's pages of
 * different size classes are mostly neighbours, so 32 slots keep the chains of 32 size classes
 * apart: with 8, a consumer of blocks of many sizes flushed chains of one or two blocks. */
#define REMOTE_SLOTS 32
#define REMOTE_CHAIN_MAX 32

#if SA_DEBUG > 0 || SA_TRACK
#define REMOTE_CHECK_EARLY 1 /* each block checked (and filled, tracked) as it is freed */
#else
#define REMOTE_CHECK_EARLY 0 /* the chain's pointers checked when it goes in */
#endif

typedef struct remote_chain_s {
  uintptr_t slice; /* address >> SLICE_SHIFT of every block in the chain */
  block_t *head;   /* last freed first, linked through the blocks */
  block_t *tail;
  size_t count;    /* 0: the slot is free */
} remote_chain_t;

typedef struct remote_s {
  remote_chain_t chain[REMOTE_SLOTS];
  size_t pending;  /* chains with count > 0 */
  bool registered; /* the thread-exit hook is set for this thread */
} remote_t;

static __thread remote_t remote SA_TLS_MODEL;

static _Atomic(bool) remote_off; /* set by the first mi_heap_new, never cleared */

static pthread_once_t remote_once = PTHREAD_ONCE_INIT;
static pthread_key_t remote_key;
static bool remote_key_ok;

/* ---- Handing a chain over ---------------------------------------------------------------- */
static void chain_push(remote_chain_t *c) {
  block_t *first = c->head;
  size_t n = c->count;
  c->count = 0;
  segment_t *segment = sa_segment_of(first); /* small and medium blocks: their own unit */
  page_t *page = sa_page_of(segment, first);
#if REMOTE_CHECK_EARLY
  _sa_free_chain_mt(page, first, c->tail, n);
#else
  block_t *tail;
  size_t count;
  block_t *head = _sa_free_chain_prepare(segment, page, first, n, &tail, &count);
  if (count == 0) return;
  /* a block freed twice into the chain leaves a loop or a short list: it must run from head
   * to tail in exactly `count` blocks (blocks freed here: cache-hot, a cheap second walk) */
  block_t *b = head;
  size_t k = 1;
  for (; k < count && b != tail; k++) b = sa_block_next(page, b);
  if (sa_unlikely(b != tail || k != count || sa_block_next(page, tail) != NULL)) {
    _sa_misuse("free", tail, "double free from another thread (the blocks freed with it are "
                             "dropped)");
    return;
  }
  _sa_free_chain_mt(page, head, tail, count);
#endif
}

/* Out of line, so that the check before it (every allocation slow path) saves no registers. */
static __attribute__((noinline)) void remote_flush_chains(remote_t *r) {
  for (size_t i = 0; i < REMOTE_SLOTS; i++)
    if (r->chain[i].count != 0) chain_push(&r->chain[i]);
  r->pending = 0;
  sa_housekeeper_start_if_wanted();
}

static void remote_flush(remote_t *r) {
  if (r->pending != 0) remote_flush_chains(r);
}

/* ---- Thread exit --------------------------------------------------------------------------- */
static void remote_key_destructor(void *value) {
  (void)value;
  remote.registered = false; /* a later free (another destructor's) registers again */
  remote_flush(&remote);
}

static void remote_key_create(void) {
  remote_key_ok = pthread_key_create(&remote_key, remote_key_destructor) == 0;
}

/* Before the thread's first chain: pthread_setspecific may allocate (which flushes nothing). */
static sa_cold void remote_register(remote_t *r) {
  pthread_once(&remote_once, remote_key_create);
  if (remote_key_ok) pthread_setspecific(remote_key, (void *)1);
  r->registered = true;
}

/* The free without gathering: one block, one CAS. */
static void free_direct(segment_t *segment, page_t *page, void *p) {
  block_t *block = _sa_free_mt_prepare(segment, page, p);
  if (block != NULL) _sa_free_chain_mt(page, block, block, 1);
  sa_housekeeper_start_if_wanted();
}

/* ---- Joining a chain ----------------------------------------------------------------------- */
/* The slot of the blocks of `slice` (direct-mapped). */
static remote_chain_t *chain_slot(remote_t *r, uintptr_t slice) {
  return &r->chain[slice & (REMOTE_SLOTS - 1)];
}

/* Whether the chain in slot `c` is one of `slice` and has room for one more block. */
static bool chain_has_room(const remote_chain_t *c, uintptr_t slice) {
  return c->count != 0 && c->slice == slice && c->count < REMOTE_CHAIN_MAX;
}

static void chain_add(remote_chain_t *c, page_t *page, block_t *block) {
  sa_block_set_next(page, block, c->head);
  c->head = block;
  c->count++;
}

/* ---- Entry points --------------------------------------------------------------------------- */
/* Free `p`, a block of the small page `page` of `segment`, which another thread owns. Only
 * the address of `page` is used here. */
void _sa_remote_free(segment_t *segment, page_t *page, void *p) {
  remote_t *r = &remote;
  if (sa_unlikely(atomic_load_explicit(&remote_off, memory_order_relaxed))) {
    remote_flush(r);
    free_direct(segment, page, p);
    return;
  }
  uintptr_t slice = (uintptr_t)p >> SLICE_SHIFT;
  remote_chain_t *c = chain_slot(r, slice);
  if (c->count != 0) {
    if (sa_likely(chain_has_room(c, slice))) {
      if (sa_unlikely(p == (void *)c->head)) { /* the same block twice in a row */
        _sa_misuse("free", p, "double free: the block is free already");
        return;
      }
#if REMOTE_CHECK_EARLY
      block_t *block = _sa_free_mt_prepare(segment, page, p);
      if (block == NULL) return;
      p = block;
#endif
      chain_add(c, page, (block_t *)p);
      return;
    }
    chain_push(c);
    r->pending--;
  }
  if (sa_unlikely(!r->registered)) remote_register(r);
#if REMOTE_CHECK_EARLY
  block_t *block = _sa_free_mt_prepare(segment, page, p);
  if (block == NULL) return;
  p = block;
#else
  (void)segment;
  (void)page;
#endif
  sa_block_set_next(page, (block_t *)p, NULL);
  c->slice = slice;
  c->head = c->tail = (block_t *)p;
  c->count = 1;
  r->pending++;
}

/* The plain free's shortcut: `p` joins its slot's chain when that chain is of p's slice (so
 * of p's page, a small page of another thread when the chain began: a slice belongs to one
 * page, which cannot go away while the chain's blocks count as in use) and has room. Its
 * checks are those of the chain's first block, made when the chain began, and those that
 * chain_push makes for all of them against one read of the descriptor; so the free reads no
 * descriptor here, where the generic free read it for each block (the line the owner writes
 * on every allocation from the page). Not in debug and memory-checker builds, whose checks
 * come with each free. */
bool _sa_remote_join(page_t *page, void *p) {
#if REMOTE_CHECK_EARLY
  (void)page;
  (void)p;
  return false;
#else
  uintptr_t slice = (uintptr_t)p >> SLICE_SHIFT;
  remote_chain_t *c = chain_slot(&remote, slice);
  if (!chain_has_room(c, slice) ||
      p == (void *)c->head /* the same block twice in a row: the generic path reports it */ ||
      atomic_load_explicit(&remote_off, memory_order_relaxed))
    return false;
  chain_add(c, page, (block_t *)p);
  return true;
#endif
}

void _sa_remote_flush(void) { remote_flush(&remote); }

void _sa_remote_off(void) {
  if (!atomic_load_explicit(&remote_off, memory_order_relaxed))
    atomic_store_explicit(&remote_off, true, memory_order_release);
  remote_flush(&remote);
}
