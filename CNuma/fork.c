// fork(2) and the pools: the fork generation, and the gate that keeps every locked section out
// of a fork so the child inherits no lock held and no waiter parked.
//
// Why a gate and not "take every lock in prepare, drop it in parent and child" (glibc malloc's
// way): the pools' locks are Swift Mutexes, which can only be held inside a closure, so an
// atfork handler cannot return holding one; and in the child the forking thread's cached
// thread id (Swift caches gettid() per thread) is its parent's, which a priority-inheritance
// futex rejects once the lock is contended. So prepare closes the gate and waits until no
// thread is inside a section; the child serializes its sections on a glibc mutex (whose owner
// bookkeeping glibc renews at fork), so its Swift Mutexes are never contended and never reach
// the kernel with a stale owner.
#define _GNU_SOURCE
#include "CNuma.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define CNUMA_INITIAL_EXEC __attribute__((tls_model("initial-exec")))

int cnuma_fork_generation_counter = 0;
__thread unsigned cnuma_section_depth CNUMA_INITIAL_EXEC = 0;
__thread long *cnuma_section_count CNUMA_INITIAL_EXEC = 0;
__thread int cnuma_section_holds_child_lock CNUMA_INITIAL_EXEC = 0;

// Threads inside a section, counted on 64 cache lines so sections of different threads rarely
// share one: a thread always counts on the same stripe (chosen round robin on first use).
enum { CNUMA_SECTION_STRIPES = 64 };
static struct { long count; char padding[64 - sizeof(long)]; } cnuma_section_stripes[CNUMA_SECTION_STRIPES]
    __attribute__((aligned(64)));
static unsigned cnuma_next_section_stripe = 0;

// The mode's flags; the mode is also the futex word sections wait on while the gate is closed.
enum { CNUMA_GATE_CLOSED = 1, CNUMA_SERIALIZED = 2 };
int cnuma_section_mode = 0;
// Set in the forking thread between prepare and parent/child: its own sections pass the gate
// (other libraries' prepare handlers, which run after ours, may allocate).
static __thread int cnuma_forking CNUMA_INITIAL_EXEC = 0;
// In a fork child every outermost section also holds this glibc mutex.
static pthread_mutex_t cnuma_child_sections = PTHREAD_MUTEX_INITIALIZER;

static long *cnuma_own_stripe(void) {
    if (cnuma_section_count == 0) {
        unsigned index = __atomic_fetch_add(&cnuma_next_section_stripe, 1, __ATOMIC_RELAXED) % CNUMA_SECTION_STRIPES;
        cnuma_section_count = &cnuma_section_stripes[index].count;
    }
    return cnuma_section_count;
}

void cnuma_section_enter_slowly(void) {
    long *count = cnuma_own_stripe();
    for (;;) {
        // Dekker with prepare: count, then look at the gate; prepare closes, then counts.
        __atomic_add_fetch(count, 1, __ATOMIC_SEQ_CST);
        if ((__atomic_load_n(&cnuma_section_mode, __ATOMIC_SEQ_CST) & CNUMA_GATE_CLOSED) == 0 || cnuma_forking) break;
        __atomic_sub_fetch(count, 1, __ATOMIC_SEQ_CST);
        int mode;
        while ((mode = __atomic_load_n(&cnuma_section_mode, __ATOMIC_ACQUIRE)) & CNUMA_GATE_CLOSED)
            syscall(SYS_futex, &cnuma_section_mode, FUTEX_WAIT_PRIVATE, mode, NULL, NULL, 0);
    }
    if (__atomic_load_n(&cnuma_section_mode, __ATOMIC_RELAXED) & CNUMA_SERIALIZED) {
        pthread_mutex_lock(&cnuma_child_sections);
        cnuma_section_holds_child_lock = 1;
    }
}

void cnuma_section_leave_slowly(void) {
    cnuma_section_holds_child_lock = 0;
    pthread_mutex_unlock(&cnuma_child_sections);
    __atomic_sub_fetch(cnuma_section_count, 1, __ATOMIC_RELEASE);
}

static long cnuma_sections_open(void) {
    long open = 0;
    for (int index = 0; index < CNUMA_SECTION_STRIPES; index++)
        open += __atomic_load_n(&cnuma_section_stripes[index].count, __ATOMIC_SEQ_CST);
    return open;
}

static void cnuma_before_fork(void) {
    // Forked from inside a section (a relocation handler or shrinker the pool called): waiting
    // would wait for this thread itself. Such a child is not protected (docs/architecture.md).
    if (cnuma_section_depth != 0) return;
    cnuma_forking = 1;
    __atomic_fetch_or(&cnuma_section_mode, CNUMA_GATE_CLOSED, __ATOMIC_SEQ_CST);
    // Sections are short (a few microseconds; a populate or mbind may take milliseconds).
    while (cnuma_sections_open() != 0) {
        struct timespec pause = {0, 20 * 1000};
        nanosleep(&pause, NULL);
    }
}

// Whether this thread closed the gate; if so, opens it.
static int cnuma_open_gate(void) {
    if (!cnuma_forking) return 0;
    cnuma_forking = 0;
    __atomic_fetch_and(&cnuma_section_mode, ~CNUMA_GATE_CLOSED, __ATOMIC_SEQ_CST);
    return 1;
}

static void cnuma_after_fork_in_parent(void) {
    if (cnuma_open_gate()) syscall(SYS_futex, &cnuma_section_mode, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

// Runs in the child, where only async-signal-safe work is allowed: plain stores.
static void cnuma_after_fork_in_child(void) {
    cnuma_thread_cache_root = (void *)cnuma_empty_cache_root;
    __atomic_add_fetch(&cnuma_fork_generation_counter, 1, __ATOMIC_RELAXED);
    // Only this thread exists here; only its own section (if it forked inside one) is open.
    for (int index = 0; index < CNUMA_SECTION_STRIPES; index++) cnuma_section_stripes[index].count = 0;
    if (cnuma_section_depth != 0) *cnuma_own_stripe() = 1;
    cnuma_open_gate();
    static const pthread_mutex_t unlocked = PTHREAD_MUTEX_INITIALIZER;
    cnuma_child_sections = unlocked;
    cnuma_section_holds_child_lock = 0;
    __atomic_fetch_or(&cnuma_section_mode, CNUMA_SERIALIZED, __ATOMIC_SEQ_CST);
}

static pthread_once_t cnuma_fork_handler_once = PTHREAD_ONCE_INIT;

static int cnuma_fork_handler_error = 0;

static void cnuma_register_fork_handler(void) {
    cnuma_fork_handler_error = pthread_atfork(cnuma_before_fork, cnuma_after_fork_in_parent, cnuma_after_fork_in_child);
}

int cnuma_install_fork_handler(void) {
    int once = pthread_once(&cnuma_fork_handler_once, cnuma_register_fork_handler);
    int error = once != 0 ? once : cnuma_fork_handler_error;
    if (error == 0) return 0;
    errno = error;  // pthread functions return their error number instead of setting errno
    return -1;
}
