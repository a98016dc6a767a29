#define _GNU_SOURCE
#include "CBenchSupport.h"

#include <dlfcn.h>
#include <numa.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

void *cbench_numa_alloc_onnode(size_t size, int node) { return numa_alloc_onnode(size, node); }
void cbench_numa_free(void *pointer, size_t size) { numa_free(pointer, size); }

typedef void *(*memkind_malloc_fn)(void *, size_t);
typedef void (*memkind_free_fn)(void *, void *);
typedef int (*memkind_posix_memalign_fn)(void *, void **, size_t, size_t);
static memkind_posix_memalign_fn memkind_posix_memalign_ptr;
static void *memkind_library;
static memkind_malloc_fn memkind_malloc_ptr;
static memkind_free_fn memkind_free_ptr;
static void *memkind_kinds[3];
static char memkind_error_text[512];

int cbench_memkind_open(int kind) {
    static const char *names[3] = {"MEMKIND_DEFAULT", "MEMKIND_REGULAR", "MEMKIND_HUGETLB"};
    if (kind < 0 || kind > 2) return 0;
    if (memkind_library == NULL) {
        memkind_library = dlopen("libmemkind.so.0", RTLD_NOW | RTLD_LOCAL);
        if (memkind_library == NULL) {
            snprintf(memkind_error_text, sizeof memkind_error_text, "%s", dlerror());
            return 0;
        }
        memkind_malloc_ptr = (memkind_malloc_fn)dlsym(memkind_library, "memkind_malloc");
        memkind_free_ptr = (memkind_free_fn)dlsym(memkind_library, "memkind_free");
        memkind_posix_memalign_ptr = (memkind_posix_memalign_fn)dlsym(memkind_library, "memkind_posix_memalign");
        if (memkind_malloc_ptr == NULL || memkind_free_ptr == NULL) {
            snprintf(memkind_error_text, sizeof memkind_error_text, "memkind_malloc/memkind_free not found");
            return 0;
        }
    }
    // The kinds are exported as pointer variables (memkind_t MEMKIND_HUGETLB).
    void **symbol = (void **)dlsym(memkind_library, names[kind]);
    if (symbol == NULL) {
        snprintf(memkind_error_text, sizeof memkind_error_text, "%s not found", names[kind]);
        return 0;
    }
    memkind_kinds[kind] = *symbol;
    // A kind that cannot allocate (no hugepages reserved) is reported as unavailable.
    void *probe = memkind_malloc_ptr(memkind_kinds[kind], 4096);
    if (probe == NULL) {
        snprintf(memkind_error_text, sizeof memkind_error_text, "%s cannot allocate (for HUGETLB: reserve hugepages)", names[kind]);
        return 0;
    }
    memkind_free_ptr(memkind_kinds[kind], probe);
    return 1;
}

void *cbench_memkind_malloc(int kind, size_t size) { return memkind_malloc_ptr(memkind_kinds[kind], size); }
void cbench_memkind_free(int kind, void *pointer) { memkind_free_ptr(memkind_kinds[kind], pointer); }
void *cbench_memkind_posix_memalign(int kind, size_t alignment, size_t size) {
    void *pointer = NULL;
    if (memkind_posix_memalign_ptr == NULL || memkind_posix_memalign_ptr(memkind_kinds[kind], &pointer, alignment, size) != 0) return NULL;
    return pointer;
}
const char *cbench_memkind_error(void) { return memkind_error_text; }

int cbench_pin_to_cpu(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

int cbench_set_fifo_priority(int priority) {
    struct sched_param param = {.sched_priority = priority};
    return pthread_setschedparam(pthread_self(), priority > 0 ? SCHED_FIFO : SCHED_OTHER, &param);
}
