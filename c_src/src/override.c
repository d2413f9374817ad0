/* shardalloc: the malloc override. Built into libshardalloc.so (and into a Rust binary under
 * the `override` feature), never into libshardalloc.a: it defines the standard allocation
 * functions, glibc's __libc_* aliases and the C++ operator new/delete family, so that a
 * program started with LD_PRELOAD=libshardalloc.so (or linked with this object) allocates
 * everything from shardalloc.
 *
 * malloc and free inline the fast paths of internal.h: no extra call layer. The rest jump
 * to the mi_* function of the same meaning.
 *
 * operator new on exhaustion does what the C++ standard asks: it calls the installed
 * std::new_handler until one frees memory, and with none installed it throws std::bad_alloc
 * through libstdc++'s std::__throw_bad_alloc() (the nothrow forms return NULL). C cannot
 * throw, but it can call a function that does: the exception unwinds through this file's
 * frames with the unwind tables gcc emits by default on x86-64 and aarch64. Without
 * libstdc++ in the process (a C++ runtime loaded later with dlopen, or another one) it
 * reports the failure and aborts. */
#include <errno.h>

#include "internal.h"

#define sa_export __attribute__((visibility("default")))

/* ---- C and POSIX ---------------------------------------------------------------------------- */
sa_export void *malloc(size_t size) { return sa_heap_malloc(_sa_heap_default, size); }
sa_export void free(void *p) { sa_free(p); }
sa_export void cfree(void *p) { sa_free(p); }
sa_export void *calloc(size_t count, size_t size) { return mi_calloc(count, size); }
sa_export void *realloc(void *p, size_t size) { return mi_realloc(p, size); }
sa_export void *reallocarray(void *p, size_t count, size_t size) {
  return mi_reallocarray(p, count, size);
}
sa_export int posix_memalign(void **p, size_t alignment, size_t size) {
  return mi_posix_memalign(p, alignment, size);
}
sa_export void *aligned_alloc(size_t alignment, size_t size) {
  return mi_aligned_alloc(alignment, size);
}
sa_export void *memalign(size_t alignment, size_t size) { return mi_memalign(alignment, size); }
sa_export void *valloc(size_t size) { return mi_valloc(size); }
sa_export void *pvalloc(size_t size) { return mi_pvalloc(size); }
sa_export size_t malloc_usable_size(void *p) { return mi_usable_size(p); }

/* glibc's internal names, called directly by some programs and libraries */
sa_export void *__libc_malloc(size_t size) { return sa_heap_malloc(_sa_heap_default, size); }
sa_export void __libc_free(void *p) { sa_free(p); }
sa_export void *__libc_calloc(size_t count, size_t size) { return mi_calloc(count, size); }
sa_export void *__libc_realloc(void *p, size_t size) { return mi_realloc(p, size); }
sa_export void *__libc_memalign(size_t alignment, size_t size) {
  return mi_memalign(alignment, size);
}
sa_export void *__libc_valloc(size_t size) { return mi_valloc(size); }
sa_export void *__libc_pvalloc(size_t size) { return mi_pvalloc(size); }

/* ---- C++ operator new and delete (Itanium C++ ABI names) ---------------------------------- */
typedef void (*new_handler_t)(void);
/* std::get_new_handler() and std::__throw_bad_alloc(): weak, so C programs without
 * libstdc++ still link and load */
extern new_handler_t _ZSt15get_new_handlerv(void) __attribute__((weak));
extern void _ZSt17__throw_bad_allocv(void) __attribute__((weak, noreturn));

static void *new_retry(size_t size, size_t alignment, bool nothrow) {
  for (;;) {
    void *p = alignment <= 16 ? mi_malloc(size) : mi_malloc_aligned(size, alignment);
    if (p != NULL) return p;
    new_handler_t handler = _ZSt15get_new_handlerv ? _ZSt15get_new_handlerv() : NULL;
    if (handler == NULL) {
      if (nothrow) return NULL;
      if (_ZSt17__throw_bad_allocv) _ZSt17__throw_bad_allocv();
      _sa_fatal("operator new: out of memory allocating %zu bytes", size);
    }
    handler();
  }
}

