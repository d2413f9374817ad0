/* The situations real programs put an allocator in, run by tests/preload.rs with and without
 * LD_PRELOAD=libshardalloc.so (argv[1]: the path of lifecycle_lib.so):
 *   - allocation before main, in a constructor that runs before most others;
 *   - allocation at thread exit after the allocator tore the thread's heap down: in
 *     pthread key destructors that run after its own and re-arm themselves, and in C++-style
 *     thread_local destructors (__cxa_thread_atexit_impl);
 *   - fork from a multi-threaded parent whose threads keep allocating, with the children
 *     allocating, freeing the parent's blocks, starting threads and forking again;
 *   - a library loaded with dlopen that allocates in its constructor, destructor and threads,
 *     and trades blocks with the program, loaded and unloaded several times;
 *   - allocation at process exit: atexit handlers, destructors, and threads still
 *     allocating while the process exits.
 * stdout must be identical in both runs; stderr reports whether blocks were shardalloc's. */
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include "progutil.h"

static served_t served;

/* ---- Before main ------------------------------------------------------------------------ */
static char *early_block;
static void *early_big;

__attribute__((constructor(101))) static void early_init(void) {
  early_block = malloc(200);
  CHECK(early_block != NULL);
  fill(early_block, 200, 1);
  early_big = malloc(8 << 20); /* a huge block before main */
  CHECK(early_big != NULL);
  fill(early_big, 8 << 20, 2);
  char *dup = strdup("made in a constructor");
  CHECK(dup != NULL);
  free(dup);
}

static void before_main(void) {
  served_note(&served, early_block);
  served_note(&served, early_big);
  CHECK(verify(early_block, 200, 1));
  CHECK(verify(early_big, 8 << 20, 2));
  free(early_big);
  printf("before main: ok\n");
}

/* ---- Thread exit ------------------------------------------------------------------------ */
#define EXIT_THREADS 16
#define REARMS 3
static pthread_key_t late_key;
static void *kept[EXIT_THREADS][REARMS + 2]; /* blocks made during teardown, freed by main */
static int teardown_allocations;               /* atomic */

typedef struct exit_slot_s {
  int index;
  int rearmed;
} exit_slot_t;
static exit_slot_t exit_slots[EXIT_THREADS];

static void *teardown_alloc(int thread, int slot, uint64_t tag) {
  size_t size = 16 + (size_t)(thread * 37 + slot * 101) % 5000;
  void *p = malloc(size);
  CHECK(p != NULL);
  fill(p, size, tag);
  void *scratch = calloc(10, 100); /* allocated and freed during teardown */
  CHECK(scratch != NULL);
  free(scratch);
  __atomic_add_fetch(&teardown_allocations, 1, __ATOMIC_RELAXED);
  return p;
}

/* A key made after the allocator's, so its destructor runs after the allocator's in each
 * round; it re-arms itself, so it also runs in later rounds. */
static void late_destructor(void *value) {
  exit_slot_t *s = value;
  kept[s->index][s->rearmed] = teardown_alloc(s->index, s->rearmed, 1000u + (uint64_t)s->index);
  if (++s->rearmed < REARMS) CHECK(pthread_setspecific(late_key, s) == 0);
}

/* glibc's registration of a thread_local destructor: these run before the key destructors */
extern int __cxa_thread_atexit_impl(void (*fn)(void *), void *arg, void *dso) __attribute__((weak));
extern void *__dso_handle;

static void thread_local_destructor(void *value) {
  exit_slot_t *s = value;
  kept[s->index][REARMS] = teardown_alloc(s->index, REARMS, 2000u + (uint64_t)s->index);
}

static void *exiting_thread(void *arg) {
  exit_slot_t *s = arg;
  void *p = malloc(64); /* the thread has a heap before it exits */
  CHECK(p != NULL);
  free(p);
  if (__cxa_thread_atexit_impl != NULL)
    CHECK(__cxa_thread_atexit_impl(thread_local_destructor, s, &__dso_handle) == 0);
  CHECK(pthread_setspecific(late_key, s) == 0);
  return NULL;
}

