/*
 * buddypools_malloc.h: libBuddyPoolsMalloc.so puts the pools behind the process's malloc.
 *
 *   LD_PRELOAD=/path/to/libBuddyPoolsMalloc.so program
 *
 * malloc, free, calloc, realloc, reallocarray, aligned_alloc, posix_memalign, memalign, valloc,
 * pvalloc and malloc_usable_size (and so C++ new/delete and Swift's allocations) are served by
 * buddypools_malloc and friends (buddypools.h), configured by BUDDYPOOLS, BUDDYPOOLS_MALLOC and
 * BUDDYPOOLS_MALLOC_FALLBACK. docs/malloc.md says what is served from where and when.
 */
#ifndef BUDDYPOOLS_MALLOC_H
#define BUDDYPOOLS_MALLOC_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Counters of the library's rare events since the process started (for tests and diagnostics;
 * requests the pools answer are not counted: a counter shared by every call would cost more
 * than a small allocation). */
typedef struct buddypools_malloc_counters {
    size_t bootstrap_calls;  /* requests served by glibc before the pools were ready or from inside the library */
    size_t deferred_frees;   /* pool frees met inside the library and run after it returned */
    size_t lost_frees;       /* such frees beyond the per-thread list (leaked, never reused) */
} buddypools_malloc_counters;

buddypools_malloc_counters buddypools_malloc_statistics(void);

#ifdef __cplusplus
}
#endif

#endif
