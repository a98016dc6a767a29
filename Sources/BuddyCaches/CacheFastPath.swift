import BuddyCore
import BuddySystem
import CBuddyFastPath
import Synchronization

/// The lock-free paths of a pool: the calling thread's magazine, reached through one TLS
/// load, with no lock, no atomic read-modify-write and no reference counting. Held by value
/// in the pool, with the pool's first region, so a free needs no lookup.
///
/// `maxCachedBytes` and `regionBytes` are 0 when the pool must not take the inlined path at
/// all (it counts allocation sites, say): the size and region checks then fail first, and no
/// separate flag is tested on every call.
@usableFromInline
package struct CacheFastPath: @unchecked Sendable {
    // @unchecked: the pointers reach state bytes and owners, which are atomics.
    @usableFromInline package let cacheIndex: Int
    @usableFromInline package let token: UInt64
    /// Highest cached order; -1 when the pool has no caches.
    @usableFromInline package let maxOrder: Int
    @usableFromInline package let minBlockShift: Int
    /// minBlockSize - 1: the bits a block start has clear.
    @usableFromInline package let minBlockMask: UInt
    @usableFromInline package let superblockShift: Int
    /// Bytes of a block of `maxOrder` (0: no request takes the inlined path).
    @usableFromInline package let maxCachedBytes: Int
    @usableFromInline package let poolID: UInt32
    /// The pool's first region (0 bytes: no free takes the inlined path).
    @usableFromInline package let regionBase: UInt
    @usableFromInline package let regionBytes: UInt
    @usableFromInline package let states: UnsafeMutablePointer<Atomic<UInt8>>
    @usableFromInline package let owners: UnsafeMutablePointer<Atomic<UInt32>>

    package init(
        cacheIndex: Int, token: UInt64, maxOrder: Int, geometry: BuddyGeometry, maxCachedBytes: Int, poolID: UInt32,
        region: CacheRegion, inline: Bool
    ) {
        self.cacheIndex = cacheIndex
        self.token = token
        self.maxOrder = maxOrder
        minBlockShift = geometry.minBlockShift
        minBlockMask = UInt(geometry.minBlockSize - 1)
        superblockShift = geometry.superblockShift
        self.maxCachedBytes = inline ? maxCachedBytes : 0
        self.poolID = poolID
        regionBase = region.base
        regionBytes = inline ? region.byteCount : 0
        states = region.states
        owners = region.owners
    }

    /// A pool without caches: every check fails before anything is read.
    package static func disabled(region: CacheRegion, geometry: BuddyGeometry) -> CacheFastPath {
        CacheFastPath(cacheIndex: 0, token: 0, maxOrder: -1, geometry: geometry, maxCachedBytes: 0, poolID: 0, region: region, inline: false)
    }

    /// The order of an unmovable request of `byteCount` (1 ... maxCachedBytes).
    @inlinable @inline(__always)
    package func order(byteCount: Int) -> Int {
        // Or-ing in the minimum block's bits makes anything up to it order 0.
        Int.bitWidth &- ((byteCount &- 1) | Int(bitPattern: minBlockMask)).leadingZeroBitCount &- minBlockShift
    }

    /// The calling thread's cache for this pool, if it has one.
    @inlinable @inline(__always)
    package func currentThreadCache() -> UnsafeMutablePointer<ThreadCache>? {
        ThreadCache.current(cacheIndex: cacheIndex, token: token)
    }

    /// Pops a cached block and marks it allocated; nil sends the caller to the slow path.
    @inlinable @inline(__always)
    package func pop(order: Int) -> UInt? {
        guard let cache = currentThreadCache() else { return nil }
        guard enter(cache) else { return nil }
        let magazine = Self.magazine(cache, order)
        let count = magazine.pointee.count.load(ordering: .relaxed)
        guard count > 0 else {
            leave(cache)
            return nil
        }
        let block = magazine.pointee.entries[count &- 1]
        magazine.pointee.count.store(count &- 1, ordering: .relaxed)
        // Allocated, unmovable: the byte `BlockState.allocated(order:mobilityClass: 0)` writes.
        block.state.pointee.store(BlockState.Tag.allocatedUnmovable.byte(order: order), ordering: .relaxed)
        cache.pointee.allocations.store(cache.pointee.allocations.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
        leave(cache)
        return block.address
    }

    /// The state byte and order of a block in the first region that the fast path may free:
    /// an allocated, unmovable, plain head of a cached order, in a superblock this pool owns.
    @inlinable @inline(__always)
    package func cacheableHead(at address: UInt, expectedOrder: Int?) -> (UnsafeMutablePointer<Atomic<UInt8>>, Int)? {
        let offset = address &- regionBase
        guard offset < regionBytes else { return nil }
        return Self.cacheableHead(
            offset: offset, states: states, owners: owners, minBlockShift: minBlockShift, minBlockMask: minBlockMask,
            superblockShift: superblockShift, maxOrder: maxOrder, poolID: poolID, expectedOrder: expectedOrder)
    }

    /// `cacheableHead` for a caller that loaded the state byte (`value`) of an address `offset`
    /// bytes into the first region.
    @inlinable @inline(__always)
    package func cacheableHead(offset: UInt, value: UInt8) -> (UnsafeMutablePointer<Atomic<UInt8>>, Int)? {
        guard offset < regionBytes, offset & minBlockMask == 0,
              let order = Self.cacheableOrder(
                  value: value, offset: offset, owners: owners, superblockShift: superblockShift, maxOrder: maxOrder, poolID: poolID,
                  expectedOrder: nil)
        else { return nil }
        return (states + Int(truncatingIfNeeded: offset &>> UInt(truncatingIfNeeded: minBlockShift)), order)
    }

    @inlinable @inline(__always)
    package static func cacheableHead(
        offset: UInt, states: UnsafeMutablePointer<Atomic<UInt8>>, owners: UnsafeMutablePointer<Atomic<UInt32>>,
        minBlockShift: Int, minBlockMask: UInt, superblockShift: Int, maxOrder: Int, poolID: UInt32, expectedOrder: Int?
    ) -> (UnsafeMutablePointer<Atomic<UInt8>>, Int)? {
        // Truncating conversions: shifts are below 64 and `offset` is inside the region, so
        // nothing is lost, and the fast path carries no overflow traps.
        guard offset & minBlockMask == 0 else { return nil }
        let state = states + Int(truncatingIfNeeded: offset &>> UInt(truncatingIfNeeded: minBlockShift))
        guard let order = cacheableOrder(
            value: state.pointee.load(ordering: .relaxed), offset: offset, owners: owners, superblockShift: superblockShift,
            maxOrder: maxOrder, poolID: poolID, expectedOrder: expectedOrder)
        else { return nil }
        return (state, order)
    }

    /// The order of a block whose head's state byte is `value` when the fast path may free it:
    /// allocated, unmovable, not raised for alignment, not a run head, of a cached order (and
    /// `expectedOrder`, when given), in a superblock `poolID` owns.
    @inlinable @inline(__always)
    package static func cacheableOrder(
        value: UInt8, offset: UInt, owners: UnsafeMutablePointer<Atomic<UInt32>>, superblockShift: Int, maxOrder: Int, poolID: UInt32,
        expectedOrder: Int?
    ) -> Int? {
        guard value &>> 4 == BlockState.Tag.allocatedUnmovable.rawValue else { return nil }
        let order = Int(value & 0x0F)
        guard order <= maxOrder, expectedOrder == nil || expectedOrder == order,
              owners[Int(truncatingIfNeeded: offset &>> UInt(truncatingIfNeeded: superblockShift))].load(ordering: .relaxed) == poolID
        else { return nil }
        return order
    }

    /// Pushes a block the caller has checked; false sends the caller to the slow path.
    @inlinable @inline(__always)
    package func push(address: UInt, state: UnsafeMutablePointer<Atomic<UInt8>>, order: Int) -> Bool {
        guard let cache = currentThreadCache() else { return false }
        guard enter(cache) else { return false }
        let magazine = Self.magazine(cache, order)
        let count = magazine.pointee.count.load(ordering: .relaxed)
        guard count < magazine.pointee.capacity else {
            leave(cache)
            return false
        }
        state.pointee.store(BlockState.Tag.cached.byte(order: order), ordering: .relaxed)
        magazine.pointee.entries[count] = CachedBlock(address: address, state: state)
        magazine.pointee.count.store(count &+ 1, ordering: .relaxed)
        leave(cache)
        return true
    }

    /// The magazine of `order`, at a fixed offset from the cache (no pointer to load).
    @inlinable @inline(__always)
    package static func magazine(_ cache: UnsafeMutablePointer<ThreadCache>, _ order: Int) -> UnsafeMutablePointer<Magazine> {
        (UnsafeMutableRawPointer(cache) + ThreadCache.magazinesOffset).assumingMemoryBound(to: Magazine.self) + order
    }

    /// The drain handshake (`buddy_cache_enter` in C, which the object fast path shares): marks
    /// the owner in its cache; false when a drainer asked it to stay out.
    @inlinable @inline(__always)
    package func enter(_ cache: UnsafeMutablePointer<ThreadCache>) -> Bool {
        buddy_cache_enter(ThreadCache.view(cache)) != 0
    }

    @inlinable @inline(__always)
    package func leave(_ cache: UnsafeMutablePointer<ThreadCache>) {
        buddy_cache_leave(ThreadCache.view(cache))
    }
}
