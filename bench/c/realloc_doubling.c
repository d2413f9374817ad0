/* realloc_doubling: the criterion case realloc_growth/doubling-to-4MiB in C, for profiling
 * with LD_PRELOAD: a block of 64 bytes doubled by realloc to 4 MiB (the last byte written at
 * each step, the first checked), then freed; ROUNDS rounds. With HOLES non-zero the heap
 * first gets holes: 64 blocks of 100 KiB allocated and every other one freed (a process that
 * has done other work, as criterion's has). Prints the bytes the last round's moves copied
 * (at least the old size of each step that changed the address) and the time per round.
 *
 *   realloc_doubling [ROUNDS [HOLES]]        defaults: 1000 0                              */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

int main(int argc, char **argv) {
  int rounds = argc > 1 ? atoi(argv[1]) : 1000;
  int holes = argc > 2 ? atoi(argv[2]) : 0;
  void *keep[64] = {0};
  if (holes) {
    for (int i = 0; i < 64; i++) keep[i] = malloc(100 << 10);
    for (int i = 0; i < 64; i += 2) free(keep[i]);
  }
  struct timespec t0, t1;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  size_t copied = 0;
  for (int r = 0; r < rounds; r++) {
    size_t size = 64;
    char *p = malloc(size);
    if (p == NULL) abort();
    p[0] = 1;
    while (size < ((size_t)4 << 20)) {
      char *old = p;
      size *= 2;
      p = realloc(p, size);
      if (p == NULL || p[0] != 1) abort();
      p[size - 1] = 3;
      if (r == rounds - 1 && p != old) copied += size / 2;
    }
    free(p);
  }
  clock_gettime(CLOCK_MONOTONIC, &t1);
  double ns = (double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec);
  printf("copied %zu bytes in the last round; %.2f us per round\n", copied,
         rounds > 0 ? ns / 1e3 / rounds : 0.0);
  for (int i = 1; i < 64; i += 2) free(keep[i]);
  return 0;
}
