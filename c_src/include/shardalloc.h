/* shardalloc: a general-purpose allocator with thread-local heaps and sharded free lists.
 *
 * The public C API. It uses mimalloc's function names and semantics, so code written for
 * that API compiles against shardalloc unchanged. Every function here is thread-safe.
 *
 * Symbol prefix: when SHARDALLOC_RENAME is defined (the Rust crate's build does this), every
 * `mi_` symbol below is compiled as `shardalloc_mi_...` instead (see shardalloc_rename.h), so
 * the library links into one binary beside another mimalloc-API library without a clash.
 */
#ifndef SHARDALLOC_H
#define SHARDALLOC_H

#include <stdbool.h>
#include <stddef.h>

#ifdef SHARDALLOC_RENAME
#include "shardalloc_rename.h"
#endif

#define SHARDALLOC_VERSION_MAJOR 0
#define SHARDALLOC_VERSION_MINOR 1
#define SHARDALLOC_VERSION_PATCH 0
/* mi_version() returns this: major*100 + minor*10 + patch, mimalloc's encoding. */
#define SHARDALLOC_VERSION                                                                    \
  (SHARDALLOC_VERSION_MAJOR * 100 + SHARDALLOC_VERSION_MINOR * 10 + SHARDALLOC_VERSION_PATCH)

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define mi_attr_malloc __attribute__((malloc))
#define mi_attr_alloc_size(s) __attribute__((alloc_size(s)))
#define mi_attr_alloc_size2(n, s) __attribute__((alloc_size(n, s)))
#define mi_attr_alloc_align(a) __attribute__((alloc_align(a)))
#define mi_decl_export __attribute__((visibility("default")))
#else
#define mi_attr_malloc
#define mi_attr_alloc_size(s)
#define mi_attr_alloc_size2(n, s)
#define mi_attr_alloc_align(a)
#define mi_decl_export
#endif
#define mi_decl_nodiscard

/* Largest alignment the aligned entry points accept (64 TiB, half the address space); larger
 * ones fail with ENOMEM, as do those the OS has no room for. An alignment of 32 MiB or more
 * gets a mapping of its own, with up to 32 MiB + 64 KiB of address space before the block
 * (its header, of which at most 64 KiB is written); placing it reserves as much address
 * space again as the alignment for a moment (then unmapped). Smaller ones cost none of this. */
#define MI_ALIGNMENT_MAX ((size_t)1 << 46)
/* Largest block served by the small-object fast path (mi_malloc_small, mi_zalloc_small). */
#define MI_SMALL_SIZE_MAX ((size_t)1024)

/* ---- Basic allocation ------------------------------------------------------------------ */

/* Allocate `size` bytes, 16-byte aligned (8 for size <= 8); size 0 gives a unique pointer.
 * NULL with errno = ENOMEM when the request cannot be met. */
mi_decl_export mi_attr_malloc mi_attr_alloc_size(1) void *mi_malloc(size_t size);
/* Allocate `count * size` zeroed bytes; NULL with ENOMEM on overflow or exhaustion. */
mi_decl_export mi_attr_malloc mi_attr_alloc_size2(1, 2) void *mi_calloc(size_t count,
                                                                         size_t size);
/* Resize `p` (NULL acts as malloc), keeping the common prefix; on failure `p` stays valid. */
mi_decl_export mi_attr_alloc_size(2) void *mi_realloc(void *p, size_t newsize);
/* Free `p`, any pointer returned by this API (also interior aligned ones); NULL is a no-op. */
mi_decl_export void mi_free(void *p);
/* Allocate `size` zeroed bytes. */
mi_decl_export mi_attr_malloc mi_attr_alloc_size(1) void *mi_zalloc(size_t size);
/* Allocate `count * size` bytes, uninitialised; NULL with ENOMEM on overflow. */
mi_decl_export mi_attr_malloc mi_attr_alloc_size2(1, 2) void *mi_mallocn(size_t count,
                                                                          size_t size);
