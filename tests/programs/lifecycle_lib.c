/* The library that lifecycle.c loads with dlopen (built as a shared object by
 * tests/preload.rs). It allocates in its constructor and destructor, hands blocks to the
 * program and frees the program's blocks, and runs a thread of its own. */
#include <pthread.h>

#include "progutil.h"

static char *ctor_block;

__attribute__((constructor)) static void lib_init(void) {
  ctor_block = malloc(3000);
  CHECK(ctor_block != NULL);
  fill(ctor_block, 3000, 77);
}

__attribute__((destructor)) static void lib_fini(void) {
  CHECK(verify(ctor_block, 3000, 77));
  free(ctor_block);
  void *p = malloc(500); /* allocation while the library is being unloaded */
  CHECK(p != NULL);
  free(p);
}

/* A block for the caller to free. */
char *lib_make(size_t size, uint64_t tag) {
  char *p = malloc(size);
  CHECK(p != NULL);
  fill(p, size, tag);
  return p;
}

/* Frees a block the caller allocated, after checking it. */
void lib_take(void *p, size_t size, uint64_t tag) {
  CHECK(verify(p, size, tag));
  free(p);
}

static void *lib_thread(void *arg) {
  void **blocks = arg;
  for (int i = 0; i < 1000; i++) {
    blocks[i] = realloc(blocks[i], (size_t)(i % 300) + 1); /* blocks of the caller's thread */
    CHECK(blocks[i] != NULL);
  }
  return NULL;
}

/* Runs a thread that reallocates (and so frees) the caller's 1000 blocks. */
void lib_churn(void **blocks) {
  pthread_t t;
  CHECK(pthread_create(&t, NULL, lib_thread, blocks) == 0);
  CHECK(pthread_join(t, NULL) == 0);
}

const void *lib_ctor_block(void) { return ctor_block; }
