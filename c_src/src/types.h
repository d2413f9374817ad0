/* shardalloc: the tables. Every type of the allocator and the invariants that govern it.
 *
 * Glossary
 *   OS page   4 KiB unit of the kernel's virtual memory.
 *   segment   SEGMENT_SIZE (32 MiB) of address space aligned to its size, owned by one thread
 *             (or abandoned). Its first slice holds the segment header below; the rest is
 *             carved into pages. A huge segment holds one huge block (over LARGE_BLOCK_MAX)
 *             and may be larger: whole 2 MiB units, the header's unit, then the block.
 *   slice     SLICE_SIZE (64 KiB) unit of a segment. A page is a run of whole slices.
 *   page      a run of slices holding blocks of one size: small pages are 1 slice, medium
 *             pages 8 slices, large pages just enough slices for one block.
 *   block     what malloc returns: a slot of a page's block size.
 *   bin       a size class. bin_size(b) is the block size of bin b.
 *   heap      a process-wide object (mi_heap_t) any thread may allocate from. Each thread
 *             that does gets an instance of it (below).
 *   instance  a thread heap (heap_t): where one thread allocates from one heap. Per bin a
 *             queue of pages, plus a direct table from small sizes to a page that has free
 *             blocks. Owned by its thread. The main heap's instance of a thread is its
 *             backing heap, in thread_t.
 *   thread    the per-thread state (thread_t): the backing heap, the thread's segments.
 *   abandoned a segment whose owner thread has exited while it still held live blocks; any
 *             thread may later reclaim it and its pages, always into its backing heap (a
 *             page of a backing heap never moves into a heap that mi_heap_destroy may free:
 *             remote.c relies on it).
 *
 * Who may touch what
 *   - An instance, its page queues and the non-atomic fields of its pages belong to the owner
 *     thread alone, or to a thread holding the owner's house_lock while the owner is on no
 *     path that touches them (see struct mi_heap_s). Other threads touch a page only through `xthread_free` (one CAS) and,
 *     in the DELAYED_FREEING state only, read `page->heap` to reach `heap->thread_delayed_free`.
 *   - A segment's slice bitmaps and page list belong to its owner thread; `thread_id` is
 *     atomic because every free reads it to choose the local or the cross-thread path.
 *   - Global state (abandoned list, segment cache, heap pool) is behind short mutexes on
 *     slow paths only.
 */
#ifndef SHARDALLOC_TYPES_H
#define SHARDALLOC_TYPES_H

#include "platform.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardalloc.h"

/* ---- Build modes -------------------------------------------------------------------------
 * SA_DEBUG 0: release, no checks on any fast path.
 * SA_DEBUG 1: assertions on invariants, freed blocks filled with a pattern, invalid and double
 *             frees reported with a message (and the process aborted).
 * SA_DEBUG 2: level 1 plus whole-heap validity walks on the slow paths.               */
#ifndef SA_DEBUG
#define SA_DEBUG 0
#endif
/* SA_SECURE 1: hardened against heap corruption (secure.h); 0 (default): not. In secure mode a
 * guard of SA_GUARD_SIZE bytes ends every segment and every page of blocks over 8 KiB. */
#ifndef SA_SECURE
#define SA_SECURE 0
#endif
#if SA_SECURE
#define SA_GUARD_SIZE ((size_t)4096)
#else
#define SA_GUARD_SIZE ((size_t)0)
#endif

/* ---- Geometry ----------------------------------------------------------------------------- */
#define SA_INTPTR_SIZE 8
#define SLICE_SHIFT 16                            /* 64 KiB */
#define SLICE_SIZE ((size_t)1 << SLICE_SHIFT)
#define SEGMENT_SHIFT 25                          /* 32 MiB */
#define SEGMENT_SIZE ((size_t)1 << SEGMENT_SHIFT)
#define SEGMENT_MASK (SEGMENT_SIZE - 1)
#define SLICES_PER_SEGMENT (SEGMENT_SIZE / SLICE_SIZE) /* 512 */
#define SEGMENT_BITMAP_WORDS (SLICES_PER_SEGMENT / 64)
#define SEGMENT_HEADER_SLICES 1                   /* the header fits in the first slice */

