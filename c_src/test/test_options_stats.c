/* test_options_stats: options (from code and from the environment), statistics snapshots,
 * process information, and purging (memory given back to the OS after the delay and at once
 * on mi_collect(true)).
 *
 * The environment is read once at process init, so the environment cases re-execute this
 * program with SHARDALLOC_* variables set and a mode argument. */
#define TEST_NAME "test_options_stats"
#include "testutil.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shardalloc.h"

static size_t rss_bytes(void) {
  int fd = open("/proc/self/statm", O_RDONLY);
  if (fd < 0) return 0;
  char buf[128];
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  unsigned long total = 0, resident = 0;
  if (sscanf(buf, "%lu %lu", &total, &resident) != 2) return 0;
  return resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* Child mode: print the options as the environment left them. */
static int child_print_options(void) {
  void *p = mi_malloc(10); /* initialises the process: the environment is read */
  mi_free(p);
  printf("purge_delay=%ld verbose=%ld show_errors=%ld reserve=%ld cache=%ld\n",
         mi_option_get(mi_option_purge_delay), mi_option_get(mi_option_verbose),
         mi_option_get(mi_option_show_errors), mi_option_get(mi_option_reserve_os_memory),
         mi_option_get(mi_option_segment_cache));
  return 0;
}

/* Run this program in `mode` with `env` added; capture stdout+stderr into `out`. */
static int run_child(const char *self, const char *mode, char *const env[], char *out,
                     size_t out_size) {
  int fds[2];
  if (pipe(fds) != 0) return -1;
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[0]);
    /* Under an emulator (make check RUNNER=qemu-...), SA_TEST_RUNNER names the runner, whose
     * words come before the program: it cannot execute a foreign binary by itself. */
    char *argv[16];
    int argc = 0;
    static char runner[256];
    const char *r = getenv("SA_TEST_RUNNER");
    if (r != NULL && strlen(r) < sizeof runner) {
      strcpy(runner, r);
      for (char *w = strtok(runner, " "); w != NULL && argc < 12; w = strtok(NULL, " "))
        argv[argc++] = w;
    }
    argv[argc++] = (char *)self;
    argv[argc++] = (char *)mode;
    argv[argc] = NULL;
    execve(argv[0], argv, env);
    _exit(127);
  }
  close(fds[1]);
  size_t len = 0;
  ssize_t n;
  while (len + 1 < out_size && (n = read(fds[0], out + len, out_size - 1 - len)) > 0)
    len += (size_t)n;
  out[len] = 0;
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_env_options(const char *self) {
  SECTION("options from SHARDALLOC_* environment variables (values, suffixes, bad input)");
  char out[4096];
  char *env1[] = {"SHARDALLOC_PURGE_DELAY=250", "SHARDALLOC_VERBOSE=1",
                  "SHARDALLOC_RESERVE_OS_MEMORY=64M", "SHARDALLOC_SEGMENT_CACHE=off", NULL};
  CHECK(run_child(self, "print-options", env1, out, sizeof out) == 0);
  CHECKF(strstr(out, "purge_delay=250 ") != NULL, "output: %s", out);
  CHECKF(strstr(out, "verbose=1 ") != NULL, "output: %s", out);
  CHECKF(strstr(out, "reserve=65536 ") != NULL, "64M is 65536 KiB; output: %s", out);
  CHECKF(strstr(out, "cache=0") != NULL, "off is 0; output: %s", out);
  CHECKF(strstr(out, "shardalloc: shardalloc ") != NULL, "the verbose start line; output: %s",
         out);
  char *env2[] = {"SHARDALLOC_PURGE_DELAY=soon", "SHARDALLOC_SHOW_ERRORS=1", NULL};
  CHECK(run_child(self, "print-options", env2, out, sizeof out) == 0);
  CHECKF(strstr(out, "PURGE_DELAY: cannot read") != NULL, "bad value reported; output: %s", out);
  CHECKF(strstr(out, "purge_delay=25 ") != NULL, "bad value keeps the default; output: %s", out);
  char *env3[] = {"SHARDALLOC_SHOW_STATS=1", NULL};
  CHECK(run_child(self, "print-options", env3, out, sizeof out) == 0);
  CHECKF(strstr(out, "shardalloc statistics") != NULL, "statistics at exit; output: %s", out);
}

