/* shardalloc: telling a memory checker which bytes are blocks (opt-in, off by default).
 *
 * valgrind's memcheck and AddressSanitizer only know malloc's blocks; shardalloc carves its
 * blocks out of its own mappings, so without these hooks a use after free or an overflow into
 * a free block goes unseen. Build with one (or both) of
 *   SA_TRACK_VALGRIND  memcheck client requests (<valgrind/memcheck.h>); free of charge when
 *                      the program does not run under valgrind, beyond a few instructions
 *   SA_TRACK_ASAN      ASan's manual poisoning (<sanitizer/asan_interface.h>). The library is
 *                      not instrumented itself: it is linked into a program built with
 *                      -fsanitize=address, whose runtime provides the functions. They are
 *                      referenced weakly, so without that runtime the hooks do nothing.
 * With neither, every hook is empty and the link accessors are plain loads and stores: the
 * code is exactly that of a build without this file.
 *
 * The states of block memory under tracking:
 *   - a block in use is accessible from the pointer handed out to the end of its block: the
 *     usable size, not the size asked for (mi_usable_size promises those bytes, and the size
 *     asked for is not stored). Its contents are undefined unless zeroed. The tool knows it as
 *     a heap block of the usable size (valgrind: leaks, "N bytes inside a block of size M").
 *   - free blocks and never-used page space are no-access, so a read or write there (a use
 *     after free, an overflow past the usable size into the next block) is reported.
 *   - the allocator reads and writes the link word of a free block only through
 *     sa_block_next / sa_block_set_next, which open the word for that one access.
 * An aligned block handed out at an interior address is known to the tool from that address;
 * the padding before it stays no-access. */
#ifndef SHARDALLOC_TRACK_H
#define SHARDALLOC_TRACK_H

#include <stdbool.h>
#include <stddef.h>

#include "types.h"

#define sa_track_inline static inline __attribute__((always_inline))

/* Secure mode (secure.h) stores links encoded with the page's keys and checks them when they
 * are followed; the coders are defined there, after the pointer helpers they need. */
#if SA_SECURE
sa_track_inline block_t *sa_secure_encode(const page_t *page, const block_t *next);
sa_track_inline block_t *sa_secure_next(const page_t *page, const block_t *holder,
                                        const block_t *stored);
#define sa_link_store(page, next) sa_secure_encode(page, next)
#define sa_link_load(page, holder, stored) sa_secure_next(page, holder, stored)
#else
#define sa_link_store(page, next) ((void)(page), (next))
#define sa_link_load(page, holder, stored) ((void)(page), (stored))
#endif

#if defined(SA_TRACK_VALGRIND) || defined(SA_TRACK_ASAN)
#define SA_TRACK 1
#else
#define SA_TRACK 0
#endif

#if defined(SA_TRACK_VALGRIND)
#if !__has_include(<valgrind/memcheck.h>)
#error "SA_TRACK_VALGRIND (feature track-valgrind) needs <valgrind/memcheck.h>: install valgrind"
#endif
#include <valgrind/memcheck.h>
#endif
#if defined(SA_TRACK_ASAN)
#if !__has_include(<sanitizer/asan_interface.h>)
#error "SA_TRACK_ASAN (feature track-asan) needs <sanitizer/asan_interface.h> (gcc or clang)"
#endif
#include <sanitizer/asan_interface.h>
/* Weak: resolved by the program's ASan runtime, NULL in a program without one. */
#pragma weak __asan_poison_memory_region
#pragma weak __asan_unpoison_memory_region
#pragma weak __asan_address_is_poisoned
#define sa_asan_present() (&__asan_poison_memory_region != NULL)
#endif

#if SA_TRACK

/* [p, p+n) no-access: free memory. */
sa_track_inline void sa_track_mem_noaccess(const void *p, size_t n) {
#if defined(SA_TRACK_VALGRIND)
  VALGRIND_MAKE_MEM_NOACCESS(p, n);
#endif
#if defined(SA_TRACK_ASAN)
  if (sa_asan_present()) __asan_poison_memory_region(p, n);
#endif
}

/* [p, p+n) accessible, contents unknown. */
sa_track_inline void sa_track_mem_undefined(const void *p, size_t n) {
#if defined(SA_TRACK_VALGRIND)
  VALGRIND_MAKE_MEM_UNDEFINED(p, n);
#endif
#if defined(SA_TRACK_ASAN)
  if (sa_asan_present()) __asan_unpoison_memory_region(p, n);
#endif
}