static void thread_exit(void) {
  CHECK(pthread_key_create(&late_key, late_destructor) == 0);
  pthread_t threads[EXIT_THREADS];
  for (int i = 0; i < EXIT_THREADS; i++) {
    exit_slots[i].index = i;
    CHECK(pthread_create(&threads[i], NULL, exiting_thread, &exit_slots[i]) == 0);
  }
  for (int i = 0; i < EXIT_THREADS; i++) CHECK(pthread_join(threads[i], NULL) == 0);
  int checked = 0;
  for (int i = 0; i < EXIT_THREADS; i++) {
    for (int slot = 0; slot <= REARMS; slot++) {
      void *p = kept[i][slot];
      if (p == NULL) continue;
      size_t size = 16 + (size_t)(i * 37 + slot * 101) % 5000;
      CHECK(verify(p, size, slot == REARMS ? 2000u + (uint64_t)i : 1000u + (uint64_t)i));
      served_note(&served, p);
      free(p); /* a block of a thread that is gone, made after its heap was torn down */
      checked++;
    }
  }
  printf("thread exit: %d teardown blocks checked\n", checked);
}

/* ---- fork from a multi-threaded parent -------------------------------------------------- */
#define FORKS 12
static int stop_busy; /* atomic */
static void *shared_slots[64];
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;

static void *busy_thread(void *arg) {
  uint64_t n = (uint64_t)(uintptr_t)arg;
  while (!__atomic_load_n(&stop_busy, __ATOMIC_RELAXED)) {
    size_t size = 1 + (n * 2654435761u) % 40000;
    void *p = malloc(size);
    CHECK(p != NULL);
    ((char *)p)[size - 1] = 1;
    pthread_mutex_lock(&shared_lock); /* trade blocks between the busy threads */
    void *old = shared_slots[n % 64];
    shared_slots[n % 64] = p;
    pthread_mutex_unlock(&shared_lock);
    free(old);
    n += 4;
  }
  return NULL;
}

static void *child_thread(void *arg) {
  void **p = arg;
  for (int i = 0; i < 2000; i++) {
    free(*p);
    *p = malloc((size_t)(i % 700) + 1);
    CHECK(*p != NULL);
  }
  return NULL;
}

/* What a forked child does; its exit status is its verdict (0: fine). */
static int child_main(void *parent_block, int depth) {
  if (!verify(parent_block, 1000, 3)) return 2;
  free(parent_block); /* a block of the parent's main thread */
  for (int i = 0; i < 64; i++) {
    free(shared_slots[i]); /* blocks of parent threads that do not exist in the child */
    shared_slots[i] = NULL;
  }
  void *blocks[4] = {0};
  pthread_t threads[4];
  for (int i = 0; i < 4; i++) CHECK(pthread_create(&threads[i], NULL, child_thread, &blocks[i]) == 0);
  for (int i = 0; i < 4; i++) CHECK(pthread_join(threads[i], NULL) == 0);
  for (int i = 0; i < 4; i++) free(blocks[i]);
  if (depth == 0) { /* and once more from the child, which now has had threads */
    void *block = malloc(1000);
    fill(block, 1000, 3);
    pid_t pid = fork();
    if (pid == 0) _exit(child_main(block, 1));
    free(block);
    int status;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) return 3;
  }
  return 0;
}

/* The program's own lock must be free in the child, as the allocator's are. */
static void lock_slots(void) { pthread_mutex_lock(&shared_lock); }
static void unlock_slots(void) { pthread_mutex_unlock(&shared_lock); }

