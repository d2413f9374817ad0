/* workloads: the criterion workloads that secure mode costs most on (benches/allocators.rs),
 * as plain C loops for callgrind, strace -c and perf stat (bench/secure/profile.py).
 *
 * usage: workloads NAME SIZE [ALIGN] ITERS
 *   lone   64 times: malloc(SIZE), write the first and the last byte, read, free
 *   batch  64 blocks allocated and touched so, then freed in allocation order
 *   large  one block of SIZE: malloc, one byte written per 4 KiB page, read back, free
 *   grow   one buffer from 16 bytes to SIZE by realloc, doubling; the last byte written and
 *          the first read after each call, then freed
 * ALIGN (batch only, 0 = malloc): aligned_alloc(ALIGN, SIZE) instead.
 * prints the checksum and the CPU time (user + system) per iteration: less noisy than the wall
 * time on a shared machine. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PAIRS 64
#define KEEP(p) __asm__ volatile("" : "+r"(p) : : "memory")

static void *take(size_t size, size_t align) {
  unsigned char *p = align ? aligned_alloc(align, size) : malloc(size);
  if (p == NULL) abort();
  p[0] = 1;
  p[size - 1] = 2;
  return p;
}

static uint64_t lone(size_t size) {
  uint64_t sum = 0;
  for (int i = 0; i < PAIRS; i++) {
    unsigned char *p = take(size, 0);
    KEEP(p);
    sum += p[0];
    free(p);
  }
  return sum;
}

static uint64_t batch(size_t size, size_t align) {
  unsigned char *ptrs[PAIRS];
  uint64_t sum = 0;
  for (int i = 0; i < PAIRS; i++) ptrs[i] = take(size, align);
  KEEP(ptrs[0]);
  for (int i = 0; i < PAIRS; i++) {
    sum += ptrs[i][0];
    free(ptrs[i]);
  }
  return sum;
}

static uint64_t large(size_t size) {
  unsigned char *p = take(size, 64);
  for (size_t off = 0; off < size; off += 4096) p[off] = (unsigned char)(off | 1);
  uint64_t sum = 0;
  for (size_t off = 0; off < size; off += 4096) sum += p[off];
  free(p);
  return sum;
}

static uint64_t grow(size_t size) {
  size_t n = 16;
  unsigned char *p = take(n, 0);
  uint64_t sum = 0;
  while (n < size) {
    n *= 2;
    p = realloc(p, n);
    if (p == NULL) abort();
    p[n - 1] = 3;
    sum += p[0];
  }
  free(p);
  return sum;
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: workloads lone|batch|large|grow SIZE [ALIGN] ITERS\n");
    return 2;
  }
  const char *name = argv[1];
  size_t size = strtoull(argv[2], NULL, 0);
  size_t align = argc > 4 ? strtoull(argv[3], NULL, 0) : 0;
  long iters = strtol(argv[argc - 1], NULL, 0);
  uint64_t sum = 0;
  struct timespec t0, t1;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
  for (long i = 0; i < iters; i++) {
    if (strcmp(name, "lone") == 0) sum += lone(size);
    else if (strcmp(name, "batch") == 0) sum += batch(size, align);
    else if (strcmp(name, "large") == 0) sum += large(size);
    else if (strcmp(name, "grow") == 0) sum += grow(size);
    else return 2;
  }
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
  double us = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / 1e3;
  printf("%s %zu %zu: sum %llu, %.2f us CPU per iteration\n", name, size, align,
         (unsigned long long)sum, us / (double)iters);
  return 0;
}
