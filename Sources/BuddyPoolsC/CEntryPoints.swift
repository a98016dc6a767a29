import BuddySystem
import Glibc
import MemoryPools

// The functions buddypools.h declares, with C names and C types (size_t is Int here: a size
// above Int.max arrives negative and is refused with ENOMEM). Each answers every input: a
// pointer, or NULL with errno, never a trap, except a bad free.

/// malloc's alignment: max_align_t on x86-64 and AArch64 Linux.
let mallocAlignment = 16

@_cdecl("buddypools_malloc")
public func buddypools_malloc(_ size: Int) -> UnsafeMutableRawPointer? {
    ProcessHeap.shared.allocate(size, alignment: mallocAlignment)
}

@_cdecl("buddypools_calloc")
public func buddypools_calloc(_ count: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    guard count >= 0, size >= 0 else {
        errno = ENOMEM
        return nil
    }
    let (bytes, overflow) = count.multipliedReportingOverflow(by: size)
    guard !overflow else {
        errno = ENOMEM
        return nil
    }
    guard let pointer = buddypools_malloc(bytes) else { return nil }
    memset(pointer, 0, bytes)
    return pointer
}

@_cdecl("buddypools_realloc")
public func buddypools_realloc(_ pointer: UnsafeMutableRawPointer?, _ size: Int) -> UnsafeMutableRawPointer? {
    guard let pointer else { return buddypools_malloc(size) }
    if size == 0 {
        buddypools_free(pointer)
        return nil
    }
    let heap = ProcessHeap.shared
    let held = heap.usableSize(pointer)
    // In place when the block already holds the new size (its class or buddy block), or when
    // its buddies above it are free and it grows into them.
    if size > 0, size <= held || (held > 0 && heap.resizeInPlace(pointer, byteCount: size)) { return pointer }
    guard let moved = buddypools_malloc(size) else { return nil }
    memcpy(moved, pointer, min(held, size))
    heap.free(pointer)
    return moved
}

@_cdecl("buddypools_free")
public func buddypools_free(_ pointer: UnsafeMutableRawPointer?) {
    guard let pointer else { return }
    ProcessHeap.shared.free(pointer)
}

@_cdecl("buddypools_aligned_alloc")
public func buddypools_aligned_alloc(_ alignment: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    guard alignment > 0, alignment & (alignment - 1) == 0 else {
        errno = EINVAL
        return nil
    }
    return ProcessHeap.shared.allocate(size, alignment: max(alignment, mallocAlignment))
}

@_cdecl("buddypools_posix_memalign")
public func buddypools_posix_memalign(_ result: UnsafeMutablePointer<UnsafeMutableRawPointer?>?, _ alignment: Int, _ size: Int) -> Int32 {
    guard let result else { return EINVAL }
    guard alignment >= MemoryLayout<UnsafeRawPointer>.size, alignment & (alignment - 1) == 0 else { return EINVAL }
    let saved = errno
    guard let pointer = buddypools_aligned_alloc(alignment, size) else {
        let error = errno
        errno = saved  // posix_memalign reports through its result, not errno
        return error == 0 ? ENOMEM : error
    }
    result.pointee = pointer
    return 0
}

@_cdecl("buddypools_malloc_usable_size")
public func buddypools_malloc_usable_size(_ pointer: UnsafeMutableRawPointer?) -> Int {
    guard let pointer else { return 0 }
    return ProcessHeap.shared.usableSize(pointer)
}

@_cdecl("buddypools_pool_named")
public func buddypools_pool_named(_ name: UnsafePointer<CChar>?) -> OpaquePointer? {
    guard let name, let pool = ProcessHeap.shared.set?[String(cString: name)] else {
        errno = EINVAL
        return nil
    }
    // Pools of the process's set live as long as the process: the handle needs no retain.
    return OpaquePointer(Unmanaged.passUnretained(pool).toOpaque())
}

/// The pool behind a handle from `buddypools_pool_named`.
func pool(_ handle: OpaquePointer?) -> MemoryPool? {
    handle.map { Unmanaged<MemoryPool>.fromOpaque(UnsafeRawPointer($0)).takeUnretainedValue() }
}

@_cdecl("buddypools_malloc_in")
public func buddypools_malloc_in(_ handle: OpaquePointer?, _ size: Int) -> UnsafeMutableRawPointer? {
    guard let pool = pool(handle) else {
        errno = EINVAL
        return nil
    }
    return ProcessHeap.shared.allocate(size, alignment: mallocAlignment, from: pool, fallsBack: false)
}

@_cdecl("buddypools_calloc_in")
public func buddypools_calloc_in(_ handle: OpaquePointer?, _ count: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    guard count >= 0, size >= 0 else {
        errno = ENOMEM
        return nil
    }
    let (bytes, overflow) = count.multipliedReportingOverflow(by: size)
    guard !overflow else {
        errno = ENOMEM
        return nil
    }
    guard let pointer = buddypools_malloc_in(handle, bytes) else { return nil }
    memset(pointer, 0, bytes)
    return pointer
}

@_cdecl("buddypools_aligned_alloc_in")
public func buddypools_aligned_alloc_in(_ handle: OpaquePointer?, _ alignment: Int, _ size: Int) -> UnsafeMutableRawPointer? {
    guard let pool = pool(handle), alignment > 0, alignment & (alignment - 1) == 0 else {
        errno = EINVAL
        return nil
    }
    return ProcessHeap.shared.allocate(size, alignment: max(alignment, mallocAlignment), from: pool, fallsBack: false)
}

