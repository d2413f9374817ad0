/* shardalloc: OS primitives. The only file that calls mmap, munmap, madvise or other system
 * calls that manage memory; the rest of the allocator asks these functions. */
#define _GNU_SOURCE /* mremap */
#include <errno.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

size_t _sa_os_page_size(void) {
  static size_t page_size;
  if (page_size == 0) {
    long n = sysconf(_SC_PAGESIZE);
    page_size = n > 0 ? (size_t)n : 4096;
  }
  return page_size;
}

int64_t _sa_clock_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *os_mmap_flags(void *hint, size_t size, int extra_flags) {
  int saved_errno = errno; /* a failed mmap must not leak its errno into a successful call */
  void *p = mmap(hint, size, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | extra_flags, -1, 0);
  errno = saved_errno;
  if (p == MAP_FAILED) return NULL;
  return p;
}

static void *os_mmap(void *hint, size_t size) { return os_mmap_flags(hint, size, 0); }

void _sa_os_advise_huge_pages(void *p, size_t size, bool on) {
#if defined(MADV_HUGEPAGE) && defined(MADV_NOHUGEPAGE)
  int saved_errno = errno;
  madvise(p, size, on ? MADV_HUGEPAGE : MADV_NOHUGEPAGE); /* THP mode "madvise" serves only
                                                             ranges marked so */
  errno = saved_errno;
#else
  (void)p;
  (void)size;
  (void)on;
#endif
}

int _sa_os_free(void *p, size_t size) {
  if (p == NULL || size == 0) return 0;
  sa_track_os_free(p, size);
  int saved_errno = errno;
  int err = munmap(p, size) == 0 ? 0 : errno;
  errno = saved_errno;
  return err;
}

/* Reserve `size` bytes at an address q with q + offset aligned to `align` (a power of two >=
 * the OS page size; offset a multiple of the page size). First try directly (the kernel often
 * hands out aligned addresses after an earlier aligned mapping), then over-reserve by `align`
 * and trim both ends. */
void *_sa_os_alloc_aligned_at(size_t size, size_t align, size_t offset) {
  if (size == 0 || size > HUGE_BLOCK_MAX + SEGMENT_SIZE) return NULL;
  offset &= align - 1;
  static _Atomic(uintptr_t) next_hint; /* where the last aligned mapping ended */
  uintptr_t hint = atomic_load_explicit(&next_hint, memory_order_relaxed);
  if (hint != 0) {
    void *p = os_mmap((void *)hint, size);
    if (p != NULL && (((uintptr_t)p + offset) & (align - 1)) == 0) {
      atomic_store_explicit(&next_hint, (uintptr_t)p + size, memory_order_relaxed);
      return p;
    }
    if (p != NULL) _sa_os_free(p, size);
  }
  size_t over = size + align;
  if (over < size) return NULL;
  uint8_t *raw = os_mmap(NULL, over);
  if (raw == NULL) return NULL;
  uint8_t *aligned = (uint8_t *)(sa_align_up((uintptr_t)raw + offset, align) - offset);
  size_t head = (size_t)(aligned - raw);
  size_t tail = over - head - size;
  if (head > 0) _sa_os_free(raw, head);
  if (tail > 0) _sa_os_free(aligned + size, tail);
  atomic_store_explicit(&next_hint, (uintptr_t)aligned + size, memory_order_relaxed);
  return aligned;
}

void *_sa_os_alloc_aligned(size_t size, size_t align) {
  return _sa_os_alloc_aligned_at(size, align, 0);
}

void *_sa_os_move_to(void *p, size_t size, size_t new_size, void *to) {
#ifdef MREMAP_FIXED
  int saved_errno = errno;
  void *moved = mremap(p, size, new_size, MREMAP_MAYMOVE | MREMAP_FIXED, to);
  errno = saved_errno;
  if (moved != MAP_FAILED) return moved;
#else
  (void)p;
  (void)size;
#endif
  _sa_os_free(to, new_size);
  return NULL;
}

