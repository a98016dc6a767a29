// fork without exec while other threads are inside the allocator: the case Python's
// multiprocessing (fork start method) and a threaded program's subprocess children meet.
// Run under LD_PRELOAD=libBuddyPoolsMalloc.so. Worker threads allocate and free sizes from 16 B
// to 4 MiB and hand blocks to each other, so they are often inside a pool's locked sections
// (depot refills, slab refills, runs, remote frees) when the main thread forks. Each child
// writes to a block the parent allocated, then starts its own threads that allocate and free
// concurrently (contending for the same locks in the child), joins them and exits 0. A child
// that inherited a lock held at fork time, or whose locks misbehave under contention, hangs
// (killed by alarm after CHILD_SECONDS) or crashes: both are reported and fail the run. Each
// child also forks a grandchild while its threads churn (exit 7 when the grandchild failed).
//
// Usage: fork_storm [seconds]   (default 6; forks as many children as fit, at least 20)
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { PARENT_THREADS = 3, CHILD_THREADS = 3, SLOTS = 128, CHILD_ROUNDS = 4000, CHILD_SECONDS = 20, MINIMUM_FORKS = 20 };

static const char *(*pool_of)(const void *);
static atomic_int stop_workers;
static atomic_long parent_operations;
static _Atomic(void *) exchange[SLOTS];

static size_t random_size(unsigned *seed) {
    *seed = *seed * 1103515245u + 12345u;
    unsigned bits = (*seed >> 16) % 19;  // 16 B .. 4 MiB, log-uniform
    *seed = *seed * 1103515245u + 12345u;
    size_t base = (size_t)16 << bits;
    return base + (*seed >> 8) % base;
}

// Allocates, stamps and frees, trading blocks with the other threads through `exchange` so
// some frees are remote. Returns the number of stamp mismatches seen.
static int churn(unsigned seed, long rounds, atomic_int *stop) {
    int bad = 0;
    for (long round = 0; rounds < 0 || round < rounds; round++) {
        if (stop && atomic_load_explicit(stop, memory_order_relaxed)) break;
        size_t size = random_size(&seed);
        unsigned char *block = malloc(size);
        if (!block) { bad++; continue; }
        block[0] = 0xA5;
        block[size - 1] = 0x5A;
        void *old = atomic_exchange(&exchange[seed % SLOTS], block);
        if (old) {
            if (((unsigned char *)old)[0] != 0xA5) bad++;  // its size is not known here
            free(old);
        }
        if (stop) atomic_fetch_add_explicit(&parent_operations, 1, memory_order_relaxed);  // the parent's workers
    }
    return bad;
}

static void *parent_worker(void *argument) {
    int bad = churn((unsigned)(uintptr_t)argument * 2654435761u + 1, -1, &stop_workers);
    return (void *)(intptr_t)bad;
}

static void *child_worker(void *argument) {
    int bad = churn((unsigned)(uintptr_t)argument * 40503u + 3, CHILD_ROUNDS, NULL);
    return (void *)(intptr_t)bad;
}

static int run_child(unsigned char *inherited, size_t inherited_size) {
    alarm(CHILD_SECONDS);  // a child that hangs on a lock is killed and counted
    memset(inherited, 0x3C, inherited_size);
    free(inherited);
    pthread_t threads[CHILD_THREADS];
    for (int index = 0; index < CHILD_THREADS; index++)
        if (pthread_create(&threads[index], NULL, child_worker, (void *)(uintptr_t)index) != 0) return 3;
    // The forking thread churns too: its locks are the ones whose owner id Swift cached in the
    // parent, and the new threads contend for them.
    int bad = (int)(intptr_t)child_worker((void *)(uintptr_t)CHILD_THREADS);
    // A grandchild, forked while this child's threads may be inside the allocator (a child's
    // sections take turns, and its fork waits for them too), churns on two threads and exits.
    pid_t grandchild = fork();
    if (grandchild < 0) return 6;
    if (grandchild == 0) {
        alarm(CHILD_SECONDS);  // alarms are not inherited: a hung grandchild must not outlive the run
        pthread_t helper;
        if (pthread_create(&helper, NULL, child_worker, (void *)(uintptr_t)(CHILD_THREADS + 1)) != 0) _exit(3);
        int grand_bad = (int)(intptr_t)child_worker((void *)(uintptr_t)(CHILD_THREADS + 2));
        void *result;
        pthread_join(helper, &result);
        _exit(grand_bad + (int)(intptr_t)result == 0 ? 0 : 5);
    }
    int grand_status = 0;
    waitpid(grandchild, &grand_status, 0);
    if (!WIFEXITED(grand_status) || WEXITSTATUS(grand_status) != 0) return 7;
    for (int index = 0; index < CHILD_THREADS; index++) {
        void *result;
        pthread_join(threads[index], &result);
        bad += (int)(intptr_t)result;
    }
    void *probe = malloc(100);
    if (!probe || !pool_of(probe)) return 4;
    free(probe);
    return bad == 0 ? 0 : 5;
}

static double now(void) {
    struct timespec time;
    clock_gettime(CLOCK_MONOTONIC, &time);
    return (double)time.tv_sec + (double)time.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    pool_of = (const char *(*)(const void *))dlsym(RTLD_DEFAULT, "buddypools_pool_of");
    if (!pool_of) { fprintf(stderr, "fork_storm: libBuddyPoolsMalloc.so is not loaded (LD_PRELOAD)\n"); return 2; }
    double seconds = argc > 1 ? atof(argv[1]) : 6;
    pthread_t threads[PARENT_THREADS];
    for (int index = 0; index < PARENT_THREADS; index++)
        if (pthread_create(&threads[index], NULL, parent_worker, (void *)(uintptr_t)index) != 0) return 2;

    int forks = 0, hung = 0, crashed = 0, failed = 0;
    double start = now();
    while (forks < MINIMUM_FORKS || now() - start < seconds) {
        size_t size = 1 + (size_t)(forks * 7919) % 300000;
        unsigned char *inherited = malloc(size);
        if (!inherited) { failed++; break; }
        memset(inherited, 0x11, size);
        pid_t child = fork();
        if (child < 0) { perror("fork_storm: fork"); return 2; }
        if (child == 0) _exit(run_child(inherited, size));
        int status = 0;
        waitpid(child, &status, 0);
        forks++;
        if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) hung++;
        else if (WIFSIGNALED(status)) { crashed++; fprintf(stderr, "fork_storm: child %d died of signal %d\n", forks, WTERMSIG(status)); }
        else if (WEXITSTATUS(status) != 0) { failed++; fprintf(stderr, "fork_storm: child %d exited %d\n", forks, WEXITSTATUS(status)); }
        if (inherited[0] != 0x11 || inherited[size - 1] != 0x11) failed++;  // the child's writes are its own
        free(inherited);
    }
    atomic_store(&stop_workers, 1);
    int bad = 0;
    for (int index = 0; index < PARENT_THREADS; index++) {
        void *result;
        pthread_join(threads[index], &result);
        bad += (int)(intptr_t)result;
    }
    for (int slot = 0; slot < SLOTS; slot++) free(atomic_exchange(&exchange[slot], NULL));
    printf("fork_storm: %d forks in %.1f s while %d threads made %ld allocations: %d hung, %d crashed, %d failed, %d bad stamps\n",
           forks, now() - start, PARENT_THREADS, atomic_load(&parent_operations), hung, crashed, failed, bad);
    return hung + crashed + failed + bad == 0 ? 0 : 1;
}
