/* Internal to BuddyPools' C API (not for callers): what Swift's Glibc module does not import. */
#ifndef BUDDYPOOLS_SHIM_H
#define BUDDYPOOLS_SHIM_H

#include <stddef.h>

/* glibc's malloc_usable_size (declared in <malloc.h>, which Swift does not import). */
size_t cbuddypools_system_usable_size(void *pointer);

#endif
