/* realloc_held: buffers grown by doubling and then kept, for the memory a growing buffer
 * holds once it stops growing. BUFS buffers start at 64 bytes and double by realloc up to
 * MAX bytes (each new half written), either one buffer after the other or one step each in
 * turn (so a buffer's neighbour is live when it grows); all are held to the end.
 *
 * usage: realloc_held [seq|turns] [bufs=100] [max=131072]
 * prints: the pattern, the peak RSS (MiB) and the minor page faults of the process. */
#include "bench_common.h"

#include <stdbool.h>

int main(int argc, char **argv) {
  usage_if_asked(argc, argv, "usage: realloc_held [seq|turns] [bufs=100] [max=131072]\n");
  bool turns = argc > 1 && strcmp(argv[1], "turns") == 0;
  if (argc > 1 && !turns && strcmp(argv[1], "seq") != 0 && strcmp(argv[1], "-") != 0)
    bench_fail("realloc_held: the pattern is seq or turns");
  long bufs = arg_long(argc, argv, 2, 100);
  size_t max = (size_t)arg_long(argc, argv, 3, 131072);
  unsigned char **buf = bench_check(calloc((size_t)bufs, sizeof *buf));
  size_t *len = bench_check(calloc((size_t)bufs, sizeof *len));
  for (long b = 0; b < bufs; b++) {
    buf[b] = bench_check(malloc(64));
    memset(buf[b], 1, 64);
    len[b] = 64;
  }
  if (turns) {
    for (size_t size = 128; size <= max; size *= 2)
      for (long b = 0; b < bufs; b++) {
        bench_resize(&buf[b], len[b], size, 1);
        len[b] = size;
      }
  } else {
    for (long b = 0; b < bufs; b++)
      for (size_t size = 128; size <= max; size *= 2) {
        bench_resize(&buf[b], len[b], size, 1);
        len[b] = size;
      }
  }
  double rss;
  long faults;
  self_usage(&rss, &faults);
  printf("realloc_held: %s, %ld buffers doubled to %zu B: peak RSS %.1f MiB, %ld page faults\n",
         turns ? "in turns" : "one after the other", bufs, len[0], rss, faults);
  for (long b = 0; b < bufs; b++) free(buf[b]);
  free(buf);
  free(len);
  return 0;
}
