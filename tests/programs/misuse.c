/* Misuse that a debug build of shardalloc detects, run by tests/preload.rs under
 * LD_PRELOAD: argv[1] names it. "double-free" frees a block twice; "bad-free" frees a
 * pointer malloc never returned. With glibc the outcome is glibc's; the test only runs this
 * with shardalloc: a debug build reports the misuse on stderr and aborts; a release build
 * ignores the foreign pointer (and reports it under SHOW_ERRORS). */
#include "progutil.h"

static void *volatile sink; /* keeps the compiler from seeing through the misuse */

int main(int argc, char **argv) {
  CHECK(argc == 2);
  char *keep = malloc(48); /* the page stays in use */
  char *p = malloc(48);
  CHECK(keep != NULL && p != NULL);
  if (strcmp(argv[1], "double-free") == 0) {
    free(p);
    sink = p;
    free(sink);
  } else if (strcmp(argv[1], "bad-free") == 0) {
    static char not_from_malloc[64];
    sink = not_from_malloc + 16;
    free(sink);
  }
  printf("misuse %s: not detected\n", argv[1]);
  free(keep);
  return 0;
}
