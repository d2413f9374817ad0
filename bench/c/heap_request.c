/* heap_request: a request's objects built in a heap of their own and freed with it, or built
 * with malloc and freed one by one; the allocator comes with LD_PRELOAD (the heap functions,
 * mimalloc's API, are looked up at run time).
 *
 *   heap_request heap|global N R     R requests of N objects each, after one warm-up request
 *
 * A request makes N strings of 16-80 bytes and, for every other one, an array of 2-17 words,
 * and frees an older string and an older array every fourth object (as benches/request_heap
 * does in Rust). `heap` makes a heap per request (mi_heap_new), allocates with mi_heap_malloc,
 * frees along the way with free, and ends with mi_heap_destroy; `global` allocates with
 * malloc and frees every object left at the end. bench/request_heap.py counts the
 * instructions of a request under callgrind. */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *(*heap_new)(void);
static void *(*heap_malloc)(void *, size_t);
static void (*heap_destroy)(void *);

static uint64_t request(void *heap, size_t n, void **strings, void **arrays) {
  uint64_t x = 0x5eed, sum = 0;
  for (size_t i = 0; i < n; i++) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    size_t len = 16 + (size_t)(x >> 33) % 65;
    char *s = heap != NULL ? heap_malloc(heap, len) : malloc(len);
    memset(s, 'a' + (int)(i % 26), len);
    strings[i] = s;
    arrays[i] = NULL;
    if (i % 2 == 0) {
      size_t words = 2 + (size_t)(x >> 40) % 16;
      uint64_t *a = heap != NULL ? heap_malloc(heap, words * 8) : malloc(words * 8);
      for (size_t k = 0; k < words; k++) a[k] = i ^ k;
      arrays[i] = a;
    }
    if (i % 4 == 3) { /* done with an older array and an older string */
      size_t old = (i / 2) & ~(size_t)1;
      sum += arrays[old] != NULL;
      free(arrays[old]);
      arrays[old] = NULL;
      sum += (unsigned char)((char *)strings[i / 2])[0];
      free(strings[i / 2]);
      strings[i / 2] = NULL;
    }
  }
  if (heap != NULL) {
    heap_destroy(heap);
  } else {
    for (size_t i = 0; i < n; i++) {
      free(strings[i]);
      free(arrays[i]);
    }
  }
  return sum;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fputs("usage: heap_request heap|global N R\n", stderr);
    return 2;
  }
  int use_heap = strcmp(argv[1], "heap") == 0;
  size_t n = strtoul(argv[2], NULL, 10), r = strtoul(argv[3], NULL, 10);
  if (use_heap) {
    heap_new = (void *(*)(void))dlsym(RTLD_DEFAULT, "mi_heap_new");
    heap_malloc = (void *(*)(void *, size_t))dlsym(RTLD_DEFAULT, "mi_heap_malloc");
    heap_destroy = (void (*)(void *))dlsym(RTLD_DEFAULT, "mi_heap_destroy");
    if (heap_new == NULL || heap_malloc == NULL || heap_destroy == NULL) {
      fputs("heap_request: no mi_heap_new/mi_heap_malloc/mi_heap_destroy here\n", stderr);
      return 3;
    }
  }
  void **strings = calloc(n, sizeof(void *)), **arrays = calloc(n, sizeof(void *));
  uint64_t sum = 0;
  for (size_t k = 0; k <= r; k++) /* the first one warms up */
    sum += request(use_heap ? heap_new() : NULL, n, strings, arrays);
  printf("%llu\n", (unsigned long long)sum);
  return 0;
}
