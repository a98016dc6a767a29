import BuddyCore
import BuddySystem
import Synchronization

/// A block sitting in a cache: its address and its state byte (so the fast path never has
/// to look the block up again to mark it allocated).
@usableFromInline
package struct CachedBlock {
    @usableFromInline package var address: UInt
    @usableFromInline package var state: UnsafeMutablePointer<Atomic<UInt8>>

    @usableFromInline
    package init(address: UInt, state: UnsafeMutablePointer<Atomic<UInt8>>) {
        self.address = address
        self.state = state
    }
}

/// A bounded LIFO stack of cached blocks of one order. Who may change it (the owning thread,
/// or the holder of the enclosing lock) is decided outside. Its changing fields are atomics and
/// its methods non-mutating, only so that statistics can read the count from any thread while
/// the owner works (relaxed loads and stores are plain moves on x86, and a mutating method would
/// be, to ThreadSanitizer, a write of the whole magazine).
@usableFromInline
package struct Magazine: ~Copyable {
    @usableFromInline package let count: Atomic<Int>
    /// Blocks it may hold now: what the thread's grant of cache bytes allows (0 when revoked).
    @usableFromInline package let capacityStorage: Atomic<Int>
    /// Blocks moved at once between this magazine and the level behind it.
    package let batchStorage: Atomic<Int>
    package let blockBytes: Int
    @usableFromInline package let entries: UnsafeMutablePointer<CachedBlock>
    /// Entries the storage holds: the most `capacity` can be set to.
    package let storageCapacity: Int

    package init(capacity: Int, blockBytes: Int, entries: UnsafeMutablePointer<CachedBlock>) {
        count = Atomic(0)
        capacityStorage = Atomic(capacity)
        batchStorage = Atomic(max(1, capacity / 2))
        self.blockBytes = blockBytes
        self.entries = entries
        storageCapacity = capacity
    }

    @inlinable @inline(__always)
    package var held: Int { count.load(ordering: .relaxed) }

    @inlinable @inline(__always)
    package var capacity: Int { capacityStorage.load(ordering: .relaxed) }

    package var batch: Int { batchStorage.load(ordering: .relaxed) }

    package var isEmpty: Bool { held == 0 }
    package var isFull: Bool { held >= capacity }

    /// Sets the capacity (at most the storage's) and the batch that goes with it.
    package func resize(capacity newCapacity: Int) {
        let capacity = min(newCapacity, storageCapacity)
        capacityStorage.store(capacity, ordering: .relaxed)
        batchStorage.store(max(1, capacity / 2), ordering: .relaxed)
    }

    /// Moves up to `limit` entries from the top of `source` onto this magazine; returns how many.
    package func take(from source: UnsafeMutablePointer<Magazine>, limit: Int) -> Int {
        let mine = held, theirs = source.pointee.held
        let moved = min(limit, theirs, capacity - mine)
        guard moved > 0 else { return 0 }
        (entries + mine).update(from: source.pointee.entries + (theirs - moved), count: moved)
        count.store(mine + moved, ordering: .relaxed)
        source.pointee.count.store(theirs - moved, ordering: .relaxed)
        return moved
    }

    /// Appends `moved` entries from `from`; the caller has checked the room.
    package func append(_ from: UnsafeMutablePointer<CachedBlock>, count moved: Int) {
        let mine = held
        (entries + mine).update(from: from, count: moved)
        count.store(mine + moved, ordering: .relaxed)
    }

    /// Removes the `moved` oldest entries (the bottom of the stack, the coldest blocks).
    package func dropBottom(_ moved: Int) {
        guard moved > 0 else { return }
        let mine = held
        entries.update(from: entries + moved, count: mine - moved)
        count.store(mine - moved, ordering: .relaxed)
    }
}

/// How many blocks of each order a thread's magazines hold, from its grant of cache bytes:
/// every order whose two blocks fit the grant gets two (a magazine of one refills or spills on
/// every other operation), largest orders dropped first until the twos fit; what is left is
/// shared evenly, up to 64 blocks an order. So a small grant caches only small blocks.
package struct MagazineSizes: Sendable, Equatable {
    package let capacities: [Int]

    package init(geometry: BuddyGeometry, cachedMaxOrder: Int, grantBytes: Int) {
        let top = max(0, cachedMaxOrder)
        var orders = (0...top).filter { 2 * geometry.blockSize(order: $0) <= grantBytes }
        while !orders.isEmpty, orders.reduce(0, { $0 + 2 * geometry.blockSize(order: $1) }) > grantBytes {
            orders.removeLast()
        }
        var result = [Int](repeating: 0, count: top + 1)
        guard !orders.isEmpty else {
            capacities = result
            return
        }
        var left = grantBytes
        for order in orders {
            result[order] = 2
            left -= 2 * geometry.blockSize(order: order)
        }
        // The rest, shared evenly, up to 64 blocks an order.
        let share = left / orders.count
        for order in orders {
            let extra = min(62, share / geometry.blockSize(order: order))
            result[order] += extra
        }
        capacities = result
    }

    package var entryCount: Int { capacities.reduce(0, +) }

    /// Bytes the magazines can hold when full.
    package func bytes(geometry: BuddyGeometry) -> Int {
        capacities.indices.reduce(0) { $0 + capacities[$1] * geometry.blockSize(order: $1) }
    }
}
