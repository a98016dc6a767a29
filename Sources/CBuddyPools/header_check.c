// Compiles buddypools.h as C (its functions are defined in Swift, in BuddyPoolsC), so a header
// that is not valid C fails the build; and the one libc call Swift cannot import.
#include "buddypools.h"
#include "buddypools_shim.h"

#include <malloc.h>

_Static_assert(sizeof(buddypools_pool_t) == sizeof(void *), "a pool handle is one pointer");

size_t cbuddypools_system_usable_size(void *pointer) { return malloc_usable_size(pointer); }
