/* test_secure_clear: what secure mode's clearing of large blocks and its lazy guard pages must
 * keep (secure.c; docs/design.md, "Secure mode").
 *
 *  - A large block handed out again reads as zero (the debug fill in debug builds) wherever its
 *    previous owner wrote, whatever it wrote: a few scattered pages (cleared with memset where
 *    resident, the runs between given back), many scattered pages and most pages (more runs
 *    than are given back one by one: the rest is given back, or cleared with memset), a run
 *    across the 1 MiB that one mincore looks at, every page, nothing. Each case runs three rounds, each owner writing
 *    the pattern again, so the state a clear leaves behind is cleared correctly too.
 *  - Guards stay where a freed large page had them: pages made later over those slices (small
 *    and medium ones) are written in full without a fault, also in a segment of the
 *    reservation given back and taken again; and a large page made there has its own guard
 *    (an overflow out of it faults).
 * The clearing cases run with transparent huge pages as the system has them, then without.
 * Release builds do not clear: there only the guard-free writes are checked. */
#define _GNU_SOURCE /* strsignal */
#define TEST_NAME "test_secure_clear"
#include "testutil.h"

#include <errno.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shardalloc.h"

#define OS_PAGE ((size_t)4096)
#define BLOCK ((size_t)3 << 20) /* 3 MiB: over SECURE_CLEAR_PURGE_MIN, three mincore chunks */

static size_t bytes_not(const unsigned char *p, size_t n, unsigned char v) {
  size_t count = 0;
  for (size_t i = 0; i < n; i++) count += p[i] != v;
  return count;
}

/* ---- What the owner writes ------------------------------------------------------------- */
static void write_few(unsigned char *p, size_t n) { /* 5 runs of written pages */
  p[0] = 0x5A;
  p[5 * OS_PAGE + 17] = 0x5A;
  memset(p + 300 * OS_PAGE, 0x5A, 3 * OS_PAGE); /* in the second MiB */
  p[700 * OS_PAGE + OS_PAGE - 1] = 0x5A;
  p[n - 1] = 0x5A;
}
static void write_many(unsigned char *p, size_t n) { /* a page in three: hundreds of runs */
  for (size_t o = 0; o < n; o += 3 * OS_PAGE) p[o + 8] = 0x5A;
}
static void write_most(unsigned char *p, size_t n) { /* two pages in three: mostly resident */
  for (size_t o = 0; o < n; o += 3 * OS_PAGE) memset(p + o, 0x5A, 2 * OS_PAGE);
}
static void write_across_chunk(unsigned char *p, size_t n) { /* pages 250..261 */
  (void)n;
  memset(p + 250 * OS_PAGE, 0x5A, 12 * OS_PAGE);
}
static void write_all(unsigned char *p, size_t n) { memset(p, 0x5A, n); }
static void write_none(unsigned char *p, size_t n) {
  (void)p;
  (void)n;
}

static void reuse_cleared(const char *what, void (*write)(unsigned char *, size_t)) {
  unsigned char expected = SA_DEBUG > 0 ? 0xD0 : 0;
  mi_collect(true); /* from purged memory: nothing resident but what the case writes */
  unsigned char *p = mi_malloc(BLOCK);
  CHECK(p != NULL);
  if (p == NULL) return;
  write(p, BLOCK);
  for (int round = 0; round < 3; round++) {
    mi_free(p);
    unsigned char *q = mi_malloc(BLOCK);
    CHECK(q != NULL);
    if (q == NULL) return;
    /* the freed block again (its retired page): otherwise the case would test nothing */
    CHECKF(q == p, "%s: another block was handed out (%p, then %p)", what, (void *)p, (void *)q);
    size_t other = bytes_not(q, BLOCK, expected);
    if (SA_SECURE || SA_DEBUG > 0)
      CHECKF(other == 0, "%s, round %d: %zu bytes not 0x%02x in the block handed out again",
             what, round, other, expected);
    write(q, BLOCK);
    p = q;
  }
  mi_free(p);
}

/* A large block grown in place by realloc over the slices of a freed neighbour whose owner
 * wrote them: in secure mode the growth must read as zero (debug builds do not fill it). */
static void regrowth_cleared(const char *what, void (*write)(unsigned char *, size_t)) {
  size_t size = (size_t)1 << 20, grown = BLOCK;
  mi_collect(true);
  unsigned char *a = mi_malloc(size);
  unsigned char *b = mi_malloc(grown);
  CHECK(a != NULL && b != NULL);
  if (a == NULL || b == NULL) return;
  write(b, grown);
  mi_free(b);
  mi_collect(false); /* b's page goes back to the segment, not purged yet */
  unsigned char *g = mi_realloc(a, grown);
  CHECK(g != NULL);
  if (g == NULL) return;
  if (g == a && b > a && b < a + grown) { /* grown in place over b: what the case is about */
    size_t other = bytes_not(g + size, grown - size, 0);
    if (SA_SECURE)
      CHECKF(other == 0, "%s: %zu bytes not zero in the growth of a block grown in place", what,
             other);
  } else {
    printf("  realloc did not grow in place over the freed block (%s): nothing to check\n",
           what);
  }
  mi_free(g);
}

