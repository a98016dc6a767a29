// The process's malloc family, in C: the dynamic loader runs the Swift runtime's constructors
// (which allocate) before any Swift code of ours may run, and the pool code allocates through
// malloc itself. So:
//  - before this library's constructor has run, and on a thread already inside the library
//    (a per-thread guard), requests go to glibc's own allocator (__libc_malloc): the bootstrap;
//  - otherwise, for objects below a page of a one-pool heap, the C object fast path
//    (CBuddyFastPath: the thread's slab heap, no lock, no call into Swift); for blocks the
//    pool's thread caches (Swift, lock-free); else buddypools_malloc and friends (BuddyPoolsC,
//    Swift), with the guard set;
//  - a free goes to the pools when the address is in a pool's range (a lock-free table the
//    Swift side fills when it makes the pools), else to glibc. A pool free met inside the
//    library (the pool may hold its lock) is deferred to the end of the outer call.
#define _GNU_SOURCE
#include "buddypools.h"
#include "buddypools_malloc.h"
#include "buddypools_shim.h"
#include "buddy_fast_path.h"
#include "CNuma.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);
extern size_t (*cbuddypools_next_usable_size)(void *);
// BuddyPoolsC: builds the process's pools and returns the heap; malloc and free on it.
extern void *buddypools_heap_start(void);
extern void *buddypools_heap_malloc(void *heap, size_t size);
extern void buddypools_heap_free(void *heap, void *pointer);
// The heap's one pool (NULL: several, or one named by BUDDYPOOLS_MALLOC), and malloc and free
// on its thread caches only: they never call malloc nor lock, so they run before the guard is
// set (NULL and 0: not done; the guarded call does it).
extern void *buddypools_heap_cached_pool(void *heap);
extern void *buddypools_pool_malloc_cached(void *pool, size_t size);
extern int buddypools_pool_free_cached(void *pool, void *pointer);
// That pool's constants for the C object fast path (NULL: its objects take the Swift paths),
// and what a free that emptied a slab hands to the pool.
extern void *buddypools_heap_object_path(void *heap);
extern void buddypools_pool_slab_emptied(void *pool, void *slab);

static _Atomic int ready = 0;
// The process heap, its cached pool and that pool's object path, set before `ready` (read
// after it, with acquire).
static void *heap;
static void *cached_pool;
static const buddy_object_path *object_path;
// Initial-exec TLS: the library is preloaded or linked, never dlopen'ed late, and the general
// model's __tls_get_addr call showed in every malloc.
#define FAST_TLS __thread __attribute__((tls_model("initial-exec")))
static FAST_TLS int inside = 0;
enum { DEFERRED = 64 };
static FAST_TLS void *deferred[DEFERRED];
static FAST_TLS int deferred_count = 0;
// Only the rare events are counted: a shared counter bumped by every malloc would bounce its
// cache line between threads on every call (the bench's small-xthread scenario).
static _Atomic size_t bootstrap_calls, deferred_frees, lost_frees;

static void leave(void);

// Work of the library outside any malloc call (a thread's exit): allocations go around it.
static void reentry_guard(int entering) {
    if (entering) inside = 1;
    else leave();
}

// After the libraries this one needs (the Swift runtime among them) are initialized.
__attribute__((constructor)) static void buddypools_malloc_start(void) {
    inside = 1;
    cbuddypools_next_usable_size = (size_t (*)(void *))dlsym(RTLD_NEXT, "malloc_usable_size");
    cnuma_allocator_reentry_guard = reentry_guard;
    // The pools are made now, before the program runs: made on its first malloc, they could be
    // asked for from inside the Swift runtime's own once-only sections, which making them needs
    // too (a deadlock seen with a Swift program).
    heap = buddypools_heap_start();
    cached_pool = buddypools_heap_cached_pool(heap);
    object_path = cached_pool ? buddypools_heap_object_path(heap) : NULL;
    inside = 0;
    atomic_store(&ready, 1);
}

static inline int use_pools(void) {
    return !inside && atomic_load_explicit(&ready, memory_order_acquire);
}

static inline void enter(void) { inside = 1; }

static void leave(void) {
    // Frees met inside run now, outside every lock of the library.
    while (deferred_count > 0) {
        void *pointer = deferred[--deferred_count];
        buddypools_free(pointer);
    }
    inside = 0;
}

static inline void count(_Atomic size_t *counter) { atomic_fetch_add_explicit(counter, 1, memory_order_relaxed); }

// Out of line, so malloc's cached path saves no registers for it.
__attribute__((noinline)) static void *malloc_guarded(size_t size) {
    if (!use_pools()) { count(&bootstrap_calls); return __libc_malloc(size); }
    enter();
    void *pointer = buddypools_heap_malloc(heap, size);
    leave();
    return pointer;
}

