/* test_oom: when the OS refuses memory, what the allocator keeps for reuse goes back and the
 * request is tried again, so memory freed just before serves the next request at once.
 *
 * Under an address-space limit (RLIMIT_AS) of the current size plus 1 GiB: allocate a 900 MiB
 * block, free it, then allocate 1 MiB blocks up to 512 MiB. The freed block sits in the
 * huge-block cache for the purge delay (set to 10 s here, so that the cache surely still holds
 * it): without the release-and-retry the 1 MiB blocks fail after about 60. Then the same with a
 * second huge block of another size, and a malloc beyond every limit, which must fail with
 * ENOMEM and leave the allocator working. Nothing here depends on timing.
 *
 * Skipped under sanitizers (their shadow memory needs far more address space than the limit). */
#define TEST_NAME "test_oom"
#include "testutil.h"

#include <errno.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "shardalloc.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
int main(void) {
  printf("%s: skipped under a sanitizer\n", TEST_NAME);
  return tu_finish();
}
#else

#define MiB ((size_t)1 << 20)

/* The process's current virtual size, from /proc/self/status (VmSize, in kB). */
static size_t vm_size(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL) return 0;
  char line[256];
  size_t kb = 0;
  while (fgets(line, sizeof line, f) != NULL)
    if (sscanf(line, "VmSize: %zu kB", &kb) == 1) break;
  fclose(f);
  return kb * 1024;
}

/* Allocate blocks of `size` until `total` bytes or the first failure; returns how many,
 * freeing them all again. */
static size_t fill(size_t size, size_t total) {
  static void *blocks[4096];
  size_t n = 0;
  while (n < total / size && n < 4096) {
    void *p = mi_malloc(size);
    if (p == NULL) break;
    ((volatile char *)p)[0] = 1;
    blocks[n++] = p;
  }
  for (size_t i = 0; i < n; i++) mi_free(blocks[i]);
  return n;
}

int main(void) {
  printf("%s: freed memory serves the next request under an address-space limit\n", TEST_NAME);
  mi_option_set(mi_option_purge_delay, 10000); /* the caches keep what is freed */
  void *warm = mi_malloc(64); /* initialise before measuring the size */
  mi_free(warm);

  struct rlimit limit = {vm_size() + 1024 * MiB, RLIM_INFINITY};
  CHECK(limit.rlim_cur > 1024 * MiB);
  CHECK(setrlimit(RLIMIT_AS, &limit) == 0);
  /* qemu-user, for one, does not enforce the limit on its guest: then there is nothing here to
   * test, and the test says so */
  void *probe = mmap(NULL, 2048 * MiB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (probe != MAP_FAILED) {
    munmap(probe, 2048 * MiB);
    printf("%s: skipped: the address-space limit is not enforced here\n", TEST_NAME);
    return tu_finish();
  }

  SECTION("900 MiB block freed, then 1 MiB blocks");
  void *big = mi_malloc(900 * MiB);
  CHECK(big != NULL);
  mi_free(big);
  size_t n = fill(MiB, 512 * MiB);
  CHECKF(n == 512, "only %zu of 512 blocks of 1 MiB after freeing 900 MiB", n);

  SECTION("700 MiB block freed, then a 800 MiB block");
  void *a = mi_malloc(700 * MiB);
  CHECK(a != NULL);
  mi_free(a);
  void *b = mi_malloc(800 * MiB);
  CHECK(b != NULL);
  mi_free(b);

  SECTION("beyond the limit: NULL with ENOMEM, and the allocator still works");
  errno = 0;
  void *too_big = mi_malloc(2048 * MiB);
  CHECK(too_big == NULL && errno == ENOMEM);
  n = fill(MiB, 256 * MiB);
  CHECKF(n == 256, "only %zu of 256 blocks of 1 MiB after a failed request", n);
  n = fill(64, 64 * 4096);
  CHECK(n == 4096);
  return tu_finish();
}
#endif
