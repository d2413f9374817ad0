/* test_purge_race: another thread's purge never takes memory back from under its owner.
 *
 * A purge of a live thread's segment by another thread (the housekeeper, or mi_collect(true)
 * in any thread) gives each run back with the segment's purge lock released, so that the
 * owner's frees and mallocs do not wait for the system call; the run is marked as being
 * purged, and an owner that wants slices of it waits for that one call (purge.c). Here one
 * thread allocates large blocks (each a page of its own, carved from slices that were just
 * freed and are pending purge), writes a word in every 4 KiB of each and reads them all back,
 * while a second thread purges everything pending, over and over. A block whose slices were
 * given back after the owner had taken them would read zeros. The run passes with any
 * interleaving; the wait removed, it failed every time, in 150 rounds as in 800 (2 cores). */
#define TEST_NAME "test_purge_race"
#include "testutil.h"

#include <pthread.h>

#define KiB ((size_t)1 << 10)
#define MiB ((size_t)1 << 20)
enum { BLOCKS = 24, PAGE = 4096 };

static atomic_bool owner_done;

static void *purger(void *arg) {
  (void)arg;
  void *own = mi_malloc(16); /* a thread with no heap yet has nothing to collect with */
  CHECK(own != NULL);
  long purges = 0;
  while (!atomic_load(&owner_done)) {
    mi_collect(true); /* every pending slice of every thread's segments, now */
    purges++;
  }
  mi_free(own);
  return (void *)purges;
}

static void stamp(unsigned char *p, size_t size, uint64_t key) {
  for (size_t off = 0; off < size; off += PAGE) memcpy(p + off, &key, sizeof key);
}

static size_t zapped(const unsigned char *p, size_t size, uint64_t key) {
  size_t bad = 0;
  for (size_t off = 0; off < size; off += PAGE) {
    uint64_t got;
    memcpy(&got, p + off, sizeof got);
    bad += got != key;
  }
  return bad;
}

int main(void) {
  mi_option_set(mi_option_purge_delay, 1);
  const long rounds = quick() ? 150 : 800;
  tu_rng_t rng = {0x5eed};
  pthread_t thread;
  CHECK(pthread_create(&thread, NULL, purger, NULL) == 0);

  SECTION("%ld rounds of %d large blocks written and read back while another thread purges",
          rounds, BLOCKS);
  size_t bad_blocks = 0;
  for (long round = 0; round < rounds; round++) {
    unsigned char *blocks[BLOCKS];
    size_t sizes[BLOCKS];
    for (int i = 0; i < BLOCKS; i++) {
      sizes[i] = 256 * KiB + tu_below(&rng, 4 * MiB - 256 * KiB);
      blocks[i] = mi_malloc(sizes[i]);
      CHECK(blocks[i] != NULL);
      if (blocks[i] != NULL) stamp(blocks[i], sizes[i], (uint64_t)round * BLOCKS + (uint64_t)i + 1);
    }
    for (int i = 0; i < BLOCKS; i++) {
      if (blocks[i] == NULL) continue;
      size_t bad = zapped(blocks[i], sizes[i], (uint64_t)round * BLOCKS + (uint64_t)i + 1);
      if (bad != 0 && bad_blocks++ < 5)
        CHECKF(bad == 0, "round %ld: %zu of the %zu KiB block's 4 KiB pages lost their data",
               round, bad, sizes[i] / KiB);
      mi_free(blocks[i]);
    }
  }
  CHECKF(bad_blocks == 0, "%zu blocks lost data", bad_blocks);
  atomic_store(&owner_done, true);
  void *purges = NULL;
  pthread_join(thread, &purges);
  printf("  the other thread purged %ld times\n", (long)purges);
  CHECK((long)purges > 0);
  return tu_finish();
}
