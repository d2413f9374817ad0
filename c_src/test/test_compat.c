/* test_compat: a program written against mimalloc's header builds and links unchanged, and
 * every function shardalloc.h declares is defined (this program calls each one: a missing
 * definition fails the link). Results are checked where cheap: sizes, zeroing, alignment,
 * strings, and that the registered output and error functions receive the messages. */
#define TEST_NAME "test_compat"
#include <errno.h>
#include <limits.h>
#include <stdint.h>

#include "mimalloc.h"
#include "testutil.h"

static bool aligned_at(const void *p, size_t alignment, size_t offset) {
  return p != NULL && ((uintptr_t)p + offset) % alignment == 0;
}

/* Half the address space: times 4 it overflows (volatile: the compiler must not see it). */
static volatile size_t huge = SIZE_MAX / 2;

static bool all_zero(const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++)
    if (b[i] != 0) return false;
  return true;
}

/* ---- Registered handlers: what they received ------------------------------------------- */
static char output_text[16384];
static size_t output_len;
static int output_calls;

static void collect_output(const char *msg, void *arg) {
  output_calls += arg == (void *)&output_calls;
  size_t n = strlen(msg);
  if (output_len + n >= sizeof(output_text)) n = sizeof(output_text) - 1 - output_len;
  memcpy(output_text + output_len, msg, n);
  output_len += n;
  output_text[output_len] = 0;
}

static int error_calls, last_error;
static void count_error(int err, void *arg) {
  error_calls += arg == (void *)&error_calls;
  last_error = err;
}

static unsigned long long last_heartbeat;
static int deferred_calls;
static bool deferred_force;
static void deferred(bool force, unsigned long long heartbeat, void *arg) {
  deferred_calls += arg == (void *)&deferred_calls;
  deferred_force = force;
  last_heartbeat = heartbeat;
}

/* ---- Default-heap entry points ----------------------------------------------------------- */
static void basic(void) {
  SECTION("basic allocation");
  char *p = mi_malloc(100);
  CHECK(p != NULL && mi_usable_size(p) >= 100);
  CHECK(mi_malloc_size(p) == mi_usable_size(p));
  CHECK(mi_malloc_usable_size(p) == mi_usable_size(p));
  CHECK(mi_malloc_good_size(100) == mi_good_size(100) && mi_good_size(100) >= 100);
  CHECK(mi__expand(p, 50) == p && mi_expand(p, 60) == p);
  CHECK(mi__expand(p, mi_usable_size(p) + 1) == NULL);
  p = mi_realloc(p, 200);
  p = mi_reallocf(p, 300);
  CHECK(p != NULL && mi_usable_size(p) >= 300);
  mi_free(p);
  int *n = mi_mallocn(10, sizeof(int));
  n = mi_reallocn(n, 20, sizeof(int));
  n = mi_reallocarray(n, 30, sizeof(int));
  CHECK(n != NULL && mi_usable_size(n) >= 30 * sizeof(int));
  mi_free_size(n, 30 * sizeof(int));
  CHECK(mi_mallocn(huge, 4) == NULL && errno == ENOMEM);
  int *z = mi_calloc(8, sizeof(int));
  CHECK(all_zero(z, 8 * sizeof(int)));
  mi_free(z);
  z = mi_zalloc(64);
  CHECK(all_zero(z, 64));
  z = mi_rezalloc(z, 4096);
  CHECK(all_zero(z, 4096));
  z = mi_recalloc(z, 2048, 4);
  CHECK(all_zero(z, 8192));
  mi_free(z);
  void *s = mi_malloc_small(16), *sz = mi_zalloc_small(32);
  CHECK(s != NULL && all_zero(sz, 32));
  mi_free(s);
  mi_free(sz);

  char *d = mi_strdup("compat");
  CHECK(d != NULL && strcmp(d, "compat") == 0);
  char *dn = mi_strndup("compatible", 6);
  CHECK(dn != NULL && strcmp(dn, "compat") == 0);
  mi_free(d);
  mi_free(dn);
  char *rp = mi_realpath("/", NULL);
  CHECK(rp != NULL && strcmp(rp, "/") == 0 && mi_is_in_heap_region(rp));
  mi_free(rp);
  char buf[PATH_MAX];
  CHECK(mi_realpath("/", buf) == buf && strcmp(buf, "/") == 0);
  CHECK(mi_realpath("/no/such/path/here", NULL) == NULL && errno == ENOENT);

  int local = 0;
  mi_cfree(&local); /* not ours: ignored, not reported */
  void *c = mi_malloc(24);
  CHECK(mi_check_owned(c) && !mi_check_owned(&local));
  mi_cfree(c);
}