#define MEDIUM_PAGE_SLICES 8                      /* 512 KiB */
#define SMALL_BLOCK_MAX ((size_t)8 << 10)         /* at least 8 blocks per small page */
#define MEDIUM_BLOCK_MAX ((size_t)64 << 10)       /* at least 8 blocks per medium page */
#define LARGE_BLOCK_MAX ((size_t)4 << 20)         /* larger blocks get a huge segment */
#define HUGE_BLOCK_MAX ((size_t)1 << 47)          /* beyond this: ENOMEM, no mmap attempt */
/* A transparent huge page (x86-64, aarch64 with 4 KiB pages): large and huge blocks ask for
 * them on the whole units they span, so a first touch faults 2 MiB at once (segment.c). */
#define THP_SIZE ((size_t)2 << 20)
/* A huge segment's block starts at its second 2 MiB unit: the first holds the header alone
 * and is never asked for huge pages (its few touched 4 KiB pages are all it costs), so the
 * block's units are its own and an 8 MiB block takes 8 MiB, not 10 (huge.c). */
#define HUGE_BLOCK_OFFSET THP_SIZE
#define HUGE_PAGE_INDEX (HUGE_BLOCK_OFFSET / SLICE_SIZE) /* the huge page's descriptor */

/* Default of the purge_delay option (ms): see the README's measurements for the choice. */
#define SA_PURGE_DELAY_DEFAULT 25
/* Free memory a thread may keep pending purge before it purges it all at once, delay or not:
 * bounds what a burst of large frees adds to the peak RSS. */
#define PURGE_PENDING_MAX ((size_t)128 << 20)
/* What one call over that budget purges at most (purge.c): bounds the call's work. */
#define PURGE_CALL_MAX ((size_t)16 << 20)

/* Lazy initialisation (page.c's page_extend) threads a page's free list one OS page of this
 * size at a time, and only over OS pages already touched: the untouched part of a page stays
 * untouched (no page faults inside malloc, no RSS). Secure builds thread this many bytes, at
 * least PAGE_EXTEND_MIN_BLOCKS blocks, at a time. */
#define PAGE_EXTEND_BYTES ((size_t)4 << 10)
#define PAGE_EXTEND_MIN_BLOCKS 4

/* A new thread's backing heap is young: it serves sizes up to DIRECT_SIZE_MAX from the size
 * classes that are powers of two from YOUNG_SIZE_MIN (64, 128 ... 1024) until it holds
 * YOUNG_PAGES_MAX pages or one of those classes needs a second page, then from all of them.
 * Each size class a thread uses costs it a page, and at least one OS page of memory: a thread
 * that makes 100 blocks of 16-256 bytes uses 3 classes instead of 12 (mincore: 33 KiB of
 * pages instead of 50 with classes from 8 bytes up; the peak RSS of hundreds of short-lived
 * threads, bench/c/thread_churn.c). The price is paid once per thread and is at most one
 * page per young class: blocks up to twice their request, or 64 bytes for a smaller one
 * (a page of 8-byte blocks in 64-byte ones: 56 KiB more). */
#define YOUNG_PAGES_MAX 8
#define YOUNG_SIZE_MIN ((size_t)64)

/* A retired (empty) page stays in its queue for this many generic-path calls before its
 * slices go back to the segment: a malloc/free of one object must not thrash a page, nor a
 * buffer grown by realloc through its ~30 size classes up to 4 KiB (each class's page is
 * retired when the buffer moves on, and wanted again when the next buffer grows: with 16
 * cycles every growth made and freed ~30 pages), nor a batch of large blocks allocated and
 * freed in turn (each block a page: the first page freed is the last one wanted again). A
 * retired page holds its deadline in ticks of PAGE_RETIRE_TICK calls, modulo 128
 * (retire_expire has 7 bits; 0 means not retired), and the heap walks its retired pages only
 * when the earliest deadline is due (heap_t.retire_due), not every few calls: a walk visits
 * every retired page, and a batch retires many. A thread that stops making those calls has
 * its retired pages but the first of each queue given back by the housekeeper (page.c,
 * _sa_heap_release_idle). */
