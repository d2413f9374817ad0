/* test_misuse: pointers the allocator did not hand out, and double frees, get a defined answer.
 *
 *   release (SA_DEBUG=0)  free ignores a pointer that is not ours, realloc returns NULL with
 *                         errno EINVAL, the usable size is 0; a second free of a large or
 *                         huge block (and a cross-thread double free of a small one) is
 *                         ignored. With SHOW_ERRORS each prints one line naming the call and
 *                         the address. A double free of a small block on its owner thread is
 *                         not caught there, but the allocator must not hang or crash on it.
 *   debug (SA_DEBUG>=1)   every case, interior pointers and small double frees included,
 *                         aborts with a message naming the error.
 *
 * Each case runs in a forked child whose stderr is captured through a pipe. A child that has
 * not finished after a generous alarm is killed: that is a hang, and the case fails (the
 * passing case never depends on the alarm). */
#define _GNU_SOURCE /* strcasestr, strsignal */
#define TEST_NAME "test_misuse"
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shardalloc.h"

/* Builds that abort on misuse: debug and secure (test_secure_misuse.c has secure's own cases). */
#define DEBUG_BUILD (SA_DEBUG > 0 || SA_SECURE)

#define LARGE_SIZE ((size_t)1 << 20)
#define HUGE_SIZE ((size_t)64 << 20)

static int global_word[16];

/* Keep the compiler from seeing through the misuse (it may warn, or drop a "dead" free). */
static void *volatile sink;
static void *launder(void *p) {
  sink = p;
  return sink;
}

/* ---- Children: each misuses the allocator once (or twice), then does valid work --------- */

/* Valid work after the misuse: the allocator must still serve the thread. */
static void keep_working(size_t size) {
  void *blocks[64];
  for (int round = 0; round < 4; round++) {
    for (int i = 0; i < 64; i++) blocks[i] = mi_malloc(size);
    for (int i = 0; i < 64; i++) mi_free(blocks[i]);
  }
}

static void *free_in_thread(void *p) {
  mi_free(p);
  return NULL;
}
/* Runs fn(arg) on a new thread and waits for it. */
static void on_other_thread(void *(*fn)(void *), void *arg) {
  pthread_t t;
  if (pthread_create(&t, NULL, fn, arg) != 0) _exit(3);
  pthread_join(t, NULL);
}
static void free_on_other_thread(void *p) { on_other_thread(free_in_thread, p); }

static void double_free_same_thread(size_t size) {
  void *keep = mi_malloc(size); /* the page stays in use */
  void *p = mi_malloc(size);
  mi_free(p);
  mi_free(launder(p));
  mi_free(keep);
  keep_working(size);
}
static void double_free_small(void) { double_free_same_thread(32); }
static void double_free_medium(void) { double_free_same_thread(20 << 10); }
static void double_free_large(void) { double_free_same_thread(LARGE_SIZE); }

static void double_free_lone_large(void) { /* the page of the block goes away in between */
  void *keep = mi_malloc(64);                 /* (not its segment) */
  void *p = mi_malloc(LARGE_SIZE);
  mi_free(p);
  mi_collect(true); /* the retired page goes back to its segment */
  mi_free(launder(p));
  keep_working(LARGE_SIZE);
  mi_free(keep);
}

static void double_free_huge(void) { /* the freed block waits in the huge-block cache */
  void *p = mi_malloc(HUGE_SIZE);
  mi_free(p);
  mi_free(launder(p));
  void *q = mi_malloc(HUGE_SIZE); /* used to spin for ever in the looped cache list */
  void *r = mi_malloc(HUGE_SIZE);
  mi_free(q);
  mi_free(r);
}

/* Both frees on other threads. */
static void double_free_cross(size_t size) {
  void *keep = mi_malloc(size);
  void *p = mi_malloc(size);
  free_on_other_thread(p);
  free_on_other_thread(launder(p));
  keep_working(size);
  mi_free(keep);
}
static void double_free_cross_small(void) { double_free_cross(64); }
static void double_free_cross_large(void) { double_free_cross(LARGE_SIZE); }
static void double_free_cross_huge(void) { double_free_cross(HUGE_SIZE); }

/* Sized frees on another thread (gathered per page, src/remote.c): the same block twice in a
 * row, and twice with another block between (a loop in the gathered chain). */
