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
int cbuddypools_in_pool_range(const void *pointer);

#endif
