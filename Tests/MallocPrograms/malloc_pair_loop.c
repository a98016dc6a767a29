// The small-object loop of the bench's small-1t, written against malloc and free: 1024 live
// objects of 16 B..1 KiB, free a random one and allocate one (first byte written), PAIRS times,
// on THREADS threads at once (default 1), each with its own objects.
// scripts/count-instructions runs it under callgrind with each allocator preloaded; timed with
// two threads against one, it shows whether the allocator's paths share anything between threads.
//   malloc_pair_loop PAIRS [THREADS]
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

static long pairs = 200000;

static void *loop(void *argument) {
    enum { LIVE = 1024 };
    void **live = malloc(sizeof(void *) * LIVE);
    if (!live) return argument;
    uint64_t x = 88172645463325252ull + (uintptr_t)argument;  // xorshift64
    for (int i = 0; i < LIVE; i++) live[i] = malloc(16 + (size_t)(i * 37) % 1009);
    for (long i = 0; i < pairs; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t slot = x % LIVE;
        free(live[slot]);
        live[slot] = malloc(16 + (size_t)(x >> 20) % 1009);
        *(volatile char *)live[slot] = 1;
    }
    for (int i = 0; i < LIVE; i++) free(live[i]);
    free(live);
    return NULL;
}

int main(int argc, char **argv) {
    enum { MAX_THREADS = 64 };
    if (argc > 1) pairs = atol(argv[1]);
    int threads = argc > 2 ? atoi(argv[2]) : 1;
    if (threads < 1 || threads > MAX_THREADS) return 2;
    if (threads == 1) return loop(NULL) == NULL ? 0 : 1;
    pthread_t thread[MAX_THREADS];
    for (int i = 0; i < threads; i++) pthread_create(&thread[i], NULL, loop, (void *)(uintptr_t)i);
    for (int i = 0; i < threads; i++) pthread_join(thread[i], NULL);
    return 0;
}
