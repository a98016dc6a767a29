// Mappings, memory policy, placement queries and limits.
#define _GNU_SOURCE
#include "CNuma.h"

#include <errno.h>
#include <numaif.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif
#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif

// The policy modes and flags Swift passes straight to mbind(2) are copies of the kernel's.
_Static_assert(CNUMA_MPOL_DEFAULT == MPOL_DEFAULT, "MPOL_DEFAULT");
_Static_assert(CNUMA_MPOL_PREFERRED == MPOL_PREFERRED, "MPOL_PREFERRED");
_Static_assert(CNUMA_MPOL_BIND == MPOL_BIND, "MPOL_BIND");
_Static_assert(CNUMA_MPOL_INTERLEAVE == MPOL_INTERLEAVE, "MPOL_INTERLEAVE");
_Static_assert(CNUMA_MPOL_LOCAL == MPOL_LOCAL, "MPOL_LOCAL");
#ifdef MPOL_PREFERRED_MANY
_Static_assert(CNUMA_MPOL_PREFERRED_MANY == MPOL_PREFERRED_MANY, "MPOL_PREFERRED_MANY");
#endif
_Static_assert(CNUMA_MPOL_MF_STRICT == MPOL_MF_STRICT, "MPOL_MF_STRICT");
_Static_assert(CNUMA_MPOL_MF_MOVE == MPOL_MF_MOVE, "MPOL_MF_MOVE");
// The fallbacks above stand for the kernel's values when the headers are older.
_Static_assert(MADV_POPULATE_WRITE == 23, "MADV_POPULATE_WRITE");
_Static_assert(MAP_HUGE_SHIFT == 26, "MAP_HUGE_SHIFT");

void *cnuma_reserve_address_space(size_t length) {
    void *p = mmap(NULL, length, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

void *cnuma_map_fixed(void *addr, size_t length, int huge_page_shift) {
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED;
    if (huge_page_shift > 0) flags |= MAP_HUGETLB | (huge_page_shift << MAP_HUGE_SHIFT);
    void *p = mmap(addr, length, PROT_READ | PROT_WRITE, flags, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

int cnuma_unmap(void *addr, size_t length) { return munmap(addr, length); }

int cnuma_commit(void *addr, size_t length) { return mprotect(addr, length, PROT_READ | PROT_WRITE); }

int cnuma_mbind(void *addr, size_t length, int mode, const unsigned long *mask, unsigned long maxnode,
                unsigned int flags) {
    // The raw system call, so the result does not depend on libnuma's error printing.
    return (int)syscall(SYS_mbind, addr, length, mode, mask, maxnode, flags);
}

int cnuma_advise(void *addr, size_t length, enum cnuma_advice advice) {
    int native;
    switch (advice) {
    case CNUMA_ADVISE_HUGEPAGE: native = MADV_HUGEPAGE; break;
    case CNUMA_ADVISE_NOHUGEPAGE: native = MADV_NOHUGEPAGE; break;
    case CNUMA_ADVISE_POPULATE_WRITE: native = MADV_POPULATE_WRITE; break;
    case CNUMA_ADVISE_DONTFORK: native = MADV_DONTFORK; break;
    case CNUMA_ADVISE_DONTNEED: native = MADV_DONTNEED; break;
    case CNUMA_ADVISE_DOFORK: native = MADV_DOFORK; break;
    default: errno = EINVAL; return -1;
    }
    return madvise(addr, length, native);
}

int cnuma_lock(void *addr, size_t length) { return mlock(addr, length); }
int cnuma_unlock(void *addr, size_t length) { return munlock(addr, length); }

long cnuma_query_page_nodes(void **pages, unsigned long count, int *status) {
    return syscall(SYS_move_pages, 0, count, pages, NULL, status, 0);
}

long cnuma_move_pages(void **pages, unsigned long count, const int *nodes, int *status) {
    return syscall(SYS_move_pages, 0, count, pages, nodes, status, MPOL_MF_MOVE);
}

void cnuma_touch_pages(void *addr, size_t length, size_t page_size) {
    volatile char *p = (volatile char *)addr;
    for (size_t offset = 0; offset < length; offset += page_size) p[offset] = 0;
}

int cnuma_memlock_limit(uint64_t *limit) {
    struct rlimit value;
    if (getrlimit(RLIMIT_MEMLOCK, &value) != 0) return -1;
    *limit = value.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)value.rlim_cur;
    return 0;
}

int cnuma_thread_page_faults(long *minor, long *major) {
    struct rusage usage;
    if (getrusage(RUSAGE_THREAD, &usage) != 0) return -1;
    *minor = usage.ru_minflt;
    *major = usage.ru_majflt;
    return 0;
}
