/* A program built against an installed shardalloc (tests/install.rs): the README's C example,
 * plus the checks that it really runs on the installed library.
 *   prog shared <path>   linked with the shared library: malloc is replaced, and the library
 *                        mapped into the process is the file <path> (the installed one)
 *   prog static          linked with the static library: malloc stays the C library's */
#include <shardalloc.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int mapped(const char *path) {
  FILE *maps = fopen("/proc/self/maps", "r");
  char line[4096];
  int found = 0;
  if (maps == NULL) return 0;
  while (!found && fgets(line, sizeof line, maps) != NULL) {
    line[strcspn(line, "\n")] = '\0';
    size_t n = strlen(line), m = strlen(path);
    found = n >= m && strcmp(line + n - m, path) == 0;
  }
  fclose(maps);
  return found;
}

int main(int argc, char **argv) {
  void *p = mi_malloc(100);
  int ok = p != NULL && mi_is_in_heap_region(p) && mi_version() == SHARDALLOC_VERSION;
  mi_free(p);
  if (!ok) {
    printf("mi_malloc is not shardalloc's (version %d)\n", mi_version());
    return 1;
  }
  int shared = argc == 3 && strcmp(argv[1], "shared") == 0;
  void *q = malloc(100);
  int replaced = mi_is_in_heap_region(q);
  free(q);
  if (replaced != shared) {
    printf("malloc is %s, expected %s\n", replaced ? "shardalloc's" : "libc's",
           shared ? "shardalloc's" : "libc's");
    return 1;
  }
  if (shared && !mapped(argv[2])) {
    printf("%s is not mapped into the process\n", argv[2]);
    return 1;
  }
  printf("shardalloc %d ok (%s)\n", mi_version(), shared ? "shared" : "static");
  return 0;
}