#define PAGE_RETIRE_CYCLES 96
#define PAGE_RETIRE_TICK 8
#define PAGE_RETIRE_TICKS (PAGE_RETIRE_CYCLES / PAGE_RETIRE_TICK) /* under 64: see page.c */
/* Empty pages a heap keeps retired beyond the one per size class, in bytes: a batch that
 * allocates and frees many pages of one class reuses them instead of re-making them. */
#define PAGE_RETIRE_BYTES_MAX ((size_t)16 << 20)
/* Pages a generic-path call looks at before it takes a fresh page: bounded work. */
#define PAGE_QUEUE_SEARCH_MAX 8

/* ---- Size classes ------------------------------------------------------------------------
 * bin 0: 8 bytes; bins 1..8: 16..128 in 16-byte steps; then four bins per power of two
 * (sizes 5/4, 6/4, 7/4, 8/4 of the lower power), up to LARGE_BLOCK_MAX. Every class from
 * 16 bytes up is a multiple of 16, so every block is 16-byte aligned (8 for bin 0); spacing
 * is at most 25%. The functions live in internal.h (sa_bin, sa_bin_size); test_sizeclass
 * checks these properties.                                                              */
#define BIN_COUNT 69            /* bins 0..68; bin_size(68) == LARGE_BLOCK_MAX */
#define BIN_FULL BIN_COUNT      /* the queue of full pages */
#define BIN_QUEUES (BIN_COUNT + 1)
#define DIRECT_SIZE_MAX MI_SMALL_SIZE_MAX              /* 1 KiB */
#define DIRECT_WSIZE_MAX (DIRECT_SIZE_MAX / SA_INTPTR_SIZE) /* 128 */

/* ---- Blocks ------------------------------------------------------------------------------- */

/* A free block: the link to the next free block is its first word. */
typedef struct block_s {
  struct block_s *next;
} block_t;

/* ---- Pages ---------------------------------------------------------------------------------
 * The cross-thread free list and its state share one atomic word: the list head in bits 2-47
 * (blocks are 8-byte aligned, and every segment lies below 2^48: see the segment map), a
 * delayed_state in bits 0-1, and in bits 48-63 the number of blocks in the list (at most a
 * page's 8192 blocks), so that `used == count` tells any thread, in one load, that every block
 * handed out from the page waits in that list (the housekeeper's sweep, housekeeper.c). The states:
 *
 *   NORMAL           cross-thread frees push onto the page's list.
 *   USE_DELAYED      the page is in the full queue, so its owner will not look at it: the
 *                    first cross-thread free instead pushes its block onto the owner heap's
 *                    `thread_delayed_free` list (setting DELAYED_FREEING while it does, then
 *                    NORMAL). The owner frees those blocks locally, which un-fulls the page.
 *   DELAYED_FREEING  a thread is pushing onto heap->thread_delayed_free and reads page->heap:
 *                    the owner must not free or re-home the heap until it ends.
 *   NEVER_DELAYED    the page has no heap (its segment is abandoned, or being re-homed):
 *                    always push onto the page's list.
 *
 * Transitions: owner NORMAL->USE_DELAYED (page made full); free USE_DELAYED->DELAYED_FREEING
 * ->NORMAL; owner any->NEVER_DELAYED (abandon; waits out DELAYED_FREEING); reclaimer
 * NEVER_DELAYED->NORMAL. Only the owner sets USE_DELAYED or NEVER_DELAYED. A page of one
 * block takes no delayed frees, full or not: its block freed by another thread waits in the
 * page's own list, where a second free of it is seen (_sa_free_chain_mt), and the
 * housekeeper's sweep gives the page back (its count equals `used`).                    */
