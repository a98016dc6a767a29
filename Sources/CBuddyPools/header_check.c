// Compiles buddypools.h as C (its functions are defined in Swift, in BuddyPoolsC), so a header
// that is not valid C fails the build; and what Swift cannot reach: glibc's own allocator entry
// points and a lock-free table of the pools' address ranges.
#include "buddypools.h"
#include "buddypools_shim.h"

#include <malloc.h>

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

uintptr_t cbuddypools_range_starts[CBUDDYPOOLS_MAX_RANGES], cbuddypools_range_sizes[CBUDDYPOOLS_MAX_RANGES];
int cbuddypools_range_count = 0;

// Called under the Swift side's once-only initialization: one writer.
void cbuddypools_add_range(uintptr_t start, uintptr_t end) {
    int count = __atomic_load_n(&cbuddypools_range_count, __ATOMIC_RELAXED);
    if (count >= CBUDDYPOOLS_MAX_RANGES) return;
    cbuddypools_range_starts[count] = start;
    cbuddypools_range_sizes[count] = end - start;
    __atomic_store_n(&cbuddypools_range_count, count + 1, __ATOMIC_RELEASE);
}
