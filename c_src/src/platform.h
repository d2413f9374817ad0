/* shardalloc: the platforms it builds for, refused at compile time everywhere else.
 *
 * The core is written for Linux: mmap/madvise(MADV_DONTNEED) semantics, the thread pointer as
 * the thread's identity, initial-exec TLS, glibc/musl malloc symbols in override.c, /proc and
 * getrusage for statistics, and a 64-bit address space of at most 48 bits (the segment map and
 * the cross-thread list word). Another system would build and then misbehave, so it stops here
 * with a message instead. Tested: x86-64 with glibc and with musl; aarch64 (glibc) under
 * qemu-user, where all tests pass but the three that hit the emulator's limits. */
#ifndef SHARDALLOC_PLATFORM_H
#define SHARDALLOC_PLATFORM_H

#if !defined(__linux__)
#error "shardalloc supports Linux only (x86-64 and aarch64); Windows, macOS and other systems are not supported"
#endif

#if !defined(__LP64__)
#error "shardalloc supports 64-bit Linux only (x86-64 and aarch64)"
#endif

#endif