typedef enum delayed_state_e {
  DELAYED_NORMAL = 0,
  DELAYED_USE = 1,
  DELAYED_FREEING = 2,
  DELAYED_NEVER = 3,
} delayed_state_t;
#define XTHREAD_STATE_MASK ((uintptr_t)3)
#define XTHREAD_COUNT_SHIFT 48
#define XTHREAD_BLOCK_MASK ((((uintptr_t)1 << XTHREAD_COUNT_SHIFT) - 1) & ~XTHREAD_STATE_MASK)
/* Chains. Every push onto a page's cross-thread list puts a chain there: blocks linked through
 * their first words, one from a plain free, up to REMOTE_CHAIN_MAX gathered by the remote-free
 * buffer (remote.c). In release builds, on pages of blocks of 16 bytes and more, the chain's
 * first block carries a chain header in its second word, in the list word's layout (state 0):
 * the chain's last block in bits 2-47, its block count in bits 48-63. The owner that takes the list in (page.c) then finds its tail
 * chain by chain, two blocks read a chain, instead of block by block: the blocks were last
 * written by the threads that freed them, so each block read is a cache miss, and a walk of
 * them is one miss after another (30 % of a producer/consumer pair's time, measured with
 * perf). The walk checks the chains' counts against the list's, so a block pushed twice in
 * chains of its own (plain frees) is still seen; one inside two gathered chains is not (see
 * docs/design.md). */
/* A huge page has no free lists: its xthread_free is 0 while its block is live and HUGE_FREED
 * once it is freed (set by atomic exchange, so a second free from any thread is seen). */
#define HUGE_FREED ((uintptr_t)1)

/* Conditions of a page tested as one word by the same-thread free: it stays on the fast path
 * only while the word is exactly PAGE_FLAGS_FAST (in_use and nothing else). */
typedef union page_flags_u {
  struct {
    uint8_t in_full;         /* the page is in its heap's full queue */
    uint8_t has_aligned : 1; /* some block was handed out at an interior (aligned) address */
    uint8_t check_free : 1;  /* every free here takes the checked generic path: pages of one
                                block (large, or growing by realloc: regrow.c), whose double
                                free the fast path could not see */
    uint8_t grown : 1;       /* a page of one block that realloc made or resized (regrow.c):
                                freed, not retired, once empty, since the next growing block
                                is placed anew, where these slices can be taken again */
    uint8_t in_use : 1;      /* the descriptor heads a page in use. Clear in the descriptors of
                                free slices, which are all zero, so that a free into one (a
                                second free of a block whose page is gone, a pointer never
                                handed out) takes the checked path: and fresh memory needs no
                                writing for that, so a new segment's header costs only the
                                descriptors of the pages made in it */
  } x;
  uint16_t any;
} page_flags_t;
#define PAGE_FLAGS_FAST (((page_flags_t){.x = {.in_use = 1}}).any)

/* A page descriptor: 64 bytes, so that finding it from a pointer is a shift, not a multiply.
 * The segment header holds one per slice: the first slice of a page holds the page, the others
 * are unused (all zero). Every slice of a page has its `page_offsets` entry in the segment
 * header: the page descriptor's distance from the segment's `slice_none`, so page_of(p) is the
 * segment map's load, this load and an add. The entries are a compact array, not a field of
 * every descriptor, so that making or freeing a page of many slices (a 4 MiB block's 64)
 * writes a cache line or two of them, not one line per slice. A free slice's descriptor is all
 * zero, and its offset 0 leads to `slice_none`, all zero too (flags.x.in_use clear,
 * slice_count 0). What the descriptor does not store is derived
 * (internal.h): the page's first block is at segment + index * SLICE_SIZE (a huge page's
 * descriptor is pages[HUGE_PAGE_INDEX], its block at HUGE_BLOCK_OFFSET); the block size is
 * bin_size(bin), or the segment's huge_block_size for a huge page (bin == BIN_COUNT).
 *
 * Invariants. mi_heap_check walks every page of a heap (and SA_DEBUG=2 builds walk after every
 * generic-path call); `_sa_page_check` (page.c) checks those marked [c], one SA_CHECK each, so a
 * failure names the condition, file and line:
 *   - [c] used + |free| + |local_free| == capacity, and used >= |xthread_free| (every block
 *     is in exactly one list or in use; blocks in xthread_free count as used until collected)
 *   - [c] capacity <= reserved; blocks [capacity, reserved) were never touched
 *   - [c] every block in free, local_free and xthread_free lies in [page_start, page_start +
 *     capacity*block_size) at a multiple of block_size; no list is longer than capacity
 *   - [c] slice_count > 0 and bin < BIN_COUNT for a page in a queue; check_free set exactly
 *     for pages of one block (reserved == 1): every page of large blocks, and pages of smaller
 *     blocks that realloc placed to grow (regrow.c); every slice of the page has its
 *     page_offsets entry, and a slice other than the first has an all-zero descriptor
 *   - the thread's in-use statistics lag `used` by used - used_counted blocks (brought up to
 *     date at every slow-path event of the page, never on the fast paths)
 *   - in_full <=> the page is in its heap's BIN_FULL queue, and a page with heap != NULL is
 *     in exactly one queue of that heap unless it is huge ([c] in _sa_heap_check, heap.c)   */
