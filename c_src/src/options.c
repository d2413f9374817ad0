/* shardalloc: options and messages. Options are read once, at process init, straight from
 * `environ` (getenv may allocate in some libcs, and we may be the malloc it would call).
 * Messages are formatted into a stack buffer and written with write(2): no allocation. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "internal.h"

extern char **environ;

/* ---- The options table ------------------------------------------------------------------- */
typedef enum option_state_e { OPTION_DEFAULT, OPTION_SET } option_state_t;

typedef struct option_desc_s {
  long value;
  option_state_t state;
  const char *name; /* SHARDALLOC_<name> */
} option_desc_t;

static option_desc_t options[_mi_option_last] = {
    [mi_option_show_errors] = {SA_DEBUG > 0, OPTION_DEFAULT, "SHOW_ERRORS"},
    [mi_option_show_stats] = {0, OPTION_DEFAULT, "SHOW_STATS"},
    [mi_option_verbose] = {0, OPTION_DEFAULT, "VERBOSE"},
    [mi_option_purge_delay] = {SA_PURGE_DELAY_DEFAULT, OPTION_DEFAULT, "PURGE_DELAY"},
    [mi_option_allow_large_os_pages] = {0, OPTION_DEFAULT, "ALLOW_LARGE_OS_PAGES"},
    [mi_option_reserve_os_memory] = {0, OPTION_DEFAULT, "RESERVE_OS_MEMORY"},
    [mi_option_arena_eager_commit] = {0, OPTION_DEFAULT, "ARENA_EAGER_COMMIT"},
    [mi_option_background_purge] = {1, OPTION_DEFAULT, "BACKGROUND_PURGE"},
    [mi_option_segment_cache] = {4, OPTION_DEFAULT, "SEGMENT_CACHE"},
};

/* The value of SHARDALLOC_<name>, or NULL. */
static const char *env_lookup(const char *name) {
  static const char prefix[] = "SHARDALLOC_";
  if (environ == NULL) return NULL;
  size_t n = strlen(name);
  for (char **e = environ; *e != NULL; e++) {
    const char *s = *e;
    if (strncmp(s, prefix, sizeof(prefix) - 1) != 0) continue;
    s += sizeof(prefix) - 1;
    if (strncmp(s, name, n) == 0 && s[n] == '=') return s + n + 1;
  }
  return NULL;
}

static bool text_equal(const char *a, const char *b) { return strcasecmp(a, b) == 0; }

/* "1", "0", "true", "off", "yes", a number with an optional K/M/G suffix (kibibytes for
 * reserve_os_memory, whose unit is KiB). false if the text is none of these. */
static bool parse_value(const char *text, mi_option_t option, long *value) {
  if (text_equal(text, "true") || text_equal(text, "yes") || text_equal(text, "on")) {
    *value = 1;
    return true;
  }
  if (text_equal(text, "false") || text_equal(text, "no") || text_equal(text, "off")) {
    *value = 0;
    return true;
  }
  char *end;
  long v = strtol(text, &end, 10);
  if (end == text) return false;
  if (option == mi_option_reserve_os_memory) {
    long scale = 1; /* KiB */
    if (*end == 'K' || *end == 'k') scale = 1, end++;
    else if (*end == 'M' || *end == 'm') scale = 1024, end++;
    else if (*end == 'G' || *end == 'g') scale = 1024 * 1024, end++;
    if (*end == 'i' || *end == 'I') end++;
    if (*end == 'B' || *end == 'b') end++;
    v *= scale;
  }
  if (*end != 0) return false;
  *value = v;
  return true;
}

void _sa_options_init(void) {
  for (int i = 0; i < _mi_option_last; i++) {
    option_desc_t *desc = &options[i];
    const char *text = env_lookup(desc->name);
    if (text == NULL || desc->state == OPTION_SET) continue;
    long value;
    if (parse_value(text, (mi_option_t)i, &value)) {
      desc->value = value;
      desc->state = OPTION_SET;
    } else {
      _sa_error("SHARDALLOC_%s: cannot read the value \"%s\"; kept %ld", desc->name, text,
                desc->value);
    }
  }
}

long mi_option_get(mi_option_t option) {
  if ((unsigned)option >= _mi_option_last) return 0;
  return __atomic_load_n(&options[option].value, __ATOMIC_RELAXED);
}

long mi_option_get_clamp(mi_option_t option, long min, long max) {
  long v = mi_option_get(option);
  return v < min ? min : v > max ? max : v;
}