sa_inline void *cxx_new(size_t size) {
  void *p = sa_heap_malloc(_sa_heap_default, size);
  return sa_likely(p != NULL) ? p : new_retry(size, 0, false);
}

sa_inline void *cxx_new_aligned(size_t size, size_t alignment, bool nothrow) {
  if (!sa_is_power_of_two(alignment)) {
    if (nothrow) return NULL;
    _sa_fatal("operator new: invalid alignment %zu", alignment);
  }
  void *p = mi_malloc_aligned(size, alignment);
  return sa_likely(p != NULL) ? p : new_retry(size, alignment, nothrow);
}

/* new(size_t), new[](size_t) */
sa_export void *_Znwm(size_t size) { return cxx_new(size); }
sa_export void *_Znam(size_t size) { return cxx_new(size); }
/* new(size_t, const std::nothrow_t&), new[](...) */
sa_export void *_ZnwmRKSt9nothrow_t(size_t size, const void *tag) {
  (void)tag;
  return new_retry(size, 0, true);
}
sa_export void *_ZnamRKSt9nothrow_t(size_t size, const void *tag) {
  (void)tag;
  return new_retry(size, 0, true);
}
/* new(size_t, std::align_val_t), new[](...) */
sa_export void *_ZnwmSt11align_val_t(size_t size, size_t alignment) {
  return cxx_new_aligned(size, alignment, false);
}
sa_export void *_ZnamSt11align_val_t(size_t size, size_t alignment) {
  return cxx_new_aligned(size, alignment, false);
}
/* new(size_t, std::align_val_t, const std::nothrow_t&), new[](...) */
sa_export void *_ZnwmSt11align_val_tRKSt9nothrow_t(size_t size, size_t alignment,
                                                    const void *tag) {
  (void)tag;
  return cxx_new_aligned(size, alignment, true);
}
sa_export void *_ZnamSt11align_val_tRKSt9nothrow_t(size_t size, size_t alignment,
                                                    const void *tag) {
  (void)tag;
  return cxx_new_aligned(size, alignment, true);
}

/* delete(void*), delete[](void*), and the sized, aligned and nothrow forms: the size and the
 * alignment are hints the block already knows. */
sa_export void _ZdlPv(void *p) { sa_free(p); }
sa_export void _ZdaPv(void *p) { sa_free(p); }
sa_export void _ZdlPvm(void *p, size_t size) {
  (void)size;
  sa_free(p);
}
sa_export void _ZdaPvm(void *p, size_t size) {
  (void)size;
  sa_free(p);
}
sa_export void _ZdlPvRKSt9nothrow_t(void *p, const void *tag) {
  (void)tag;
  sa_free(p);
}
sa_export void _ZdaPvRKSt9nothrow_t(void *p, const void *tag) {
  (void)tag;
  sa_free(p);
}
sa_export void _ZdlPvSt11align_val_t(void *p, size_t alignment) {
  (void)alignment;
  sa_free(p);
}
sa_export void _ZdaPvSt11align_val_t(void *p, size_t alignment) {
  (void)alignment;
  sa_free(p);
}
sa_export void _ZdlPvmSt11align_val_t(void *p, size_t size, size_t alignment) {
  (void)size;
  (void)alignment;
  sa_free(p);
}
sa_export void _ZdaPvmSt11align_val_t(void *p, size_t size, size_t alignment) {
  (void)size;
  (void)alignment;
  sa_free(p);
}
sa_export void _ZdlPvSt11align_val_tRKSt9nothrow_t(void *p, size_t alignment, const void *tag) {
  (void)alignment;
  (void)tag;
  sa_free(p);
}
sa_export void _ZdaPvSt11align_val_tRKSt9nothrow_t(void *p, size_t alignment, const void *tag) {
  (void)alignment;
  (void)tag;
  sa_free(p);
}