/* Resize `p` to `count * size` bytes; NULL with ENOMEM on overflow (`p` stays valid). */
mi_decl_export mi_attr_alloc_size2(2, 3) void *mi_reallocn(void *p, size_t count, size_t size);
/* Like mi_realloc, but frees `p` when the resize fails. */
mi_decl_export mi_attr_alloc_size(2) void *mi_reallocf(void *p, size_t newsize);
/* Resize `p` in place only: `p` if its block already holds `newsize` bytes, else NULL. */
mi_decl_export void *mi_expand(void *p, size_t newsize);
/* Duplicate the NUL-terminated string `s`; NULL for NULL. */
mi_decl_export mi_attr_malloc char *mi_strdup(const char *s);
/* Duplicate at most `n` bytes of `s`, always NUL-terminated; NULL for NULL. */
mi_decl_export mi_attr_malloc char *mi_strndup(const char *s, size_t n);
/* Bytes usable in the block of `p` (>= the size asked for); 0 for NULL. */
mi_decl_export size_t mi_usable_size(const void *p);
/* The usable size a request of `size` bytes would get (a thread's first few pages may give a
 * request of up to 1 KiB more: its size rounded up to a power of two, at least 64). */
mi_decl_export size_t mi_good_size(size_t size);
/* mi_malloc for sizes <= MI_SMALL_SIZE_MAX only (larger sizes are a caller error). */
mi_decl_export mi_attr_malloc mi_attr_alloc_size(1) void *mi_malloc_small(size_t size);
/* mi_zalloc for sizes <= MI_SMALL_SIZE_MAX only. */
mi_decl_export mi_attr_malloc mi_attr_alloc_size(1) void *mi_zalloc_small(size_t size);

/* macOS-style name of mi_usable_size. */
mi_decl_export size_t mi_malloc_size(const void *p);
/* macOS-style name of mi_good_size. */
mi_decl_export size_t mi_malloc_good_size(size_t size);
/* Free `p` only when it points into memory of this allocator; other pointers are ignored. */
mi_decl_export void mi_cfree(void *p);
/* Windows-style name of mi_expand. */
mi_decl_export void *mi__expand(void *p, size_t newsize);
/* realpath(3) into a block of this allocator (`resolved` NULL); otherwise as realpath. */
mi_decl_export char *mi_realpath(const char *path, char *resolved);

/* ---- Aligned allocation: alignment must be a power of two <= MI_ALIGNMENT_MAX ----------- */

/* Allocate `size` bytes aligned to `alignment`; NULL with EINVAL/ENOMEM on a bad alignment. */
mi_decl_export mi_attr_malloc mi_attr_alloc_size(1) mi_attr_alloc_align(2) void *
mi_malloc_aligned(size_t size, size_t alignment);
/* Allocate `size` bytes such that `p + offset` is aligned to `alignment`. */
mi_decl_export mi_attr_malloc mi_attr_alloc_size(1) void *
mi_malloc_aligned_at(size_t size, size_t alignment, size_t offset);
/* Zeroed mi_malloc_aligned. */
mi_decl_export mi_attr_malloc mi_attr_alloc_size(1) mi_attr_alloc_align(2) void *
mi_zalloc_aligned(size_t size, size_t alignment);
/* Zeroed, overflow-checked `count * size` bytes aligned to `alignment`. */
mi_decl_export mi_attr_malloc mi_attr_alloc_size2(1, 2) mi_attr_alloc_align(3) void *
mi_calloc_aligned(size_t count, size_t size, size_t alignment);
/* Resize `p` keeping `alignment` (which should be the one `p` was allocated with). */
mi_decl_export mi_attr_alloc_size(2) mi_attr_alloc_align(3) void *
mi_realloc_aligned(void *p, size_t newsize, size_t alignment);
/* Zeroed mi_malloc_aligned_at. */
mi_decl_export mi_attr_malloc mi_attr_alloc_size(1) void *
mi_zalloc_aligned_at(size_t size, size_t alignment, size_t offset);
/* Zeroed, overflow-checked `count * size` bytes such that `p + offset` is aligned. */
mi_decl_export mi_attr_malloc mi_attr_alloc_size2(1, 2) void *
mi_calloc_aligned_at(size_t count, size_t size, size_t alignment, size_t offset);
/* Resize `p` keeping `p + offset` aligned to `alignment`. */
mi_decl_export mi_attr_alloc_size(2) void *
mi_realloc_aligned_at(void *p, size_t newsize, size_t alignment, size_t offset);