void mi_option_set(mi_option_t option, long value) {
  if ((unsigned)option >= _mi_option_last) return;
  __atomic_store_n(&options[option].value, value, __ATOMIC_RELAXED);
  options[option].state = OPTION_SET;
}

void mi_option_set_default(mi_option_t option, long value) {
  if ((unsigned)option >= _mi_option_last || options[option].state == OPTION_SET) return;
  __atomic_store_n(&options[option].value, value, __ATOMIC_RELAXED);
}

bool mi_option_is_enabled(mi_option_t option) { return mi_option_get(option) != 0; }
void mi_option_enable(mi_option_t option) { mi_option_set(option, 1); }
void mi_option_disable(mi_option_t option) { mi_option_set(option, 0); }
void mi_option_set_enabled(mi_option_t option, bool enable) { mi_option_set(option, enable); }
void mi_option_set_enabled_default(mi_option_t option, bool enable) {
  mi_option_set_default(option, enable);
}

size_t mi_option_get_size(mi_option_t option) {
  long v = mi_option_get(option);
  if (v <= 0) return 0;
  return option == mi_option_reserve_os_memory ? (size_t)v * 1024 : (size_t)v;
}

/* ---- Registered handlers ------------------------------------------------------------------
 * A function and its argument are two words: a message racing a registration may pair the new
 * function with the old argument, as in any unsynchronised handler swap; registration is
 * meant for start-up. */
static mi_output_fun *_Atomic output_fun;
static void *_Atomic output_arg;
static mi_error_fun *_Atomic error_fun;
static void *_Atomic error_arg;
static mi_deferred_free_fun *_Atomic deferred_fun;
static void *_Atomic deferred_arg;
static _Atomic unsigned long long deferred_heartbeat;

void mi_register_output(mi_output_fun *out, void *arg) {
  output_arg = arg;
  output_fun = out;
}

void mi_register_error(mi_error_fun *fun, void *arg) {
  error_arg = arg;
  error_fun = fun;
}

void mi_register_deferred_free(mi_deferred_free_fun *fun, void *arg) {
  deferred_arg = arg;
  deferred_fun = fun;
}

void _sa_output(const char *msg) {
  mi_output_fun *out = output_fun;
  if (out != NULL) out(msg, output_arg);
  else _sa_os_write_stderr(msg, strlen(msg));
}

void _sa_deferred_free(bool force) {
  mi_deferred_free_fun *fun = deferred_fun;
  if (fun != NULL) fun(force, ++deferred_heartbeat, deferred_arg);
}

/* ---- Messages ----------------------------------------------------------------------------- */
static void vmessage(const char *prefix, const char *fmt, va_list args) {
  char buf[512];
  size_t n = (size_t)snprintf(buf, sizeof(buf), "%s", prefix);
  int m = vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, args);
  if (m > 0) n += (size_t)m < sizeof(buf) - n - 1 ? (size_t)m : sizeof(buf) - n - 2;
  buf[n++] = '\n';
  buf[n] = 0;
  _sa_output(buf);
}

void _sa_error(const char *fmt, ...) {
  mi_error_fun *on_error = error_fun;
  if (on_error != NULL) on_error(EINVAL, error_arg);
  if (!mi_option_is_enabled(mi_option_show_errors) && !mi_option_is_enabled(mi_option_verbose))
    return;
  va_list args;
  va_start(args, fmt);
  vmessage("shardalloc: error: ", fmt, args);
  va_end(args);
}

void _sa_fatal(const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vmessage("shardalloc: error: ", fmt, args);
  va_end(args);
  abort();
}

void _sa_verbose(const char *fmt, ...) {
  if (!mi_option_is_enabled(mi_option_verbose)) return;
  va_list args;
  va_start(args, fmt);
  vmessage("shardalloc: ", fmt, args);
  va_end(args);
}

static void message(const char *prefix, const char *fmt, ...) {
  va_list args;
  va_start(args, fmt);
  vmessage(prefix, fmt, args);
  va_end(args);
}

void _sa_check_failed(const char *expr, const char *file, int line) {
  message("shardalloc: heap check failed: ", "%s (%s:%d)", expr, file, line);
}

void _sa_assert_fail(const char *expr, const char *file, int line, const char *func) {
  _sa_fatal("assertion failed: %s (%s:%d, %s)", expr, file, line, func);
}