typedef struct page_s {
  uint16_t slice_count;  /* slices this page spans (0: a free slice, or a non-first slice) */
  page_flags_t flags;
  uint8_t bin;           /* size class, or BIN_COUNT for a huge page */
  uint8_t retire_expire : 7; /* > 0: the page is empty and retired; its deadline (tick
                                mod 128, see PAGE_RETIRE_CYCLES) */
  uint8_t is_zero : 1;   /* blocks never handed out are all zero (fresh OS memory) */
  uint16_t capacity;     /* blocks initialised so far (lazily, see page_extend) */
  uint16_t used;         /* blocks in use, including those waiting in xthread_free */
  uint16_t reserved;     /* blocks that fit in the page */
  uint16_t used_counted; /* `used` as last added to the thread's statistics (stats.c) */
  block_t *free;         /* allocation pops from here: owner only */
  block_t *local_free;   /* same-thread frees push here: owner only */
  _Atomic(uintptr_t) xthread_free; /* cross-thread frees: list head | delayed_state */
  _Atomic(struct theap_s *) heap; /* owner instance; while abandoned: NULL for the main
                                     heap's pages, &heap->detached for another heap's */
  struct page_s *next;   /* in the heap's page queue */
  struct page_s *prev;
} page_t;
_Static_assert(sizeof(page_t) == 64, "page descriptors are one cache line");

/* ---- Segments ------------------------------------------------------------------------------
 * Invariants:
 *   - segment_of(p) == p & ~SEGMENT_MASK for every block p of the segment (a huge block
 *     starts at HUGE_BLOCK_OFFSET; an aligned interior pointer into it lies in the same unit,
 *     and the slices up to it point back to the page), except the pointer of a huge block
 *     aligned to SEGMENT_SIZE or more, which may lie in the next unit (huge.c)
 *   - a slice is used (bit set in `used_slices`) <=> it belongs to a page or to the header
 *   - used_pages == number of pages (first slices) allocated from the segment
 *   - thread_id is the owner's id, or 0 when abandoned (or for a huge segment, which has no
 *     owner: any thread frees its one block directly)
 *   - a segment is in exactly one of: its owner's segment list (and then also in the list of
 *     all owned segments), the abandoned list, the segment cache; a huge segment is in none
 *     while its block lives, and in the huge cache (huge.c) after
 *   - a huge segment: HUGE_BLOCK_OFFSET + huge_block_size + SA_GUARD_SIZE <= segment_size, and
 *     segment_size is a multiple of THP_SIZE unless the block is aligned to SEGMENT_SIZE or
 *     more
 *   - used_slices, dirty_slices, purge_slices, purge_at and the purging range change only
 *     under purge_lock; the purging range is free slices (neither used nor pending)
 *   - bit u of thp_units is set <=> the 2 MiB unit u (slices 32u .. 32u+31) carries the
 *     transparent huge page advice (a large page or the segment's making asked for it; it
 *     outlives purges, thp.c); bit 0, the header's unit, is never set. Changes under
 *     purge_lock; no bit is added while allow_large_os_pages advises whole segments  */
typedef enum segment_kind_e {
  SEGMENT_NORMAL = 0,
  SEGMENT_HUGE = 1,
} segment_kind_t;

