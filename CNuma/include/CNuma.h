// CNuma: the small C face of the OS that Swift cannot import by itself.
// Every symbol is prefixed cnuma_. Functions return -1 (or NULL) and leave errno set on failure.
#ifndef CNUMA_H
#define CNUMA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: Topology (libnuma and the scheduler)

/// 1 when the kernel supports NUMA policies (libnuma's numa_available() succeeded).
int cnuma_available(void);
/// Highest node id the kernel knows, or 0 without NUMA support.
int cnuma_max_node(void);
/// 1 if the node is present (online) according to libnuma.
int cnuma_node_present(int node);
/// Total bytes of the node; *free_bytes receives the free bytes. -1 when unknown.
long long cnuma_node_size(int node, long long *free_bytes);
/// numa_distance(a, b): 10 for local, 0 when unknown.
int cnuma_distance(int a, int b);
/// CPUs of a node into cpus[0..<capacity]; returns the count, or -1.
int cnuma_node_cpus(int node, int *cpus, int capacity);
/// Nodes this process may allocate on (cpuset mems_allowed); returns the count, or -1.
int cnuma_allowed_nodes(int *nodes, int capacity);
/// CPUs this thread may run on (sched_getaffinity); returns the count, or -1.
int cnuma_allowed_cpus(int *cpus, int capacity);
/// Number of CPUs configured in the system.
int cnuma_configured_cpus(void);
/// 1 when MPOL_PREFERRED_MANY is supported (kernel 5.15+).
int cnuma_has_preferred_many(void);
/// The CPU the calling thread runs on (glibc reads it from rseq), or -1.
int cnuma_current_cpu(void);

// MARK: Memory policy modes (values of the kernel's MPOL_*)

enum {
    CNUMA_MPOL_DEFAULT = 0,
    CNUMA_MPOL_PREFERRED = 1,
    CNUMA_MPOL_BIND = 2,
    CNUMA_MPOL_INTERLEAVE = 3,
    CNUMA_MPOL_LOCAL = 4,
    CNUMA_MPOL_PREFERRED_MANY = 5,
};

enum cnuma_advice {
    CNUMA_ADVISE_HUGEPAGE = 1,
    CNUMA_ADVISE_NOHUGEPAGE = 2,
    CNUMA_ADVISE_POPULATE_WRITE = 3,
    CNUMA_ADVISE_DONTFORK = 4,
    CNUMA_ADVISE_DONTNEED = 5,
};

// MARK: Mappings

/// Reserves address space only (PROT_NONE, no memory committed). NULL on failure.
void *cnuma_reserve_address_space(size_t length);
/// Maps read-write anonymous memory at addr (MAP_FIXED, replacing a reservation).
/// huge_page_shift: 0 for normal pages, 21 for 2 MiB hugetlb, 30 for 1 GiB hugetlb. NULL on failure.
void *cnuma_map_fixed(void *addr, size_t length, int huge_page_shift);
int cnuma_unmap(void *addr, size_t length);
/// mbind(2). mask holds maxnode bits of node ids.
int cnuma_mbind(void *addr, size_t length, int mode, const unsigned long *mask, unsigned long maxnode, unsigned int flags);
/// madvise(2) with one of cnuma_advice.
int cnuma_advise(void *addr, size_t length, enum cnuma_advice advice);
int cnuma_lock(void *addr, size_t length);
int cnuma_unlock(void *addr, size_t length);
/// move_pages(2) in query mode: status[i] receives the node of pages[i] or a negative errno.
long cnuma_query_page_nodes(void **pages, unsigned long count, int *status);
/// Writes one byte per page so each page is faulted in (for kernels without MADV_POPULATE_WRITE).
void cnuma_touch_pages(void *addr, size_t length, size_t page_size);

// MARK: Limits and accounting

/// RLIMIT_MEMLOCK soft limit in bytes; UINT64_MAX when unlimited.
uint64_t cnuma_memlock_limit(void);
/// Minor and major page faults of the calling thread (getrusage RUSAGE_THREAD).
int cnuma_thread_page_faults(long *minor, long *major);
/// Minor and major page faults of the whole process (RUSAGE_SELF).
int cnuma_process_page_faults(long *minor, long *major);

// MARK: Thread-local cache root and asymmetric fences (the allocation fast path)

/// The calling thread's cache root; initial-exec TLS so reading it is one mov from %fs.
extern __thread void *cnuma_thread_cache_root __attribute__((tls_model("initial-exec")));

static inline void *cnuma_thread_cache(void) { return cnuma_thread_cache_root; }
static inline void cnuma_set_thread_cache(void *root) { cnuma_thread_cache_root = root; }

/// Keeps the compiler from moving memory accesses across this point; emits no instruction.
/// Paired with cnuma_heavy_barrier() on the other side it orders like a full fence.
static inline void cnuma_compiler_barrier(void) { __asm__ __volatile__("" ::: "memory"); }

// ThreadSanitizer hooks, found at run time: Swift's clang importer does not see -fsanitize, so
// a compile-time test would always say no. The symbols are weak: 0 unless the TSan runtime is in.
extern void __tsan_acquire(void *address) __attribute__((weak));
extern void __tsan_release(void *address) __attribute__((weak));

/// 1 when the process runs under ThreadSanitizer. TSan cannot see membarrier(2) nor Swift's
/// Mutex on Linux, so under it the cache protocol uses sequentially consistent atomics and
/// locked sections are announced with the two calls below.
static inline int cnuma_under_thread_sanitizer(void) { return __tsan_acquire != 0; }
/// Tells TSan that what follows happens after everything before the matching release.
static inline void cnuma_tsan_acquire(void *address) { if (__tsan_acquire) __tsan_acquire(address); }
static inline void cnuma_tsan_release(void *address) { if (__tsan_release) __tsan_release(address); }

/// Increased in every fork child (by a pthread_atfork handler written in C, so the child
/// runs no Swift code while only async-signal-safe calls are allowed): pools made in an
/// earlier generation are unusable in this process.
extern int cnuma_fork_generation_counter;
static inline int cnuma_fork_generation(void) { return __atomic_load_n(&cnuma_fork_generation_counter, __ATOMIC_RELAXED); }
/// Installs the fork handler once (it also forgets the forking thread's cache root).
void cnuma_install_fork_handler(void);

/// Registers the process for expedited private membarrier; 0 on success.
int cnuma_heavy_barrier_register(void);
/// A full memory barrier on every CPU running a thread of this process (membarrier(2)).
/// Returns 0, or -1 when neither expedited nor global membarrier works.
int cnuma_heavy_barrier(void);

#ifdef __cplusplus
}
#endif

#endif