/* ---- Zero-preserving reallocation: bytes past the old size read as zero ----------------- */

/* Resize `p`; when it grows, the new bytes are zero (p must come from a zeroing allocation). */
mi_decl_export mi_attr_alloc_size(2) void *mi_rezalloc(void *p, size_t newsize);
/* mi_rezalloc to `count * size` bytes, NULL with ENOMEM on overflow. */
mi_decl_export mi_attr_alloc_size2(2, 3) void *mi_recalloc(void *p, size_t count, size_t size);
/* mi_rezalloc keeping `alignment`. */
mi_decl_export mi_attr_alloc_size(2) mi_attr_alloc_align(3) void *
mi_rezalloc_aligned(void *p, size_t newsize, size_t alignment);
/* mi_recalloc keeping `alignment`. */
mi_decl_export mi_attr_alloc_size2(2, 3) mi_attr_alloc_align(4) void *
mi_recalloc_aligned(void *p, size_t count, size_t size, size_t alignment);
/* mi_rezalloc keeping `p + offset` aligned. */
mi_decl_export mi_attr_alloc_size(2) void *
mi_rezalloc_aligned_at(void *p, size_t newsize, size_t alignment, size_t offset);
/* mi_recalloc keeping `p + offset` aligned. */
mi_decl_export mi_attr_alloc_size2(2, 3) void *
mi_recalloc_aligned_at(void *p, size_t count, size_t size, size_t alignment, size_t offset);
/* Windows-style name of mi_recalloc_aligned. */
mi_decl_export void *mi_aligned_recalloc(void *p, size_t count, size_t size, size_t alignment);
/* Windows-style name of mi_recalloc_aligned_at. */
mi_decl_export void *mi_aligned_offset_recalloc(void *p, size_t count, size_t size,
                                                size_t alignment, size_t offset);

/* ---- POSIX and C11 compatible entry points ---------------------------------------------- */

/* posix_memalign: 0 on success; EINVAL unless alignment is a power of two times
 * sizeof(void*); ENOMEM on exhaustion (then *p is untouched). */
mi_decl_export int mi_posix_memalign(void **p, size_t alignment, size_t size);
/* memalign: like mi_malloc_aligned; NULL with EINVAL for a non-power-of-two alignment. */
mi_decl_export mi_attr_malloc void *mi_memalign(size_t alignment, size_t size);
/* C11 aligned_alloc: NULL with EINVAL for a non-power-of-two alignment. */
mi_decl_export mi_attr_malloc void *mi_aligned_alloc(size_t alignment, size_t size);
/* Allocate `size` bytes aligned to the OS page size. */
mi_decl_export mi_attr_malloc void *mi_valloc(size_t size);
/* Allocate `size` rounded up to whole OS pages, page aligned; NULL with ENOMEM on overflow. */
mi_decl_export mi_attr_malloc void *mi_pvalloc(size_t size);
/* realloc to `count * size` bytes; NULL with ENOMEM on overflow (`p` stays valid). */
mi_decl_export void *mi_reallocarray(void *p, size_t count, size_t size);
/* malloc_usable_size: same as mi_usable_size. */
mi_decl_export size_t mi_malloc_usable_size(const void *p);
/* Free `p` that was allocated with `size` bytes (a hint checked in debug builds). */
mi_decl_export void mi_free_size(void *p, size_t size);
/* Free `p` that was allocated with `alignment`. */
mi_decl_export void mi_free_aligned(void *p, size_t alignment);
/* Free `p` that was allocated (or last reallocated) with `size` bytes and `alignment` by
 * mi_malloc, mi_malloc_aligned or their zeroing and reallocating variants (not the `_at`
 * ones). Faster than mi_free for sizes and alignments up to 4 KiB; a size or alignment
 * that does not match the block is undefined behaviour (debug builds abort). */