static void test_code_options(void) {
  SECTION("mi_option_set / get / enable / disable / set_default / get_clamp");
  long old = mi_option_get(mi_option_verbose);
  mi_option_enable(mi_option_verbose);
  CHECK(mi_option_is_enabled(mi_option_verbose));
  mi_option_disable(mi_option_verbose);
  CHECK(!mi_option_is_enabled(mi_option_verbose));
  mi_option_set_enabled(mi_option_verbose, old != 0);
  mi_option_set_default(mi_option_verbose, 7); /* already set from code: no effect */
  CHECK(mi_option_get(mi_option_verbose) == old);
  mi_option_set(mi_option_segment_cache, 1000);
  CHECK(mi_option_get_clamp(mi_option_segment_cache, 0, 64) == 64);
  mi_option_set(mi_option_segment_cache, 4);
  CHECK(mi_option_get((mi_option_t)1000) == 0); /* out of range: 0, no crash */
  mi_option_set((mi_option_t)-1, 5);
}

static void test_stats(void) {
  SECTION("mi_stats_snapshot: in-use bytes follow allocation and free; counters are sane");
  mi_stats_snapshot_t before, during, after;
  mi_collect(true);
  mi_stats_snapshot(&before);
  enum { N = 20000 };
  static void *blocks[N];
  for (int i = 0; i < N; i++) blocks[i] = mi_malloc(100 + (size_t)(i % 7) * 300);
  void *huge = mi_malloc((size_t)40 << 20);
  mi_collect(false); /* brings the page-level counts up to date */
  mi_stats_snapshot(&during);
  size_t expect = 0;
  for (int i = 0; i < N; i++) expect += mi_usable_size(blocks[i]);
  size_t grown = during.in_use - before.in_use;
  CHECKF(grown >= expect + ((size_t)40 << 20) && grown <= expect + ((size_t)41 << 20),
         "in_use grew by %zu, blocks and huge hold %zu", grown, expect + ((size_t)40 << 20));
  CHECK(during.huge_bytes >= ((size_t)40 << 20));
  CHECK(during.committed >= during.in_use && during.reserved >= during.committed);
  CHECK(during.committed_peak >= during.committed && during.reserved_peak >= during.reserved);
  CHECK(during.page_bytes >= during.in_use - during.huge_bytes);
  CHECK(during.segments >= 2 && during.threads >= 1 && during.mmaps >= 1);
  CHECK(during.bins > 20 && during.bins <= 80);
  size_t blocks_in_bins = 0;
  for (size_t b = 0; b < during.bins; b++) {
    blocks_in_bins += during.bin_in_use[b];
    if (b > 0) CHECK(during.bin_block_size[b] > during.bin_block_size[b - 1]);
  }
  CHECK(blocks_in_bins >= N);
  for (int i = 0; i < N; i++) mi_free(blocks[i]);
  mi_free(huge);
  mi_collect(true);
  mi_stats_snapshot(&after);
  CHECKF(after.in_use <= before.in_use + (64 << 10), "in_use %zu after free, %zu before",
         after.in_use, before.in_use);
  CHECK(after.huge_bytes == before.huge_bytes);
  CHECK(after.purges > before.purges);
  mi_stats_reset();
  mi_stats_snapshot(&after);
  CHECK(after.committed_peak == after.committed || after.committed_peak >= after.committed);
}

