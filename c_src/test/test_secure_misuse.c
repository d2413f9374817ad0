/* test_secure_misuse: heap corruption and invalid frees, as an attacker would use them, each
 * in a forked child. In a secure build (SA_SECURE=1) every case must be caught: the child
 * aborts (SIGABRT) and its stderr names the error and the address; and no malloc of any case
 * may return a pointer outside shardalloc's heap (mi_is_in_heap_region). Other builds run the
 * same cases and must catch exactly the ones of their column below (README, "Secure mode"):
 *
 *   case                                   release   debug   secure
 *   double free, small                     -         x       x
 *   double free, large / huge              r / r     x / x   x / x
 *   double free, cross-thread (small)      -         x       x
 *   the same, the first free to a full page -        x       x
 *   the same, the second free by the owner  -        x       x
 *   interior pointer, small / large        - / -     x / x   x / x
 *   foreign pointer, mmap page / static    r / r     x / x   x / x
 *   write 1, 8, 16 bytes past a block      -         -       x
 *   write into a freed block               -         -       x
 *   freed block linked to a live block     -         -       x
 *   linear overflow out of a large page    -         -       g
 *   old contents in a reused block         yes       no      no
 *
 * x: caught (abort with the message). g: stopped by the guard page at the page's end (SIGSEGV). r: reported under SHOW_ERRORS and ignored, the process
 * goes on (release builds never abort). -: not noticed; after an overflow or a write into a
 * freed block a release or debug build crashes, or malloc hands out memory that is not a
 * block (the child then exits with code 42, "escaped the heap").
 * How a child that was not caught ended is printed, never checked: it depends on the leftover
 * bytes the corruption met. */
#define _GNU_SOURCE /* strcasestr, strsignal */
#define TEST_NAME "test_secure_misuse"
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shardalloc.h"


#define SMALL 48
#define LARGE ((size_t)1 << 20)
#define HUGE_SIZE ((size_t)48 << 20)
#define EXIT_ESCAPED 42 /* malloc returned a pointer outside the heap */
#define EXIT_SETUP 43   /* the case could not set itself up */
#define EXIT_TWICE 44   /* malloc handed out a live block */

/* Shared with the children: [0] the address the report must name (0: any "0x..."); [1] set
 * once the misusing call returned (secure mode must stop a bad free inside the call). */
static volatile uintptr_t *mailbox;
static void returned(void) { mailbox[1] = 1; }
static long static_target[8];

static void *volatile sink;
static void *launder(void *p) {
  sink = p;
  return sink;
}

/* Every allocation of a child goes through here: a pointer outside our heap ends the child. */
static void *alloc(size_t size) {
  void *p = mi_malloc(size);
  if (p != NULL && !mi_is_in_heap_region(p)) {
    fprintf(stderr, "escaped: malloc returned %p, outside the heap\n", p);
    _exit(EXIT_ESCAPED);
  }
  return p;
}

/* Valid work after the misuse: allocations and frees of the size, more than a page holds. */
static void churn(size_t size, int count) {
  void *blocks[64];
  for (int done = 0; done < count; done += 64) {
    for (int i = 0; i < 64; i++) blocks[i] = alloc(size);
    for (int i = 0; i < 64; i++) mi_free(blocks[i]);
  }
}

/* ---- The cases ----------------------------------------------------------------------- */
static void double_free(size_t size) {
  void *keep = alloc(size); /* the page stays in use */
  void *p = alloc(size);
  *mailbox = (uintptr_t)p;
  mi_free(p);
  mi_free(launder(p));
  returned();
  churn(size, 128);
  mi_free(keep);
}
static void double_free_small(void) { double_free(SMALL); }
static void double_free_large(void) { double_free(LARGE); }
static void double_free_huge(void) { double_free(HUGE_SIZE); }

static void *free_in_thread(void *p) {
  mi_free(p);
  return NULL;
}
/* The housekeeper thread would take the owner's delayed list in at a moment of its own: the
 * cross-thread cases switch it off, so that each meets the lists in one state. */
