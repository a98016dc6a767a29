/*
 * buddypools.h: BuddyPools as a C allocator (C, C++, and Fortran through ISO_C_BINDING).
 *
 * Link libBuddyPoolsC.so (swift build -c release --product BuddyPoolsC). The first call builds
 * the process's pool set from the environment (BUDDYPOOLS, as for Swift programs; with none set,
 * one pool per node). Which pool serves buddypools_malloc and what happens when it runs dry:
 *
 *   BUDDYPOOLS_MALLOC=local|<pool>      local (default): the pool of the calling CPU's node
 *   BUDDYPOOLS_MALLOC_FALLBACK=next|system|fail
 *       next (default): the other pools by NUMA distance, then the system's malloc;
 *       system: the system's malloc at once; fail: NULL with errno ENOMEM (a hard limit).
 *
 * A bad value is reported once on stderr, naming the variable, and the default is used.
 * Errors are C's: NULL (or the posix_memalign return value) with errno ENOMEM or EINVAL.
 * buddypools_free(NULL) does nothing. Freeing a pointer no pool (and, with the system fallback,
 * not the system's malloc either) handed out stops the process with a message naming the
 * pool and the address, as Swift's MemoryPool.deallocate does.
 *
 * fork: the pools of this heap are kept across fork, copy-on-write like the system's malloc;
 * the child's copy is its own: it may free and reuse the parent's blocks without touching the
 * parent's memory. The default pools use transparent hugepages; pools of hugetlb pages asked for
 * in BUDDYPOOLS (page=2M, page=1G) are kept too, but a child's write to one needs a free
 * hugepage beyond the pool's reservation, and without one the kernel kills the child (SIGBUS).
 *
 * Every function is thread-safe. Requests of up to 3840 bytes are objects cut from slabs; larger
 * ones are buddy blocks (a power of two from 4 KiB) or runs of superblocks.
 */
#ifndef BUDDYPOOLS_H
#define BUDDYPOOLS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An opaque handle to one pool of the process's set; valid for the life of the process. */
typedef struct buddypools_pool *buddypools_pool_t;

/* The malloc family over the pool BUDDYPOOLS_MALLOC names. */
void *buddypools_malloc(size_t size);
void *buddypools_calloc(size_t count, size_t size);
/* Grows in place when the block already holds `size` bytes; realloc(p, 0) frees p, returns NULL. */
void *buddypools_realloc(void *pointer, size_t size);
void buddypools_free(void *pointer);
/* `alignment` a power of two (EINVAL otherwise); any size. */
void *buddypools_aligned_alloc(size_t alignment, size_t size);
/* Returns 0, EINVAL (alignment not a power of two multiple of sizeof(void *)) or ENOMEM. */
int buddypools_posix_memalign(void **result, size_t alignment, size_t size);
/* The bytes the block really holds (its size class or buddy block); 0 for NULL. */
size_t buddypools_malloc_usable_size(const void *pointer);

/* The pool of the process's set with this name, or NULL (errno EINVAL). */
buddypools_pool_t buddypools_pool_named(const char *name);
/* The same, from one pool, with no fallback: NULL with ENOMEM when that pool is out of memory. */
void *buddypools_malloc_in(buddypools_pool_t pool, size_t size);
void *buddypools_calloc_in(buddypools_pool_t pool, size_t count, size_t size);
void *buddypools_aligned_alloc_in(buddypools_pool_t pool, size_t alignment, size_t size);

/* The name of the pool that holds `pointer` now (its own memory or a superblock it borrowed),
 * or NULL when no pool of the process does. The string lives as long as the process. */
const char *buddypools_pool_of(const void *pointer);

/* Prepares the calling thread for realtime use of every pool of the process's set (Swift's
 * MemoryPool.prepareCurrentThread): its caches and object heaps made and every path run once.
 * With locked pools (locked=1 in BUDDYPOOLS) the thread's later requests and frees then make no
 * system call and take no page fault. Returns 0, or -1 with errno ENOMEM when there is no pool. */
int buddypools_prepare_thread(void);

#ifdef __cplusplus
}
#endif

#endif
