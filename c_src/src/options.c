/* shardalloc: options and messages. Options are read once, at process init, straight from
 * `environ` (getenv may allocate in some libcs, and we may be the malloc it would call).
 * Messages are formatted into a stack buffer and written with write(2): no allocation. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

extern char **environ;

static bool option_verbose;
static bool option_show_errors = SA_DEBUG > 0;

/* The value of SHARDALLOC_<name>, or NULL. */
static const char *env_lookup(const char *name) {
  static const char prefix[] = "SHARDALLOC_";
  if (environ == NULL) return NULL;
  for (char **e = environ; *e != NULL; e++) {
    const char *s = *e;
    if (strncmp(s, prefix, sizeof(prefix) - 1) != 0) continue;
    s += sizeof(prefix) - 1;
    size_t n = strlen(name);
    if (strncmp(s, name, n) == 0 && s[n] == '=') return s + n + 1;
  }
  return NULL;
}

static bool env_bool(const char *name, bool fallback) {
  const char *v = env_lookup(name);
  if (v == NULL || *v == 0) return fallback;
  return !(v[0] == '0' || v[0] == 'n' || v[0] == 'N' || v[0] == 'f' || v[0] == 'F' ||
           ((v[0] == 'o' || v[0] == 'O') && (v[1] == 'f' || v[1] == 'F')));
}

void _sa_options_init(void) {
  option_verbose = env_bool("VERBOSE", false);
  option_show_errors = env_bool("SHOW_ERRORS", option_show_errors) || option_verbose;
}

static void vmessage(const char *prefix, const char *fmt, va_list args) {
  char buf[512];
  size_t n = (size_t)snprintf(buf, sizeof(buf), "%s", prefix);
  int m = vsnprintf(buf + n, sizeof(buf) - n - 1, fmt, args);
  if (m > 0) n += (size_t)m < sizeof(buf) - n - 1 ? (size_t)m : sizeof(buf) - n - 2;
  buf[n++] = '\n';
  _sa_os_write_stderr(buf, n);
}

void _sa_error(const char *fmt, ...) {
  if (!option_show_errors) return;
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
  if (!option_verbose) return;
  va_list args;
  va_start(args, fmt);
  vmessage("shardalloc: ", fmt, args);
  va_end(args);
}

void _sa_assert_fail(const char *expr, const char *file, int line, const char *func) {
  _sa_fatal("assertion failed: %s (%s:%d, %s)", expr, file, line, func);
}