static void free_on_other_thread(void *p) {
  mi_option_disable(mi_option_background_purge);
  pthread_t t;
  if (pthread_create(&t, NULL, free_in_thread, p) != 0) _exit(EXIT_SETUP);
  pthread_join(t, NULL);
}
static void double_free_cross_thread(void) {
  void *keep[8];
  for (int i = 0; i < 8; i++) keep[i] = alloc(SMALL); /* live blocks: the page stays */
  void *p = alloc(SMALL);
  *mailbox = (uintptr_t)p;
  free_on_other_thread(p);
  free_on_other_thread(launder(p));
  returned();
  churn(SMALL, 4096); /* the owner collects the cross-thread list */
  for (int i = 0; i < 8; i++) mi_free(keep[i]);
}

/* The same on full pages: the first cross-thread free of a block of a full page hands it to
 * the owner's heap (its delayed list, linking it to a block of another page). Both cases fill
 * pages of 1 KiB blocks (64 a page, so the first pages are full), let another thread free
 * b[100] (another full page: the delayed list is not empty), and free b[0] twice: `second`
 * makes the second free, after another thread made the first. */
enum { FULL_BLOCKS = 300 };
static void double_free_full(void (*second)(void *)) {
  void *b[FULL_BLOCKS];
  for (int i = 0; i < FULL_BLOCKS; i++) b[i] = alloc(1024);
  free_on_other_thread(b[100]);
  free_on_other_thread(b[0]);
  *mailbox = (uintptr_t)b[0];
  second(launder(b[0]));
  returned();
  for (int i = 1; i < FULL_BLOCKS; i++)
    if (i != 100) mi_free(b[i]);
  churn(1024, 4096);
}
static void double_free_cross_thread_full(void) { double_free_full(free_on_other_thread); }
/* The owner frees it again: the block waits in the owner's delayed list, not in its page's. */
static void double_free_delayed_owner(void) { double_free_full(mi_free); }

static void interior(size_t size, size_t offset) {
  char *p = alloc(size);
  *mailbox = (uintptr_t)(p + offset);
  mi_free(launder(p + offset));
  returned();
  churn(size, 128);
}
static void interior_small(void) { interior(SMALL, 16); }
static void interior_large(void) { interior(LARGE, 4096); }

static void foreign(void *p) {
  *mailbox = (uintptr_t)p;
  mi_free(launder(p));
  returned();
  churn(SMALL, 128);
}
static void foreign_mmap(void) {
  void *p = mmap(NULL, 1 << 16, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) _exit(EXIT_SETUP);
  foreign(p);
}
static void foreign_static(void) { foreign(&static_target[2]); }

/* Write `n` bytes past the end of a block whose neighbour is free, then free and allocate
 * until every block of the page has been handed out again. */
static void overflow(size_t n) {
  enum { N = 256 };
  char *b[N];
  for (int i = 0; i < N; i++) b[i] = alloc(SMALL);
  size_t bsize = mi_usable_size(b[0]); /* the block's end: its size class's, past SMALL */
  int victim = -1, neighbour = -1;
  for (int i = 0; i < N && victim < 0; i++)
    for (int j = 0; j < N; j++)
      if (b[j] == b[i] + bsize) {
        victim = i;
        neighbour = j;
        break;
      }
  if (victim < 0) _exit(EXIT_SETUP);
  *mailbox = 0; /* the report names the block whose link broke: the neighbour, or another */
  for (int i = 0; i < N; i++)
    if (i != victim) mi_free(b[i]);
  /* over the free neighbour's link: 0x41 bytes, or 0x42 where the encoded link already has
   * 0x41 (one run in 256 for a one-byte write), so that the write always changes it */
  unsigned char *over = launder(b[victim] + bsize);
  for (size_t k = 0; k < n; k++) over[k] = over[k] == 0x41 ? 0x42 : 0x41;
  (void)neighbour;
  mi_free(b[victim]);
  /* blocks of the victim's size class itself: a new thread's first pages serve SMALL from a
   * larger class (types.h, young heaps) until the thread grows up, which may happen here */
  void *again[4 * N];
  for (int i = 0; i < 4 * N; i++) again[i] = alloc(bsize);
  for (int i = 0; i < 4 * N; i++) mi_free(again[i]);
}
static void overflow_1(void) { overflow(1); }
static void overflow_8(void) { overflow(8); }
static void overflow_16(void) { overflow(16); }

