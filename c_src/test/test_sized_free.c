/* test_sized_free: mi_free_size_aligned, whose small sizes take the sized free (the block's
 * page named by its address, no look-up).
 *
 *   every build  blocks of every small size and alignment, fresh, grown and shrunk by realloc,
 *                freed on their own thread and on another, all come back: the heap checks
 *                out and no block stays counted in use;
 *   debug        a size that does not match the block (larger than the block, or small for a
 *                block of a medium page) aborts with a message, in a forked child.      */
#define _GNU_SOURCE /* strcasestr */
#define TEST_NAME "test_sized_free"
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shardalloc.h"

#ifndef SA_DEBUG
#define SA_DEBUG 0
#endif

#define SIZED_MAX 4096
#define ROUND 256

/* ---- Valid use ------------------------------------------------------------------------- */
typedef struct {
  void *p;
  size_t size;
  size_t align;
} sized_block_t;

static sized_block_t blocks[ROUND];

static void fill_round(tu_rng_t *rng) {
  for (int i = 0; i < ROUND; i++) {
    size_t align = (size_t)1 << tu_below(rng, 13); /* 1 .. 4 KiB */
    size_t size = 1 + tu_below(rng, SIZED_MAX + 1024); /* both sides of the sized limit */
    void *p = mi_malloc_aligned(size, align);
    CHECK(p != NULL && tu_is_aligned(p, align));
    if (i % 3 == 0) { /* grown or shrunk: the size to free with is the last one asked for */
      size_t resized = 1 + tu_below(rng, SIZED_MAX + 1024);
      tu_fill(p, size, (uint64_t)i);
      void *q = mi_realloc_aligned(p, resized, align);
      CHECK(q != NULL && tu_verify(q, size < resized ? size : resized, (uint64_t)i) == (size < resized ? size : resized));
      p = q;
      size = resized;
    }
    tu_fill(p, size, (uint64_t)i);
    blocks[i] = (sized_block_t){p, size, align};
  }
}

static void free_round(void) {
  for (int i = 0; i < ROUND; i++) {
    CHECK(tu_verify(blocks[i].p, blocks[i].size, (uint64_t)i) == blocks[i].size);
    mi_free_size_aligned(blocks[i].p, blocks[i].size, blocks[i].align);
  }
}

static void *free_round_thread(void *arg) {
  (void)arg;
  free_round();
  return NULL;
}

static void valid_use(void) {
  tu_rng_t rng = {42};
  size_t before = tu_in_use_blocks(true);
  for (int r = 0; r < (quick() ? 8 : 64); r++) {
    fill_round(&rng);
    if (r % 2 == 0) {
      free_round();
    } else { /* cross-thread: the sized free's generic path */
      pthread_t t;
      CHECK(pthread_create(&t, NULL, free_round_thread, NULL) == 0);
      pthread_join(t, NULL);
    }
  }
  mi_free_size_aligned(NULL, 16, 8); /* like free(NULL) */
  mi_free_size(NULL, 0);
  CHECK(mi_heap_check(mi_heap_get_default()));
  /* blocks freed by the other threads are collected as the pages are used again */
  for (int i = 0; i < ROUND; i++) mi_free(mi_malloc(64));
  mi_collect(true);
  CHECKF(tu_in_use_blocks(true) == before, "%zu blocks in use, %zu before", tu_in_use_blocks(true), before);
  CHECK(mi_heap_check(mi_heap_get_default()));
}

/* ---- Misuse (debug builds): children ---------------------------------------------------- */
static void *volatile sink;

static void size_too_large(void) {
  void *p = mi_malloc(64);
  sink = p;
  mi_free_size_aligned(sink, 200, 8);
}

/* 20 KiB blocks share a medium page of 8 slices: most of them start past the page's first
 * slice, whose descriptor a small-size free would take for theirs */
static void medium_block_called_small(void) {
  void *p[16];
  for (int i = 0; i < 16; i++) p[i] = mi_malloc(20 << 10);
  for (int i = 0; i < 16; i++) {
    sink = p[i];
    mi_free_size_aligned(sink, 16, 8);
  }
}

static void expect_abort(const char *what, void (*fn)(void)) {
  int status = 0;
  char out[1024];
  CHECKF(tu_run_child(NULL, fn, &status, out, sizeof out), "%s: could not fork", what);
  printf("  - %-32s said: \"%.*s\"\n", what, (int)strcspn(out, "\n"), out);
  CHECKF(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT, "%s: expected an abort: %s", what,
         out);
  CHECKF(strcasestr(out, "does not match") != NULL, "%s: no message about the size: %s", what,
         out);
}

int main(void) {
  printf("%s: sized free (SA_DEBUG=%d)\n", TEST_NAME, SA_DEBUG);
  SECTION("blocks freed with their size all come back");
  valid_use();
  if (SA_DEBUG > 0) {
    SECTION("a size that does not match the block aborts (debug)");
    expect_abort("size larger than the block", size_too_large);
    expect_abort("medium block freed as small", medium_block_called_small);
  }
  return tu_finish();
}
