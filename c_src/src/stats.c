/* shardalloc: statistics. Process-wide counters for what goes to and from the OS (updated
 * where a system call happens anyway, so an atomic add costs nothing extra), per-thread
 * counters for blocks and pages (thread_stats_t in types.h), the list of live threads that a
 * snapshot sums over, and the printing. Nothing here runs on a fast path. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "internal.h"

/* ---- Process-wide counters (the list is SA_PROCESS_COUNTERS in internal.h) ------------- */
typedef struct process_counter_s {
  _Atomic(int64_t) current;
  _Atomic(int64_t) peak;
} process_counter_t;

#define SA_COUNTER_FIELD(name, label, bytes) process_counter_t name;
static struct {
  SA_PROCESS_COUNTERS(SA_COUNTER_FIELD)
} process;
#undef SA_COUNTER_FIELD

static process_counter_t *counter_of(sa_stat_t stat) {
  switch (stat) {
#define SA_COUNTER_CASE(name, label, bytes) \
  case SA_STAT_##name:                      \
    return &process.name;
    SA_PROCESS_COUNTERS(SA_COUNTER_CASE)
#undef SA_COUNTER_CASE
  }
  return NULL;
}

void _sa_stat_add(sa_stat_t stat, int64_t amount) {
  process_counter_t *c = counter_of(stat);
  int64_t now = atomic_fetch_add_explicit(&c->current, amount, memory_order_relaxed) + amount;
  int64_t peak = atomic_load_explicit(&c->peak, memory_order_relaxed);
  while (now > peak && !atomic_compare_exchange_weak_explicit(&c->peak, &peak, now,
                                                              memory_order_relaxed,
                                                              memory_order_relaxed)) {
  }
}

static int64_t counter_get(const process_counter_t *c) {
  return atomic_load_explicit(&c->current, memory_order_relaxed);
}

/* ---- Live threads and the totals of exited ones ------------------------------------------ */
pthread_mutex_t _sa_threads_lock = PTHREAD_MUTEX_INITIALIZER; /* init.c: fork */
static thread_t *threads_live;
static thread_stats_t threads_exited;

static void stats_add_into(thread_stats_t *into, thread_stats_t *from) {
  for (size_t bin = 0; bin < BIN_COUNT; bin++) {
    atomic_fetch_add_explicit(&into->in_use[bin],
                              atomic_load_explicit(&from->in_use[bin], memory_order_relaxed),
                              memory_order_relaxed);
    atomic_fetch_add_explicit(&into->pages[bin],
                              atomic_load_explicit(&from->pages[bin], memory_order_relaxed),
                              memory_order_relaxed);
    atomic_store_explicit(&from->in_use[bin], 0, memory_order_relaxed);
    atomic_store_explicit(&from->pages[bin], 0, memory_order_relaxed);
  }
}

void _sa_stats_thread_start(thread_t *thread) {
  pthread_mutex_lock(&_sa_threads_lock);
  thread->prev_live = NULL;
  thread->next_live = threads_live;
  if (threads_live != NULL) threads_live->prev_live = thread;
  threads_live = thread;
  pthread_mutex_unlock(&_sa_threads_lock);
  _sa_stat_add(SA_STAT_threads, 1);
}

void _sa_stats_thread_done(thread_t *thread) {
  pthread_mutex_lock(&_sa_threads_lock);
  stats_add_into(&threads_exited, &thread->stats);
  if (thread->prev_live != NULL) thread->prev_live->next_live = thread->next_live;
  else threads_live = thread->next_live;
  if (thread->next_live != NULL) thread->next_live->prev_live = thread->prev_live;
  pthread_mutex_unlock(&_sa_threads_lock);
  _sa_stat_add(SA_STAT_threads, -1);
}

void mi_stats_merge(void) {
  heap_t *heap = _sa_heap_default;
  if (heap == &_sa_heap_empty) return;
  pthread_mutex_lock(&_sa_threads_lock);
  stats_add_into(&threads_exited, &heap->thread->stats);
  pthread_mutex_unlock(&_sa_threads_lock);
}