static void aligned(void) {
  SECTION("aligned allocation");
  void *p = mi_malloc_aligned(100, 256);
  CHECK(aligned_at(p, 256, 0));
  p = mi_realloc_aligned(p, 5000, 256);
  CHECK(aligned_at(p, 256, 0));
  mi_free_aligned(p, 256);
  p = mi_malloc_aligned_at(100, 128, 16);
  CHECK(aligned_at(p, 128, 16));
  p = mi_realloc_aligned_at(p, 3000, 128, 16);
  CHECK(aligned_at(p, 128, 16));
  mi_free(p);
  unsigned char *z = mi_zalloc_aligned(300, 64);
  CHECK(aligned_at(z, 64, 0) && all_zero(z, 300));
  mi_free_size_aligned(z, 300, 64);
  z = mi_zalloc_aligned_at(300, 64, 8);
  CHECK(aligned_at(z, 64, 8) && all_zero(z, 300));
  z = mi_rezalloc_aligned_at(z, 6000, 64, 8);
  CHECK(aligned_at(z, 64, 8) && all_zero(z, 6000));
  z = mi_recalloc_aligned_at(z, 100, 100, 64, 8);
  CHECK(aligned_at(z, 64, 8) && all_zero(z, 10000));
  z = mi_aligned_offset_recalloc(z, 200, 100, 64, 8);
  CHECK(aligned_at(z, 64, 8) && all_zero(z, 20000));
  mi_free(z);
  z = mi_calloc_aligned(10, 30, 128);
  CHECK(aligned_at(z, 128, 0) && all_zero(z, 300));
  z = mi_rezalloc_aligned(z, 9000, 128);
  CHECK(aligned_at(z, 128, 0) && all_zero(z, 9000));
  z = mi_recalloc_aligned(z, 100, 100, 128);
  CHECK(aligned_at(z, 128, 0) && all_zero(z, 10000));
  z = mi_aligned_recalloc(z, 200, 100, 128);
  CHECK(aligned_at(z, 128, 0) && all_zero(z, 20000));
  mi_free(z);
  z = mi_calloc_aligned_at(10, 30, 128, 32);
  CHECK(aligned_at(z, 128, 32) && all_zero(z, 300));
  mi_free(z);
  CHECK(mi_calloc_aligned_at(huge, 4, 64, 8) == NULL && errno == ENOMEM);
  CHECK(mi_malloc_aligned_at(10, 3, 0) == NULL && errno == EINVAL);

  void *q = NULL;
  CHECK(mi_posix_memalign(&q, 64, 100) == 0 && aligned_at(q, 64, 0));
  mi_free(q);
  q = mi_memalign(512, 10);
  CHECK(aligned_at(q, 512, 0));
  mi_free(q);
  q = mi_aligned_alloc(1024, 1024);
  CHECK(aligned_at(q, 1024, 0));
  mi_free(q);
  q = mi_valloc(10);
  CHECK(aligned_at(q, 4096, 0));
  mi_free(q);
  q = mi_pvalloc(10);
  CHECK(aligned_at(q, 4096, 0) && mi_usable_size(q) >= 4096);
  mi_free(q);
}

