#define _GNU_SOURCE
#include "CTestSupport.h"

#include <errno.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int ctest_enter_seccomp_strict(void) { return prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0); }

void ctest_write(int fd, const char *message) { (void)!write(fd, message, strlen(message)); }

void ctest_exit_thread(int status) {
    for (;;) syscall(SYS_exit, status);
}

pid_t ctest_fork(void) { return fork(); }

int ctest_pin_to_cpu(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set);
}

int ctest_wait(pid_t child) {
    int status = 0;
    while (waitpid(child, &status, 0) < 0) {}
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

void ctest_exit_process(int status) { _exit(status); }

#if defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
#define CTEST_SANITIZED 1
#endif
#endif

#ifndef CTEST_SANITIZED
// Counting interposers: the test binary's malloc family forwards to glibc and counts per thread,
// so a test can prove a code path allocates nothing while other threads allocate freely.
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);

static __thread long ctest_allocations;

void *malloc(size_t size) { ctest_allocations++; return __libc_malloc(size); }
void *calloc(size_t count, size_t size) { ctest_allocations++; return __libc_calloc(count, size); }
void *realloc(void *pointer, size_t size) { ctest_allocations++; return __libc_realloc(pointer, size); }
void *memalign(size_t alignment, size_t size) { ctest_allocations++; return __libc_memalign(alignment, size); }
void *aligned_alloc(size_t alignment, size_t size) { ctest_allocations++; return __libc_memalign(alignment, size); }
int posix_memalign(void **result, size_t alignment, size_t size) {
    ctest_allocations++;
    void *pointer = __libc_memalign(alignment, size);
    if (pointer == NULL) return ENOMEM;
    *result = pointer;
    return 0;
}

long ctest_thread_allocation_count(void) { return ctest_allocations; }
#else
// Sanitizers intercept malloc themselves; without the interposers nothing is counted.
long ctest_thread_allocation_count(void) { return -1; }
#endif
