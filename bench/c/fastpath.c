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
 * Size: a byte count, or "a64" for aligned_alloc(64, 64) instead of malloc(64).
 *
 * Each loop is a separate non-inlined function: bench/callgrind_fastpath.py runs the program
 * with N and 2N iterations and subtracts the loop function's own instructions, so only what
 * malloc and free execute is left.
 *
 * usage: fastpath MODE SIZE N
 * prints: mode, size, N and the time per iteration (meaningless under valgrind).
 */
#include "bench_common.h"

#define LIVE 1000
#define WARMUP 1000

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
    if (aligned) loop_lone_aligned(size, n);
    else loop_lone(size, n);
  } else if (strcmp(mode, "live") == 0) {
    if (aligned) loop_live_aligned(slot, size, n);
    else loop_live(slot, size, n);
  } else {
    loop_cycle(n);
  }
}

int main(int argc, char **argv) {
  const char *usage = "usage: fastpath lone|held|live|cycle SIZE|a64 N\n";
  usage_if_asked(argc, argv, usage);
  if (argc < 4) {
    fputs(usage, stderr);
    return 1;
  }
  const char *mode = argv[1];
  if (strcmp(mode, "lone") != 0 && strcmp(mode, "held") != 0 && strcmp(mode, "live") != 0 &&
      strcmp(mode, "cycle") != 0) {
    fputs(usage, stderr);
    return 1;
  }
  int aligned = strcmp(argv[2], "a64") == 0;
  size_t size = aligned ? 64 : (size_t)arg_long(argc, argv, 2, 16);
  long n = arg_long(argc, argv, 3, 1000000);

  /* The live set: LIVE objects for live, one for held, none for lone and cycle. */
  int live = strcmp(mode, "live") == 0 ? LIVE : strcmp(mode, "held") == 0 ? 1 : 0;
  void **slot = bench_check(calloc(LIVE, sizeof(void *)));
  for (int i = 0; i < live; i++)
    slot[i] = bench_check(aligned ? aligned_alloc(64, size) : malloc(size));

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