/* Use after free: the freed block's first word gets an address of the attacker's choice. */
static void write_after_free(void) {
  void *keep = alloc(SMALL);
  void **p = alloc(SMALL);
  mi_free(p);
  *mailbox = (uintptr_t)p;
  *(void *volatile *)launder(p) = &static_target[0];
  churn(SMALL, 512);
  mi_free(keep);
}

/* Use after free with a valid address: the freed block's link now names a live block, so
 * without keys malloc would hand that block out a second time. */
static void write_after_free_live(void) {
  void *keep = alloc(SMALL);
  void **p = alloc(SMALL);
  mi_free(p);
  *mailbox = (uintptr_t)p;
  *(void *volatile *)launder(p) = keep;
  for (int i = 0; i < 4096; i++)
    if (alloc(SMALL) == keep) _exit(EXIT_TWICE);
}

/* A linear overflow out of a large block, past the end of its page. */
static void overflow_large_page(void) {
  char *p = alloc(LARGE);
  memset(launder(p), 0x41, LARGE + ((size_t)128 << 10));
  churn(LARGE, 64);
}

/* ---- Running a child ------------------------------------------------------------------ */
typedef struct result_s {
  int status;
  char output[2048];
  uintptr_t address;
  bool returned; /* the misusing call returned */
} result_t;

static void show_errors(void) { mi_option_set(mi_option_show_errors, 1); }

static bool run_child(void (*fn)(void), result_t *res) {
  mailbox[0] = mailbox[1] = 0;
  if (!tu_run_child(show_errors, fn, &res->status, res->output, sizeof res->output)) return false;
  res->address = mailbox[0];
  res->returned = mailbox[1] != 0;
  return true;
}

static const char *describe(int status) {
  if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_ESCAPED) return "escaped the heap";
  if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_TWICE) return "live block reused";
  return tu_describe_status(status);
}

/* Stopped by a guard page: the write faulted (under AddressSanitizer, which reports the fault
 * and exits, the report says so). */
static bool faulted(const result_t *res, const char *word) {
  (void)word;
  return (WIFSIGNALED(res->status) && WTERMSIG(res->status) == SIGSEGV) ||
         strstr(res->output, "AddressSanitizer: SEGV") != NULL;
}

/* Caught: aborted, and stderr has one line naming the error (`word`) and the address. */
static bool caught(const result_t *res, const char *word) {
  if (!WIFSIGNALED(res->status) || WTERMSIG(res->status) != SIGABRT) return false;
  if (strcasestr(res->output, word) == NULL) return false;
  char addr[32];
  if (res->address != 0) snprintf(addr, sizeof addr, "%p", (void *)res->address);
  else snprintf(addr, sizeof addr, "0x");
  return strstr(res->output, addr) != NULL;
}

/* Columns of the table in the header: which builds catch the case. */
enum { REL = 1, DBG = 2, SEC = 4 };
static int this_build(void) { return SA_SECURE ? SEC : SA_DEBUG > 0 ? DBG : REL; }

static void expect_by(const char *what, void (*fn)(void), int caught_by, const char *word,
                      bool (*judge)(const result_t *, const char *)) {
  result_t res;
  bool ok = run_child(fn, &res);
  CHECKF(ok, "%s: could not fork", what);
  if (!ok) return;
  bool was_caught = judge(&res, word);
  bool should = (caught_by & this_build()) != 0;
  char first[160];
  size_t n = strcspn(res.output, "\n");
  if (n >= sizeof first) n = sizeof first - 1;
  memcpy(first, res.output, n);
  first[n] = '\0';
  printf("  %-38s %-8s %-18s \"%s\"\n", what, was_caught ? "CAUGHT" : "missed",
         describe(res.status), first);
  CHECKF(was_caught == should, "%s: expected %s in this build, but %s (%s): %s", what,
         should ? "caught" : "not caught", was_caught ? "caught" : "missed",
         describe(res.status), res.output);
  CHECKF(!(WIFEXITED(res.status) && WEXITSTATUS(res.status) == EXIT_SETUP),
         "%s: the case could not set itself up", what);
  if (should && (SA_SECURE || SA_DEBUG > 0)) /* aborts, and in the call that misused */
    CHECKF(!res.returned, "%s: the bad call returned; caught only later", what);
  if (SA_SECURE)
    CHECKF(!(WIFEXITED(res.status) && (WEXITSTATUS(res.status) == EXIT_ESCAPED ||
                                       WEXITSTATUS(res.status) == EXIT_TWICE)),
           "%s: malloc returned a pointer outside the heap or a live block", what);
}

