/* Internal to BuddyPools' C API and malloc library (not for callers). */
#ifndef BUDDYPOOLS_SHIM_H
#define BUDDYPOOLS_SHIM_H

#include <stddef.h>
#include <stdint.h>

/* The system's allocator, glibc's own entry points: they stay glibc's even when the malloc
 * library interposes malloc (the C API's fallback and the library's bootstrap). */
void *cbuddypools_system_malloc(size_t size);
void *cbuddypools_system_memalign(size_t alignment, size_t size);
void cbuddypools_system_free(void *pointer);
size_t cbuddypools_system_usable_size(void *pointer);

/* Address ranges of the process's pools, so a free can tell pool memory from the system's
 * without entering Swift. Filled once, when the process's pool set is made. */
enum { CBUDDYPOOLS_MAX_RANGES = 256 };
void cbuddypools_add_range(uintptr_t start, uintptr_t end);
/* Start and byte count of each range, and how many are filled (a plain int for Swift's
 * importer, written and read with the atomic builtins: release by the one writer, acquire). */
extern uintptr_t cbuddypools_range_starts[CBUDDYPOOLS_MAX_RANGES], cbuddypools_range_sizes[CBUDDYPOOLS_MAX_RANGES];
extern int cbuddypools_range_count;

/* Inline: every free of the malloc library asks (a call and a loop cost 20 instructions of a
 * malloc-free pair of 406, callgrind). */
static inline int cbuddypools_in_pool_range(const void *pointer) {
    uintptr_t address = (uintptr_t)pointer;
    int count = __atomic_load_n(&cbuddypools_range_count, __ATOMIC_ACQUIRE);
    for (int index = 0; index < count; index++) {
        if (address - cbuddypools_range_starts[index] < cbuddypools_range_sizes[index]) return 1;
    }
    return 0;
}

#endif
