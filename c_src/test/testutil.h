/* shardalloc C tests: the small harness every test program shares.
 *
 *   CHECK(expr)             count a pass, or print file:line and the expression and count a
 *                           failure; never stops the program. Thread-safe.
 *   CHECKF(expr, fmt, ...)  the same, with a printf-style explanation of the failure.
 *   SECTION(fmt, ...)       announce what the next checks are about.
 *   tu_finish()             print "test_xxx: N passed, M failed" and return the exit status.
 *   quick()                 true when SA_TEST_QUICK is set (and not "0"): the program shrinks
 *                           its iteration and thread counts (the valgrind target sets it).
 *
 * SA_TEST_RUNNER, set when the tests run under an emulator (qemu-user for aarch64), holds its
 * command line: a test that runs itself again puts it in front, and the test of fork, which
 * qemu-user cannot do with threads running, skips and says so.
 *
 * Each test program defines TEST_NAME before including this header. Helpers are `static`
 * so that every program is one translation unit with no shared object to link.            */
#ifndef SHARDALLOC_TESTUTIL_H
#define SHARDALLOC_TESTUTIL_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shardalloc.h"

#ifndef TEST_NAME
#error "define TEST_NAME before including testutil.h"
#endif

/* The build's modes as the library sees them (the Makefile passes both). */
#ifndef SA_DEBUG
#define SA_DEBUG 0
#endif
#ifndef SA_SECURE
#define SA_SECURE 0
#endif

/* Failures past this many are counted but not printed, so a broken run stays readable. */
#ifndef TU_MAX_PRINTED_FAILURES
#define TU_MAX_PRINTED_FAILURES 50
#endif

static _Atomic(long) tu_passed;
static _Atomic(long) tu_failed;

static void tu_fail(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((format(printf, 4, 5), noinline, cold, unused));
static void tu_fail(const char *file, int line, const char *expr, const char *fmt, ...) {
  long n = atomic_fetch_add(&tu_failed, 1) + 1;
  fflush(stdout); /* keep the log in order when both streams go to one file */
  if (n > TU_MAX_PRINTED_FAILURES) {
    if (n == TU_MAX_PRINTED_FAILURES + 1)
      fprintf(stderr, "%s: more failures follow; not printing them\n", TEST_NAME);
    return;
  }
  char msg[512] = "";
  if (fmt != NULL) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
  }
  fprintf(stderr, "%s:%d: CHECK failed: %s%s%s\n", file, line, expr, msg[0] ? ": " : "", msg);
  fflush(stderr);
}

