// CNuma: the small C face of the OS that Swift cannot import by itself (libnuma, variadic
// syscall(2), mmap flags built from macros, __thread, static inline fences).
//
// Contract: every symbol is prefixed cnuma_. A function that can fail returns -1 (or NULL) and
// leaves errno set; predicates (cnuma_available, cnuma_node_present, ...) return 1 or 0 and
// say so. Swift reaches these only through the BuddySystem target, which wraps each call once.
#ifndef CNUMA_H
#define CNUMA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// MARK: Topology (libnuma and the scheduler)

/// Predicate: 1 when the kernel supports NUMA policies (libnuma's numa_available() succeeded).
int cnuma_available(void);
/// Highest node id the kernel knows; 0 without NUMA support (node 0 stands for the machine).
int cnuma_max_node(void);
/// Predicate: 1 if the node is present (online) according to libnuma.
int cnuma_node_present(int node);
/// Total bytes of the node, *free_bytes the free bytes; -1 and errno when the kernel cannot say.
long long cnuma_node_size(int node, long long *free_bytes);
/// numa_distance(a, b) (10 is local); -1 and errno (EINVAL) when unknown.
int cnuma_distance(int a, int b);
/// CPUs of a node into cpus[0..<capacity]; returns the count (which may exceed capacity), or -1.
int cnuma_node_cpus(int node, int *cpus, int capacity);
/// Nodes this process may allocate on (cpuset mems_allowed); the count, or -1.
int cnuma_allowed_nodes(int *nodes, int capacity);
/// CPUs this thread may run on (sched_getaffinity); the count, or -1.
int cnuma_allowed_cpus(int *cpus, int capacity);
/// Number of CPUs configured in the system, or -1.
int cnuma_configured_cpus(void);
/// Predicate: 1 when mbind accepts MPOL_PREFERRED_MANY (kernel 5.15+).
int cnuma_has_preferred_many(void);
/// The CPU the calling thread runs on (glibc reads it from rseq), or -1.
int cnuma_current_cpu(void);

// MARK: Memory policy modes and flags (the kernel's MPOL_*; memory.c asserts each value)

enum {
    CNUMA_MPOL_DEFAULT = 0,
    CNUMA_MPOL_PREFERRED = 1,
    CNUMA_MPOL_BIND = 2,
    CNUMA_MPOL_INTERLEAVE = 3,
    CNUMA_MPOL_LOCAL = 4,
    CNUMA_MPOL_PREFERRED_MANY = 5,
};

enum {
    CNUMA_MPOL_MF_STRICT = 1 << 0,
    CNUMA_MPOL_MF_MOVE = 1 << 1,
};

/// madvise(2) advice, mapped to the kernel's MADV_* in memory.c.
enum cnuma_advice {
    CNUMA_ADVISE_HUGEPAGE = 1,
    CNUMA_ADVISE_NOHUGEPAGE = 2,
    CNUMA_ADVISE_POPULATE_WRITE = 3,
    CNUMA_ADVISE_DONTFORK = 4,
    CNUMA_ADVISE_DONTNEED = 5,
    CNUMA_ADVISE_DOFORK = 6,
};

// MARK: Mappings

