// The standard malloc family under LD_PRELOAD=libBuddyPoolsMalloc.so, from a program that knows
// nothing of BuddyPools but asks, through dlsym, whether its memory came from a pool. Every
// entry point the library exports; threads freeing each other's blocks; fork children that
// write to and free the parent's memory. Exits 0 when every check held.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int failures = 0;
#define CHECK(condition, ...) do { if (!(condition)) { failures++; fprintf(stderr, "FAILED %s:%d: ", __FILE__, __LINE__); fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static const char *(*pool_of)(const void *);
static int from_pool(const void *pointer) { return pool_of(pointer) != NULL; }

enum { THREADS = 4, ROUNDS = 20000, RING = 64 };
static void *rings[THREADS][RING];
static pthread_mutex_t locks[THREADS];
static int thread_failures[THREADS];

static void *worker(void *argument) {
    int index = (int)(intptr_t)argument;
    unsigned seed = (unsigned)index * 2654435761u + 7;
    for (int round = 0; round < ROUNDS; round++) {
        seed = seed * 1103515245u + 12345u;
        size_t size = 1 + (seed >> 8) % 9000;
        unsigned char *block = malloc(size);
        if (!block || !from_pool(block)) { thread_failures[index]++; continue; }
        block[0] = (unsigned char)index;
        int target = (index + 1) % THREADS, slot = (int)((seed >> 4) % RING);
        pthread_mutex_lock(&locks[target]);
        void *old = rings[target][slot];
        rings[target][slot] = block;
        pthread_mutex_unlock(&locks[target]);
        if (old) {
            if (((unsigned char *)old)[0] != (unsigned char)((target + THREADS - 1) % THREADS)) thread_failures[index]++;
            free(old);
        }
    }
    return NULL;
}

int main(void) {
    pool_of = (const char *(*)(const void *))dlsym(RTLD_DEFAULT, "buddypools_pool_of");
    if (!pool_of) { fprintf(stderr, "malloc_test: libBuddyPoolsMalloc.so is not loaded (LD_PRELOAD)\n"); return 2; }

    for (size_t size = 1; size < (16u << 20); size = size * 3 + 1) {
        unsigned char *block = malloc(size);
        CHECK(block && from_pool(block) && ((uintptr_t)block & 15) == 0, "malloc(%zu)", size);
        CHECK(malloc_usable_size(block) >= size, "malloc_usable_size(%zu) = %zu", size, malloc_usable_size(block));
        memset(block, 0x5A, size);
        free(block);
    }
    unsigned char *zeroed = calloc(4096, 3);
    CHECK(zeroed && from_pool(zeroed), "calloc");
    for (int i = 0; zeroed && i < 4096 * 3; i++) if (zeroed[i]) { CHECK(0, "calloc byte %d", i); break; }
    free(zeroed);
    errno = 0;
    volatile size_t huge = SIZE_MAX / 2;  // volatile: the compiler would refuse the overflow itself
    CHECK(calloc(huge, 8) == NULL && errno == ENOMEM, "calloc overflow");

    size_t size = 5;
    unsigned char *grown = malloc(size);
    for (size_t i = 0; i < size; i++) grown[i] = (unsigned char)(i * 13);
    while (size < (6u << 20)) {
        size_t next = size * 4;
        unsigned char *moved = realloc(grown, next);
        CHECK(moved && from_pool(moved), "realloc to %zu", next);
        if (!moved) return 1;
        for (size_t i = 0; i < size; i++) if (moved[i] != (unsigned char)(i * 13)) { CHECK(0, "realloc lost byte %zu of %zu", i, size); break; }
        for (size_t i = size; i < next; i++) moved[i] = (unsigned char)(i * 13);
        grown = moved;
        size = next;
    }
    free(grown);
    int *array = reallocarray(NULL, 1000, sizeof(int));
    CHECK(array && from_pool(array), "reallocarray");
    errno = 0;
    void *refused = reallocarray(array, huge, 4);
    CHECK(refused == NULL && errno == ENOMEM, "reallocarray overflow");
    free(refused ? refused : array);

    void *aligned = NULL;
    CHECK(posix_memalign(&aligned, 1u << 20, 100) == 0 && ((uintptr_t)aligned & ((1u << 20) - 1)) == 0 && from_pool(aligned), "posix_memalign 1 MiB");
    free(aligned);
    CHECK(posix_memalign(&aligned, 12, 100) == EINVAL, "posix_memalign(12) is EINVAL");
    void *a = aligned_alloc(4096, 4096), *m = memalign(256, 10), *v = valloc(10), *p = pvalloc(10);
    CHECK(a && ((uintptr_t)a & 4095) == 0 && from_pool(a), "aligned_alloc");
    CHECK(m && ((uintptr_t)m & 255) == 0 && from_pool(m), "memalign");
    CHECK(v && ((uintptr_t)v & 4095) == 0 && from_pool(v), "valloc");
    CHECK(p && ((uintptr_t)p & 4095) == 0 && malloc_usable_size(p) >= 4096 && from_pool(p), "pvalloc");
    free(a); free(m); free(v); free(p);

    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_mutex_init(&locks[i], NULL);
    for (int i = 0; i < THREADS; i++) pthread_create(&threads[i], NULL, worker, (void *)(intptr_t)i);
    for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
    for (int i = 0; i < THREADS; i++) {
        CHECK(thread_failures[i] == 0, "thread %d: %d failures", i, thread_failures[i]);
        for (int slot = 0; slot < RING; slot++) free(rings[i][slot]);
    }

    // fork without exec: the child writes to the parent's blocks, frees them, allocates anew.
    unsigned char *parent = malloc(200000);
    memset(parent, 1, 200000);
    char *small = strdup("parent string");
    pid_t child = fork();
    if (child == 0) {
        int bad = 0;
        memset(parent, 2, 200000);
        if (strcmp(small, "parent string") != 0) bad++;
        free(small);
        free(parent);
        for (int i = 0; i < 2000; i++) {
            char *block = malloc((size_t)(i * 31 % 7000) + 1);
            if (!block || !from_pool(block)) { bad++; continue; }
            block[0] = 1;
            free(block);
        }
        _exit(bad == 0 ? 0 : 3);
    }
    int status = 0;
    waitpid(child, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "fork child status %d", status);
    CHECK(parent[0] == 1 && parent[199999] == 1 && strcmp(small, "parent string") == 0, "the child's writes reached the parent");
    free(parent);
    free(small);

    void *probe = malloc(8);
    if (failures) fprintf(stderr, "malloc_test: %d checks failed\n", failures);
    else printf("malloc_test: every check held (memory from pool '%s')\n", pool_of(probe));
    free(probe);
    return failures ? 1 : 0;
}
