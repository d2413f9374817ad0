/* fork_churn: fork from a busy multi-threaded parent.
 *
 * THREADS worker threads allocate and free at random over 1024 slots each (8-512 B, one
 * block in 16 up to 16 KiB), without pause, while the main thread forks FORKS times in a row.
 * Each child allocates and frees ALLOCS blocks (so it needs a working allocator right after
 * fork, whatever locks the workers held) and exits; the parent waits for it before the next
 * fork. Around a fork the allocator's atfork handlers run (prepare, then parent and child),
 * and every page the workers write afterwards is copied once (copy on write) while the child
 * lives, so an allocator that touches few pages per operation and holds its locks briefly
 * keeps the workers going.
 *
 * usage: fork_churn [threads=2] [forks=200] [allocs=1000]
 * prints: the workers' operations per second over the forking phase, the mean time of the
 * fork() call in the parent, the mean time from fork() to the child's exit being reaped, and
 * the process's peak RSS.
 */
#include "bench_common.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <unistd.h>

#define SLOTS 1024

typedef struct {
  long id;
  long ops;
} job_t;

static atomic_bool g_stop;
static atomic_long g_started;
static long g_child_allocs;

static size_t pick_size(rng_t *r) {
  return rng_below(r, 16) == 0 ? rng_range(r, 513, 16384) : rng_range(r, 8, 512);
}

static void *worker(void *arg) {
  job_t *job = arg;
  rng_t r;
  rng_seed(&r, (uint64_t)job->id + 1);
  unsigned char **slot = bench_check(calloc(SLOTS, sizeof(void *)));
  long ops = 0;
  atomic_fetch_add(&g_started, 1);
  while (!atomic_load_explicit(&g_stop, memory_order_relaxed)) {
    for (int k = 0; k < 256; k++) {
      size_t s = (size_t)rng_below(&r, SLOTS);
      if (slot[s] != NULL) {
        if (slot[s][0] != (unsigned char)s) bench_fail("fork_churn: block content changed");
        free(slot[s]);
      }
      slot[s] = bench_check(malloc(pick_size(&r)));
      slot[s][0] = (unsigned char)s;
      ops += 2;
    }
  }
  for (size_t s = 0; s < SLOTS; s++) free(slot[s]);
  free(slot);
  job->ops = ops;
  return NULL;
}

static void child_work(void) {
  rng_t r;
  rng_seed(&r, 99);
  void **blocks = malloc((size_t)g_child_allocs * sizeof(void *));
  if (blocks == NULL) _exit(2);
  for (long i = 0; i < g_child_allocs; i++) {
    blocks[i] = malloc(pick_size(&r));
    if (blocks[i] == NULL) _exit(2);
    ((unsigned char *)blocks[i])[0] = 1;
  }
  for (long i = 0; i < g_child_allocs; i++) free(blocks[i]);
  free(blocks);
  _exit(0);
}

int main(int argc, char **argv) {
  usage_if_asked(argc, argv, "usage: fork_churn [threads=2] [forks=200] [allocs=1000]\n");
  long threads = arg_long(argc, argv, 1, 2);
  long forks = arg_long(argc, argv, 2, 200);
  g_child_allocs = arg_long(argc, argv, 3, 1000);

  job_t *jobs = bench_check(calloc((size_t)threads, sizeof(job_t)));
  pthread_t *tid = bench_check(malloc((size_t)threads * sizeof(pthread_t)));
  for (long t = 0; t < threads; t++) {
    jobs[t].id = t;
    if (pthread_create(&tid[t], NULL, worker, &jobs[t]) != 0) bench_fail("pthread_create");
  }
  while (atomic_load(&g_started) < threads) sched_yield(); /* all of them busy before forking */

  double fork_s = 0, reap_s = 0;
  double t0 = now_s();
  for (long f = 0; f < forks; f++) {
    double a = now_s();
    pid_t pid = fork();
    if (pid < 0) bench_fail("fork");
    if (pid == 0) child_work();
    double b = now_s();
    int status;
    if (waitpid(pid, &status, 0) != pid) bench_fail("waitpid");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) bench_fail("fork_churn: child failed");
    fork_s += b - a;
    reap_s += now_s() - a;
  }
  double elapsed = now_s() - t0;
  atomic_store(&g_stop, true);
  long ops = 0;
  for (long t = 0; t < threads; t++) {
    pthread_join(tid[t], NULL);
    ops += jobs[t].ops;
  }
  double maxrss;
  long flt;
  self_usage(&maxrss, &flt);
  printf("fork_churn: %ld threads busy, %ld forks (child: %ld allocs): %.3f s, %.2f M ops/s, "
         "fork %.0f us, fork to reaped child %.0f us, peak RSS %.1f MiB\n",
         threads, forks, g_child_allocs, elapsed, (double)ops / elapsed / 1e6,
         fork_s / (double)forks * 1e6, reap_s / (double)forks * 1e6, maxrss);
  free(tid);
  free(jobs);
  return 0;
}