typedef struct segment_s {
  _Atomic(uintptr_t) thread_id; /* owner thread, 0 if none */
  size_t segment_size;          /* bytes of address space, SEGMENT_SIZE unless huge */
  size_t huge_block_size;       /* huge: the block's size (from HUGE_BLOCK_OFFSET; the
                                   mapping spans whole 2 MiB units, the rest of the last one
                                   is address space) */
  size_t huge_dirty;            /* huge: bytes from HUGE_BLOCK_OFFSET that may hold data (a
                                   live block's: its whole mapping); beyond them the mapping
                                   is fresh, zero (huge.c: cached segments cut and gathered) */
  uint8_t kind;                 /* segment_kind_t */
  uint32_t used_pages;
  uint32_t used_slice_count;
  bool in_arena;                /* carved from the reservation (arena.c), not mapped alone */
  bool large_first;             /* made (or taken from the cache) for a page of a 2 MiB unit or
                                   more: small pages keep off its header's unit (thp.c) */
  uint16_t thp_units;           /* 2 MiB units that carry huge page advice (thp.c) */
  uint64_t used_slices[SEGMENT_BITMAP_WORDS];  /* owner only */
  uint64_t dirty_slices[SEGMENT_BITMAP_WORDS]; /* touched since the last purge */
  uint64_t purge_slices[SEGMENT_BITMAP_WORDS]; /* free and dirty: to purge when old enough */
  int64_t purge_expire;                        /* ms: earliest pending expiry; 0: none */
  struct thread_s *owner;       /* owner thread state, NULL if none */
  int64_t cached_at;            /* ms: when it last entered the segment cache (segment.c) */
  int64_t adopted_at;           /* ms: when its owner took it (slices purged before that were
                                   purged while no thread owned it: purge.c's unowned delay) */
  struct segment_s *next;       /* in the owner's list, the abandoned list or the cache */
  struct segment_s *prev;
  struct segment_s *owned_next; /* in the list of all owned segments (purge.c) */
  struct segment_s *owned_prev;
  _Atomic(bool) purge_lock;     /* guards the slice bitmaps and purge times against a purge
                                   from another thread (taken on slow paths only) */
  /* slices [purging_start, purging_end) that another thread is giving back to the OS with
   * purge_lock released (purge.c): the owner takes none of them before it is done (equal:
   * none) */
  uint16_t purging_start;
  uint16_t purging_end;
#if SA_SECURE
  uint64_t guard_slices[SEGMENT_BITMAP_WORDS]; /* owner only: the last 4 KiB of the slice
                                                  is a guard page (secure.c) */
#endif
  /* per slice: bytes from slice_none to the descriptor of its page; 0 in a free slice (so:
   * slice_none) and in the header's (page_t) */
  uint16_t page_offsets[SLICES_PER_SEGMENT];
  /* per slice, a purge stamp (segment.h: ms modulo 2^32, never 0): when a pending slice is
   * due; for a purged one, when its delay purged it (0: never, or purged on demand). 32 bits
   * and next to page_offsets, so that freeing a page writes one OS page of the header, which
   * the segment's first pages use already (as 64-bit times at the header's end they took a
   * page of their own: a TLB entry more for every page freed, and a page fault inside the
   * first free of a page in each segment, 5-10 us) */
  uint32_t purge_at[SLICES_PER_SEGMENT];
  page_t slice_none; /* the page of a free slice (offset 0): all zero, never written */
  page_t pages[SLICES_PER_SEGMENT]; /* one descriptor per slice */
} segment_t;
_Static_assert(offsetof(segment_t, pages) == offsetof(segment_t, slice_none) + sizeof(page_t),
               "the page_offsets entry of pages[i] is (i + 1) * sizeof(page_t)");
_Static_assert(sizeof(segment_t) <= SEGMENT_HEADER_SLICES * SLICE_SIZE,
               "the segment header fits in its header slices");

/* ---- Heaps -------------------------------------------------------------------------------- */
typedef struct page_queue_s {
  page_t *first;
  page_t *last;
  size_t block_size;
} page_queue_t;