/* [p, p+n) accessible and initialised. */
sa_track_inline void sa_track_mem_defined(const void *p, size_t n) {
#if defined(SA_TRACK_VALGRIND)
  VALGRIND_MAKE_MEM_DEFINED(p, n);
#endif
#if defined(SA_TRACK_ASAN)
  if (sa_asan_present()) __asan_unpoison_memory_region(p, n);
#endif
}

/* A block of `size` usable bytes at `p` is handed out; `zero`: its bytes are zero already. */
sa_track_inline void sa_track_malloc(const void *p, size_t size, bool zero) {
#if defined(SA_TRACK_VALGRIND)
  VALGRIND_MALLOCLIKE_BLOCK(p, size, 0, zero);
#endif
#if defined(SA_TRACK_ASAN)
  (void)zero;
  if (sa_asan_present()) __asan_unpoison_memory_region(p, size);
#endif
}

/* The block handed out at `p`, `size` usable bytes from there, is free: no-access. */
sa_track_inline void sa_track_free(const void *p, size_t size) {
#if defined(SA_TRACK_VALGRIND)
  (void)size; /* memcheck knows the size it was told at malloc */
  VALGRIND_FREELIKE_BLOCK(p, 0);
#endif
#if defined(SA_TRACK_ASAN)
  if (sa_asan_present()) __asan_poison_memory_region(p, size);
#endif
}

/* The block at `p` grew or shrank in place from `oldsize` to `newsize` usable bytes. */
sa_track_inline void sa_track_resize(const void *p, size_t oldsize, size_t newsize) {
#if defined(SA_TRACK_VALGRIND)
  VALGRIND_RESIZEINPLACE_BLOCK(p, oldsize, newsize, 0);
#endif
#if defined(SA_TRACK_ASAN)
  if (!sa_asan_present()) return;
  const char *b = (const char *)p;
  if (newsize > oldsize) __asan_unpoison_memory_region(b + oldsize, newsize - oldsize);
  else __asan_poison_memory_region(b + newsize, oldsize - newsize);
#endif
}

/* Memory given back to the OS: a later mapping at that address is not ours, so ASan's shadow
 * must not keep our poison there (valgrind forgets unmapped memory by itself). */
sa_track_inline void sa_track_os_free(const void *p, size_t n) {
#if defined(SA_TRACK_ASAN)
  if (sa_asan_present()) __asan_unpoison_memory_region(p, n);
#endif
  (void)p;
  (void)n;
}

/* Whether the tool sees `p` as no-access (a freed block: the debug double-free check, which
 * must not read the bytes of a block in use, undefined to valgrind). Under valgrind a hit is
 * itself reported as an error, which a double free is. */
sa_track_inline bool sa_track_is_noaccess(const void *p) {
  bool noaccess = false;
#if defined(SA_TRACK_VALGRIND)
  noaccess = noaccess || VALGRIND_CHECK_MEM_IS_ADDRESSABLE(p, 1) != 0;
#endif
#if defined(SA_TRACK_ASAN)
  noaccess = noaccess || (sa_asan_present() && __asan_address_is_poisoned(p));
#endif
  return noaccess;
}

/* The link word of a free block of `page`, opened for the one access and closed again. */
sa_track_inline block_t *sa_block_next(const page_t *page, const block_t *block) {
  sa_track_mem_defined(block, sizeof(block_t));
  block_t *stored = block->next;
  sa_track_mem_noaccess(block, sizeof(block_t));
  return sa_link_load(page, block, stored);
}

sa_track_inline void sa_block_set_next(const page_t *page, block_t *block, block_t *next) {
  sa_track_mem_undefined(block, sizeof(block_t));
  block->next = sa_link_store(page, next);
  sa_track_mem_noaccess(block, sizeof(block_t));
}

#else /* no tracking: nothing, and the link word is a plain field */

#define sa_track_mem_noaccess(p, n) ((void)0)
#define sa_track_mem_undefined(p, n) ((void)0)
#define sa_track_mem_defined(p, n) ((void)0)
#define sa_track_malloc(p, size, zero) ((void)0)
#define sa_track_free(p, size) ((void)0)
#define sa_track_resize(p, oldsize, newsize) ((void)0)
#define sa_track_os_free(p, n) ((void)0)
#define sa_track_is_noaccess(p) false

/* The link word of a free block of `page` (the page's keys in secure mode). */
sa_track_inline block_t *sa_block_next(const page_t *page, const block_t *block) {
  return sa_link_load(page, block, block->next);
}
sa_track_inline void sa_block_set_next(const page_t *page, block_t *block, block_t *next) {
  block->next = sa_link_store(page, next);
}

#endif /* SA_TRACK */

#endif /* SHARDALLOC_TRACK_H */
