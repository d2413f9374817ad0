/* shardalloc: the segment map (internal.h): the segment starting in each SEGMENT_SIZE unit of
 * the address space, which tells every free whether an address is ours.
 *
 * Plus one bit per unit covered by a segment at all: a huge segment spans several units, and
 * only its first has a map entry. Written on segment creation and release only. */
#include "segment.h"

segment_map_t _sa_segment_map;
static _Atomic(uint64_t) segment_covered[SEGMENT_MAP_UNITS / 64];

static void covered_set(uintptr_t unit, bool on) {
  uint64_t bit = (uint64_t)1 << (unit % 64);
  if (on) atomic_fetch_or_explicit(&segment_covered[unit / 64], bit, memory_order_release);
  else atomic_fetch_and_explicit(&segment_covered[unit / 64], ~bit, memory_order_release);
}

static bool covered_get(uintptr_t unit) {
  if (unit >= SEGMENT_MAP_UNITS) return false;
  return (atomic_load_explicit(&segment_covered[unit / 64], memory_order_acquire) >> (unit % 64)) & 1;
}

bool _sa_segment_map_covers(const void *p, size_t size) {
  return ((uintptr_t)p + size - 1) >> SEGMENT_SHIFT < SEGMENT_MAP_UNITS;
}

/* Enter (or remove) a segment; false if it lies beyond the mapped address range. */
bool _sa_segment_map_set(segment_t *segment, bool on) {
  if (!_sa_segment_map_covers(segment, segment->segment_size)) return false;
  uintptr_t start = (uintptr_t)segment >> SEGMENT_SHIFT;
  uintptr_t end = ((uintptr_t)segment + segment->segment_size - 1) >> SEGMENT_SHIFT;
  for (uintptr_t unit = start; unit <= end; unit++) covered_set(unit, on);
  uintptr_t offset = on ? (uintptr_t)segment - (uintptr_t)SA_SEGMENT_NONE : 0;
  atomic_store_explicit(&_sa_segment_map.entry[start], offset, memory_order_release);
  return true;
}

/* The segment holding any address `p`, interior pointers deep into huge blocks included;
 * NULL if `p` is not in memory of ours. */
segment_t *_sa_segment_of_any(const void *p) {
  uintptr_t unit = (uintptr_t)p >> SEGMENT_SHIFT;
  if (!covered_get(unit)) return NULL;
  uintptr_t offset;
  while ((offset = atomic_load_explicit(&_sa_segment_map.entry[unit], memory_order_acquire)) == 0)
    unit--; /* bounded by the huge block's size */
  segment_t *segment = (segment_t *)((uintptr_t)SA_SEGMENT_NONE + offset);
  /* a huge segment need not fill its last unit: the rest may be anyone's mapping */
  if ((uintptr_t)p >= (uintptr_t)segment + segment->segment_size) return NULL;
  return segment;
}
