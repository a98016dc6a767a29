// The C API from C: every entry point, threads freeing each other's blocks, fork, and the
// errors C expects. Each check prints what failed and the program exits 1; 0 means all held.
// Run by scripts/run-tests with BUDDYPOOLS naming two small pools ("heap" and "spare").
//
//   capi_test            every check
//   capi_test exhaust    BUDDYPOOLS_MALLOC_FALLBACK=fail: the pool runs dry, NULL with ENOMEM
//   capi_test badfree    fallback fail, a stack address freed: the process stops with a message
//   capi_test doublefree an object freed twice: the pool stops the process with its message
#include "buddypools.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures = 0;
#define CHECK(condition, ...) do { if (!(condition)) { failures++; fprintf(stderr, "FAILED %s:%d: ", __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static int from_pool(const void *pointer) { return buddypools_pool_of(pointer) != NULL; }

static void sizes_and_usable(void) {
    static const size_t sizes[] = {0, 1, 7, 8, 24, 100, 1000, 3840, 3841, 4096, 5000, 65536, 1 << 20, 3 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned char *block = buddypools_malloc(sizes[i]);
        CHECK(block != NULL, "malloc(%zu) failed", sizes[i]);
        if (!block) continue;
        CHECK(from_pool(block), "malloc(%zu) is not pool memory", sizes[i]);
        CHECK(((uintptr_t)block & 15) == 0, "malloc(%zu) not 16-byte aligned: %p", sizes[i], (void *)block);
        size_t usable = buddypools_malloc_usable_size(block);
        CHECK(usable >= sizes[i] && usable >= 1, "usable size %zu for malloc(%zu)", usable, sizes[i]);
        memset(block, 0xAB, usable);  // every usable byte is the caller's
        buddypools_free(block);
    }
    buddypools_free(NULL);
    CHECK(buddypools_malloc_usable_size(NULL) == 0, "usable size of NULL");
}

static void calloc_and_realloc(void) {
    unsigned char *zeroed = buddypools_calloc(1000, 8);
    CHECK(zeroed != NULL && from_pool(zeroed), "calloc(1000, 8)");
    for (int i = 0; zeroed && i < 8000; i++) CHECK(zeroed[i] == 0, "calloc byte %d is %d", i, zeroed[i]);
    buddypools_free(zeroed);
    errno = 0;
    CHECK(buddypools_calloc(SIZE_MAX / 2, 4) == NULL && errno == ENOMEM, "calloc overflow: errno %d", errno);

    // Growth keeps the data, across classes, blocks and runs of superblocks.
    size_t size = 10;
    unsigned char *block = buddypools_malloc(size);
    for (size_t i = 0; i < size; i++) block[i] = (unsigned char)(i * 7);
    while (size < (8u << 20)) {
        size_t next = size * 3;
        unsigned char *grown = buddypools_realloc(block, next);
        CHECK(grown != NULL && from_pool(grown), "realloc to %zu", next);
        if (!grown) return;
        for (size_t i = 0; i < size; i++) {
            if (grown[i] != (unsigned char)(i * 7)) { CHECK(0, "realloc to %zu lost byte %zu", next, i); break; }
        }
        for (size_t i = size; i < next; i++) grown[i] = (unsigned char)(i * 7);
        block = grown;
        size = next;
    }
    // Shrinking and growing within the block stay in place.
    unsigned char *same = buddypools_realloc(block, buddypools_malloc_usable_size(block));
    CHECK(same == block, "realloc to the usable size moved the block");
    CHECK(buddypools_realloc(block, 0) == NULL, "realloc(p, 0) frees and returns NULL");
    unsigned char *fresh = buddypools_realloc(NULL, 64);
    CHECK(fresh != NULL && from_pool(fresh), "realloc(NULL, 64) is malloc");
    buddypools_free(fresh);
}

