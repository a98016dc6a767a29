// CBuddyFastPath: the object fast path (allocate and checked free of objects below a page) in C,
// static inline, shared by the pools' inlined Swift paths and the malloc library's entry points.
//
// Why C: the malloc library's malloc and free must be C (the Swift runtime's constructors call
// malloc before any Swift code runs), and a call from them into Swift cost a thunk, a frame and
// reloads of every constant on each call: a malloc-free pair was 349 instructions, 180 of them
// in the free (callgrind). Written once here, the same code is inlined into both callers.
//
// The structures are views of Swift's (BuddySlabs.SlabDescriptor, BuddyCaches.ThreadCache,
// BuddySlabs.SlabHeap), which keep their fields in this order; Swift lays out a struct's stored
// properties in declaration order, each at the next offset its alignment allows. The test
// "the C fast path sees Swift's layouts" checks every field through both languages, and the
// Swift side asserts the sizes.
//
// Memory ordering: fields other threads write are read and written with the __atomic builtins,
// with the orderings the Swift code uses for the same fields (Swift's Atomic is the same LLVM
// atomic), so ThreadSanitizer sees the C and the Swift side alike.
#ifndef BUDDY_FAST_PATH_H
#define BUDDY_FAST_PATH_H

#include <stddef.h>
#include <stdint.h>

#include "CNuma.h"