void *malloc(size_t size) {
    if (use_pools()) {
        if (object_path && size - 1 < BUDDY_MAX_OBJECT_BYTES) {
            void *pointer = buddy_object_allocate(object_path, buddy_malloc_class_index(size));
            if (pointer) return pointer;
        } else if (cached_pool) {
            void *pointer = buddypools_pool_malloc_cached(cached_pool, size);
            if (pointer) return pointer;
        }
    }
    return malloc_guarded(size);
}

__attribute__((noinline)) static void free_guarded(void *pointer) {
    enter();
    buddypools_heap_free(heap, pointer);
    leave();
}

// A free that emptied a slab: the pool keeps it or gives it back, which takes locks.
__attribute__((noinline)) static void slab_emptied(buddy_slab *slab) {
    enter();
    buddypools_pool_slab_emptied(cached_pool, slab);
    leave();
}

void free(void *pointer) {
    if (!pointer) return;
    // Objects first: nearly every free a program makes is one. The object path's region check
    // is the range check for them (object_path is set only once `ready` is).
    const buddy_object_path *path = __atomic_load_n(&object_path, __ATOMIC_ACQUIRE);
    if (path && !inside) {
        buddy_free_outcome outcome = buddy_object_free(path, (uintptr_t)pointer, 0);
        if (outcome.result == BUDDY_FREE_DONE) return;
        if (outcome.result == BUDDY_FREE_SLAB_EMPTIED) { slab_emptied(outcome.emptied); return; }
    }
    if (!cbuddypools_in_pool_range(pointer)) { __libc_free(pointer); return; }
    if (inside) {
        if (deferred_count < DEFERRED) { deferred[deferred_count++] = pointer; count(&deferred_frees); }
        else count(&lost_frees);
        return;
    }
    if (cached_pool && buddypools_pool_free_cached(cached_pool, pointer)) return;
    free_guarded(pointer);
}

void *calloc(size_t count_, size_t size) {
    if (!use_pools()) { count(&bootstrap_calls); return __libc_calloc(count_, size); }
    enter();
    void *pointer = buddypools_calloc(count_, size);
    leave();
    return pointer;
}

void *realloc(void *pointer, size_t size) {
    if (pointer && !cbuddypools_in_pool_range(pointer)) {
        // A block of glibc's (the bootstrap, or the fallback): it stays glibc's.
        return __libc_realloc(pointer, size);
    }
    if (!use_pools()) {
        if (!pointer) { count(&bootstrap_calls); return __libc_malloc(size); }
        // A pool block grown from inside the library: copy it to glibc memory, defer its free.
        size_t held = buddypools_malloc_usable_size(pointer);
        void *moved = size ? __libc_malloc(size) : NULL;
        if (size && !moved) return NULL;
        if (moved) memcpy(moved, pointer, held < size ? held : size);
        free(pointer);
        return moved;
    }
    enter();
    void *moved = buddypools_realloc(pointer, size);
    leave();
    return moved;
}

void *reallocarray(void *pointer, size_t count_, size_t size) {
    size_t bytes;
    if (__builtin_mul_overflow(count_, size, &bytes)) { errno = ENOMEM; return NULL; }
    return realloc(pointer, bytes);
}

static void *aligned(size_t alignment, size_t size) {
    if (!use_pools()) { count(&bootstrap_calls); return __libc_memalign(alignment, size); }
    enter();
    void *pointer = buddypools_aligned_alloc(alignment, size);
    leave();
    return pointer;
}

void *aligned_alloc(size_t alignment, size_t size) {
    if (alignment == 0 || (alignment & (alignment - 1))) { errno = EINVAL; return NULL; }
    return aligned(alignment, size);
}

void *memalign(size_t alignment, size_t size) {
    if (alignment == 0 || (alignment & (alignment - 1))) { errno = EINVAL; return NULL; }
    return aligned(alignment, size);
}

int posix_memalign(void **result, size_t alignment, size_t size) {
    if (alignment < sizeof(void *) || (alignment & (alignment - 1))) return EINVAL;
    int saved = errno;
    void *pointer = aligned(alignment, size);
    if (!pointer) { int error = errno ? errno : ENOMEM; errno = saved; return error; }
    *result = pointer;
    return 0;
}

void *valloc(size_t size) { return aligned((size_t)sysconf(_SC_PAGESIZE), size); }

void *pvalloc(size_t size) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (size > SIZE_MAX - page) { errno = ENOMEM; return NULL; }
    return aligned(page, size ? (size + page - 1) & ~(page - 1) : page);
}

size_t malloc_usable_size(void *pointer) {
    if (!pointer) return 0;
    if (!cbuddypools_in_pool_range(pointer)) return cbuddypools_system_usable_size(pointer);
    if (inside) return buddypools_malloc_usable_size(pointer);
    enter();
    size_t held = buddypools_malloc_usable_size(pointer);
    leave();
    return held;
}

buddypools_malloc_counters buddypools_malloc_statistics(void) {
    buddypools_malloc_counters counters = {
        atomic_load(&bootstrap_calls), atomic_load(&deferred_frees), atomic_load(&lost_frees)};
    return counters;
}