mi_decl_export void mi_free_size_aligned(void *p, size_t size, size_t alignment);

/* ---- Heaps: independent allocation areas, shared by all threads ---------------------------- */

/* An opaque heap, a process-wide object: any number of threads may allocate from the same
 * heap at once (each gets its own part of it, so they do not contend), and any thread may free
 * any block, whichever heap and thread it came from. The main heap is every thread's default
 * heap (mi_malloc); it lives as long as the process. A heap made by mi_heap_new lives until
 * mi_heap_delete or mi_heap_destroy, called from any thread; the caller must guarantee:
 *   - no thread allocates from the heap (mi_heap_* with it, or mi_malloc with it as its
 *     default) during or after the call, and no other thread has it as its default heap;
 *   - the heap is deleted or destroyed once, by one thread;
 *   - mi_heap_destroy: no block of the heap is used or freed, by any thread, during or after
 *     the call (every one of them is freed by it, on every thread, exited ones included).
 * After mi_heap_delete the blocks stay valid and may be freed by any thread at any time,
 * during the call too. A thread that exits leaves its blocks of a heap in that heap: they are
 * still found by its delete, destroy and walks. */
typedef struct mi_heap_s mi_heap_t;

/* Create a new heap; NULL on exhaustion. Every thread may allocate from it. */
mi_decl_export mi_heap_t *mi_heap_new(void);
/* Delete `heap` (see above): blocks still allocated in it move to the main heap (in each
 * thread's part: the calling thread's at once, another's at that thread's next allocation
 * that misses its fast path) and stay valid. No-op for the main heap. */
mi_decl_export void mi_heap_delete(mi_heap_t *heap);
/* Destroy `heap` (see above) and free every block still allocated in it at once, in every
 * thread's part of it. For the main heap: mi_heap_collect(heap, false). */
mi_decl_export void mi_heap_destroy(mi_heap_t *heap);
/* The calling thread's default heap (the one mi_malloc uses): the main heap unless changed. */
mi_decl_export mi_heap_t *mi_heap_get_default(void);
/* Make `heap` the calling thread's default heap; returns the previous one. */
mi_decl_export mi_heap_t *mi_heap_set_default(mi_heap_t *heap);
/* Release what `heap` holds but does not use (force: also pages kept for reuse): all of it in
 * the calling thread's part; in other threads' parts, the pages whose blocks have all been
 * freed (a thread busy in the allocator right then is skipped). For the main heap, the
 * calling thread's part only. */
mi_decl_export void mi_heap_collect(mi_heap_t *heap, bool force);
/* mi_malloc from `heap`. */
mi_decl_export mi_attr_malloc mi_attr_alloc_size(2) void *mi_heap_malloc(mi_heap_t *heap,
                                                                          size_t size);
/* mi_zalloc from `heap`. */
mi_decl_export mi_attr_malloc mi_attr_alloc_size(2) void *mi_heap_zalloc(mi_heap_t *heap,
                                                                          size_t size);
/* mi_calloc from `heap`. */
mi_decl_export mi_attr_malloc mi_attr_alloc_size2(2, 3) void *
mi_heap_calloc(mi_heap_t *heap, size_t count, size_t size);
/* mi_realloc within `heap` (a moved block is allocated from `heap`). */
mi_decl_export mi_attr_alloc_size(3) void *mi_heap_realloc(mi_heap_t *heap, void *p,
                                                           size_t newsize);
