/* Helpers for the programs that tests/preload.rs runs with and without LD_PRELOAD.
 *
 * These programs are ordinary C: they call malloc and free and know nothing of shardalloc.
 * Their stdout must be identical in both runs. What differs goes to stderr: whether the
 * blocks they allocated lie in shardalloc's memory, asked through mi_is_in_heap_region when
 * the preloaded library makes that symbol visible (a plain run finds no such symbol). */
#ifndef PROGUTIL_H
#define PROGUTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A failed check ends the program at once, with where and what. */
#define CHECK(cond)                                                                           \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                \
      abort();                                                                                \
    }                                                                                         \
  } while (0)

/* A byte pattern that depends on the block's tag and the position, to catch blocks that
 * overlap or were handed out twice. */
static inline uint8_t pattern_byte(uint64_t tag, size_t i) {
  return (uint8_t)((tag * 0x9E3779B97F4A7C15ull + i * 131) >> 29);
}
static inline void fill(void *p, size_t size, uint64_t tag) {
  uint8_t *b = (uint8_t *)p;
  for (size_t i = 0; i < size; i++) b[i] = pattern_byte(tag, i);
}
static inline bool verify(const void *p, size_t size, uint64_t tag) {
  const uint8_t *b = (const uint8_t *)p;
  for (size_t i = 0; i < size; i++)
    if (b[i] != pattern_byte(tag, i)) return false;
  return true;
}

/* Whether `p` lies in shardalloc's memory: 1 yes, 0 no, -1 no shardalloc in the process. */
typedef bool (*in_heap_fn)(const void *);
static inline int served_by_shardalloc(const void *p) {
  static in_heap_fn in_heap;
  static int looked; /* both set once; a second thread may repeat the look-up harmlessly */
  if (!__atomic_load_n(&looked, __ATOMIC_ACQUIRE)) {
    __atomic_store_n(&in_heap, (in_heap_fn)dlsym(RTLD_DEFAULT, "mi_is_in_heap_region"),
                     __ATOMIC_RELAXED);
    __atomic_store_n(&looked, 1, __ATOMIC_RELEASE);
  }
  in_heap_fn f = __atomic_load_n(&in_heap, __ATOMIC_RELAXED);
  return f == NULL ? -1 : f(p) ? 1 : 0;
}

/* Counts of the blocks asked about, reported on stderr as
 * "served: <label>: <n> of <total> blocks in shardalloc" (or "... no shardalloc"). */
typedef struct served_s {
  long asked, yes;
  bool absent;
} served_t;

/* Thread-safe: several threads may note into one record. */
static inline void served_note(served_t *s, const void *p) {
  int r = served_by_shardalloc(p);
  __atomic_add_fetch(&s->asked, 1, __ATOMIC_RELAXED);
  if (r < 0) __atomic_store_n(&s->absent, true, __ATOMIC_RELAXED);
  if (r > 0) __atomic_add_fetch(&s->yes, 1, __ATOMIC_RELAXED);
}

static inline void served_report(const char *label, const served_t *s) {
  if (s->absent)
    fprintf(stderr, "served: %s: no shardalloc\n", label);
  else
    fprintf(stderr, "served: %s: %ld of %ld blocks in shardalloc\n", label, s->yes, s->asked);
}

#endif /* PROGUTIL_H */
