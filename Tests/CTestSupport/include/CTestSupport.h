// Helpers for tests that need what Swift cannot express: seccomp strict mode, a raw thread
// exit, fork, and a malloc counter.
#ifndef CTEST_SUPPORT_H
#define CTEST_SUPPORT_H

#include <stddef.h>
#include <sys/types.h>

/// Enters seccomp strict mode for the calling thread: from now on only read, write, _exit and
/// sigreturn are allowed; any other system call kills the process. 0 on success.
int ctest_enter_seccomp_strict(void);
/// Writes a message with write(2) (allowed in strict mode).
void ctest_write(int fd, const char *message);
/// Ends the calling thread with the raw exit system call (allowed in strict mode).
__attribute__((noreturn)) void ctest_exit_thread(int status);
/// fork(2); the child continues in the caller.
pid_t ctest_fork(void);
/// Waits for a child; returns its exit status, or 128 + signal.
int ctest_wait(pid_t child);
/// _exit(2) for a fork child.
__attribute__((noreturn)) void ctest_exit_process(int status);
/// Calls the calling thread has made to malloc, calloc, realloc and the aligned variants.
/// The test binary interposes those functions (forwarding to glibc) to count them per thread;
/// under a sanitizer (which intercepts malloc itself) this returns -1.
long ctest_thread_allocation_count(void);
/// Pins the calling thread to one CPU (sched_setaffinity; CPU_SET is a macro Swift cannot call).
/// 0, or -1 and errno.
int ctest_pin_to_cpu(int cpu);

#endif
