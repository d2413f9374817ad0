/* fastpath: the malloc+free loops that bench/callgrind_fastpath.py counts instructions of.
 *
 * Modes (each runs WARMUP iterations, then N measured ones):
 *   lone   malloc(size) then free it, over and over; nothing else is live, so with a
 *          page-based allocator each free empties the page.
 *   held   like lone, but one more object of the size, allocated before the loop, stays live
 *          (the page stays in use, so its free list never runs dry and it never empties).
 *   live   LIVE objects of the size are kept live; each iteration frees one of them and
 *          allocates its replacement, going round the array (the page never empties).
 *   cycle  like lone, but the size cycles through 16, 32, 128 and 1024 bytes (size ignored).
 *   batch  BATCH objects of the size allocated, then all freed, over and over (N pairs in
 *          all): blocks of a page each, in a page-based allocator, empty and refill a queue
 *          of pages.
 * Size: a byte count, or "a64" for aligned_alloc(64, 64) instead of malloc(64), or "hN" for
 * mi_heap_malloc(heap, N) from a heap of mi_heap_new (the mimalloc API, looked up in the
 * preloaded allocator; exit status 3 when it has none). Modes lone, held and live.
 *
 * Each loop is a separate non-inlined function: bench/callgrind_fastpath.py runs the program
 * with N and 2N iterations and subtracts the loop function's own instructions, so only what
 * malloc and free execute is left.
 *
 * usage: fastpath MODE SIZE N
 * prints: mode, size, N and the time per iteration (meaningless under valgrind).
 */
#include "bench_common.h"

#include <dlfcn.h>

#define LIVE 1000
#define WARMUP 1000
#define BATCH 64

/* Keeps the compiler from deleting the malloc/free pair or merging iterations. */
#define KEEP(p) __asm__ volatile("" : "+r"(p) : : "memory")

/* Each loop is its own non-inlined function: the script reads its self cost from callgrind and
 * subtracts it. */
__attribute__((noinline)) static void loop_lone(size_t size, long n) {
  for (long i = 0; i < n; i++) {
    void *p = malloc(size);
    KEEP(p);
    free(p);
  }
}

__attribute__((noinline)) static void loop_lone_aligned(size_t size, long n) {
  for (long i = 0; i < n; i++) {
    void *p = aligned_alloc(64, size);
    KEEP(p);
    free(p);
  }
}

__attribute__((noinline)) static void loop_live(void **slot, size_t size, long n) {
  long j = 0;
  for (long i = 0; i < n; i++) {
    free(slot[j]);
    void *p = malloc(size);
    KEEP(p);
    slot[j] = p;
    if (++j == LIVE) j = 0;
  }
}

__attribute__((noinline)) static void loop_live_aligned(void **slot, size_t size, long n) {
  long j = 0;
  for (long i = 0; i < n; i++) {
    free(slot[j]);
    void *p = aligned_alloc(64, size);
    KEEP(p);
    slot[j] = p;
    if (++j == LIVE) j = 0;
  }
}

/* The heap variants: mi_heap_malloc through a pointer (no PLT stub, as malloc has one). */
typedef struct heap_api_s {
  void *(*heap_new)(void);
  void *(*heap_malloc)(void *heap, size_t size);
  void *heap;
} heap_api_t;
static heap_api_t api;

__attribute__((noinline)) static void loop_lone_heap(size_t size, long n) {
  void *(*heap_malloc)(void *, size_t) = api.heap_malloc;
  void *heap = api.heap;
  for (long i = 0; i < n; i++) {
    void *p = heap_malloc(heap, size);
    KEEP(p);
    free(p);
  }
}

__attribute__((noinline)) static void loop_live_heap(void **slot, size_t size, long n) {
  void *(*heap_malloc)(void *, size_t) = api.heap_malloc;
  void *heap = api.heap;
  long j = 0;
  for (long i = 0; i < n; i++) {
    free(slot[j]);
    void *p = heap_malloc(heap, size);
    KEEP(p);
    slot[j] = p;
    if (++j == LIVE) j = 0;
  }
}