static void expect(const char *what, void (*fn)(void), int caught_by, const char *word) {
  expect_by(what, fn, caught_by, word, caught);
}

/* The allocation order of fresh pages: in address order by default, shuffled in secure mode
 * (each of 8 fresh heaps' first 64 blocks; a heap's first page is fresh). Counts the blocks
 * next to the one allocated before (either side), and the heaps whose first block lies at the
 * same offset in its page (its 64 KiB slice) as the first heap's. */
static void allocation_order(void) {
  int adjacent = 0, same_start = 0;
  uintptr_t first_offset = 0;
  for (int h = 0; h < 8; h++) {
    mi_heap_t *heap = mi_heap_new();
    CHECK(heap != NULL);
    if (heap == NULL) return;
    char *prev = NULL;
    for (int i = 0; i < 64; i++) {
      char *p = mi_heap_malloc(heap, SMALL);
      if (i == 0 && h == 0) first_offset = (uintptr_t)p & 0xFFFF;
      if (i == 0) same_start += ((uintptr_t)p & 0xFFFF) == first_offset;
      adjacent += prev != NULL && (p == prev + SMALL || p + SMALL == prev);
      prev = p;
    }
    mi_heap_destroy(heap);
  }
  printf("  allocation order: %d of %d blocks next to the previous one, %d of 8 heaps start at "
         "the same offset\n", adjacent, 8 * 63, same_start);
  if (SA_SECURE) { /* a shuffle puts half in order, or 8 starts at one offset, never in practice */
    CHECK(adjacent < 8 * 63 / 2);
    CHECK(same_start < 8);
  } else {
    CHECK(adjacent == 8 * 63 && same_start == 8);
  }
}

/* Each thread draws its own random numbers: the order of the first blocks of a fresh heap,
 * as offsets in their page, differs between two threads (the same generator state in both
 * would give the same order). */
enum { ORDER_BLOCKS = 32 };
static void *thread_order(void *out) {
  uint16_t *offsets = out;
  mi_heap_t *heap = mi_heap_new();
  if (heap == NULL) return NULL;
  for (int i = 0; i < ORDER_BLOCKS; i++)
    offsets[i] = (uint16_t)((uintptr_t)mi_heap_malloc(heap, SMALL) & 0xFFFF);
  mi_heap_destroy(heap);
  return NULL;
}
static void allocation_order_per_thread(void) {
  uint16_t order[2][ORDER_BLOCKS] = {{0}};
  for (int t = 0; t < 2; t++) {
    pthread_t tid;
    CHECK(pthread_create(&tid, NULL, thread_order, order[t]) == 0);
    pthread_join(tid, NULL);
  }
  bool same = memcmp(order[0], order[1], sizeof(order[0])) == 0;
  printf("  allocation order in two threads: %s\n", same ? "the same" : "different");
  CHECK(same == !SA_SECURE); /* by default both are in address order */
}

/* What a block that reuses freed memory holds when it is handed out: zeros in secure mode,
 * the debug fill in debug builds, and in release builds (some of) the old contents. */
