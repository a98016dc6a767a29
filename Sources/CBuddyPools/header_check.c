// Compiles buddypools.h as C (its functions are defined in Swift, in BuddyPoolsC), so a header
// that is not valid C fails the build; and what Swift cannot reach: glibc's own allocator entry
// points and a lock-free table of the pools' address ranges.
#include "buddypools.h"
#include "buddypools_shim.h"

#include <malloc.h>
#include <stdatomic.h>

_Static_assert(sizeof(buddypools_pool_t) == sizeof(void *), "a pool handle is one pointer");

// glibc exports its allocator under these names too; calling them never reaches an interposer.
extern void *__libc_malloc(size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void __libc_free(void *pointer);

void *cbuddypools_system_malloc(size_t size) { return __libc_malloc(size); }
void *cbuddypools_system_memalign(size_t alignment, size_t size) { return __libc_memalign(alignment, size); }
void cbuddypools_system_free(void *pointer) { __libc_free(pointer); }

// glibc's malloc_usable_size, found past any interposer (set by the malloc library's
// constructor); the plain call otherwise.
size_t (*cbuddypools_next_usable_size)(void *) = 0;
size_t cbuddypools_system_usable_size(void *pointer) {
    return cbuddypools_next_usable_size ? cbuddypools_next_usable_size(pointer) : malloc_usable_size(pointer);
}

static uintptr_t range_starts[CBUDDYPOOLS_MAX_RANGES], range_ends[CBUDDYPOOLS_MAX_RANGES];
static _Atomic int range_count = 0;

// Called under the Swift side's once-only initialization: one writer.
void cbuddypools_add_range(uintptr_t start, uintptr_t end) {
    int count = atomic_load_explicit(&range_count, memory_order_relaxed);
    if (count >= CBUDDYPOOLS_MAX_RANGES) return;
    range_starts[count] = start;
    range_ends[count] = end;
    atomic_store_explicit(&range_count, count + 1, memory_order_release);
}

int cbuddypools_in_pool_range(const void *pointer) {
    uintptr_t address = (uintptr_t)pointer;
    int count = atomic_load_explicit(&range_count, memory_order_acquire);
    for (int index = 0; index < count; index++) {
        if (address - range_starts[index] < range_ends[index] - range_starts[index]) return 1;
    }
    return 0;
}