static void *sized_double_free_thread(void *arg) {
  void **b = arg;
  mi_free_size_aligned(b[0], 64, 8);
  mi_free_size_aligned(launder(b[b[2] != NULL ? 1 : 0]), 64, 8);
  if (b[2] != NULL) mi_free_size_aligned(launder(b[0]), 64, 8);
  mi_collect(false); /* hand the gathered frees over */
  return NULL;
}
static void double_free_sized_cross(bool between) {
  void *keep = mi_malloc(64);
  void *b[3] = {mi_malloc(64), mi_malloc(64), between ? keep : NULL};
  if (!between) mi_free(b[1]);
  on_other_thread(sized_double_free_thread, b);
  keep_working(64);
}
static void double_free_sized_twice(void) { double_free_sized_cross(false); }
static void double_free_sized_between(void) { double_free_sized_cross(true); }

/* First free on another thread, second on the owner. */
static void double_free_cross_then_owner(size_t size) {
  void *keep = mi_malloc(size);
  void *p = mi_malloc(size);
  free_on_other_thread(p);
  mi_free(launder(p));
  keep_working(size);
  mi_free(keep);
}
static void double_free_cross_owner_large(void) { double_free_cross_then_owner(LARGE_SIZE); }
static void double_free_cross_owner_huge(void) { double_free_cross_then_owner(HUGE_SIZE); }

/* Pointers that are not ours. */
/* A block of a destroyed heap freed afterwards: its page is kept for the thread's next heap
 * (src/spare.c), marked not in use, so the free is reported on any thread. */
static void free_after_destroy(bool cross) {
  mi_heap_t *h = mi_heap_new();
  void *p = mi_heap_malloc(h, 64);
  mi_heap_destroy(h);
  if (cross) free_on_other_thread(launder(p));
  else mi_free(launder(p));
  mi_heap_t *g = mi_heap_new();
  for (int i = 0; i < 100; i++) sink = mi_heap_malloc(g, 64);
  mi_heap_destroy(g);
}
static void free_after_destroy_owner(void) { free_after_destroy(false); }
static void free_after_destroy_cross(void) { free_after_destroy(true); }

static void *wild_pointer(void) { return (void *)(uintptr_t)0x3990080; }
static void *stack_pointer(void) {
  static char *volatile where;
  char local[64];
  where = local + 16;
  return where;
}
static void *static_pointer(void) { return &global_word[2]; }
static void *mmap_pointer(void) {
  void *p = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? NULL : p;
}
static void *system_pointer(void) { return malloc(100); }

typedef void *(*pointer_fn)(void);
static pointer_fn foreign_pointer; /* which foreign pointer the next child uses */

static void free_foreign(void) {
  mi_free(launder(foreign_pointer()));
  keep_working(48);
}

static void realloc_foreign(void) {
  errno = 0;
  void *q = mi_realloc(launder(foreign_pointer()), 100);
  if (q != NULL) _exit(10); /* release: NULL and EINVAL, or the parent sees the exit code */
  if (errno != EINVAL) _exit(11);
  keep_working(48);
}

static void usable_size_foreign(void) {
  if (mi_usable_size(launder(foreign_pointer())) != 0) _exit(12);
  keep_working(48);
}

static void invalid_interior_small(void) {
  char *p = mi_malloc(64);
  mi_free(launder(p + 8));
}

static void invalid_interior_medium(void) {
  char *p = mi_malloc(30000);
  mi_free(launder(p + 24));
}

/* A write into a freed block breaks its page's free list: mi_heap_check says which invariant
 * broke, where, and returns false (exit 0 then; 20 if it did not notice). */
static void heap_check_names_invariant(void) {
  void **keep = mi_malloc(32);
  void **p = mi_malloc(32);
  mi_free(p);
  *(void *volatile *)launder(p) = (void *)((uintptr_t)keep + 8); /* a link inside a block */
  _exit(mi_heap_check(mi_heap_get_default()) ? 20 : 0);
}

/* A write into a block that waits in its page's cross-thread list, over the chain header that
 * release builds keep in its second word (src/types.h): the owner's walk of the list must not
 * follow the bad header out of the page, but drop the list and report it. */
static void corrupt_chain_header(void) {
  void *keep = mi_malloc(64); /* the page stays in use */
  void *p = mi_malloc(64);
  free_on_other_thread(p); /* that thread's exit hands its gathered free over */
  /* a chain of one block that ends far outside the page */
  ((uintptr_t *)launder(p))[1] = ((uintptr_t)1 << 48) | (uintptr_t)0x414141414140;
  keep_working(64); /* the owner takes the list in */
  mi_free(keep);
}

