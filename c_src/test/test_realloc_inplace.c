/* test_realloc_inplace: realloc keeps a block where it is while the new size fits its usable
 * size (and wastes at most half of it), and keeps the contents wherever the block goes: a
 * buffer grown 16 bytes at a time from 16 bytes to 64 KiB, and shrunk back, on the plain and
 * the aligned entry points. */
#define TEST_NAME "test_realloc_inplace"
#include "testutil.h"

#include "shardalloc.h"

static void grow_and_shrink(size_t alignment) {
  size_t size = 16;
  uint8_t *p = alignment == 0 ? mi_malloc(size) : mi_malloc_aligned(size, alignment);
  CHECK(p != NULL);
  p[size - 1] = (uint8_t)size;
  p[0] = 0xA5;
  size_t moves = 0, stays = 0;
  for (; size < (64 << 10); size += 16) {
    size_t usable = mi_usable_size(p);
    size_t next = size + 16;
    uint8_t *q = alignment == 0 ? mi_realloc(p, next) : mi_realloc_aligned(p, next, alignment);
    CHECK(q != NULL);
    if (next <= usable) {
      CHECKF(q == p, "growth to %zu moved a block of %zu usable bytes", next, usable);
      stays++;
    } else {
      moves++;
    }
    CHECKF(q[0] == 0xA5 && q[size - 1] == (uint8_t)size, "contents lost growing to %zu", next);
    q[next - 1] = (uint8_t)next;
    p = q;
  }
  CHECK(stays > moves); /* classes are at most 25% apart: most steps stay */
  for (; size > 16; size -= 16) { /* shrinking: in place down to half the block */
    size_t usable = mi_usable_size(p);
    size_t next = size - 16;
    uint8_t *q = alignment == 0 ? mi_realloc(p, next) : mi_realloc_aligned(p, next, alignment);
    CHECK(q != NULL);
    if (next >= usable / 2) CHECKF(q == p, "shrinking to %zu moved a block of %zu", next, usable);
    CHECKF(q[0] == 0xA5, "contents lost shrinking to %zu", next);
    p = q;
  }
  mi_free(p);
}

int main(void) {
  printf("%s: realloc in place\n", TEST_NAME);
  SECTION("mi_realloc");
  grow_and_shrink(0);
  SECTION("mi_realloc_aligned, alignment 8 and 64");
  grow_and_shrink(8);
  grow_and_shrink(64);
  CHECK(mi_heap_check(mi_heap_get_default()));
  return tu_finish();
}
