// The C views' own sizes and offsets, checked at compile time; the Swift side checks the same
// fields through its own types (MemoryPool.fastPathLayoutProblems, run by the test suite).
#include "buddy_fast_path.h"

#include <stddef.h>

_Static_assert(sizeof(buddy_thread_cache) == 24 && offsetof(buddy_thread_cache, in_use) == 8 &&
                   offsetof(buddy_thread_cache, drain_requested) == 9 && offsetof(buddy_thread_cache, object_heap) == 16,
               "buddy_thread_cache: token, in_use, drain_requested, object_heap");
_Static_assert(sizeof(buddy_slab) == 128 && offsetof(buddy_slab, owner) == 16 && offsetof(buddy_slab, bits) == 24 &&
                   offsetof(buddy_slab, free_count) == 40 && offsetof(buddy_slab, class_index) == 48 &&
                   offsetof(buddy_slab, freed_hint) == 52 && offsetof(buddy_slab, next) == 56,
               "buddy_slab: the fields as SlabDescriptor declares them, the hot ones in the first 64 bytes");
_Static_assert(sizeof(uintptr_t) == 8, "the fast path's views assume a 64-bit target");