/* A thread heap: the instance of one heap (struct mi_heap_s, below) for one thread; the
 * allocation fast paths work on it alone. Invariants:
 *   - pages_direct[w] is the first page of the queue of bin(w*8) (while `young`: of the bin
 *     of w*8 rounded up to a power of two) if that page has a block in `free`, else a page
 *     whose `free` is NULL (sa_page_empty or the same page): the fast path pops from it or
 *     falls to the generic path, never anything else
 *   - every page in pages[b] has bin b and heap == this heap; pages[BIN_FULL] holds full
 *     pages of any bin with flags.in_full set
 *   - retired pages (retire_expire > 0) have their bins' bits set in retired_bins (a bit
 *     may be set with no retired page left); retired_bytes is their total size             */
typedef struct theap_s heap_t;
struct theap_s {
  page_t *pages_direct[DIRECT_WSIZE_MAX + 1];
  page_queue_t pages[BIN_QUEUES];
  _Atomic(block_t *) thread_delayed_free; /* blocks of full pages freed by other threads */
  struct thread_s *thread;                /* owner thread state (and its id) */
  heap_t *next;                           /* in the owner's list of heaps */
  size_t page_count;                      /* pages owned, full queue included */
  page_t *huge_pages;                     /* huge blocks allocated here (_sa_huge_lock) */
  uint64_t retired_bins[(BIN_COUNT + 63) / 64]; /* bins that may hold retired pages */
  unsigned retire_clock;                  /* generic-path calls while pages were retired */
  unsigned retire_due;                    /* tick (retire_clock / PAGE_RETIRE_TICK) at or
                                             before the earliest retired page's deadline */
  size_t retired_bytes;                   /* bytes of pages with retire_expire > 0 */
  unsigned look_clock;                    /* retire_clock and retired_bytes at the */
  size_t look_bytes;                      /* housekeeper's last look: a heap that changed
                                             neither since is idle; the housekeeper's alone,
                                             under house_lock (_sa_heap_release_idle) */
  _Atomic(struct mi_heap_s *) heap;       /* the heap this is the instance of (atomic: any
                                             thread may ask a block's heap while a delete
                                             re-labels the instance, sharedheap.c) */
  heap_t *next_instance;                  /* in heap->instances (_sa_heaps_lock) */
  bool merge;                             /* its heap was deleted by another thread: the
                                             owner merges it into its backing heap */
  bool young;                             /* a new thread's backing heap, until it has
                                             YOUNG_PAGES_MAX pages: small sizes round up to a
                                             power of two (page.c) */
};

/* A heap: the process-wide object behind mi_heap_t. Any thread may allocate from it, through
 * its own instance of it (made on first use, sharedheap.c); blocks are freed as any block is.
 *
 * Invariants (`instances`, `abandoned_pages` and every instance's `next_instance` change only
 * under _sa_heaps_lock):
 *   - `id` is unique for the life of the process (never reused, the main heap's is 1): the
 *     thread-local cache (heap id, instance) can never match a new heap at a freed address
 *   - `instances` lists exactly the live threads' instances of this heap, at most one per
 *     thread (the main heap also lists the instances of deleted heaps that their owners have
 *     yet to merge, `merge` set); an instance is listed from its creation, under its owner's
 *     house_lock, until its owner exits or the heap is deleted or destroyed
 *   - a page of an exited thread's instance lies in an abandoned segment with page->heap ==
 *     &detached (the main heap's: NULL), and abandoned_pages counts those pages; it leaves
 *     the count when a reclaim frees the page or adopts it into the reclaiming thread's
 *     instance of this heap, in the same critical section that lists that instance. So
 *     `instances == NULL && abandoned_pages == 0` means no page of the heap exists
 *   - `detached` belongs to no thread and holds no queue: it is page->heap of those pages,
 *     and holds the huge blocks of exited threads' instances (huge.c)
 * Who touches another thread's instance: only a thread holding that owner's house_lock, taken
 * with a try under _sa_heaps_lock while the instance is listed (so the owner is on none of its
 * slow paths and cannot exit meanwhile). Holding it, the thread may walk the instance, free
 * pages the owner's fast paths cannot reach (mi_heap_destroy, whose caller guarantees that no
 * thread uses the heap or its blocks; the housekeeper's sweep) or re-label it for its owner
 * (mi_heap_delete); it never moves a page the owner may still free into (the owner merges). */
struct mi_heap_s {
  uint64_t id;
  heap_t *instances;
  int64_t abandoned_pages;
  heap_t detached;
};