void *_sa_os_reserve(size_t size, size_t align, bool large_pages, bool populate,
                     bool *explicit_large) {
  *explicit_large = false;
  int flags = populate ? MAP_POPULATE : 0;
#ifdef MAP_HUGETLB
  if (large_pages) { /* explicit 2 MiB pages: only where the system has some configured */
    size_t huge = (size_t)2 << 20;
    uint8_t *raw = os_mmap_flags(NULL, size + align, flags | MAP_HUGETLB);
    if (raw != NULL) {
      uint8_t *aligned = (uint8_t *)sa_align_up((uintptr_t)raw, align);
      size_t head = (size_t)(aligned - raw), tail = size + align - head - size;
      if (head > 0 && head % huge == 0) _sa_os_free(raw, head);
      if (tail > 0 && tail % huge == 0) _sa_os_free(aligned + size, tail);
      *explicit_large = true;
      return aligned;
    }
  }
#else
  (void)large_pages;
#endif
  void *p = _sa_os_alloc_aligned(size, align);
  if (p != NULL && large_pages) _sa_os_advise_huge_pages(p, size, true); /* transparent ones, then */
  if (p != NULL && populate) {
#ifdef MADV_POPULATE_WRITE
    int saved_errno = errno;
    madvise(p, size, MADV_POPULATE_WRITE);
    errno = saved_errno;
#endif
  }
  return p;
}

int _sa_os_purge(void *p, size_t size) {
  int saved_errno = errno;
  /* MADV_DONTNEED: the range is zero when next touched, which the allocator relies on to
   * skip clearing purged memory for calloc; MADV_FREE would leave old contents around. */
  int err = madvise(p, size, MADV_DONTNEED) == 0 ? 0 : errno;
  errno = saved_errno;
  return err;
}

bool _sa_os_resident_map(void *p, size_t pages, uint8_t *vec) {
  int saved_errno = errno;
  int err = mincore(p, pages * _sa_os_page_size(), (unsigned char *)vec);
  errno = saved_errno;
  return err == 0;
}

int _sa_os_protect(void *p, size_t size, bool noaccess) {
  int saved_errno = errno;
  int err = mprotect(p, size, noaccess ? PROT_NONE : PROT_READ | PROT_WRITE) == 0 ? 0 : errno;
  errno = saved_errno;
  return err;
}

bool _sa_os_random(void *buf, size_t n) {
  int saved_errno = errno;
  uint8_t *out = buf;
  while (n > 0) {
    ssize_t got = getrandom(out, n, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) break;
    out += got;
    n -= (size_t)got;
  }
  errno = saved_errno;
  return n == 0;
}

void _sa_os_write_stderr(const char *msg, size_t len) {
  while (len > 0) {
    ssize_t n = write(STDERR_FILENO, msg, len);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return;
    }
    msg += n;
    len -= (size_t)n;
  }
}

void _sa_os_yield(void) { sched_yield(); }

size_t _sa_os_current_rss(void) {
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[128];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = 0;
  const char *s = buf;
  while (*s != ' ' && *s != 0) s++; /* skip the total size */
  size_t pages = 0;
  while (*s == ' ') s++;
  while (*s >= '0' && *s <= '9') pages = pages * 10 + (size_t)(*s++ - '0');
  return pages * _sa_os_page_size();
}

void _sa_os_usage(sa_os_usage_t *usage) {
  struct rusage ru;
  memset(&ru, 0, sizeof(ru));
  getrusage(RUSAGE_SELF, &ru);
  usage->user_ms = (size_t)ru.ru_utime.tv_sec * 1000 + (size_t)ru.ru_utime.tv_usec / 1000;
  usage->system_ms = (size_t)ru.ru_stime.tv_sec * 1000 + (size_t)ru.ru_stime.tv_usec / 1000;
  usage->peak_rss = (size_t)ru.ru_maxrss * 1024;
  usage->page_faults = (size_t)ru.ru_minflt + (size_t)ru.ru_majflt;
}