/* mi_malloc_aligned from `heap`. */
mi_decl_export mi_attr_malloc mi_attr_alloc_size(2) mi_attr_alloc_align(3) void *
mi_heap_malloc_aligned(mi_heap_t *heap, size_t size, size_t alignment);
/* mi_malloc_small from `heap`. */
mi_decl_export mi_attr_malloc mi_attr_alloc_size(2) void *mi_heap_malloc_small(mi_heap_t *heap,
                                                                                size_t size);
/* mi_mallocn from `heap`. */
mi_decl_export mi_attr_malloc mi_attr_alloc_size2(2, 3) void *
mi_heap_mallocn(mi_heap_t *heap, size_t count, size_t size);
/* mi_reallocn within `heap`. */
mi_decl_export mi_attr_alloc_size2(3, 4) void *mi_heap_reallocn(mi_heap_t *heap, void *p,
                                                                 size_t count, size_t size);
/* mi_reallocf within `heap`. */
mi_decl_export mi_attr_alloc_size(3) void *mi_heap_reallocf(mi_heap_t *heap, void *p,
                                                            size_t newsize);
/* mi_strdup from `heap`. */
mi_decl_export mi_attr_malloc char *mi_heap_strdup(mi_heap_t *heap, const char *s);
/* mi_strndup from `heap`. */
mi_decl_export mi_attr_malloc char *mi_heap_strndup(mi_heap_t *heap, const char *s, size_t n);
/* mi_realpath from `heap`. */
mi_decl_export char *mi_heap_realpath(mi_heap_t *heap, const char *path, char *resolved);
/* mi_malloc_aligned_at from `heap`. */
mi_decl_export mi_attr_malloc mi_attr_alloc_size(2) void *
mi_heap_malloc_aligned_at(mi_heap_t *heap, size_t size, size_t alignment, size_t offset);
/* mi_zalloc_aligned from `heap`. */
mi_decl_export mi_attr_malloc mi_attr_alloc_size(2) mi_attr_alloc_align(3) void *
mi_heap_zalloc_aligned(mi_heap_t *heap, size_t size, size_t alignment);
/* mi_zalloc_aligned_at from `heap`. */
mi_decl_export mi_attr_malloc mi_attr_alloc_size(2) void *
mi_heap_zalloc_aligned_at(mi_heap_t *heap, size_t size, size_t alignment, size_t offset);
/* mi_calloc_aligned from `heap`. */
mi_decl_export mi_attr_malloc mi_attr_alloc_size2(2, 3) mi_attr_alloc_align(4) void *
mi_heap_calloc_aligned(mi_heap_t *heap, size_t count, size_t size, size_t alignment);
/* mi_calloc_aligned_at from `heap`. */
mi_decl_export mi_attr_malloc mi_attr_alloc_size2(2, 3) void *
mi_heap_calloc_aligned_at(mi_heap_t *heap, size_t count, size_t size, size_t alignment,
                          size_t offset);
/* mi_realloc_aligned within `heap`. */
mi_decl_export mi_attr_alloc_size(3) mi_attr_alloc_align(4) void *
mi_heap_realloc_aligned(mi_heap_t *heap, void *p, size_t newsize, size_t alignment);
/* mi_realloc_aligned_at within `heap`. */
mi_decl_export mi_attr_alloc_size(3) void *
mi_heap_realloc_aligned_at(mi_heap_t *heap, void *p, size_t newsize, size_t alignment,
                           size_t offset);
/* mi_rezalloc within `heap`. */
mi_decl_export mi_attr_alloc_size(3) void *mi_heap_rezalloc(mi_heap_t *heap, void *p,
                                                            size_t newsize);
/* mi_recalloc within `heap`. */
mi_decl_export mi_attr_alloc_size2(3, 4) void *mi_heap_recalloc(mi_heap_t *heap, void *p,
                                                                 size_t count, size_t size);
