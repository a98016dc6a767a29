// CBenchSupport: what the benchmark needs from C: peers reached through dlopen (memkind),
// libnuma's own allocator, CPU pinning, and a sink the optimizer cannot see through.
#ifndef CBENCH_SUPPORT_H
#define CBENCH_SUPPORT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/// numa_alloc_onnode / numa_free from libnuma.
void *cbench_numa_alloc_onnode(size_t size, int node);
void cbench_numa_free(void *pointer, size_t size);

/// memkind through dlopen("libmemkind.so.0"): 1 when the library and the kind work.
/// kind: 0 = MEMKIND_DEFAULT, 1 = MEMKIND_REGULAR (local nodes), 2 = MEMKIND_HUGETLB.
int cbench_memkind_open(int kind);
void *cbench_memkind_malloc(int kind, size_t size);
void cbench_memkind_free(int kind, void *pointer);
/// memkind_posix_memalign, or NULL.
void *cbench_memkind_posix_memalign(int kind, size_t alignment, size_t size);
/// The dlerror text of the last failed open, or "".
const char *cbench_memkind_error(void);

/// Pins the calling thread to one CPU; 0 on success.
int cbench_pin_to_cpu(int cpu);
/// Runs the calling thread under SCHED_FIFO at `priority` (0: back to SCHED_OTHER); 0 on success.
int cbench_set_fifo_priority(int priority);
/// Monotonic nanoseconds (clock_gettime, vDSO).
static inline uint64_t cbench_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
/// Makes the optimizer believe the value escapes.
static inline void cbench_escape(void *pointer) { __asm__ __volatile__("" : : "g"(pointer) : "memory"); }

/// Reads and writes a byte the optimizer cannot remove.
static inline void cbench_touch(void *pointer) { *(volatile unsigned char *)pointer += 1; }

#endif