static void fork_children(void) {
  CHECK(pthread_atfork(lock_slots, unlock_slots, unlock_slots) == 0);
  pthread_t busy[4];
  for (int i = 0; i < 4; i++)
    CHECK(pthread_create(&busy[i], NULL, busy_thread, (void *)(uintptr_t)i) == 0);
  int ok = 0;
  for (int i = 0; i < FORKS; i++) {
    void *block = malloc(1000);
    CHECK(block != NULL);
    fill(block, 1000, 3);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) _exit(child_main(block, 0));
    free(block);
    int status;
    CHECK(waitpid(pid, &status, 0) == pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) ok++;
    else fprintf(stderr, "fork child %d: status 0x%x\n", i, status);
    usleep(2000);
  }
  __atomic_store_n(&stop_busy, 1, __ATOMIC_RELAXED);
  for (int i = 0; i < 4; i++) CHECK(pthread_join(busy[i], NULL) == 0);
  for (int i = 0; i < 64; i++) free(shared_slots[i]);
  printf("fork: %d of %d children fine\n", ok, FORKS);
}

/* ---- dlopen ----------------------------------------------------------------------------- */
static void loaded_library(const char *path) {
  int rounds = 0;
  for (int round = 0; round < 5; round++) {
    void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (lib == NULL) {
      printf("dlopen: %s\n", dlerror());
      return;
    }
    char *(*make)(size_t, uint64_t) = (char *(*)(size_t, uint64_t))dlsym(lib, "lib_make");
    void (*take)(void *, size_t, uint64_t) = (void (*)(void *, size_t, uint64_t))dlsym(lib, "lib_take");
    void (*churn)(void **) = (void (*)(void **))dlsym(lib, "lib_churn");
    const void *(*ctor_block)(void) = (const void *(*)(void))dlsym(lib, "lib_ctor_block");
    CHECK(make && take && churn && ctor_block);
    served_note(&served, ctor_block());
    char *from_lib = make(5000, 40);
    served_note(&served, from_lib);
    CHECK(verify(from_lib, 5000, 40));
    free(from_lib);
    char *to_lib = malloc(7000);
    CHECK(to_lib != NULL);
    fill(to_lib, 7000, 41);
    take(to_lib, 7000, 41);
    void *blocks[1000];
    for (int i = 0; i < 1000; i++) blocks[i] = malloc(10);
    churn(blocks);
    for (int i = 0; i < 1000; i++) free(blocks[i]);
    CHECK(dlclose(lib) == 0);
    rounds++;
  }
  printf("dlopen: %d load/unload rounds\n", rounds);
}

/* ---- Process exit ----------------------------------------------------------------------- */
static char *exit_block;

static void *exit_racer(void *arg) {
  (void)arg;
  for (;;) { /* still allocating when the process exits */
    void *p = malloc(100);
    CHECK(p != NULL);
    free(p);
  }
  return NULL;
}

static void at_exit_handler(void) {
  CHECK(verify(exit_block, 300, 5));
  void *p = malloc(1 << 20);
  CHECK(p != NULL);
  free(p);
  printf("exit: atexit handler ok\n");
}

__attribute__((destructor)) static void late_fini(void) {
  free(exit_block); /* freed after atexit handlers, from a destructor */
  char *p = strdup("allocated in a destructor");
  CHECK(p != NULL);
  free(p);
}

static void process_exit(void) {
  exit_block = malloc(300);
  CHECK(exit_block != NULL);
  fill(exit_block, 300, 5);
  CHECK(atexit(at_exit_handler) == 0);
  for (int i = 0; i < 2; i++) {
    pthread_t t;
    CHECK(pthread_create(&t, NULL, exit_racer, NULL) == 0);
    CHECK(pthread_detach(t) == 0);
  }
}

int main(int argc, char **argv) {
  CHECK(argc == 2);
  before_main();
  thread_exit();
  fork_children();
  loaded_library(argv[1]);
  served_report("lifecycle blocks", &served);
  process_exit();
  fflush(stdout);
  return 0; /* exit() with racing threads, the atexit handler, the destructors */
}