/* mi_rezalloc_aligned within `heap`. */
mi_decl_export mi_attr_alloc_size(3) mi_attr_alloc_align(4) void *
mi_heap_rezalloc_aligned(mi_heap_t *heap, void *p, size_t newsize, size_t alignment);
/* mi_rezalloc_aligned_at within `heap`. */
mi_decl_export mi_attr_alloc_size(3) void *
mi_heap_rezalloc_aligned_at(mi_heap_t *heap, void *p, size_t newsize, size_t alignment,
                            size_t offset);
/* mi_recalloc_aligned within `heap`. */
mi_decl_export mi_attr_alloc_size2(3, 4) mi_attr_alloc_align(5) void *
mi_heap_recalloc_aligned(mi_heap_t *heap, void *p, size_t count, size_t size,
                         size_t alignment);
/* mi_recalloc_aligned_at within `heap`. */
mi_decl_export mi_attr_alloc_size2(3, 4) void *
mi_heap_recalloc_aligned_at(mi_heap_t *heap, void *p, size_t count, size_t size,
                            size_t alignment, size_t offset);
/* True when `p` points into a block that `heap` currently owns (allocated from it by any
 * thread, or moved into it by a delete). */
mi_decl_export bool mi_heap_contains_block(mi_heap_t *heap, const void *p);
/* True when `p` (any pointer, safely) points into a block of `heap`. */
mi_decl_export bool mi_heap_check_owned(mi_heap_t *heap, const void *p);
/* mi_heap_check_owned with the calling thread's default heap. */
mi_decl_export bool mi_check_owned(const void *p);

/* ---- Options ------------------------------------------------------------------------------
 * Each option is read once, at process init, from the environment variable
 * `SHARDALLOC_NAME` (NAME as in the comment), and can be set from code; options that shape
 * the reservation of memory (reserve_os_memory, arena_eager_commit) only act when set before
 * the first allocation. */
typedef enum mi_option_e {
  mi_option_show_errors,          /* SHOW_ERRORS: report misuse and OS errors on stderr */
  mi_option_show_stats,           /* SHOW_STATS: print statistics at process exit */
  mi_option_verbose,              /* VERBOSE: a line at start (version, mode) and on events */
  mi_option_purge_delay,          /* PURGE_DELAY: ms before free memory goes back to the OS;
                                     0: at once, -1: never (default 25); a thread whose purged
                                     memory is soon wanted again gets up to 8x it */
  mi_option_allow_large_os_pages, /* ALLOW_LARGE_OS_PAGES: transparent huge pages for segments,
                                     explicit 2 MiB pages for the reservation (default off) */
  mi_option_reserve_os_memory,    /* RESERVE_OS_MEMORY: KiB of address space to reserve at start
                                     (accepts K/M/G suffixes; default 0) */
  mi_option_arena_eager_commit,   /* ARENA_EAGER_COMMIT: pre-fault the reservation (default off) */
  mi_option_background_purge,     /* BACKGROUND_PURGE: the housekeeper, a thread of ours that
                                     gives back memory threads do not come back for: purges
                                     when due, pages other threads emptied, exited threads'
                                     memory; asleep while nothing waits (default on) */
  mi_option_segment_cache,        /* SEGMENT_CACHE: empty segments kept for reuse (default 4) */
  _mi_option_last
} mi_option_t;

