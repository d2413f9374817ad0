/* shardalloc: the arena. With the reserve_os_memory option, one large region is reserved at
 * process start (in explicit large OS pages with allow_large_os_pages, pre-faulted with
 * arena_eager_commit), or later by mi_reserve_os_memory when none was, and segments are carved from it before any is mapped on its own. A
 * segment given back to the arena is purged, so it reads as zero when carved again. */
#include <errno.h>
#include <pthread.h>

#include "internal.h"

#define ARENA_SEGMENTS_MAX 4096 /* 128 GiB */
pthread_mutex_t _sa_arena_lock = PTHREAD_MUTEX_INITIALIZER; /* init.c: fork */
static uint8_t *arena_base;
static size_t arena_segments;
static uint64_t arena_used[ARENA_SEGMENTS_MAX / 64];

/* Reserve the arena's one region: 0, or ENOMEM when one exists already or the OS refuses.
 * arena_base is published last (release), so a thread that sees it sees the rest. */
static int arena_reserve(size_t bytes, bool commit, bool large) {
  size_t size = sa_align_up(bytes, SEGMENT_SIZE);
  if (size == 0 || size > ARENA_SEGMENTS_MAX * SEGMENT_SIZE) /* 0: rounding overflowed */
    size = ARENA_SEGMENTS_MAX * SEGMENT_SIZE;
  pthread_mutex_lock(&_sa_arena_lock);
  if (arena_base != NULL) {
    pthread_mutex_unlock(&_sa_arena_lock);
    return ENOMEM;
  }
  bool explicit_large;
  uint8_t *base = _sa_os_reserve(size, SEGMENT_SIZE, large, commit, &explicit_large);
  if (base != NULL) {
    arena_segments = size / SEGMENT_SIZE;
    __atomic_store_n(&arena_base, base, __ATOMIC_RELEASE);
  }
  pthread_mutex_unlock(&_sa_arena_lock);
  if (base == NULL) {
    _sa_error("could not reserve %zu MiB of OS memory", size >> 20);
    return ENOMEM;
  }
  if (large)
    _sa_verbose(explicit_large ? "reservation in explicit large OS pages"
                               : "no explicit large OS pages available: using normal pages");
  _sa_stat_add(SA_STAT_mmaps, 1);
  _sa_stat_add(SA_STAT_reserved, (int64_t)size);
  _sa_verbose("reserved %zu MiB of OS memory (%zu segments)", size >> 20, size / SEGMENT_SIZE);
  return 0;
}

void _sa_arena_init(void) {
  long kib = mi_option_get(mi_option_reserve_os_memory);
  if (kib <= 0) return;
  (void)arena_reserve((size_t)kib * 1024, mi_option_is_enabled(mi_option_arena_eager_commit),
                      mi_option_is_enabled(mi_option_allow_large_os_pages));
}

int mi_reserve_os_memory(size_t size, bool commit, bool allow_large) {
  if (size == 0) return EINVAL;
  return arena_reserve(size, commit, allow_large);
}

segment_t *_sa_arena_alloc_segment(void) {
  if (__atomic_load_n(&arena_base, __ATOMIC_ACQUIRE) == NULL) return NULL;
  segment_t *segment = NULL;
  pthread_mutex_lock(&_sa_arena_lock);
  for (size_t w = 0; w * 64 < arena_segments && segment == NULL; w++) {
    uint64_t free_bits = ~arena_used[w];
    if (w * 64 + 64 > arena_segments) free_bits &= ((uint64_t)1 << (arena_segments % 64)) - 1;
    if (free_bits == 0) continue;
    size_t i = w * 64 + (size_t)__builtin_ctzll(free_bits);
    arena_used[w] |= (uint64_t)1 << (i % 64);
    segment = (segment_t *)(arena_base + i * SEGMENT_SIZE);
  }
  pthread_mutex_unlock(&_sa_arena_lock);
  return segment;
}

bool _sa_arena_free_segment(segment_t *segment) {
  uint8_t *p = (uint8_t *)segment;
  if (__atomic_load_n(&arena_base, __ATOMIC_ACQUIRE) == NULL || p < arena_base || p >= arena_base + arena_segments * SEGMENT_SIZE)
    return false;
  _sa_purge_range(p, SEGMENT_SIZE);
  size_t i = (size_t)(p - arena_base) / SEGMENT_SIZE;
  pthread_mutex_lock(&_sa_arena_lock);
  arena_used[i / 64] &= ~((uint64_t)1 << (i % 64));
  pthread_mutex_unlock(&_sa_arena_lock);
  return true;
}