#ifdef __cplusplus
extern "C" {
#endif

/// Every call on the fast path is inlined into its caller (Swift's or the malloc library's): a call
/// passes the constants and results through memory (a free cost 146 instructions called, 124
/// inlined, callgrind); the rare steps stay out of line.
#define BUDDY_INLINE static inline __attribute__((always_inline))
#define BUDDY_RARE static inline __attribute__((noinline, cold))

/// The high nibble of a slab's state bytes (BuddyCore.BlockState.Tag.slab; slabInterior is one more).
#define BUDDY_SLAB_TAG 9
/// The largest object a slab serves (BuddyCore.SizeClasses.maxObjectBytes).
#define BUDDY_MAX_OBJECT_BYTES 3840
/// Where a slab heap's per-class tables start (BuddySlabs.SlabHeap.initialize): the current slab
/// of each class, then the first of its owned list, its spare and the head of its ring of slabs
/// found used up, each BUDDY_CLASS_COUNT long.
#define BUDDY_HEAP_CURRENT_OFFSET 64
/// Size classes (BuddyCore.SizeClasses.count).
#define BUDDY_CLASS_COUNT 55

/// The first fields of a thread's cache for one pool (BuddyCaches.ThreadCache).
typedef struct buddy_thread_cache {
    /// The pool's token; a root slot holding another token is not this pool's.
    uint64_t token;
    /// Set by the owner around each fast-path operation (the drain handshake).
    uint8_t in_use;
    /// Set by a drainer holding the cache's lock; the owner then takes the slow path.
    uint8_t drain_requested;
    /// The thread's slab heap for the pool (BuddySlabs.SlabHeap), or NULL before its first object.
    void *object_heap;
} buddy_thread_cache;

/// A slab's descriptor (BuddySlabs.SlabDescriptor): a buddy block cut into objects of one class,
/// with one bit per object in two bitmaps kept out of band. 128 bytes, the first 64 all that a
/// free or an allocation reads.
typedef struct buddy_slab {
    uintptr_t base;
    /// ceil(2^40 / object_bytes): (offset * reciprocal) >> 40 is an offset's object index.
    uint64_t reciprocal;
    /// The owning heap's address; 0 for an orphan.
    uintptr_t owner;
    /// The bitmaps, interleaved: word w of the owner's (free for its allocations; plain loads and
    /// stores) at bits[2w], of the remote one (freed by other threads, one atomic or each) at
    /// bits[2w + 1], so a free that checks both reads one cache line.
    uint64_t *bits;
    uint32_t object_bytes;
    uint32_t object_count;
    /// Objects with a bit in the owner's bitmap (the owner writes it).
    int32_t free_count;
    /// The first word that may hold a free bit (the owner writes it).
    int32_t cursor;
    uint16_t class_index;
    /// Bitmap words in use.
    uint8_t words;
    uint8_t order;
    /// Set by a free the owner has not looked at yet (see buddy_slab_free_remote).
    uint8_t freed_hint;
    uint8_t on_full_list;
    uintptr_t next;
    uintptr_t previous;
    uintptr_t reserved[7];
} buddy_slab;

/// What one pool's object fast path needs, made by the pool at creation (MemoryPool.objectPath):
/// its first region and the thread-cache slot of the pool. `region_bytes` is 0 when objects must
/// take the Swift paths (the pool scrubs, counts sites, or has no caches), so every free fails the
/// first check.
typedef struct buddy_object_path {
    uintptr_t region_base;
    uintptr_t region_bytes;
    /// One state byte per minimum block of the region (BuddyCore.BlockState).
    const uint8_t *states;
    /// The pool id owning each superblock of the region (another pool's for a loan).
    const uint32_t *owners;
    /// Per superblock, the address of its slab descriptor table, or 0 (BuddySlabs.SlabTables).
    const uintptr_t *tables;
    uint64_t token;
    intptr_t cache_index;
    /// superblock bytes - 1.
    uintptr_t superblock_mask;
    uint32_t pool_id;
    uint8_t min_block_shift;
    uint8_t superblock_shift;
    uint8_t unit_shift;
} buddy_object_path;

/// What a free of an object did.
enum buddy_free_result {
    /// Not done: the caller's checked slow path frees it or names what is wrong.
    BUDDY_FREE_NOT_DONE = 0,
    BUDDY_FREE_DONE = 1,
    /// Done, and the slab has no object in use and is not its class's current slab: the caller
    /// decides whether the heap keeps it (MemoryPool.objectSlabEmptied).
    BUDDY_FREE_SLAB_EMPTIED = 2,
    /// Only from the buddy_slab_free functions: the object is free already.
    BUDDY_FREE_DOUBLE = 3,
};

// MARK: The thread cache and its drain handshake

/// The calling thread's cache for the pool with `token` at `index` of its root, or NULL.
BUDDY_INLINE buddy_thread_cache *buddy_current_cache(intptr_t index, uint64_t token) {
    // Invariant: every slot of every root points at a header (an unused one at cnuma_no_cache).
    buddy_thread_cache *cache = ((buddy_thread_cache **)cnuma_thread_cache_root)[index];
    return cache->token == token ? cache : NULL;
}

/// Marks the owner in its cache; 0 when a drainer asked it to stay out (then it is not marked).
/// No atomic read-modify-write: the drainer's membarrier orders these like a full fence.
BUDDY_INLINE int buddy_cache_enter(buddy_thread_cache *cache) {
    uint8_t requested;
    if (cnuma_under_thread_sanitizer()) {
        // Real fences, which TSan understands (it cannot see the drainer's membarrier).
        __atomic_store_n(&cache->in_use, 1, __ATOMIC_SEQ_CST);
        requested = __atomic_load_n(&cache->drain_requested, __ATOMIC_SEQ_CST);
    } else {
        __atomic_store_n(&cache->in_use, 1, __ATOMIC_RELAXED);
        cnuma_compiler_barrier();
        requested = __atomic_load_n(&cache->drain_requested, __ATOMIC_ACQUIRE);
    }
    if (__builtin_expect(requested != 0, 0)) {
        __atomic_store_n(&cache->in_use, 0, __ATOMIC_RELEASE);
        return 0;
    }
    return 1;
}

BUDDY_INLINE void buddy_cache_leave(buddy_thread_cache *cache) {
    cnuma_compiler_barrier();
    __atomic_store_n(&cache->in_use, 0, __ATOMIC_RELEASE);
}

// MARK: One slab (its owner, or one holding its heap exclusively)

BUDDY_INLINE buddy_slab **buddy_heap_current(void *heap) {
    return (buddy_slab **)((char *)heap + BUDDY_HEAP_CURRENT_OFFSET);
}
BUDDY_INLINE buddy_slab **buddy_heap_owned(void *heap) { return buddy_heap_current(heap) + BUDDY_CLASS_COUNT; }
BUDDY_INLINE buddy_slab **buddy_heap_spare(void *heap) { return buddy_heap_current(heap) + 2 * BUDDY_CLASS_COUNT; }
BUDDY_INLINE buddy_slab **buddy_heap_full(void *heap) { return buddy_heap_current(heap) + 3 * BUDDY_CLASS_COUNT; }

/// Slabs of the owned list, and of the ring of used-up ones, that the quick refill looks at before
/// it leaves the work to the Swift refill.
#define BUDDY_QUICK_REFILL_LOOKS 4

/// The first of `BUDDY_QUICK_REFILL_LOOKS` slabs from `slab` on (through `next`) that is not
/// `current` and has a free object of the owner's, or NULL.
BUDDY_INLINE buddy_slab *buddy_first_with_free(buddy_slab *slab, const buddy_slab *current) {
    for (int look = 0; slab != NULL && look < BUDDY_QUICK_REFILL_LOOKS; look++, slab = (buddy_slab *)slab->next) {
        if (slab != current && __atomic_load_n(&slab->free_count, __ATOMIC_RELAXED) > 0) return slab;
    }
    return NULL;
}

/// When the class's current slab is used up: its spare, or one of the first slabs of its owned
/// list or of its ring of used-up slabs that has a free object of the owner's, becomes current
/// (where it is: a current slab may sit on the ring, and its remote frees, if any, wait for a
/// collection). NULL leaves the work to the Swift refill (PoolSlabs.refill), which collects
/// remote frees, moves used-up slabs to the ring, turns it and adopts orphans. The heap's owner,
/// inside the drain handshake.
BUDDY_RARE buddy_slab *buddy_heap_quick_refill(void *heap, intptr_t class_index) {
    buddy_slab **current = buddy_heap_current(heap);
    buddy_slab *slab = buddy_heap_spare(heap)[class_index];
    if (slab != NULL) {
        // Invariant: a spare is empty and on the owned list, so its cursor is at its first free
        // word (every free moved it down) and nothing else needs changing.
        buddy_heap_spare(heap)[class_index] = NULL;
        current[class_index] = slab;
        return slab;
    }
    slab = buddy_first_with_free(buddy_heap_owned(heap)[class_index], current[class_index]);
    if (slab == NULL) slab = buddy_first_with_free(buddy_heap_full(heap)[class_index], current[class_index]);
    if (slab != NULL) current[class_index] = slab;
    return slab;
}

/// After the owner's free emptied `slab`, which is not its class's current slab: keeps it as the
/// class's spare when the class has none and its current slab still has objects to give (what
/// PoolSlabs.emptied would do). 0 leaves the decision to Swift (MemoryPool.objectSlabEmptied).
BUDDY_RARE int buddy_heap_keep_emptied(void *heap, buddy_slab *slab) {
    intptr_t class_index = slab->class_index;
    buddy_slab *current = buddy_heap_current(heap)[class_index];
    buddy_slab **spare = buddy_heap_spare(heap) + class_index;
    if (*spare == slab) return 1;
    // A slab on the full ring would have to move back to the owned list first: Swift does that.
    if (*spare != NULL || current == NULL || __atomic_load_n(&current->free_count, __ATOMIC_RELAXED) == 0 ||
        __atomic_load_n(&slab->on_full_list, __ATOMIC_RELAXED) != 0)
        return 0;
    *spare = slab;
    return 1;
}

/// The next free object of a slab, or 0 when it has none left to its cursor's right (then the
/// cursor is past the end).
BUDDY_INLINE uintptr_t buddy_slab_take(buddy_slab *slab) {
    int32_t words = slab->words;
    for (int32_t word = __atomic_load_n(&slab->cursor, __ATOMIC_RELAXED); word < words; word++) {
        uint64_t bits = __atomic_load_n(&slab->bits[2 * word], __ATOMIC_RELAXED);
        if (bits == 0) continue;
        __atomic_store_n(&slab->bits[2 * word], bits & (bits - 1), __ATOMIC_RELAXED);
        __atomic_store_n(&slab->free_count, __atomic_load_n(&slab->free_count, __ATOMIC_RELAXED) - 1, __ATOMIC_RELAXED);
        __atomic_store_n(&slab->cursor, word, __ATOMIC_RELAXED);
        uintptr_t index = (uintptr_t)word << 6 | (uintptr_t)__builtin_ctzll(bits);
        return slab->base + index * (uintptr_t)slab->object_bytes;
    }
    __atomic_store_n(&slab->cursor, words, __ATOMIC_RELAXED);
    return 0;
}

/// The object index of `address` in `slab`, or -1 when it is not an object's first byte.
BUDDY_INLINE intptr_t buddy_slab_index(const buddy_slab *slab, uintptr_t address) {
    uint64_t offset = (uint64_t)(address - slab->base);
    uint64_t index = (offset * slab->reciprocal) >> 40;
    if (index * (uint64_t)slab->object_bytes != offset || index >= (uint64_t)slab->object_count) return -1;
    return (intptr_t)index;
}

/// Frees object `index` of `slab` for its owner (or one holding the owner's heap exclusively):
/// plain loads and stores. BUDDY_FREE_SLAB_EMPTIED: no object of the slab is in use any more.
BUDDY_INLINE enum buddy_free_result buddy_slab_free_local(buddy_slab *slab, uintptr_t index) {
    uintptr_t word = index >> 6;
    uint64_t bit = (uint64_t)1 << (index & 63);
    uint64_t bits = __atomic_load_n(&slab->bits[2 * word], __ATOMIC_RELAXED);
    // Free already: in the owner's bitmap, or freed by another thread and not collected yet.
    if ((bits | __atomic_load_n(&slab->bits[2 * word + 1], __ATOMIC_RELAXED)) & bit) return BUDDY_FREE_DOUBLE;
    __atomic_store_n(&slab->bits[2 * word], bits | bit, __ATOMIC_RELAXED);
    int32_t free_count = __atomic_load_n(&slab->free_count, __ATOMIC_RELAXED) + 1;
    __atomic_store_n(&slab->free_count, free_count, __ATOMIC_RELAXED);
    // A used-up slab has an object again: the refill's look at full slabs should see it (a plain
    // store: only the owner writes 1 here besides remote frees, and any 1 means "look").
    if (free_count == 1) __atomic_store_n(&slab->freed_hint, 1, __ATOMIC_RELAXED);
    if ((int32_t)word < __atomic_load_n(&slab->cursor, __ATOMIC_RELAXED)) __atomic_store_n(&slab->cursor, (int32_t)word, __ATOMIC_RELAXED);
    return (uint32_t)free_count == slab->object_count ? BUDDY_FREE_SLAB_EMPTIED : BUDDY_FREE_DONE;
}

/// Frees object `index` of a slab another heap owns (or an orphan): one atomic or.
BUDDY_INLINE enum buddy_free_result buddy_slab_free_remote(buddy_slab *slab, uintptr_t index) {
    uintptr_t word = index >> 6;
    uint64_t bit = (uint64_t)1 << (index & 63);
    if (__atomic_load_n(&slab->bits[2 * word], __ATOMIC_RELAXED) & bit) return BUDDY_FREE_DOUBLE;
    // Sequentially consistent, for the hint's handshake with the owner's collection (on x86 the
    // same locked or); it also releases the caller's writes to the object to the owner.
    uint64_t old = __atomic_fetch_or(&slab->bits[2 * word + 1], bit, __ATOMIC_SEQ_CST);
    if (old & bit) return BUDDY_FREE_DOUBLE;
    // Tells the owner to look. The or above is sequentially consistent, so this load sees a hint
    // the owner has not cleared yet, or the owner's collection (which clears it first) sees this
    // free. Stored only when no hint is pending (on x86 a locked exchange): once per collection.
    if (__atomic_load_n(&slab->freed_hint, __ATOMIC_SEQ_CST) == 0) __atomic_store_n(&slab->freed_hint, 1, __ATOMIC_SEQ_CST);
    return BUDDY_FREE_DONE;
}

/// Frees object `index` of `slab` for a caller whose heap is `heap_id` (0: none): locally when
/// that heap owns the slab, else remotely.
BUDDY_INLINE enum buddy_free_result buddy_slab_free(buddy_slab *slab, uintptr_t index, uintptr_t heap_id) {
    if (heap_id != 0 && __atomic_load_n(&slab->owner, __ATOMIC_RELAXED) == heap_id) return buddy_slab_free_local(slab, index);
    return buddy_slab_free_remote(slab, index);
}

// MARK: A pool's objects, from the calling thread

/// An object of class `class_index` from the calling thread's heap in the pool, or NULL (no
/// cache or heap yet, a drain in progress, or the current slab used up): the caller's slow path.
BUDDY_INLINE void *buddy_object_allocate(const buddy_object_path *path, intptr_t class_index) {
    buddy_thread_cache *cache = buddy_current_cache(path->cache_index, path->token);
    if (__builtin_expect(cache == NULL, 0)) return NULL;
    void *heap = cache->object_heap;
    if (__builtin_expect(heap == NULL, 0) || !buddy_cache_enter(cache)) return NULL;
    buddy_slab *slab = buddy_heap_current(heap)[class_index];
    uintptr_t address = slab ? buddy_slab_take(slab) : 0;
    if (__builtin_expect(address == 0, 0) && slab != NULL) {
        buddy_slab *next = buddy_heap_quick_refill(heap, class_index);
        if (next != NULL) address = buddy_slab_take(next);
    }
    buddy_cache_leave(cache);
    return (void *)address;
}

/// Where an object is: its slab (NULL: not an object this path frees) and its index there.
/// Returned by value: out-parameters made the Swift caller take their addresses, which cost a
/// stack protector on every free.
typedef struct buddy_object_location {
    buddy_slab *slab;
    uintptr_t index;
} buddy_object_location;

/// The slab and object index of `address`, `offset` bytes into the pool's first region, whose
/// state byte the caller loaded: found when it is an object's first byte in a slab of a
/// superblock the pool owns; no slab otherwise (the slow path searches and names).
BUDDY_INLINE buddy_object_location buddy_object_locate_state(const buddy_object_path *path, uintptr_t address, uintptr_t offset,
                                                             uint8_t state) {
    buddy_object_location none = {NULL, 0};
    // region_bytes is 0 when the path is off.
    if (offset >= path->region_bytes) return none;
    // Tag slab or slabInterior, as one unsigned comparison.
    if ((uint8_t)((state >> 4) - BUDDY_SLAB_TAG) > 1) return none;
    uintptr_t superblock = offset >> path->superblock_shift;
    if (__atomic_load_n(&path->owners[superblock], __ATOMIC_RELAXED) != path->pool_id) return none;
    uintptr_t table = __atomic_load_n(&path->tables[superblock], __ATOMIC_ACQUIRE);
    if (table == 0) return none;
    // The slab is aligned to its size (its order is the state byte's low nibble).
    uintptr_t head = offset & ((uintptr_t)-1 << (path->min_block_shift + (state & 0x0F)));
    buddy_slab *slab = (buddy_slab *)table + ((head & path->superblock_mask) >> path->unit_shift);
    if (slab->base != path->region_base + head) return none;
    intptr_t index = buddy_slab_index(slab, address);
    if (index < 0) return none;
    buddy_object_location found = {slab, (uintptr_t)index};
    return found;
}

/// `buddy_object_locate_state` for a caller that has not loaded the state byte.
BUDDY_INLINE buddy_object_location buddy_object_locate(const buddy_object_path *path, uintptr_t address) {
    uintptr_t offset = address - path->region_base;
    if (offset >= path->region_bytes) {
        buddy_object_location none = {NULL, 0};
        return none;
    }
    uint8_t state = __atomic_load_n(&path->states[offset >> path->min_block_shift], __ATOMIC_RELAXED);
    return buddy_object_locate_state(path, address, offset, state);
}

/// What a lock-free free did, and the slab when it emptied one (BUDDY_FREE_SLAB_EMPTIED).
typedef struct buddy_free_outcome {
    enum buddy_free_result result;
    buddy_slab *emptied;
} buddy_free_outcome;

/// Frees the object at `location` (found by `buddy_object_locate`) lock-free: into the calling
/// thread's own slab, or with one atomic or into another heap's. `expected_bytes` (0: unsized)
/// must be the object's class size. BUDDY_FREE_NOT_DONE sends the caller to its checked slow
/// path, which also reports a double free this path saw.
BUDDY_INLINE buddy_free_outcome buddy_object_free_located(const buddy_object_path *path, buddy_object_location location,
                                                          intptr_t expected_bytes) {
    buddy_free_outcome outcome = {BUDDY_FREE_NOT_DONE, NULL};
    buddy_slab *slab = location.slab;
    if (expected_bytes != 0 && expected_bytes != (intptr_t)slab->object_bytes) return outcome;
    buddy_thread_cache *cache = buddy_current_cache(path->cache_index, path->token);
    void *heap = cache ? cache->object_heap : NULL;
    if (heap != NULL && __atomic_load_n(&slab->owner, __ATOMIC_RELAXED) == (uintptr_t)heap) {
        if (!buddy_cache_enter(cache)) return outcome;
        enum buddy_free_result result = buddy_slab_free_local(slab, location.index);
        // An emptied current slab stays current; a spare may be kept here: nothing else to decide.
        if (result == BUDDY_FREE_SLAB_EMPTIED &&
            (buddy_heap_current(heap)[slab->class_index] == slab || buddy_heap_keep_emptied(heap, slab)))
            result = BUDDY_FREE_DONE;
        buddy_cache_leave(cache);
        if (result == BUDDY_FREE_SLAB_EMPTIED) outcome.emptied = slab;
        outcome.result = result == BUDDY_FREE_DOUBLE ? BUDDY_FREE_NOT_DONE : result;
        return outcome;
    }
    if (buddy_slab_free_remote(slab, location.index) == BUDDY_FREE_DONE) outcome.result = BUDDY_FREE_DONE;
    return outcome;
}

/// Frees the object at `address` of the pool lock-free (`buddy_object_locate`, then
/// `buddy_object_free_located`); BUDDY_FREE_NOT_DONE when it is none of this path's.
BUDDY_INLINE buddy_free_outcome buddy_object_free(const buddy_object_path *path, uintptr_t address, intptr_t expected_bytes) {
    buddy_object_location location = buddy_object_locate(path, address);
    if (location.slab == NULL) {
        buddy_free_outcome outcome = {BUDDY_FREE_NOT_DONE, NULL};
        return outcome;
    }
    return buddy_object_free_located(path, location, expected_bytes);
}

/// The class index of a malloc request (1 <= size <= BUDDY_MAX_OBJECT_BYTES, alignment 16):
/// BuddyCore.SizeClasses.index(size:alignment: 16) in C. Classes step by 16 up to 128 (every
/// other 8-byte class) and 8 to a doubling above it.
BUDDY_INLINE intptr_t buddy_malloc_class_index(size_t size) {
    if (size <= 128) return (intptr_t)(((size + 15) >> 4) << 1) - 1;
    intptr_t k = 63 - __builtin_clzll((unsigned long long)(size - 1));
    return 8 * k - 48 + (intptr_t)((size - 1) >> (k - 3));
}

#ifdef __cplusplus
}
#endif

#endif
