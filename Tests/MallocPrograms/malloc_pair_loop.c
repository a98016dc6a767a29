// The small-object loop of the bench's small-1t, written against malloc and free: 1024 live
// objects of 16 B..1 KiB, free a random one and allocate one (first byte written), PAIRS times.
// scripts/count-instructions runs it under callgrind with each allocator preloaded.
//   malloc_pair_loop PAIRS
#include <stdint.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    enum { LIVE = 1024 };
    long pairs = argc > 1 ? atol(argv[1]) : 200000;
    static void *live[LIVE];
    uint64_t x = 88172645463325252ull;  // xorshift64
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
    return 0;
}