static void test_process_info(void) {
  SECTION("mi_process_info: times, RSS, commit and faults");
  size_t elapsed, user, sys, rss, peak_rss, commit, peak_commit, faults;
  mi_process_info(&elapsed, &user, &sys, &rss, &peak_rss, &commit, &peak_commit, &faults);
  CHECK(rss > 0 && peak_rss >= rss / 2 && faults > 0);
  CHECK(peak_commit >= commit);
  mi_process_info(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL); /* NULL outputs are fine */
}

typedef struct {
  size_t bytes;
  void **blocks;
  size_t count;
} job_t;

static void *fill_and_free(void *arg) {
  job_t *job = arg;
  size_t n = 0;
  for (size_t done = 0; done < job->bytes; n++) {
    size_t size = n % 3 == 0 ? 24 << 10 : 512 + (n % 13) * 64; /* medium and small */
    char *p = mi_malloc(size);
    memset(p, 1, size);
    job->blocks[n] = p;
    done += size;
  }
  job->count = n;
  for (size_t i = 0; i < n; i++) mi_free(job->blocks[i]);
  return NULL;
}

static void test_purge(void) {
  SECTION("purging: freed memory leaves RSS after the delay (threads that exit) and at once "
          "on mi_collect(true) (a thread that stays)");
  size_t per_thread = quick() ? ((size_t)64 << 20) : ((size_t)192 << 20);
  enum { T = 4 };
  job_t jobs[T];
  pthread_t th[T];
  size_t base = rss_bytes();
  for (int t = 0; t < T; t++) {
    jobs[t].bytes = per_thread;
    jobs[t].blocks = malloc(sizeof(void *) * (per_thread / 512 + 1));
    pthread_create(&th[t], NULL, fill_and_free, &jobs[t]);
  }
  for (int t = 0; t < T; t++) pthread_join(th[t], NULL);
  /* The exited threads' empty segments are cached or released; cached ones are purged by the
   * next thread that runs the slow path once the delay is over. The threads took memory that
   * earlier tests had just purged, so their delay may have grown to 8x the option (purge.c);
   * the rest is room for a housekeeper that a loaded machine wakes late. */
  tu_sleep_ms(8 * mi_option_get(mi_option_purge_delay) + 300);
  for (int i = 0; i < 200; i++) mi_free(mi_malloc((size_t)(i % 10 + 1) * 2048));
  size_t rss_after_delay = rss_bytes();
  mi_stats_snapshot_t s;
  mi_stats_snapshot(&s);
  CHECKF(s.committed < per_thread * T / 10, "committed %zu MiB after the delay", s.committed >> 20);
#if !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__) /* shadow memory is RSS */
  CHECKF(rss_after_delay < base + per_thread * T / 10,
         "RSS %zu MiB after the delay (base %zu MiB, peak about %zu MiB)", rss_after_delay >> 20,
         base >> 20, (base + per_thread * T) >> 20);
#else
  (void)base;
  (void)rss_after_delay;
#endif

  /* This thread allocates and frees but stays: mi_collect(true) purges at once. */
  job_t self = {per_thread, malloc(sizeof(void *) * (per_thread / 512 + 1)), 0};
  size_t before = rss_bytes();
  fill_and_free(&self);
  mi_collect(true);
  size_t after = rss_bytes();
  mi_stats_snapshot(&s);
  CHECKF(s.committed < per_thread / 10, "committed %zu MiB after collect", s.committed >> 20);
#if !defined(__SANITIZE_THREAD__) && !defined(__SANITIZE_ADDRESS__)
  CHECKF(after < before + per_thread / 10, "RSS %zu MiB after collect (before %zu MiB)",
         after >> 20, before >> 20);
#else
  (void)after;
  (void)before;
#endif
  for (int t = 0; t < T; t++) free(jobs[t].blocks);
  free(self.blocks);
}

int main(int argc, char **argv) {
  if (argc > 1 && strcmp(argv[1], "print-options") == 0) return child_print_options();
  printf("%s: options, statistics, process information and purging\n", TEST_NAME);
  test_env_options(argv[0]);
  test_code_options();
  test_stats();
  test_process_info();
  test_purge();
  return tu_finish();
}