static void alignments(void) {
    for (size_t alignment = 1; alignment <= (1u << 20); alignment <<= 1) {
        void *block = buddypools_aligned_alloc(alignment, 100);
        CHECK(block != NULL && ((uintptr_t)block % alignment) == 0 && from_pool(block), "aligned_alloc(%zu, 100): %p", alignment, block);
        buddypools_free(block);
    }
    void *result = NULL;
    CHECK(buddypools_posix_memalign(&result, 1u << 20, 3000) == 0 && ((uintptr_t)result & ((1u << 20) - 1)) == 0, "posix_memalign 1 MiB");
    CHECK(from_pool(result), "posix_memalign memory is pool memory");
    buddypools_free(result);
    CHECK(buddypools_posix_memalign(&result, 24, 100) == EINVAL, "posix_memalign(24) is EINVAL");
    CHECK(buddypools_posix_memalign(&result, 4, 100) == EINVAL, "posix_memalign(4) is EINVAL (below sizeof(void *))");
    errno = 0;
    CHECK(buddypools_aligned_alloc(48, 100) == NULL && errno == EINVAL, "aligned_alloc(48) is EINVAL");
}

// realloc grows a block into its free buddies without moving it. Run with a pool "grow" whose
// caches are off (`cache=off`), so its first block starts a superblock with every buddy free.
static void growth_in_place(void) {
    buddypools_pool_t grow = buddypools_pool_named("grow");
    CHECK(grow != NULL, "pool 'grow' not found");
    if (!grow) return;
    unsigned char *block = buddypools_malloc_in(grow, 300 << 10);  // a 512 KiB block
    CHECK(block != NULL && buddypools_malloc_usable_size(block) == 512 << 10, "malloc_in(grow, 300 KiB)");
    if (!block) return;
    for (size_t i = 0; i < (300 << 10); i++) block[i] = (unsigned char)(i * 13);
    unsigned char *grown = buddypools_realloc(block, 700 << 10);  // needs 1 MiB: the buddy above is free
    CHECK(grown == block, "realloc to 700 KiB moved the block from %p to %p", (void *)block, (void *)grown);
    CHECK(grown && buddypools_malloc_usable_size(grown) == 1 << 20, "the grown block holds %zu bytes",
          grown ? buddypools_malloc_usable_size(grown) : 0);
    if (!grown) return;
    for (size_t i = 0; i < (300 << 10); i++) {
        if (grown[i] != (unsigned char)(i * 13)) { CHECK(0, "growth in place lost byte %zu", i); break; }
    }
    for (size_t i = 300 << 10; i < (1 << 20); i++) grown[i] = 1;
    // The buddy above is in use now: the next growth moves the data.
    unsigned char *neighbour = buddypools_malloc_in(grow, 1 << 20);
    unsigned char *moved = buddypools_realloc(grown, 1200 << 10);
    CHECK(moved != NULL && moved != grown && moved[(300 << 10) - 1] == (unsigned char)(((300 << 10) - 1) * 13),
          "realloc past an allocated buddy moves the block and keeps its data");
    buddypools_free(neighbour);
    buddypools_free(moved);
    printf("capi_test: realloc grew a 512 KiB block to 1 MiB in place, and moved it when the buddy was taken\n");
}

static void named_pools(void) {
    buddypools_pool_t spare = buddypools_pool_named("spare");
    CHECK(spare != NULL, "pool 'spare' not found");
    void *block = buddypools_malloc_in(spare, 5000);
    CHECK(block && buddypools_pool_of(block) && strcmp(buddypools_pool_of(block), "spare") == 0, "malloc_in(spare) lands in spare: %s",
          block ? buddypools_pool_of(block) : "NULL");
    buddypools_free(block);
    unsigned char *zeroed = buddypools_calloc_in(spare, 10, 10);
    CHECK(zeroed && zeroed[99] == 0, "calloc_in");
    buddypools_free(zeroed);
    void *aligned = buddypools_aligned_alloc_in(spare, 65536, 10);
    CHECK(aligned && ((uintptr_t)aligned & 65535) == 0, "aligned_alloc_in");
    buddypools_free(aligned);
    errno = 0;
    CHECK(buddypools_pool_named("no-such-pool") == NULL && errno == EINVAL, "an unknown pool name is EINVAL");
    errno = 0;
    CHECK(buddypools_malloc_in(NULL, 10) == NULL && errno == EINVAL, "malloc_in(NULL) is EINVAL");
    int local = 0;
    CHECK(buddypools_pool_of(&local) == NULL, "a stack address is in no pool");
    CHECK(buddypools_pool_of(NULL) == NULL, "NULL is in no pool");
    CHECK(buddypools_prepare_thread() == 0, "prepare_thread with pools: 0");
    void *after_prepare = buddypools_malloc(24);
    CHECK(after_prepare && from_pool(after_prepare), "a prepared thread allocates from a pool");
    buddypools_free(after_prepare);
}