void _sa_threads_each(bool (*fn)(thread_t *thread, void *arg), void *arg) {
  pthread_mutex_lock(&_sa_threads_lock);
  for (thread_t *t = threads_live; t != NULL; t = t->next_live)
    if (!fn(t, arg)) break;
  pthread_mutex_unlock(&_sa_threads_lock);
}

/* ---- Snapshots ---------------------------------------------------------------------------- */
static size_t clamp0(int64_t v) { return v < 0 ? 0 : (size_t)v; }

void mi_stats_snapshot(mi_stats_snapshot_t *out) {
  if (out == NULL) return;
  memset(out, 0, sizeof(*out));
  int64_t in_use[BIN_COUNT], pages[BIN_COUNT];
  pthread_mutex_lock(&_sa_threads_lock);
  for (size_t bin = 0; bin < BIN_COUNT; bin++) {
    in_use[bin] = atomic_load_explicit(&threads_exited.in_use[bin], memory_order_relaxed);
    pages[bin] = atomic_load_explicit(&threads_exited.pages[bin], memory_order_relaxed);
  }
  for (thread_t *t = threads_live; t != NULL; t = t->next_live) {
    for (size_t bin = 0; bin < BIN_COUNT; bin++) {
      in_use[bin] += atomic_load_explicit(&t->stats.in_use[bin], memory_order_relaxed);
      pages[bin] += atomic_load_explicit(&t->stats.pages[bin], memory_order_relaxed);
    }
  }
  pthread_mutex_unlock(&_sa_threads_lock);

  size_t in_use_bytes = 0, page_bytes = 0;
  out->bins = BIN_COUNT;
  for (size_t bin = 0; bin < BIN_COUNT; bin++) {
    size_t bsize = sa_bin_size(bin);
    out->bin_block_size[bin] = bsize;
    out->bin_in_use[bin] = clamp0(in_use[bin]);
    out->bin_pages[bin] = clamp0(pages[bin]);
    in_use_bytes += out->bin_in_use[bin] * bsize;
    page_bytes += out->bin_pages[bin] * _sa_page_size_of_bin(bin);
  }
  out->huge_bytes = clamp0(counter_get(&process.huge_bytes));
  out->in_use = in_use_bytes + out->huge_bytes;
  out->page_bytes = page_bytes;
  out->reserved = clamp0(counter_get(&process.reserved));
  out->reserved_peak = clamp0(atomic_load_explicit(&process.reserved.peak, memory_order_relaxed));
  out->committed = clamp0(counter_get(&process.committed));
  out->committed_peak =
      clamp0(atomic_load_explicit(&process.committed.peak, memory_order_relaxed));
  out->segments = clamp0(counter_get(&process.segments));
  out->abandoned = clamp0(counter_get(&process.abandoned));
  out->threads = clamp0(counter_get(&process.threads));
  out->purges = clamp0(counter_get(&process.purges));
  out->purge_delay_raises = clamp0(counter_get(&process.purge_delay_raises));
  out->mmaps = clamp0(counter_get(&process.mmaps));
}

void mi_stats_reset(void) {
#define SA_COUNTER_RESET(name, label, bytes)                                   \
  atomic_store_explicit(&process.name.peak, counter_get(&process.name),        \
                        memory_order_relaxed);
  SA_PROCESS_COUNTERS(SA_COUNTER_RESET)
#undef SA_COUNTER_RESET
  atomic_store_explicit(&process.purges.current, 0, memory_order_relaxed);
  atomic_store_explicit(&process.purge_delay_raises.current, 0, memory_order_relaxed);
  atomic_store_explicit(&process.mmaps.current, 0, memory_order_relaxed);
  atomic_store_explicit(&process.thp_advice.current, 0, memory_order_relaxed);
}

/* ---- Process information --------------------------------------------------------------- */
static int64_t process_start_ms;

void _sa_stats_process_start(void) { process_start_ms = _sa_clock_ms(); }

