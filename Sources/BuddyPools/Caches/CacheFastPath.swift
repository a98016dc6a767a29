import CNuma
import Synchronization

/// The lock-free paths of a pool: the calling thread's magazine, reached through one TLS
/// load, with no lock, no atomic read-modify-write and no reference counting. Held by value
/// in the pool, with the pool's first region, so a free needs no lookup.
@usableFromInline
struct CacheFastPath: @unchecked Sendable {
    // @unchecked: the pointers reach state bytes and owners, which are atomics.
    @usableFromInline let cacheIndex: Int
    @usableFromInline let token: UInt64
    /// Highest cached order; -1 when the pool has no caches.
    @usableFromInline let maxOrder: Int
    @usableFromInline let minBlockShift: Int
    @usableFromInline let superblockShift: Int
    /// Bytes of a block of `maxOrder` (0 without caches).
    @usableFromInline let maxCachedBytes: Int
    @usableFromInline let poolID: UInt32
    /// The pool's first region.
    @usableFromInline let regionBase: UInt
    @usableFromInline let regionBytes: UInt
    @usableFromInline let states: UnsafeMutablePointer<Atomic<UInt8>>?
    @usableFromInline let owners: UnsafeMutablePointer<Atomic<UInt32>>?

    static let disabled = CacheFastPath(
        cacheIndex: 0, token: 0, maxOrder: -1, minBlockShift: 12, superblockShift: 21, maxCachedBytes: 0, poolID: 0,
        regionBase: 0, regionBytes: 0, states: nil, owners: nil)

    /// The order of an unmovable request of `byteCount` (1 ... maxCachedBytes).
    @inlinable @inline(__always)
    func order(byteCount: Int) -> Int {
        // Or-ing in the minimum block's bits makes anything up to it order 0.
        Int.bitWidth &- ((byteCount &- 1) | ((1 &<< minBlockShift) &- 1)).leadingZeroBitCount &- minBlockShift
    }

    /// The calling thread's cache for this pool, if it has one.
    @inlinable @inline(__always)
    func currentThreadCache() -> UnsafeMutablePointer<ThreadCache>? {
        ThreadCache.current(cacheIndex: cacheIndex, token: token)
    }

    /// Pops a cached block and marks it allocated; nil sends the caller to the slow path.
    @inlinable @inline(__always)
    func pop(order: Int) -> UInt? {
        guard let cache = currentThreadCache() else { return nil }
        guard enter(cache) else { return nil }
        let magazine = Self.magazine(cache, order)
        let count = magazine.pointee.count
        guard count > 0 else {
            leave(cache)
            return nil
        }
        let block = magazine.pointee.entries[count &- 1]
        magazine.pointee.count = count &- 1
        // Allocated, unmovable (0x20), as `BlockState.allocated(order:mobilityClass: 0)` writes it,
        // without the conversion checks: cached orders are at most 15.
        block.state.pointee.store(UInt8(truncatingIfNeeded: 0x20 | order), ordering: .relaxed)
        cache.pointee.pendingCachedBytes &-= magazine.pointee.blockBytes
        cache.pointee.pendingAllocations &+= 1
        leave(cache)
        return block.address
    }

    /// The state byte and order of a block in the first region that the fast path may free:
    /// an allocated, unmovable, plain head of a cached order, in a superblock this pool owns.
    @inlinable @inline(__always)
    func cacheableHead(at address: UInt, expectedOrder: Int?) -> (UnsafeMutablePointer<Atomic<UInt8>>, Int)? {
        let offset = address &- regionBase
        guard offset < regionBytes, let states, let owners else { return nil }
        return Self.cacheableHead(
            offset: offset, states: states, owners: owners, minBlockShift: minBlockShift, superblockShift: superblockShift,
            maxOrder: maxOrder, poolID: poolID, expectedOrder: expectedOrder)
    }

    @inlinable @inline(__always)
    static func cacheableHead(
        offset: UInt, states: UnsafeMutablePointer<Atomic<UInt8>>, owners: UnsafeMutablePointer<Atomic<UInt32>>,
        minBlockShift: Int, superblockShift: Int, maxOrder: Int, poolID: UInt32, expectedOrder: Int?
    ) -> (UnsafeMutablePointer<Atomic<UInt8>>, Int)? {
        // Truncating conversions: shifts are below 64 and `offset` is inside the region, so
        // nothing is lost, and the fast path carries no overflow traps.
        guard offset & ((1 &<< UInt(truncatingIfNeeded: minBlockShift)) &- 1) == 0 else { return nil }
        let state = states + Int(truncatingIfNeeded: offset &>> UInt(truncatingIfNeeded: minBlockShift))
        let value = state.pointee.load(ordering: .relaxed)
        // High nibble 2: allocated, unmovable, not raised for alignment, not a run head.
        guard value &>> 4 == 2 else { return nil }
        let order = Int(value & 0x0F)
        guard order <= maxOrder, expectedOrder == nil || expectedOrder == order,
              owners[Int(truncatingIfNeeded: offset &>> UInt(truncatingIfNeeded: superblockShift))].load(ordering: .relaxed) == poolID
        else { return nil }
        return (state, order)
    }

    /// Pushes a block the caller has checked; false sends the caller to the slow path.
    @inlinable @inline(__always)
    func push(address: UInt, state: UnsafeMutablePointer<Atomic<UInt8>>, order: Int) -> Bool {
        guard let cache = currentThreadCache() else { return false }
        guard enter(cache) else { return false }
        let magazine = Self.magazine(cache, order)
        let count = magazine.pointee.count
        guard count < magazine.pointee.capacity else {
            leave(cache)
            return false
        }
        state.pointee.store(UInt8(truncatingIfNeeded: 0x80 | order), ordering: .relaxed)  // BlockState.cached(order:)
        magazine.pointee.entries[count] = CachedBlock(address: address, state: state)
        magazine.pointee.count = count &+ 1
        cache.pointee.pendingCachedBytes &+= magazine.pointee.blockBytes
        cache.pointee.pendingFrees &+= 1
        leave(cache)
        return true
    }

    /// The magazine of `order`, at a fixed offset from the cache (no pointer to load).
    @inlinable @inline(__always)
    static func magazine(_ cache: UnsafeMutablePointer<ThreadCache>, _ order: Int) -> UnsafeMutablePointer<Magazine> {
        (UnsafeMutableRawPointer(cache) + ThreadCache.magazinesOffset).assumingMemoryBound(to: Magazine.self) + order
    }

    @inlinable @inline(__always)
    func enter(_ cache: UnsafeMutablePointer<ThreadCache>) -> Bool {
        let drainRequested: UInt8
        if cnuma_under_thread_sanitizer() != 0 {
            // Real fences, which TSan understands (it cannot see the drainer's membarrier).
            cache.pointee.inUse.store(1, ordering: .sequentiallyConsistent)
            drainRequested = cache.pointee.drainRequested.load(ordering: .sequentiallyConsistent)
        } else {
            cache.pointee.inUse.store(1, ordering: .relaxed)
            cnuma_compiler_barrier()
            drainRequested = cache.pointee.drainRequested.load(ordering: .acquiring)
        }
        if drainRequested != 0 {
            cache.pointee.inUse.store(0, ordering: .releasing)
            return false
        }
        return true
    }

    @inlinable @inline(__always)
    func leave(_ cache: UnsafeMutablePointer<ThreadCache>) {
        cnuma_compiler_barrier()
        cache.pointee.inUse.store(0, ordering: .releasing)
    }
}