/* A pointer just past a large block, inside its page: a page of one block spans whole 64 KiB
 * slices, so the block's end lies inside its last slice unless the size is a multiple of
 * them. Not a block: reported, and the block stays allocated. */
static void invalid_past_large(void) {
  char *p = mi_malloc(70000);
  size_t usable = mi_usable_size(p);
  if (usable % 65536 == 0) _exit(30); /* the end is a slice boundary: no such pointer */
  mi_free(launder(p + usable));
  p[usable - 1] = 1; /* still ours */
  mi_free(p);
  keep_working(usable);
}

/* A pointer past the last block of a small page (blocks of 640 B leave 256 bytes at the
 * slice's end), freed on another thread right after a block of the same page: it joins that
 * block's gathered chain (src/remote.c), whose checks run when the chain goes in. */
static void *free_past_small_thread(void *arg) {
  void **b = arg;
  if (b[2] != NULL) {
    mi_free_size_aligned(b[0], 640, 8);
    mi_free_size_aligned(launder(b[1]), 640, 8);
  } else {
    mi_free(b[0]);
    mi_free(launder(b[1]));
  }
  mi_collect(false); /* hand the gathered frees over */
  return NULL;
}
static void invalid_past_small_cross(bool sized) {
  /* pages of nine size classes: the heap is no longer young (its classes then are powers of
   * two, which fill a slice exactly) */
  for (size_t k = 0; k < 9; k++) launder(mi_malloc(1500 + k * 700));
  char *p = mi_malloc(640);
  uintptr_t end = ((uintptr_t)p | 0xffff) + 1; /* a small page is one 64 KiB slice */
  if (mi_usable_size(p) != 640 || 65536 % 640 == 0) _exit(30);
  void *b[3] = {p, (void *)(end - 64), sized ? p : NULL};
  on_other_thread(free_past_small_thread, b);
  keep_working(640);
}
static void invalid_past_small_cross_plain(void) { invalid_past_small_cross(false); }
static void invalid_past_small_cross_sized(void) { invalid_past_small_cross(true); }

static void valid_use(void) {
  void *p = mi_malloc(100), *q = mi_malloc(20000);
  mi_free(p);
  mi_free(q);
}

/* ---- Running a child ------------------------------------------------------------------- */
typedef struct child_result_s {
  int status;
  char output[4096];
} child_result_t;

static void show_errors(void) { mi_option_set(mi_option_show_errors, 1); }

/* Run `fn` in a forked child with SHOW_ERRORS on, stderr captured. */
static bool run_child(void (*fn)(void), child_result_t *res) {
  return tu_run_child(show_errors, fn, &res->status, res->output, sizeof res->output);
}

static void print_first_line(const char *what, int status, const char *output) {
  char first[200];
  size_t n = strcspn(output, "\n");
  if (n >= sizeof first) n = sizeof first - 1;
  memcpy(first, output, n);
  first[n] = '\0';
  printf("  - %-46s %-16s said: \"%s\"\n", what, tu_describe_status(status), first);
}

/* How a case must end. `word`: what stderr must mention (NULL: nothing required). */
typedef enum { ENDS_ABORT, ENDS_CLEAN } ending_t;

static void expect(const char *what, void (*fn)(void), ending_t ending, const char *word) {
  child_result_t res;
  bool ok = run_child(fn, &res);
  CHECKF(ok, "%s: could not fork", what);
  if (!ok) return;
  print_first_line(what, res.status, res.output);
  if (ending == ENDS_ABORT) {
    CHECKF(WIFSIGNALED(res.status) && WTERMSIG(res.status) == SIGABRT,
           "%s: expected an abort, got %s: %s", what, tu_describe_status(res.status), res.output);
  } else {
    CHECKF(WIFEXITED(res.status) && WEXITSTATUS(res.status) == 0,
           "%s: expected a clean exit, got %s: %s", what, tu_describe_status(res.status), res.output);
  }
  if (word != NULL)
    CHECKF(strcasestr(res.output, word) != NULL, "%s: stderr does not mention \"%s\": %s", what,
           word, res.output);
}

/* A foreign pointer: debug aborts; release goes on, and reports the call and the address. */
static void expect_foreign(const char *what, pointer_fn pointer, void (*fn)(void),
                           const char *call) {
  foreign_pointer = pointer;
  char label[96], word[64];
  snprintf(label, sizeof label, "%s of a %s pointer", call, what);
  /* a fork keeps the layout: the child's wild and static pointers are the parent's; for the
   * others (stack depth, fresh mmap and malloc results) only the call's name is required */
  void *p = pointer == wild_pointer || pointer == static_pointer ? pointer() : NULL;
  if (p != NULL) snprintf(word, sizeof word, "%s(%p)", call, p);
  else snprintf(word, sizeof word, "%s(0x", call);
  expect(label, fn, DEBUG_BUILD ? ENDS_ABORT : ENDS_CLEAN, word);
}

