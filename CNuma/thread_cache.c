// The thread-local cache root and the heavy side of the asymmetric fence (fork.c resets the
// root in a fork child).
#define _GNU_SOURCE
#include "CNuma.h"

#include <errno.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

const uint64_t cnuma_no_cache[8] = {0};
void *const cnuma_empty_cache_root[CNUMA_CACHE_INDEX_COUNT] = {[0 ... CNUMA_CACHE_INDEX_COUNT - 1] = (void *)cnuma_no_cache};
__thread void *cnuma_thread_cache_root __attribute__((tls_model("initial-exec"))) = (void *)cnuma_empty_cache_root;

static int cnuma_membarrier(int command) { return (int)syscall(SYS_membarrier, command, 0, 0); }

static int cnuma_expedited_ready = 0;

int cnuma_heavy_barrier_register(void) {
    if (cnuma_membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0) {
        __atomic_store_n(&cnuma_expedited_ready, 1, __ATOMIC_RELEASE);
        return 0;
    }
    return -1;
}

int cnuma_heavy_barrier(void) {
    if (__atomic_load_n(&cnuma_expedited_ready, __ATOMIC_ACQUIRE) &&
        cnuma_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0)
        return 0;
    // MEMBARRIER_CMD_GLOBAL (formerly SHARED) waits for an RCU grace period: slow, but correct.
    // Its errno is the one reported when both fail.
    return cnuma_membarrier(MEMBARRIER_CMD_GLOBAL) == 0 ? 0 : -1;
}

void (*cnuma_allocator_reentry_guard)(int entering) = 0;
