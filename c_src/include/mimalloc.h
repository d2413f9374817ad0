/* shardalloc: compatibility header for code written against mimalloc's API.
 *
 * `#include <mimalloc.h>` and link with -lshardalloc: the functions are shardalloc's
 * (shardalloc.h declares them, each with its contract). This header adds what mimalloc's
 * users expect besides functions: its attribute macros and its typed allocation helpers.
 * The mimalloc functions shardalloc does not provide are listed, with the reason for each,
 * at the end of docs/design.md. MI_MALLOC_VERSION is deliberately not defined: version
 * checks written for mimalloc's releases do not apply to shardalloc (see SHARDALLOC_VERSION). */
#ifndef SHARDALLOC_MIMALLOC_H
#define SHARDALLOC_MIMALLOC_H

#include "shardalloc.h"

/* Attribute macros that mimalloc's users sometimes repeat in their own declarations. */
#ifndef mi_attr_noexcept
#define mi_attr_noexcept
#endif
#ifndef mi_decl_restrict
#define mi_decl_restrict
#endif
#ifndef mi_cdecl
#define mi_cdecl
#endif

/* Largest small block in machine words. */
#define MI_SMALL_WSIZE_MAX (MI_SMALL_SIZE_MAX / sizeof(void *))

/* Typed allocation: `T *p = mi_malloc_tp(T);` and so on, each a cast around the function. */
#define mi_malloc_tp(tp) ((tp *)mi_malloc(sizeof(tp)))
#define mi_zalloc_tp(tp) ((tp *)mi_zalloc(sizeof(tp)))
#define mi_calloc_tp(tp, n) ((tp *)mi_calloc(n, sizeof(tp)))
#define mi_mallocn_tp(tp, n) ((tp *)mi_mallocn(n, sizeof(tp)))
#define mi_reallocn_tp(p, tp, n) ((tp *)mi_reallocn(p, n, sizeof(tp)))
#define mi_recalloc_tp(p, tp, n) ((tp *)mi_recalloc(p, n, sizeof(tp)))
#define mi_heap_malloc_tp(hp, tp) ((tp *)mi_heap_malloc(hp, sizeof(tp)))
#define mi_heap_zalloc_tp(hp, tp) ((tp *)mi_heap_zalloc(hp, sizeof(tp)))
#define mi_heap_calloc_tp(hp, tp, n) ((tp *)mi_heap_calloc(hp, n, sizeof(tp)))
#define mi_heap_mallocn_tp(hp, tp, n) ((tp *)mi_heap_mallocn(hp, n, sizeof(tp)))
#define mi_heap_reallocn_tp(hp, p, tp, n) ((tp *)mi_heap_reallocn(hp, p, n, sizeof(tp)))
#define mi_heap_recalloc_tp(hp, p, tp, n) ((tp *)mi_heap_recalloc(hp, p, n, sizeof(tp)))

#endif /* SHARDALLOC_MIMALLOC_H */