/* True when the option's value is non-zero. */
mi_decl_export bool mi_option_is_enabled(mi_option_t option);
/* Set the option to 1. */
mi_decl_export void mi_option_enable(mi_option_t option);
/* Set the option to 0. */
mi_decl_export void mi_option_disable(mi_option_t option);
/* Set the option to `enable` (1 or 0). */
mi_decl_export void mi_option_set_enabled(mi_option_t option, bool enable);
/* The option's value (from the environment, code, or its default). */
mi_decl_export long mi_option_get(mi_option_t option);
/* The option's value clamped to [min, max]. */
mi_decl_export long mi_option_get_clamp(mi_option_t option, long min, long max);
/* Set the option's value. */
mi_decl_export void mi_option_set(mi_option_t option, long value);
/* Set the option's value unless the environment or code already set it. */
mi_decl_export void mi_option_set_default(mi_option_t option, long value);
/* Set the option to `enable` unless the environment or code already set it. */
mi_decl_export void mi_option_set_enabled_default(mi_option_t option, bool enable);
/* The option's value as a size: bytes for reserve_os_memory (set in KiB), 0 if negative. */
mi_decl_export size_t mi_option_get_size(mi_option_t option);

/* ---- Messages ------------------------------------------------------------------------------
 * Every message of the allocator (verbose lines, errors, statistics) goes to the registered
 * output function, or to stderr when none is. The functions may be called from any thread and
 * must not allocate with this allocator. */

/* Receives one message: NUL-terminated text, usually a whole line. */
typedef void(mi_output_fun)(const char *msg, void *arg);
/* Receives each error SHOW_ERRORS would print (misuse, bad option values, failed OS calls),
 * with EINVAL, whether or not SHOW_ERRORS is on. (A failed allocation is not an error: it
 * returns NULL with errno ENOMEM.) */
typedef void(mi_error_fun)(int err, void *arg);
/* Called at each mi_collect and mi_heap_collect, with `force` as given and a count of the
 * calls so far, so that a program can free memory it deferred freeing. */
typedef void(mi_deferred_free_fun)(bool force, unsigned long long heartbeat, void *arg);

/* Send messages to `out` (with `arg`); NULL restores stderr. */
mi_decl_export void mi_register_output(mi_output_fun *out, void *arg);
/* Call `fun` (with `arg`) on each error; NULL removes it. */
mi_decl_export void mi_register_error(mi_error_fun *fun, void *arg);
/* Call `fun` (with `arg`) at each collect; NULL removes it. */
mi_decl_export void mi_register_deferred_free(mi_deferred_free_fun *fun, void *arg);

/* ---- Statistics ---------------------------------------------------------------------------- */

/* Print the statistics (process-wide) to `out`, an mi_output_fun (NULL: the registered one). */
mi_decl_export void mi_stats_print(void *out);
/* Print the statistics (process-wide) with `out(msg, arg)` (NULL: the registered output). */
mi_decl_export void mi_stats_print_out(mi_output_fun *out, void *arg);
/* Reset the peaks and event counters of the statistics. */
mi_decl_export void mi_stats_reset(void);
/* Merge the calling thread's counters into the process totals now (done at thread exit). */
mi_decl_export void mi_stats_merge(void);
/* Process information, any pointer may be NULL: elapsed, user and system time in ms; current
 * and peak resident set size, current and peak committed memory, in bytes; minor and major
 * page faults. */
mi_decl_export void mi_process_info(size_t *elapsed_msecs, size_t *user_msecs,
                                    size_t *system_msecs, size_t *current_rss,
                                    size_t *peak_rss, size_t *current_commit,
                                    size_t *peak_commit, size_t *page_faults);

/* A snapshot of the allocator's memory, summed over all threads (see mi_stats_snapshot). */
typedef struct mi_stats_snapshot_s {
  size_t reserved;        /* bytes of address space mapped from the OS */
  size_t reserved_peak;
  size_t committed;       /* bytes backed by memory: touched and not purged */
  size_t committed_peak;
  size_t in_use;          /* bytes of blocks in use (small/medium/large classes and huge), as
                             of each page's last slow-path event (lags by at most a page per
                             size class and thread) */
  size_t page_bytes;      /* bytes of pages that hold blocks (in use or free) */
  size_t huge_bytes;      /* bytes of huge blocks */
  size_t segments;        /* segments mapped (cached and abandoned included) */
  size_t abandoned;       /* segments of exited threads waiting to be reclaimed */
  size_t threads;         /* threads with a heap */
  size_t purges;          /* madvise calls that gave memory back */
  size_t purge_delay_raises; /* times a purge delay (a thread's, or that of the memory exited
                                threads leave) doubled because memory purged was wanted again
                                soon after */
  size_t mmaps;           /* mappings made (mmap) */
  size_t bins;            /* number of entries in the arrays below */
  size_t bin_block_size[80]; /* block size of each size class */
  size_t bin_in_use[80];     /* blocks in use per size class */
  size_t bin_pages[80];      /* pages per size class */
} mi_stats_snapshot_t;