@_cdecl("buddypools_pool_of")
public func buddypools_pool_of(_ pointer: UnsafeRawPointer?) -> UnsafePointer<CChar>? {
    guard let pointer else { return nil }
    return ProcessHeap.shared.cName(holding: pointer)
}

@_cdecl("buddypools_prepare_thread")
public func buddypools_prepare_thread() -> Int32 {
    guard let set = ProcessHeap.shared.set else {
        errno = ENOMEM
        return -1
    }
    // The preparation allocates (statistics, the thread's caches): under the malloc library
    // those requests must go around the pools, as any made from inside the library do.
    FastPathAccessors.guardAllocator(entering: true)
    defer { FastPathAccessors.guardAllocator(entering: false) }
    for pool in set.pools { pool.prepareCurrentThread() }
    return 0
}

/// Builds the process's pools now (the malloc library's constructor calls it before the
/// program runs) and returns the heap for `buddypools_heap_malloc` and `buddypools_heap_free`.
/// Not in buddypools.h: C callers get the pools on their first call.
@_cdecl("buddypools_heap_start")
public func buddypools_heap_start() -> UnsafeMutableRawPointer {
    // The heap lives as long as the process (`shared` holds it): the pointer needs no retain.
    Unmanaged.passUnretained(ProcessHeap.shared).toOpaque()
}

/// The malloc library's `malloc`: `buddypools_malloc` on the heap `buddypools_heap_start`
/// returned, with no lazy-global check and no retain per call (14 of the 560 instructions of a
/// malloc and free pair went to the global's check alone, callgrind).
@_cdecl("buddypools_heap_malloc")
public func buddypools_heap_malloc(_ heap: UnsafeMutableRawPointer, _ size: Int) -> UnsafeMutableRawPointer? {
    Unmanaged<ProcessHeap>.fromOpaque(heap)._withUnsafeGuaranteedRef { $0.allocate(size, alignment: mallocAlignment) }
}

/// The malloc library's `free` of a pointer it already found in a pool's range.
@_cdecl("buddypools_heap_free")
public func buddypools_heap_free(_ heap: UnsafeMutableRawPointer, _ pointer: UnsafeMutableRawPointer) {
    Unmanaged<ProcessHeap>.fromOpaque(heap)._withUnsafeGuaranteedRef { $0.freeInPoolRange(pointer) }
}

/// The pool the malloc library's lock-free entries serve from (ProcessHeap.onlyPool, kept
/// alive by the heap for the process's life), or NULL when the process has several pools or
/// BUDDYPOOLS_MALLOC names one: then every call takes the guarded path.
@_cdecl("buddypools_heap_cached_pool")
public func buddypools_heap_cached_pool(_ heap: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer? {
    Unmanaged<ProcessHeap>.fromOpaque(heap)._withUnsafeGuaranteedRef { $0.onlyPool?.toOpaque() }
}

/// The C object fast path's constants for the heap's one pool (`buddy_object_path`, in the pool's
/// metadata, which lives as long as the pool), or NULL when there is no one pool or its objects
/// take the Swift paths: then malloc and free of small sizes go through the calls below.
@_cdecl("buddypools_heap_object_path")
public func buddypools_heap_object_path(_ heap: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer? {
    Unmanaged<ProcessHeap>.fromOpaque(heap)._withUnsafeGuaranteedRef { heap in
        heap.onlyPool?._withUnsafeGuaranteedRef { $0.objectPathForC }
    }
}

/// The malloc library's `malloc` before its reentry guard, on the pool
/// `buddypools_heap_cached_pool` returned: the thread's caches only, never a call to malloc
/// nor a lock (MemoryPool.allocateFromCaches); NULL sends it to `buddypools_heap_malloc`. The
/// library calls it for what the C object fast path does not serve (blocks, or every size when
/// the pool's objects take the Swift paths).
@_cdecl("buddypools_pool_malloc_cached")
public func buddypools_pool_malloc_cached(_ pool: UnsafeMutableRawPointer, _ size: Int) -> UnsafeMutableRawPointer? {
    guard size > 0 else { return nil }
    return Unmanaged<MemoryPool>.fromOpaque(pool)._withUnsafeGuaranteedRef { $0.allocateFromCaches(byteCount: size, alignment: mallocAlignment) }
}

/// The malloc library's `free` of a pointer in a pool's range that the C object fast path did
/// not take, before its reentry guard: 1 when the thread's magazine took the block
/// (MemoryPool.deallocateCachedBlock), 0 sends it to `buddypools_heap_free`, which checks it and
/// names what is wrong.
@_cdecl("buddypools_pool_free_cached")
public func buddypools_pool_free_cached(_ pool: UnsafeMutableRawPointer, _ pointer: UnsafeMutableRawPointer) -> Int32 {
    Unmanaged<MemoryPool>.fromOpaque(pool)._withUnsafeGuaranteedRef { $0.deallocateCachedBlock(pointer) } ? 1 : 0
}

/// After the C object fast path's free emptied a slab that is not its class's current one
/// (BUDDY_FREE_SLAB_EMPTIED): the heap keeps it or gives it back (MemoryPool.objectSlabEmptied).
/// The malloc library calls it inside its reentry guard: giving a slab back takes locks.
@_cdecl("buddypools_pool_slab_emptied")
public func buddypools_pool_slab_emptied(_ pool: UnsafeMutableRawPointer, _ slab: UnsafeMutableRawPointer) {
    Unmanaged<MemoryPool>.fromOpaque(pool)._withUnsafeGuaranteedRef { $0.objectSlabEmptied(slab) }
}