/// Reserves address space only (PROT_NONE, no memory committed). NULL and errno on failure.
void *cnuma_reserve_address_space(size_t length);
/// Maps read-write anonymous memory at addr (MAP_FIXED, replacing a reservation).
/// huge_page_shift: 0 for normal pages, 21 for 2 MiB hugetlb, 30 for 1 GiB hugetlb. NULL on failure.
void *cnuma_map_fixed(void *addr, size_t length, int huge_page_shift);
/// munmap(2): 0, or -1 and errno.
int cnuma_unmap(void *addr, size_t length);
/// Makes part of a reservation readable and writable (mprotect(2)): the memory is committed
/// then, as the kernel's overcommit accounting sees it. 0, or -1 and errno.
int cnuma_commit(void *addr, size_t length);
/// mbind(2). mask holds maxnode bits of node ids. 0, or -1 and errno.
int cnuma_mbind(void *addr, size_t length, int mode, const unsigned long *mask, unsigned long maxnode, unsigned int flags);
/// madvise(2) with one of cnuma_advice. 0, or -1 and errno.
int cnuma_advise(void *addr, size_t length, enum cnuma_advice advice);
/// mlock(2) / munlock(2): 0, or -1 and errno.
int cnuma_lock(void *addr, size_t length);
int cnuma_unlock(void *addr, size_t length);
/// move_pages(2) in query mode (nodes NULL): status[i] receives the node of pages[i] or a
/// negative errno. 0 when every page was queried; -1 and errno when the call failed.
long cnuma_query_page_nodes(void **pages, unsigned long count, int *status);
/// move_pages(2) moving pages[i] to nodes[i] (MPOL_MF_MOVE): status[i] receives the node each
/// page is on afterwards or a negative errno. 0, a positive count of pages not moved, or -1.
long cnuma_move_pages(void **pages, unsigned long count, const int *nodes, int *status);
/// Writes one byte per page so each page is faulted in (for kernels without MADV_POPULATE_WRITE).
void cnuma_touch_pages(void *addr, size_t length, size_t page_size);

// MARK: Limits and accounting

/// RLIMIT_MEMLOCK soft limit in bytes into *limit (UINT64_MAX when unlimited): 0, or -1 and errno.
int cnuma_memlock_limit(uint64_t *limit);
/// Minor and major page faults of the calling thread (getrusage RUSAGE_THREAD): 0, or -1 and errno.
int cnuma_thread_page_faults(long *minor, long *major);

// MARK: Thread-local cache root and asymmetric fences (the allocation fast path)

/// Thread-cache indices a root holds: pools with caches at once (more pools work through the lock).
#define CNUMA_CACHE_INDEX_COUNT 256

/// The root every thread starts with: each of its slots points at a header whose token is 0,
/// which no pool has, so the fast path reads root[index]->token without testing either pointer.
/// Never written; a thread that makes its first cache gets a root of its own.
extern void *const cnuma_empty_cache_root[CNUMA_CACHE_INDEX_COUNT];
/// The header every slot of an empty root points at (all zeros: token 0).
extern const uint64_t cnuma_no_cache[8];

/// The calling thread's cache root; initial-exec TLS so reading it is one mov from %fs. Never
/// NULL: `cnuma_empty_cache_root` until the thread makes a cache, and again after it exits.
extern __thread void *cnuma_thread_cache_root __attribute__((tls_model("initial-exec")));

static inline void *cnuma_thread_cache(void) { return cnuma_thread_cache_root; }
static inline void *cnuma_empty_thread_cache_root(void) { return (void *)cnuma_empty_cache_root; }
static inline void *cnuma_no_thread_cache(void) { return (void *)cnuma_no_cache; }
static inline void cnuma_set_thread_cache(void *root) { cnuma_thread_cache_root = root; }

/* Set by a malloc interposer (libBuddyPoolsMalloc's constructor): called with 1 before and 0
 * after work the library does outside any malloc call (a thread's exit hands its caches back),
 * so that work's own allocations and frees do not re-enter the pools it is changing. */
extern void (*cnuma_allocator_reentry_guard)(int entering);
static inline void cnuma_guard_allocator(int entering) {
    void (*guard)(int) = cnuma_allocator_reentry_guard;
    if (guard) guard(entering);
}

/// Keeps the compiler from moving memory accesses across this point; emits no instruction.
/// Paired with cnuma_heavy_barrier() on the other side it orders like a full fence.
static inline void cnuma_compiler_barrier(void) { __asm__ __volatile__("" ::: "memory"); }

// ThreadSanitizer hooks, found at run time: Swift's clang importer does not see -fsanitize, so
// a compile-time test would always say no. The symbols are weak: 0 unless the TSan runtime is in.
extern void __tsan_acquire(void *address) __attribute__((weak));
extern void __tsan_release(void *address) __attribute__((weak));