/* Fill `stats` with a snapshot: cost is proportional to the number of threads, no allocation,
 * no stop of other threads (their counters are read as they are). */
mi_decl_export void mi_stats_snapshot(mi_stats_snapshot_t *stats);

/* ---- Process and thread ----------------------------------------------------------------- */

/* Give memory back: free the calling thread's retired and empty pages and purge what is due;
 * `force` also purges at once, releases cached segments, and takes in the memory of exited
 * threads (collecting what other threads freed there). */
mi_decl_export void mi_collect(bool force);
/* The library version, major*100 + minor*10 + patch. */
mi_decl_export int mi_version(void);
/* Initialise the calling thread's heap now (otherwise done on its first allocation). */
mi_decl_export void mi_thread_init(void);
/* Release the calling thread's heap now, as at thread exit; later allocation re-creates it. */
mi_decl_export void mi_thread_done(void);
/* Reserve `size` bytes of address space as the arena segments are carved from (pre-faulted
 * when `commit`, in explicit large OS pages when `allow_large` and available): 0 on success,
 * ENOMEM when the OS refuses or the arena exists already (it holds one region, which the
 * RESERVE_OS_MEMORY option makes at start-up), EINVAL for size 0. */
mi_decl_export int mi_reserve_os_memory(size_t size, bool commit, bool allow_large);
/* True when `p` points into memory that this allocator reserved from the OS. */
mi_decl_export bool mi_is_in_heap_region(const void *p);
/* Walk `heap` and its pages and check every invariant of the allocator's tables; true when
 * all hold. Cost: proportional to the heap's pages and free blocks. Every thread's part of
 * the heap, except for the main heap (the calling thread's part only); no thread may allocate
 * from or free into the heap meanwhile (mi_heap_visit_blocks). */
mi_decl_export bool mi_heap_check(mi_heap_t *heap);

/* One area of a heap, as mi_heap_visit_blocks reports it: a run of blocks of one size. */
typedef struct mi_heap_area_s {
  void *blocks;           /* the first block */
  size_t reserved;        /* bytes the area may grow to */
  size_t committed;       /* bytes of blocks set up so far */
  size_t used;            /* blocks in use */
  size_t block_size;      /* bytes of each block */
  size_t full_block_size; /* bytes between the starts of two blocks */
  int heap_tag;           /* always 0 */
} mi_heap_area_t;

/* Called by mi_heap_visit_blocks for each area (block NULL), then, if asked, for each block in
 * use in it. Return false to stop the walk. */
typedef bool(mi_block_visit_fun)(const mi_heap_t *heap, const mi_heap_area_t *area, void *block,
                                 size_t block_size, void *arg);

/* Call `visitor` for every area of `heap`, in every thread's part of it (for the main heap:
 * the calling thread's part only), and for every block in use when `visit_all_blocks`.
 * Returns false if the visitor stopped the walk. No thread may allocate from or free into
 * `heap` meanwhile, and the visitor must not delete or destroy a heap; it may allocate and
 * free elsewhere. */
mi_decl_export bool mi_heap_visit_blocks(const mi_heap_t *heap, bool visit_all_blocks,
                                         mi_block_visit_fun *visitor, void *arg);

#ifdef __cplusplus
}
#endif

#endif /* SHARDALLOC_H */