/* ---- Heap variants ------------------------------------------------------------------------ */
static void heaps(void) {
  SECTION("heap variants");
  mi_heap_t *heap = mi_heap_new();
  CHECK(heap != NULL);
  if (heap == NULL) return;
  void *p = mi_heap_malloc(heap, 10);
  CHECK(mi_heap_contains_block(heap, p) && mi_heap_check_owned(heap, p));
  p = mi_heap_realloc(heap, p, 100);
  p = mi_heap_reallocf(heap, p, 1000);
  CHECK(mi_heap_contains_block(heap, p) && mi_usable_size(p) >= 1000);
  mi_free(p);
  int *n = mi_heap_mallocn(heap, 10, sizeof(int));
  n = mi_heap_reallocn(heap, n, 1000, sizeof(int));
  CHECK(mi_heap_contains_block(heap, n) && mi_usable_size(n) >= 1000 * sizeof(int));
  mi_free(n);
  CHECK(mi_heap_mallocn(heap, huge, 4) == NULL && errno == ENOMEM);
  CHECK(mi_heap_reallocn(heap, NULL, huge, 4) == NULL && errno == ENOMEM);
  void *s = mi_heap_malloc_small(heap, 8);
  CHECK(mi_heap_contains_block(heap, s));
  mi_free(s);

  unsigned char *z = mi_heap_zalloc(heap, 100);
  CHECK(all_zero(z, 100));
  z = mi_heap_rezalloc(heap, z, 5000);
  CHECK(all_zero(z, 5000) && mi_heap_contains_block(heap, z));
  z = mi_heap_recalloc(heap, z, 1000, 10);
  CHECK(all_zero(z, 10000));
  mi_free(z);
  z = mi_heap_calloc(heap, 10, 10);
  CHECK(all_zero(z, 100));
  mi_free(z);

  char *d = mi_heap_strdup(heap, "heap string");
  CHECK(d != NULL && strcmp(d, "heap string") == 0 && mi_heap_contains_block(heap, d));
  char *dn = mi_heap_strndup(heap, "heap string", 4);
  CHECK(dn != NULL && strcmp(dn, "heap") == 0 && mi_heap_contains_block(heap, dn));
  CHECK(mi_heap_strdup(heap, NULL) == NULL && mi_heap_strndup(heap, NULL, 3) == NULL);
  char *rp = mi_heap_realpath(heap, "/", NULL);
  CHECK(rp != NULL && strcmp(rp, "/") == 0 && mi_heap_contains_block(heap, rp));
  mi_free(d);
  mi_free(dn);
  mi_free(rp);

  void *a = mi_heap_malloc_aligned(heap, 100, 256);
  CHECK(aligned_at(a, 256, 0) && mi_heap_contains_block(heap, a));
  a = mi_heap_realloc_aligned(heap, a, 9000, 256);
  CHECK(aligned_at(a, 256, 0));
  mi_free(a);
  a = mi_heap_malloc_aligned_at(heap, 100, 256, 24);
  CHECK(aligned_at(a, 256, 24) && mi_heap_contains_block(heap, a));
  a = mi_heap_realloc_aligned_at(heap, a, 9000, 256, 24);
  CHECK(aligned_at(a, 256, 24) && mi_heap_contains_block(heap, a));
  mi_free(a);
  z = mi_heap_zalloc_aligned(heap, 200, 128);
  CHECK(aligned_at(z, 128, 0) && all_zero(z, 200));
  z = mi_heap_rezalloc_aligned(heap, z, 7000, 128);
  CHECK(aligned_at(z, 128, 0) && all_zero(z, 7000));
  z = mi_heap_recalloc_aligned(heap, z, 100, 100, 128);
  CHECK(aligned_at(z, 128, 0) && all_zero(z, 10000));
  mi_free(z);
  z = mi_heap_zalloc_aligned_at(heap, 200, 128, 8);
  CHECK(aligned_at(z, 128, 8) && all_zero(z, 200));
  z = mi_heap_rezalloc_aligned_at(heap, z, 7000, 128, 8);
  CHECK(aligned_at(z, 128, 8) && all_zero(z, 7000));
  z = mi_heap_recalloc_aligned_at(heap, z, 100, 100, 128, 8);
  CHECK(aligned_at(z, 128, 8) && all_zero(z, 10000) && mi_heap_contains_block(heap, z));
  mi_free(z);
  z = mi_heap_calloc_aligned(heap, 10, 10, 64);
  CHECK(aligned_at(z, 64, 0) && all_zero(z, 100));
  mi_free(z);
  z = mi_heap_calloc_aligned_at(heap, 10, 10, 64, 16);
  CHECK(aligned_at(z, 64, 16) && all_zero(z, 100));
  /* z is left to mi_heap_destroy below */

  mi_heap_t *previous = mi_heap_set_default(heap);
  CHECK(mi_heap_get_default() == heap);
  void *from_default = mi_malloc(40);
  CHECK(mi_heap_contains_block(heap, from_default));
  CHECK(mi_heap_set_default(previous) == heap);
  CHECK(mi_heap_check(heap));
  mi_heap_collect(heap, true);
  mi_heap_destroy(heap);

  mi_heap_t *other = mi_heap_new();
  void *kept = mi_heap_malloc(other, 50);
  mi_heap_delete(other); /* the block moves to the default heap */
  CHECK(mi_heap_contains_block(mi_heap_get_default(), kept));
  mi_free(kept);
}