static size_t bytes_not(const unsigned char *p, size_t n, unsigned char v) {
  size_t count = 0;
  for (size_t i = 0; i < n; i++) count += p[i] != v;
  return count;
}
static void reused_memory_cleared(void) {
  enum { N = 200 };
  unsigned char *b[N];
  for (int i = 0; i < N; i++) memset(b[i] = mi_malloc(SMALL), 0x5A, SMALL);
  for (int i = 0; i < N; i++) mi_free(b[i]);
  size_t stale = 0, other = 0; /* bytes of the old fill, bytes neither it nor the expected */
  unsigned char expected = SA_DEBUG > 0 ? 0xD0 : 0;
  for (int i = 0; i < N; i++) {
    b[i] = mi_malloc(SMALL);
    stale += SMALL - bytes_not(b[i], SMALL, 0x5A);
    other += bytes_not(b[i], SMALL, expected);
  }
  for (int i = 0; i < N; i++) mi_free(b[i]);
  unsigned char *large = mi_malloc(LARGE);
  memset(large, 0x5A, LARGE);
  mi_free(large);
  large = mi_malloc(LARGE); /* its retired page again */
  size_t large_other = bytes_not(large, LARGE, expected);
  mi_free(large);
  /* a large block whose owner wrote a few of its pages: secure mode gives it back to the OS
   * rather than clearing it (secure.c), so start from purged memory (nothing resident) */
  mi_collect(true);
  large = mi_malloc(LARGE);
  for (size_t o = 0; o < LARGE; o += LARGE / 8) large[o] = 0x5A;
  large[LARGE - 1] = 0x5A;
  mi_free(large);
  large = mi_malloc(LARGE);
  size_t sparse_other = bytes_not(large, LARGE, expected);
  mi_free(large);
  printf("  reused blocks: %zu bytes of the old contents in %d small blocks, %zu bytes not 0x%02x "
         "in a large one, %zu in a sparsely written one\n", stale, N, large_other, expected,
         sparse_other);
  if (SA_SECURE || SA_DEBUG > 0) {
    CHECKF(other == 0, "small blocks handed out again hold other bytes than 0x%02x", expected);
    CHECKF(large_other == 0, "a large block handed out again holds other bytes");
    CHECKF(sparse_other == 0, "a sparsely written large block handed out again holds other bytes");
  } else {
    CHECK(stale > 0); /* release: the old contents are there to read */
  }
}

int main(void) {
  printf("%s: SA_DEBUG=%d SA_SECURE=%d\n", TEST_NAME, SA_DEBUG, SA_SECURE);
  mailbox = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mailbox == MAP_FAILED) return 1;
  /* First, while this process has no thread but this one: their children start threads, which
   * ThreadSanitizer and qemu-user do not support after a fork of a multi-threaded process (the
   * housekeeper thread starts once memory waits to go back, as the later cases make it). */
  expect("double free (cross-thread)", double_free_cross_thread, DBG | SEC, "double free");
  expect("double free (cross-thread, full page)", double_free_cross_thread_full, DBG | SEC,
         "double free");
  expect("double free (delayed, then owner)", double_free_delayed_owner, DBG | SEC,
         "double free");
  void *warm = mi_malloc(10); /* children inherit an initialised allocator */
  mi_free(warm);
  allocation_order();
  allocation_order_per_thread();
  reused_memory_cleared();

  expect("double free (small)", double_free_small, DBG | SEC, "double free");
  expect("double free (large)", double_free_large, DBG | SEC, "double free");
  expect("double free (huge)", double_free_huge, DBG | SEC, "double free");
  expect("interior pointer (small)", interior_small, DBG | SEC, "invalid pointer");
  expect("interior pointer (large)", interior_large, DBG | SEC, "invalid pointer");
  expect("foreign pointer (mmap page)", foreign_mmap, DBG | SEC, "invalid pointer");
  expect("foreign pointer (static)", foreign_static, DBG | SEC, "invalid pointer");
  expect("write 1 byte past a block", overflow_1, SEC, "heap corruption");
  expect("write 8 bytes past a block", overflow_8, SEC, "heap corruption");
  expect("write 16 bytes past a block", overflow_16, SEC, "heap corruption");
  expect("write into a freed block", write_after_free, SEC, "heap corruption");
  expect("freed block linked to a live one", write_after_free_live, SEC, "heap corruption");
  expect_by("linear overflow out of a large page", overflow_large_page, SEC, NULL, faulted);
  return tu_finish();
}