#define CHECK(expr)                                                                         \
  do {                                                                                      \
    if (__builtin_expect(!!(expr), 1))                                                      \
      atomic_fetch_add_explicit(&tu_passed, 1, memory_order_relaxed);                       \
    else                                                                                    \
      tu_fail(__FILE__, __LINE__, #expr, NULL);                                             \
  } while (0)

#define CHECKF(expr, ...)                                                                   \
  do {                                                                                      \
    if (__builtin_expect(!!(expr), 1))                                                      \
      atomic_fetch_add_explicit(&tu_passed, 1, memory_order_relaxed);                       \
    else                                                                                    \
      tu_fail(__FILE__, __LINE__, #expr, __VA_ARGS__);                                      \
  } while (0)

#define SECTION(...)                                                                        \
  do {                                                                                      \
    printf("  - ");                                                                         \
    printf(__VA_ARGS__);                                                                    \
    printf("\n");                                                                           \
    fflush(stdout);                                                                         \
  } while (0)

static inline long tu_failures(void) { return atomic_load(&tu_failed); }

static __attribute__((unused)) int tu_finish(void) {
  long passed = atomic_load(&tu_passed), failed = atomic_load(&tu_failed);
  printf("%s: %ld passed, %ld failed\n", TEST_NAME, passed, failed);
  fflush(stdout);
  return failed == 0 ? 0 : 1;
}

/* Sleep at least `ms` milliseconds (a lower bound: signals do not cut it short). */
static __attribute__((unused)) void tu_sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

static __attribute__((unused)) bool quick(void) {
  const char *v = getenv("SA_TEST_QUICK");
  return v != NULL && v[0] != '\0' && strcmp(v, "0") != 0;
}

/* Seconds on a monotonic clock. */
static inline double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- Randomness: a small, fast generator with per-thread state (splitmix64) ------------- */
typedef struct tu_rng_s {
  uint64_t s;
} tu_rng_t;

static inline uint64_t tu_mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
static inline uint64_t tu_rand(tu_rng_t *r) {
  r->s += 0x9e3779b97f4a7c15ULL;
  return tu_mix64(r->s);
}
/* Uniform in [0, n), n > 0 (the bias is irrelevant for tests). */
static inline size_t tu_below(tu_rng_t *r, size_t n) { return (size_t)(tu_rand(r) % n); }

/* Fisher-Yates shuffle of an array of pointers. */
static inline void tu_shuffle(tu_rng_t *r, void **a, size_t n) {
  for (size_t i = n; i > 1; i--) {
    size_t j = tu_below(r, i);
    void *t = a[i - 1];
    a[i - 1] = a[j];
    a[j] = t;
  }
}

/* ---- Content patterns ---------------------------------------------------------------------
 * tu_fill writes bytes that depend on (key, offset), tu_verify checks them and returns the
 * first offset that differs (or n when all match). Word-at-a-time so big blocks stay cheap. */
static inline uint64_t tu_pattern_word(uint64_t key, size_t word_index) {
  return tu_mix64(key ^ ((uint64_t)word_index * 0x2545f4914f6cdd1dULL));
}
static inline void tu_fill(void *p, size_t n, uint64_t key) {
  uint8_t *b = (uint8_t *)p;
  size_t words = n / 8;
  for (size_t i = 0; i < words; i++) {
    uint64_t w = tu_pattern_word(key, i);
    memcpy(b + i * 8, &w, 8);
  }
  uint64_t last = tu_pattern_word(key, words);
  memcpy(b + words * 8, &last, n - words * 8);
}
static inline size_t tu_verify(const void *p, size_t n, uint64_t key) {
  const uint8_t *b = (const uint8_t *)p;
  size_t words = n / 8;
  for (size_t i = 0; i < words; i++) {
    uint64_t w = tu_pattern_word(key, i), got;
    memcpy(&got, b + i * 8, 8);
    if (got != w) {
      for (size_t k = 0; k < 8; k++)
        if (((const uint8_t *)&got)[k] != ((const uint8_t *)&w)[k]) return i * 8 + k;
    }
  }
  uint64_t last = tu_pattern_word(key, words);
  for (size_t k = 0; k < n - words * 8; k++)
    if (b[words * 8 + k] != ((const uint8_t *)&last)[k]) return words * 8 + k;
  return n;
}

/* Offset of the first non-zero byte in [p, p+n), or n when all are zero. */
static inline size_t tu_first_nonzero(const void *p, size_t n) {
  const uint8_t *b = (const uint8_t *)p;
  size_t i = 0;
  while (i < n && ((uintptr_t)(b + i) & 7) != 0) {
    if (b[i] != 0) return i;
    i++;
  }
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, b + i, 8);
    if (w != 0) break;
  }
  for (; i < n; i++)
    if (b[i] != 0) return i;
  return n;
}

static inline bool tu_is_aligned(const void *p, size_t alignment) {
  return ((uintptr_t)p & (alignment - 1)) == 0;
}

/* ---- A case in a child process ------------------------------------------------------------
 * Run `before` (if not NULL), then `fn`, in a forked child without core dumps, with a 60 s
 * alarm as a hang detector only (a passing case never depends on it) and its stderr captured
 * into `out` (NUL-terminated; what does not fit is read and dropped, so the child never
 * blocks on a full pipe). The child exits 0 if `fn` returns. False if it could not be run. */
static __attribute__((unused)) bool tu_run_child(void (*before)(void), void (*fn)(void),
                                                 int *status, char *out, size_t cap) {
  int fds[2];
  if (pipe(fds) != 0) return false;
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    close(fds[0]);
    dup2(fds[1], STDERR_FILENO);
    close(fds[1]);
    alarm(60);
    if (before != NULL) before();
    fn();
    _exit(0);
  }
  close(fds[1]);
  size_t len = 0;
  for (;;) {
    ssize_t r = read(fds[0], out + len, cap - 1 - len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    len += (size_t)r;
    if (len == cap - 1) {
      char drain[512];
      while (read(fds[0], drain, sizeof drain) > 0) {
      }
      break;
    }
  }
  out[len] = '\0';
  close(fds[0]);
  while (waitpid(pid, status, 0) < 0 && errno == EINTR) {
  }
  return true;
}

/* How a child ended, in words: the signal's name or "exit N". */
static __attribute__((unused)) const char *tu_describe_status(int status) {
  static char buf[64];
  if (WIFSIGNALED(status)) return strsignal(WTERMSIG(status));
  snprintf(buf, sizeof buf, "exit %d", WEXITSTATUS(status));
  return buf;
}

/* Blocks in use in all size classes, from the statistics snapshot; `collect` first brings
 * the counts up to date (they follow pages at their slow-path events). */
static __attribute__((unused)) size_t tu_in_use_blocks(bool collect) {
  mi_stats_snapshot_t s;
  if (collect) mi_collect(false);
  mi_stats_snapshot(&s);
  size_t n = 0;
  for (size_t i = 0; i < sizeof s.bin_in_use / sizeof s.bin_in_use[0]; i++) n += s.bin_in_use[i];
  return n;
}

#endif /* SHARDALLOC_TESTUTIL_H */