/* ---- Options, messages, statistics, process ----------------------------------------------- */
static void options_and_messages(void) {
  SECTION("options");
  long cache = mi_option_get(mi_option_segment_cache);
  mi_option_set(mi_option_segment_cache, 6);
  CHECK(mi_option_get(mi_option_segment_cache) == 6);
  CHECK(mi_option_get_size(mi_option_segment_cache) == 6);
  CHECK(mi_option_get_clamp(mi_option_segment_cache, 0, 3) == 3);
  mi_option_set_default(mi_option_segment_cache, 9); /* set in code: stays 6 */
  CHECK(mi_option_get(mi_option_segment_cache) == 6);
  mi_option_set(mi_option_segment_cache, cache);
  bool stats = mi_option_is_enabled(mi_option_show_stats);
  mi_option_set_enabled_default(mi_option_show_stats, !stats); /* no effect once set */
  mi_option_enable(mi_option_show_stats);
  CHECK(mi_option_is_enabled(mi_option_show_stats));
  mi_option_set_enabled_default(mi_option_show_stats, false); /* set in code: stays on */
  CHECK(mi_option_is_enabled(mi_option_show_stats));
  mi_option_disable(mi_option_show_stats);
  CHECK(!mi_option_is_enabled(mi_option_show_stats));
  mi_option_set_enabled(mi_option_show_stats, stats);
  long kib = mi_option_get(mi_option_reserve_os_memory);
  CHECK(mi_option_get_size(mi_option_reserve_os_memory) == (size_t)(kib > 0 ? kib : 0) * 1024);

  SECTION("output handler: statistics and verbose messages");
  mi_register_output(collect_output, &output_calls);
  mi_stats_print_out(NULL, NULL); /* NULL: the registered output */
  CHECK(output_calls > 0 && strstr(output_text, "shardalloc statistics") != NULL);
  output_len = 0, output_calls = 0, output_text[0] = 0;
  mi_stats_print(NULL);
  CHECK(output_calls > 0 && strstr(output_text, "size class") != NULL);
  mi_register_output(NULL, NULL);
  output_len = 0, output_calls = 0, output_text[0] = 0;
  mi_stats_print_out(collect_output, &output_calls); /* an explicit one, none registered */
  CHECK(output_calls > 0 && strstr(output_text, "shardalloc statistics") != NULL);

  SECTION("mi_reserve_os_memory");
  mi_register_output(collect_output, &output_calls);
  output_len = 0, output_calls = 0, output_text[0] = 0;
  long verbose = mi_option_get(mi_option_verbose);
  mi_option_enable(mi_option_verbose);
  int first = mi_reserve_os_memory(64u << 20, false, false);
  mi_option_set(mi_option_verbose, verbose);
  mi_register_output(NULL, NULL);
  if (kib <= 0) { /* no reservation at start: this one is made, and reported */
    CHECKF(first == 0, "mi_reserve_os_memory: %d", first);
    CHECK(strstr(output_text, "reserved 64 MiB") != NULL);
    mi_stats_snapshot_t snap;
    mi_stats_snapshot(&snap);
    CHECK(snap.reserved >= (64u << 20));
  } else {
    CHECK(first == ENOMEM);
  }
  CHECK(mi_reserve_os_memory(64u << 20, false, false) == ENOMEM); /* the arena has its one */
  CHECK(mi_reserve_os_memory(0, false, false) == EINVAL);

  SECTION("error handler");
  mi_register_error(count_error, &error_calls);
#if SA_DEBUG == 0 && !SA_SECURE /* debug and secure builds abort on misuse instead */
  int local;
  void *volatile foreign = &local;
  mi_free(foreign);
  CHECK(error_calls == 1 && last_error == EINVAL);
#endif
  mi_register_error(NULL, NULL);

  SECTION("deferred free");
  mi_register_deferred_free(deferred, &deferred_calls);
  mi_collect(false);
  CHECK(deferred_calls == 1 && !deferred_force);
  unsigned long long beat = last_heartbeat;
  mi_collect(true);
  CHECK(deferred_calls == 2 && deferred_force && last_heartbeat == beat + 1);
  mi_register_deferred_free(NULL, NULL);
  mi_collect(false);
  CHECK(deferred_calls == 2);

  SECTION("statistics and process");
  mi_stats_merge();
  mi_stats_reset();
  size_t elapsed = 0, rss = 0;
  mi_process_info(&elapsed, NULL, NULL, &rss, NULL, NULL, NULL, NULL);
  CHECK(rss > 0);
  CHECK(mi_version() == SHARDALLOC_VERSION);
  mi_thread_init();
  mi_thread_done();
  void *after = mi_malloc(10); /* re-creates the thread's heap */
  CHECK(after != NULL && mi_is_in_heap_region(after));
  mi_free(after);
}

/* The typed helpers of mimalloc.h. */
typedef struct pair_s {
  long a, b;
} pair_t;

static void typed(void) {
  SECTION("mimalloc.h typed helpers");
  pair_t *p = mi_zalloc_tp(pair_t);
  CHECK(p != NULL && p->a == 0 && p->b == 0);
  p = mi_reallocn_tp(p, pair_t, 4);
  CHECK(p != NULL && mi_usable_size(p) >= 4 * sizeof(pair_t));
  mi_free(p);
  p = mi_calloc_tp(pair_t, 3);
  CHECK(p != NULL && all_zero(p, 3 * sizeof(pair_t)));
  mi_free(p);
  CHECK(MI_SMALL_WSIZE_MAX * sizeof(void *) == MI_SMALL_SIZE_MAX);
}

int main(void) {
  basic();
  aligned();
  heaps();
  options_and_messages();
  typed();
  return tu_finish();
}