// Threads that free each other's blocks: each allocates into its slot ring, the next frees.
enum { THREADS = 4, ROUNDS = 20000, RING = 64 };
static void *rings[THREADS][RING];
static pthread_mutex_t ring_locks[THREADS];
static int thread_failures[THREADS];

static void *worker(void *argument) {
    int index = (int)(intptr_t)argument;
    unsigned seed = (unsigned)index * 2654435761u + 1;
    for (int round = 0; round < ROUNDS; round++) {
        seed = seed * 1103515245u + 12345u;
        size_t size = 1 + (seed >> 8) % 6000;
        unsigned char *block = buddypools_malloc(size);
        if (!block || !from_pool(block)) { thread_failures[index]++; continue; }
        block[0] = (unsigned char)index;
        // Hand it to the next thread's ring, freeing what was there (another thread's block).
        int target = (index + 1) % THREADS, slot = (int)((seed >> 4) % RING);
        pthread_mutex_lock(&ring_locks[target]);
        void *old = rings[target][slot];
        rings[target][slot] = block;
        pthread_mutex_unlock(&ring_locks[target]);
        if (old) {
            if (((unsigned char *)old)[0] != (unsigned char)((target + THREADS - 1) % THREADS)) thread_failures[index]++;
            buddypools_free(old);
        }
    }
    return NULL;
}

static void threads_free_each_other(void) {
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_mutex_init(&ring_locks[i], NULL);
    for (int i = 0; i < THREADS; i++) pthread_create(&threads[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i < THREADS; i++) {
        CHECK(thread_failures[i] == 0, "thread %d saw %d failures", i, thread_failures[i]);
        for (int slot = 0; slot < RING; slot++) buddypools_free(rings[i][slot]);
    }
}

// fork without exec: the process heap's pools are kept across fork (copy-on-write, as the
// system's malloc is), so the child allocates from its copy of the pools, writes to and frees the
// parent's block in that copy, and the parent's block is untouched.
static void fork_child(void) {
    unsigned char *parent = buddypools_malloc(100000);
    memset(parent, 1, 100000);
    pid_t child = fork();
    if (child == 0) {
        int bad = 0;
        if (parent[0] != 1 || parent[99999] != 1) bad++;
        memset(parent, 2, 100000);  // the child's copy only
        buddypools_free(parent);    // a real free in the child's copy of the pool
        for (int i = 0; i < 1000; i++) {
            unsigned char *block = buddypools_malloc((size_t)(i * 37 % 5000) + 1);
            if (!block || !from_pool(block)) { bad++; continue; }
            block[0] = 1;
            buddypools_free(block);
        }
        _exit(bad == 0 ? 0 : 3);
    }
    int status = 0;
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork child exited with status %d", status);
    CHECK(parent[0] == 1 && parent[99999] == 1 && from_pool(parent), "the parent's block survived the child");
    buddypools_free(parent);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "exhaust") == 0) {
        // BUDDYPOOLS_MALLOC_FALLBACK=fail and 8 MiB pools: 1 MiB blocks run out within 16.
        int got = 0;
        errno = 0;
        void *blocks[64];
        while (got < 64 && (blocks[got] = buddypools_malloc(1u << 20)) != NULL) got++;
        CHECK(got >= 4 && got < 16 && errno == ENOMEM, "exhaustion after %d MiB, errno %d", got, errno);
        for (int i = 0; i < got; i++) buddypools_free(blocks[i]);
        CHECK(buddypools_malloc(1u << 20) != NULL, "memory comes back after the frees");
        return failures ? 1 : 0;
    }
    if (argc > 1 && strcmp(argv[1], "doublefree") == 0) {
        void *object = buddypools_malloc(24);
        buddypools_free(object);
        buddypools_free(object);  // must not return
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "grow") == 0) {
        growth_in_place();
        return failures ? 1 : 0;
    }
    if (argc > 1 && strcmp(argv[1], "badfree") == 0) {
        int local = 0;
        buddypools_free(&local);  // must not return
        return 0;
    }
    sizes_and_usable();
    calloc_and_realloc();
    alignments();
    named_pools();
    threads_free_each_other();
    fork_child();
    if (failures) fprintf(stderr, "capi_test: %d checks failed\n", failures);
    else printf("capi_test: every check held\n");
    return failures ? 1 : 0;
}