__attribute__((noinline)) static void loop_batch(void **slot, size_t size, long n) {
  for (long i = 0; i < n; i += BATCH) {
    long k = n - i < BATCH ? n - i : BATCH;
    for (long j = 0; j < k; j++) {
      void *p = malloc(size);
      KEEP(p);
      slot[j] = p;
    }
    for (long j = 0; j < k; j++) free(slot[j]);
  }
}

__attribute__((noinline)) static void loop_cycle(long n) {
  static const size_t sizes[4] = {16, 32, 128, 1024};
  for (long i = 0; i < n; i++) {
    void *p = malloc(sizes[i & 3]);
    KEEP(p);
    free(p);
  }
}

static void run(const char *mode, int aligned, size_t size, void **slot, long n) {
  if (strcmp(mode, "lone") == 0 || strcmp(mode, "held") == 0) {
    if (api.heap != NULL) loop_lone_heap(size, n);
    else if (aligned) loop_lone_aligned(size, n);
    else loop_lone(size, n);
  } else if (strcmp(mode, "live") == 0) {
    if (api.heap != NULL) loop_live_heap(slot, size, n);
    else if (aligned) loop_live_aligned(slot, size, n);
    else loop_live(slot, size, n);
  } else if (strcmp(mode, "batch") == 0) {
    loop_batch(slot, size, n);
  } else {
    loop_cycle(n);
  }
}

int main(int argc, char **argv) {
  const char *usage = "usage: fastpath lone|held|live|cycle|batch SIZE|a64|hSIZE N\n";
  usage_if_asked(argc, argv, usage);
  if (argc < 4) {
    fputs(usage, stderr);
    return 1;
  }
  const char *mode = argv[1];
  if (strcmp(mode, "lone") != 0 && strcmp(mode, "held") != 0 && strcmp(mode, "live") != 0 &&
      strcmp(mode, "cycle") != 0 && strcmp(mode, "batch") != 0) {
    fputs(usage, stderr);
    return 1;
  }
  int aligned = strcmp(argv[2], "a64") == 0;
  size_t size = aligned || argv[2][0] == 'h' ? 64 : (size_t)arg_long(argc, argv, 2, 16);
  if (argv[2][0] == 'h') {
    api.heap_new = (void *(*)(void))dlsym(RTLD_DEFAULT, "mi_heap_new");
    api.heap_malloc = (void *(*)(void *, size_t))dlsym(RTLD_DEFAULT, "mi_heap_malloc");
    if (api.heap_new == NULL || api.heap_malloc == NULL || strcmp(mode, "cycle") == 0 ||
        strcmp(mode, "batch") == 0) {
      fputs("fastpath: no mi_heap_new/mi_heap_malloc in this allocator (or mode cycle or batch)\n",
            stderr);
      return 3;
    }
    size = (size_t)strtol(argv[2] + 1, NULL, 10);
    api.heap = bench_check(api.heap_new());
  }
  long n = arg_long(argc, argv, 3, 1000000);

  /* The live set: LIVE objects for live, one for held, none for lone and cycle. */
  int live = strcmp(mode, "live") == 0 ? LIVE : strcmp(mode, "held") == 0 ? 1 : 0;
  void **slot = bench_check(calloc(LIVE, sizeof(void *)));
  for (int i = 0; i < live; i++)
    slot[i] = bench_check(api.heap != NULL ? api.heap_malloc(api.heap, size)
                          : aligned        ? aligned_alloc(64, size)
                                           : malloc(size));

  run(mode, aligned, size, slot, WARMUP);
  double t0 = now_s();
  run(mode, aligned, size, slot, n);
  double elapsed = now_s() - t0;

  for (int i = 0; i < live; i++) free(slot[i]);
  free(slot);
  printf("fastpath: %s %s x %ld: %.2f ns per iteration\n", mode, argv[2], n,
         elapsed * 1e9 / (double)n);
  return 0;
}