/* ---- Guards, in children (a fault ends the child) ------------------------------------- */
/* Large pages of several sizes made and freed, then given back to their segment (collect);
 * then small and medium pages over the same slices, every byte written. With `pin` a block
 * keeps the segment; without, collect gives the segment back (to the arena, if reserved) and
 * the pages are made in the next one. */
static void pages_over_guards(bool pin_segment) {
  static const size_t large[] = {(size_t)1 << 20, (size_t)192 << 10, (size_t)2 << 20};
  void *pin = pin_segment ? mi_malloc(64) : NULL;
  for (size_t r = 0; r < 4; r++) {
    for (size_t i = 0; i < sizeof large / sizeof large[0]; i++) {
      void *p = mi_malloc(large[i]);
      memset(p, 1, large[i]);
      mi_free(p);
    }
    mi_collect(true);
    enum { N = 600 };
    static void *blocks[N];
    for (int i = 0; i < N; i++) {
      size_t size = i % 3 == 0 ? ((size_t)16 << 10) : i % 3 == 1 ? 4096 : 256;
      blocks[i] = mi_malloc(size);
      memset(blocks[i], 2, size);
    }
    for (int i = 0; i < N; i++) mi_free(blocks[i]);
    mi_collect(true);
  }
  mi_free(pin);
}
static void pages_over_old_guards(void) { pages_over_guards(true); }
/* The segments come from a reservation: one given back is purged whole (its header too) and
 * handed out again as fresh; the guards its pages left must not outlive it. */
static void reserve(void) {
  if (mi_reserve_os_memory((size_t)256 << 20, false, false) != 0) _exit(3);
}
static void arena_segment_again(void) { pages_over_guards(false); }

static void *volatile sink;
static void *launder(void *p) { /* hides the block's size from the compiler */
  sink = p;
  return sink;
}

/* A 2 MiB page freed and given back, then a smaller large page (likely at its place): a
 * linear overflow out of the new page must meet its guard. */
static void overflow_new_page(void) {
  void *big = mi_malloc((size_t)2 << 20);
  memset(big, 1, (size_t)2 << 20);
  mi_free(big);
  mi_collect(true);
  size_t size = (size_t)640 << 10;
  char *p = launder(mi_malloc(size));
  memset(p, 0x41, size + ((size_t)128 << 10));
}

static int run(void (*before)(void), void (*fn)(void), char *out, size_t out_size) {
  int status = 0;
  if (!tu_run_child(before, fn, &status, out, out_size)) return -1;
  return status;
}

int main(void) {
  printf("%s: SA_DEBUG=%d SA_SECURE=%d\n", TEST_NAME, SA_DEBUG, SA_SECURE);
  /* twice: with transparent huge pages as the system has them (a touch may make 2 MiB
   * resident: the block looks densely written), then without (page by page: the runs) */
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 1 && prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0) break;
    reuse_cleared("a few scattered pages written", write_few);
    reuse_cleared("every third page written", write_many);
    reuse_cleared("two pages in three written", write_most);
    reuse_cleared("pages across a mincore chunk written", write_across_chunk);
    reuse_cleared("every page written", write_all);
    reuse_cleared("nothing written", write_none);
    regrowth_cleared("a few scattered pages written", write_few);
    regrowth_cleared("every page written", write_all);
  }

  char out[2048];
  int status = run(NULL, pages_over_old_guards, out, sizeof out);
  printf("  pages over old guards: %s\n", tu_describe_status(status));
  CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
         "pages made where large pages had their guards: %s: %s", tu_describe_status(status),
         out);
  status = run(reserve, arena_segment_again, out, sizeof out);
  printf("  a reserved segment given back and taken again: %s\n", tu_describe_status(status));
  CHECKF(WIFEXITED(status) && WEXITSTATUS(status) == 0,
         "pages of a reserved segment taken again: %s: %s", tu_describe_status(status), out);
  if (SA_SECURE) {
    status = run(NULL, overflow_new_page, out, sizeof out);
    printf("  overflow out of a page made over a freed one: %s\n", tu_describe_status(status));
    CHECKF((WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV) ||
               strstr(out, "AddressSanitizer: SEGV") != NULL,
           "an overflow out of a large page made over a freed one did not fault: %s: %s",
           tu_describe_status(status), out);
  }
  return tu_finish();
}
