/* test_double_free: in debug builds (SA_DEBUG >= 1) a double free and a free of a pointer the
 * allocator never returned are reported with a message ("double free" / "invalid free") and
 * the process is aborted. Each misuse runs in a forked child whose stderr is captured through
 * a pipe; the parent checks that the child died of SIGABRT and what it said.
 * In release builds (SA_DEBUG == 0) there is nothing to check: the program says so, exits 0. */
#define _GNU_SOURCE /* strcasestr, strsignal */
#define TEST_NAME "test_double_free"
#include "testutil.h"

#ifndef SA_DEBUG
#define SA_DEBUG 0
#endif

#if SA_DEBUG < 1

int main(void) {
  printf("%s: skipped (SA_DEBUG=%d: misuse is only diagnosed in debug builds)\n", TEST_NAME,
         SA_DEBUG);
  return tu_finish();
}

#else

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shardalloc.h"

static int global_word[16];

/* Keep the compiler from seeing through the misuse (it may warn, or drop a "dead" free). */
static void *volatile sink;
static void *launder(void *p) {
  sink = p;
  return sink;
}

static void double_free_small(void) {
  void *p = mi_malloc(32);
  mi_free(p);
  mi_free(launder(p));
}

static void double_free_after_others(void) {
  void *a = mi_malloc(48), *b = mi_malloc(48), *c = mi_malloc(48);
  void *keep = mi_malloc(48); /* the page stays in use */
  mi_free(a);
  mi_free(b);
  mi_free(c);
  mi_free(launder(a));
  mi_free(keep);
}

static void double_free_medium(void) {
  void *keep = mi_malloc(20 << 10);
  void *p = mi_malloc(20 << 10);
  mi_free(p);
  mi_free(launder(p));
  mi_free(keep);
}

static void *free_in_thread(void *p) {
  mi_free(p);
  return NULL;
}
static void double_free_cross_thread(void) {
  void *keep = mi_malloc(64);
  void *p = mi_malloc(64);
  pthread_t t;
  if (pthread_create(&t, NULL, free_in_thread, p) != 0) _exit(3);
  pthread_join(t, NULL);
  mi_free(launder(p));
  mi_free(keep);
}

static void invalid_stack(void) {
  char local[64];
  memset(local, 1, sizeof local);
  mi_free(launder(local + 16));
}

static void invalid_global(void) { mi_free(launder(&global_word[2])); }

static void invalid_system_malloc(void) {
  void *p = malloc(100);
  mi_free(launder(p));
}

static void invalid_interior_small(void) {
  char *p = mi_malloc(64);
  mi_free(launder(p + 8));
}

static void invalid_interior_medium(void) {
  char *p = mi_malloc(30000);
  mi_free(launder(p + 24));
}

static void valid_use(void) {
  void *p = mi_malloc(100), *q = mi_malloc(20000);
  mi_free(p);
  mi_free(q);
}

typedef struct child_result_s {
  int status;
  char output[4096];
} child_result_t;

/* Run `fn` in a forked child, stderr captured. */
static bool run_child(void (*fn)(void), child_result_t *res) {
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
    fn();
    _exit(0); /* the misuse went unnoticed */
  }
  close(fds[1]);
  size_t len = 0;
  for (;;) {
    ssize_t r = read(fds[0], res->output + len, sizeof res->output - 1 - len);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    len += (size_t)r;
    if (len == sizeof res->output - 1) {
      char drain[512]; /* keep reading so the child never blocks on a full pipe */
      while (read(fds[0], drain, sizeof drain) > 0) {
      }
      break;
    }
  }
  res->output[len] = '\0';
  close(fds[0]);
  while (waitpid(pid, &res->status, 0) < 0 && errno == EINTR) {
  }
  return true;
}

static void expect_abort(const char *what, void (*fn)(void), const char *word) {
  child_result_t res;
  bool ok = run_child(fn, &res);
  CHECKF(ok, "%s: could not fork", what);
  if (!ok) return;
  bool aborted = WIFSIGNALED(res.status) && WTERMSIG(res.status) == SIGABRT;
  bool said = strcasestr(res.output, word) != NULL;
  /* The first line of what the child said, for the log. */
  char first[200];
  size_t n = strcspn(res.output, "\n");
  if (n >= sizeof first) n = sizeof first - 1;
  memcpy(first, res.output, n);
  first[n] = '\0';
  printf("  - %-40s %s; said: \"%s\"\n", what,
         aborted                     ? "SIGABRT"
         : WIFSIGNALED(res.status)   ? strsignal(WTERMSIG(res.status))
         : WEXITSTATUS(res.status) == 0 ? "not detected (exit 0)"
                                        : "exited non-zero",
         first);
  CHECKF(aborted, "%s: child was not aborted (status 0x%x)", what, res.status);
  CHECKF(said, "%s: child's stderr does not mention \"%s\": %s", what, word, res.output);
}

int main(void) {
  printf("%s: misuse is reported and aborts (SA_DEBUG=%d)\n", TEST_NAME, SA_DEBUG);
  /* Touch the allocator in the parent first, so children inherit an initialised process. */
  void *warm = mi_malloc(10);
  mi_free(warm);

  child_result_t res;
  CHECK(run_child(valid_use, &res));
  CHECKF(WIFEXITED(res.status) && WEXITSTATUS(res.status) == 0,
         "a child doing valid malloc/free did not exit cleanly (status 0x%x): %s", res.status,
         res.output);
  printf("  - %-40s %s\n", "valid malloc/free in a child",
         WIFEXITED(res.status) && WEXITSTATUS(res.status) == 0 ? "exit 0" : "FAILED");

  expect_abort("double free (small)", double_free_small, "double free");
  expect_abort("double free after other frees", double_free_after_others, "double free");
  expect_abort("double free (medium)", double_free_medium, "double free");
  expect_abort("double free (first free cross-thread)", double_free_cross_thread, "double free");
  expect_abort("invalid free (stack address)", invalid_stack, "invalid");
  expect_abort("invalid free (global address)", invalid_global, "invalid");
  expect_abort("invalid free (system malloc block)", invalid_system_malloc, "invalid");
  expect_abort("invalid free (interior of a small block)", invalid_interior_small, "invalid");
  expect_abort("invalid free (interior of a medium block)", invalid_interior_medium, "invalid");
  return tu_finish();
}

#endif