/// Predicate: 1 when the process runs under ThreadSanitizer. TSan cannot see membarrier(2) nor
/// Swift's Mutex on Linux, so under it the cache protocol uses sequentially consistent atomics
/// and locked sections are announced with the two calls below.
static inline int cnuma_under_thread_sanitizer(void) { return __tsan_acquire != 0; }
/// Tells TSan that what follows happens after everything before the matching release.
static inline void cnuma_tsan_acquire(void *address) { if (__tsan_acquire) __tsan_acquire(address); }
static inline void cnuma_tsan_release(void *address) { if (__tsan_release) __tsan_release(address); }

/// Increased in every fork child (by a pthread_atfork handler written in C, so the child
/// runs no Swift code while only async-signal-safe calls are allowed): pools made in an
/// earlier generation are unusable in this process.
extern int cnuma_fork_generation_counter;
static inline int cnuma_fork_generation(void) { return __atomic_load_n(&cnuma_fork_generation_counter, __ATOMIC_RELAXED); }
/// Installs the fork handlers once: 0, or -1 and errno (pthread_atfork's error number).
/// Prepare closes the section gate and waits until no thread is inside a locked section; the
/// child forgets the forking thread's cache root, bumps the generation and serializes its
/// sections (fork.c says why).
int cnuma_install_fork_handler(void);

/// How deep the calling thread is in the pools' locked sections (nested locks count each).
extern __thread unsigned cnuma_section_depth __attribute__((tls_model("initial-exec")));
/// The counter of threads inside sections this thread adds to (a cache-line stripe shared with
/// a few other threads); NULL until its first section.
extern __thread long *cnuma_section_count __attribute__((tls_model("initial-exec")));
/// 0 normally; nonzero while a fork is being prepared (sections wait) or in a fork child
/// (sections take turns): then entries and exits take the out-of-line path.
extern int cnuma_section_mode;
/// Set while this thread's outermost section holds the fork child's mutex.
extern __thread int cnuma_section_holds_child_lock __attribute__((tls_model("initial-exec")));
/// The out-of-line halves: a thread's first section, the fork gate, the child's mutex. Entering
/// slowly starts from an uncounted thread.
void cnuma_section_enter_slowly(void);
void cnuma_section_leave_slowly(void);
/// Around every locked section of the pools. Nested: one thread-local increment. Outermost:
/// one atomic add on the thread's stripe, one load of the mode, and (leaving) one atomic
/// subtract. The add is sequentially consistent: prepare closes the gate, then reads the
/// counts, so either it sees this thread counted or this thread sees the gate closed.
static inline void cnuma_section_enter(void) {
    if (cnuma_section_depth++ != 0) return;
    long *count = cnuma_section_count;
    if (__builtin_expect(count != 0, 1)) {
        __atomic_add_fetch(count, 1, __ATOMIC_SEQ_CST);
        if (__builtin_expect(__atomic_load_n(&cnuma_section_mode, __ATOMIC_SEQ_CST) == 0, 1)) return;
        __atomic_sub_fetch(count, 1, __ATOMIC_SEQ_CST);
    }
    cnuma_section_enter_slowly();
}
/// The calling thread's section depth (for assertions: Swift does not import __thread variables).
static inline unsigned cnuma_section_depth_now(void) { return cnuma_section_depth; }
static inline void cnuma_section_leave(void) {
    if (--cnuma_section_depth != 0) return;
    if (__builtin_expect(cnuma_section_holds_child_lock, 0)) { cnuma_section_leave_slowly(); return; }
    __atomic_sub_fetch(cnuma_section_count, 1, __ATOMIC_RELEASE);
}

/// Registers the process for expedited private membarrier: 0, or -1 and errno.
int cnuma_heavy_barrier_register(void);
/// A full memory barrier on every CPU running a thread of this process (membarrier(2),
/// expedited when registered, else the global command): 0, or -1 and errno.
int cnuma_heavy_barrier(void);

#ifdef __cplusplus
}
#endif

#endif