int main(void) {
  printf("%s: misuse gets a defined answer (SA_DEBUG=%d, SA_SECURE=%d)\n", TEST_NAME, SA_DEBUG,
         SA_SECURE);
  /* Touch the allocator in the parent first, so children inherit an initialised process. */
  void *warm = mi_malloc(10);
  mi_free(warm);

  expect("valid malloc/free", valid_use, ENDS_CLEAN, NULL);
  if (DEBUG_BUILD) {
    child_result_t res;
    CHECK(run_child(valid_use, &res) && res.output[0] == '\0'); /* valid use says nothing */
  }

  struct {
    const char *what;
    pointer_fn fn;
  } foreign[] = {{"wild low", wild_pointer},    {"stack", stack_pointer},
                 {"static", static_pointer},    {"mmap page", mmap_pointer},
                 {"system malloc", system_pointer}};
  for (size_t i = 0; i < sizeof foreign / sizeof foreign[0]; i++) {
    expect_foreign(foreign[i].what, foreign[i].fn, free_foreign, "free");
    expect_foreign(foreign[i].what, foreign[i].fn, realloc_foreign, "realloc");
    expect_foreign(foreign[i].what, foreign[i].fn, usable_size_foreign, "mi_usable_size");
  }

  if (SA_SECURE) /* the overwritten link no longer decodes: the walk aborts on it */
    expect("mi_heap_check after a write into a freed block", heap_check_names_invariant,
           ENDS_ABORT, "heap corruption");
  else
    expect("mi_heap_check after a write into a freed block", heap_check_names_invariant,
           ENDS_CLEAN, "heap check failed: block_in_page(page, b) (src/page.c:");

  /* Caught in every build. */
  ending_t caught = DEBUG_BUILD ? ENDS_ABORT : ENDS_CLEAN;
  expect("double free (large)", double_free_large, caught, "double free");
  expect("double free (large, page gone between)", double_free_lone_large, caught,
         "double free");
  expect("double free (huge)", double_free_huge, caught, "double free");
  expect("invalid free (past a large block, in its page)", invalid_past_large, caught,
         "invalid pointer");
  expect("invalid free (past a small page's blocks, cross-thread)",
         invalid_past_small_cross_plain, caught, "invalid pointer");
  expect("invalid free (past a small page's blocks, sized, cross-thread)",
         invalid_past_small_cross_sized, caught, "invalid pointer");
  expect("double free (small, both cross-thread)", double_free_cross_small, caught,
         "double free");
  expect("double free (small, sized, cross-thread, twice in a row)", double_free_sized_twice,
         caught, "double free");
  expect("double free (small, sized, cross-thread, a block between)", double_free_sized_between,
         caught, "double free");
  expect("double free (large, both cross-thread)", double_free_cross_large, caught,
         "double free");
  expect("double free (huge, both cross-thread)", double_free_cross_huge, caught, "double free");
  expect("double free (large, cross-thread then owner)", double_free_cross_owner_large, caught,
         "double free");
  expect("double free (huge, cross-thread then owner)", double_free_cross_owner_huge, caught,
         "double free");
  expect("free after its heap's destroy (owner thread)", free_after_destroy_owner, caught,
         "destroyed heap");
  expect("free after its heap's destroy (other thread)", free_after_destroy_cross, caught,
         "destroyed heap");

  /* Release builds: the chain headers of cross-thread lists are checked before they are
   * followed (debug and secure builds keep none; their walk goes block by block). */
  if (!DEBUG_BUILD)
    expect("write over a chain header in a cross-thread list", corrupt_chain_header, ENDS_CLEAN,
           "double free from another thread");

  /* Caught by debug builds; a release build must only survive them. */
  expect("double free (small)", double_free_small, caught, DEBUG_BUILD ? "double free" : NULL);
  expect("double free (medium)", double_free_medium, caught, DEBUG_BUILD ? "double free" : NULL);
  if (DEBUG_BUILD) {
    expect("invalid free (interior of a small block)", invalid_interior_small, ENDS_ABORT,
           "invalid pointer");
    expect("invalid free (interior of a medium block)", invalid_interior_medium, ENDS_ABORT,
           "invalid pointer");
  }
  return tu_finish();
}