void mi_process_info(size_t *elapsed_msecs, size_t *user_msecs, size_t *system_msecs,
                     size_t *current_rss_out, size_t *peak_rss, size_t *current_commit,
                     size_t *peak_commit, size_t *page_faults) {
  _sa_process_init(); /* the start time */
  sa_os_usage_t usage;
  _sa_os_usage(&usage);
  if (elapsed_msecs) *elapsed_msecs = clamp0(_sa_clock_ms() - process_start_ms);
  if (user_msecs) *user_msecs = usage.user_ms;
  if (system_msecs) *system_msecs = usage.system_ms;
  /* the kernel updates the high-water mark that getrusage reports lazily: it may lag the
   * resident size read just after it, and a peak below the current value is no peak */
  size_t rss = _sa_os_current_rss();
  if (current_rss_out) *current_rss_out = rss;
  if (peak_rss) *peak_rss = usage.peak_rss > rss ? usage.peak_rss : rss;
  if (current_commit) *current_commit = clamp0(counter_get(&process.committed));
  if (peak_commit)
    *peak_commit = clamp0(atomic_load_explicit(&process.committed.peak, memory_order_relaxed));
  if (page_faults) *page_faults = usage.page_faults;
}

/* ---- Printing (no allocation: a stack buffer per line) ---------------------------------- */
/* Where the lines go: `out(line, arg)`, or the registered output when `out` is NULL. */
typedef struct printer_s {
  mi_output_fun *out;
  void *arg;
} printer_t;

static void print_line(const printer_t *to, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void print_line(const printer_t *to, const char *fmt, ...) {
  char buf[256];
  va_list args;
  va_start(args, fmt);
  int n = vsnprintf(buf, sizeof(buf), fmt, args);
  va_end(args);
  if (n < 0) return;
  if (to->out != NULL) to->out(buf, to->arg);
  else _sa_output(buf);
}

static void print_amount(const printer_t *to, const char *label, int64_t value, int64_t peak, bool bytes) {
  if (bytes)
    print_line(to, "  %-12s %14.1f MiB   peak %12.1f MiB\n", label, (double)value / 1048576.0,
               (double)peak / 1048576.0);
  else
    print_line(to, "  %-12s %14lld       peak %12lld\n", label, (long long)value, (long long)peak);
}

/* mimalloc's signature: `out` is an mi_output_fun passed as a data pointer. */
void mi_stats_print(void *out) {
  mi_output_fun *fun;
  memcpy(&fun, &out, sizeof(fun));
  mi_stats_print_out(fun, NULL);
}

void mi_stats_print_out(mi_output_fun *out, void *arg) {
  const printer_t printer = {out, arg}, *to = &printer;
  mi_stats_snapshot_t s;
  mi_stats_snapshot(&s);
  print_line(to, "shardalloc statistics (process):\n");
  print_line(to, "  %-12s %14.1f MiB\n", "in use", (double)s.in_use / 1048576.0);
  print_line(to, "  %-12s %14.1f MiB\n", "in pages", (double)s.page_bytes / 1048576.0);
#define SA_COUNTER_PRINT(name, label, bytes)                                    \
  print_amount(to, label, counter_get(&process.name),                               \
               atomic_load_explicit(&process.name.peak, memory_order_relaxed), bytes);
  SA_PROCESS_COUNTERS(SA_COUNTER_PRINT)
#undef SA_COUNTER_PRINT
  print_line(to, "  %-12s %14s %12s %10s\n", "size class", "blocks used", "bytes used", "pages");
  for (size_t bin = 0; bin < s.bins; bin++) {
    if (s.bin_pages[bin] == 0 && s.bin_in_use[bin] == 0) continue;
    print_line(to, "  %-12zu %14zu %12zu %10zu\n", s.bin_block_size[bin], s.bin_in_use[bin],
               s.bin_in_use[bin] * s.bin_block_size[bin], s.bin_pages[bin]);
  }
  size_t elapsed, user, sys, rss, peak_rss, commit, peak_commit, faults;
  mi_process_info(&elapsed, &user, &sys, &rss, &peak_rss, &commit, &peak_commit, &faults);
  print_line(to, "  process: elapsed %zu ms, user %zu ms, system %zu ms, rss %.1f MiB (peak %.1f "
             "MiB), page faults %zu\n",
             elapsed, user, sys, (double)rss / 1048576.0, (double)peak_rss / 1048576.0, faults);
}
