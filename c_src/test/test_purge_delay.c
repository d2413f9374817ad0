/* test_purge_delay: a thread's purge delay grows when memory it purged is wanted again soon.
 *
 * With the purge_delay option at 150 ms: a 4 MiB block is freed (its page given back to the
 * segment by mi_collect), its slices fall due and are purged (runs of 2 MiB and more wait 4
 * times the option, 600 ms), and a 4 MiB block is allocated again at once, on the same slices. That is memory purged too early, and the thread's delay
 * doubles: `purge_delay_raises` counts it. Memory purged on demand (mi_collect(true)) and
 * taken again raises nothing. A small block held throughout keeps the segment alive, so the
 * large pages are carved from the same place each time.
 *
 * Then the bound of the pending budget: with a delay that never comes, 512 MiB of large blocks
 * freed in a row leave at most about 128 MiB pending, and no single free purges more than
 * 16 MiB of it.
 *
 * Time enters only as a lower bound: the test sleeps past the delay so that the slices are
 * due; the reuse then has to follow the purge within twice the delay (1.2 s), which a
 * descheduled thread would have to miss by most of a second. */
#define TEST_NAME "test_purge_delay"
#include "testutil.h"

#include <time.h>

#include "shardalloc.h"

#define MiB ((size_t)1 << 20)

static size_t raises(void) {
  mi_stats_snapshot_t s;
  mi_stats_snapshot(&s);
  return s.purge_delay_raises;
}

static void *big_block(unsigned char fill) {
  unsigned char *p = mi_malloc(4 * MiB);
  CHECK(p != NULL);
  if (p != NULL) memset(p, fill, 4 * MiB);
  return p;
}

int main(void) {
  mi_option_set(mi_option_purge_delay, 150);
  void *anchor = mi_malloc(16);
  CHECK(anchor != NULL);

  SECTION("memory purged on demand and taken again raises nothing");
  {
    size_t before = raises();
    mi_free(big_block(1));
    mi_collect(true); /* the page back to its segment, and every free slice purged now */
    void *p = big_block(2);
    CHECKF(raises() == before, "the delay was raised %zu times", raises() - before);
    mi_free(p);
  }

  SECTION("memory purged by its delay and taken again soon raises the delay");
  {
    mi_collect(false); /* the page back to its segment: its slices pending */
    size_t before = raises();
    tu_sleep_ms(700);     /* past the delay of a 4 MiB run: due (the housekeeper purges them) */
    mi_collect(false); /* purge what is due, should the housekeeper be off */
    void *p = big_block(3);
    CHECKF(raises() == before + 1, "the delay was raised %zu times, expected once",
           raises() - before);
    mi_free(p);
  }

  SECTION("a burst of frees purges as it goes, at most 16 MiB inside one free");
  {
    mi_option_set(mi_option_purge_delay, 100000); /* only the pending budget purges */
    enum { BLOCKS = 128 };                        /* 512 MiB in 4 MiB blocks */
    void *blocks[BLOCKS];
    for (int i = 0; i < BLOCKS; i++) blocks[i] = big_block(4);
    /* the first block of each 32 MiB segment stays, so that no segment empties and goes
     * back whole (munmap, not a purge) */
    bool kept[BLOCKS];
    for (int i = 0; i < BLOCKS; i++)
      kept[i] = i == 0 || (uintptr_t)blocks[i] >> 25 != (uintptr_t)blocks[i - 1] >> 25;
    size_t most = 0; /* the most committed memory one free gave back */
    for (int i = 0; i < BLOCKS; i++) {
      if (kept[i]) continue;
      mi_stats_snapshot_t before, after;
      mi_stats_snapshot(&before);
      mi_free(blocks[i]);
      mi_stats_snapshot(&after);
      if (before.committed > after.committed && before.committed - after.committed > most)
        most = before.committed - after.committed;
    }
    mi_stats_snapshot_t s;
    mi_stats_snapshot(&s);
    printf("  after the burst: %zu MiB committed; one free purged at most %zu MiB\n",
           s.committed >> 20, most >> 20);
    CHECKF(most > 0, "no free purged anything");
    CHECKF(most <= 16 * MiB, "one free purged %zu MiB", most >> 20);
    /* 128 MiB pending, 16 MiB of retired pages, the anchor's page and one block's slack */
    size_t kept_bytes = 0;
    for (int i = 0; i < BLOCKS; i++) kept_bytes += kept[i] ? 4 * MiB : 0;
    /* 128 MiB pending, 16 MiB of retired pages, the kept blocks, the anchor's page */
    CHECKF(s.committed <= 146 * MiB + kept_bytes, "%zu MiB committed after the burst (%zu kept)",
           s.committed >> 20, kept_bytes >> 20);
    for (int i = 0; i < BLOCKS; i++)
      if (kept[i]) mi_free(blocks[i]);
  }

  mi_free(anchor);
  return tu_finish();
}