/* ---- Statistics -------------------------------------------------------------------------------
 * Per-thread counters, written only by their thread (relaxed loads and stores, no atomic
 * read-modify-write) and summed by any reader; merged into the process totals at thread exit.
 * Never touched on a fast path: block counts follow page->used at the page's slow-path events
 * (see page_t.used_counted). Counters may go negative in one thread (a page reclaimed from an
 * exited thread frees blocks the old thread counted); only the sums mean something.          */
typedef struct thread_stats_s {
  _Atomic(int64_t) in_use[BIN_COUNT]; /* blocks in use per size class */
  _Atomic(int64_t) pages[BIN_COUNT];  /* pages per size class */
} thread_stats_t;

/* ---- Threads -------------------------------------------------------------------------------
 * Per-thread state, reached from every instance of the thread. `heap` is the backing heap,
 * the thread's instance of the main heap (the default one until mi_heap_set_default); it
 * lives in the same object so that a thread's first allocation takes one slot of the heap
 * pool. Invariants:
 *   - every segment in `segments` has thread_id == this thread's id and owner == this
 *   - `heaps` lists every instance this thread owns, the backing heap last; it changes only
 *     under house_lock (the owner's, or another thread's delete/destroy holding it)
 *   - merge_pending is set whenever an instance in `heaps` has `merge` set                  */
typedef struct thread_s {
  heap_t heap;               /* the backing heap */
  uintptr_t thread_id;
  heap_t *heaps;             /* all heaps of this thread */
  segment_t *segments;       /* segments this thread owns */
  size_t segment_count;
  int64_t purge_next;        /* ms: earliest purge_expire of its segments; 0: none pending */
  size_t purge_pending;      /* slices pending purge in its segments (an upper bound: purges
                                by other threads are noticed at its own next purge) */
  int64_t purge_delay;       /* ms: the delay its frees get (purge.c); <= the option: the option */
  int64_t purge_regret_at;   /* ms: when purged memory was last taken again soon after */
  size_t purge_regret;       /* slices taken again soon after their purge, since the last raise */
  thread_stats_t stats;
  /* Exclusion between this thread's slow paths and the housekeeper's sweep of its heaps
   * (housekeeper.c): held by the owner around every slow path that changes its queues, pages
   * or segments (re-entrant through house_depth, which only the owner touches); the
   * housekeeper only ever tries it. Never taken on a fast path. */
  _Atomic(bool) house_lock;
  uint32_t house_depth;
  struct thread_s *next_live; /* in the list of live threads (stats.c) */
  struct thread_s *prev_live;
  struct thread_s *next_free; /* in the heap pool's free list */
  _Atomic(bool) merge_pending; /* an instance of this thread has `merge` set */
  /* Spare pages (spare.c): empty small and medium pages of instances this thread destroyed or
   * deleted, kept for the generic path of its next instance (or its backing heap) instead of
   * going back to their segments. One list per bin, linked through page->next. Invariants
   * (checked by _sa_spare_check): a spare page is in no queue, has heap == NULL, flags 0 (a
   * stale free takes the checked path), used == capacity == 0, no block in any list, lies in
   * a segment of this thread, and is not counted in stats.pages; spare_bytes is their total
   * size, at most SPARE_BYTES_MAX (a page is kept only while the total stays within the limit
   * in force, spare_limit or SPARE_BYTES_MIN if larger, which a destroy may lower below what is
   * kept already). Owner only, under house_lock like its queues. */
  page_t *spare[BIN_COUNT];
  size_t spare_bytes;
  size_t spare_limit;         /* small and medium page bytes of the last instance destroyed */
  uint32_t spare_expire;      /* generic-path calls left before the spare pages go back */
  /* Pool objects this thread freed last (heap.c): its next heap or instance takes one without
   * the pool's lock. Linked through next_free, at most POOL_LOCAL_MAX. */
  struct thread_s *pool_local;
  uint32_t pool_local_count;
} thread_t;
_Static_assert(sizeof(struct mi_heap_s) <= sizeof(thread_t), "heaps come from the pool too");

#endif /* SHARDALLOC_TYPES_H */
