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

/// A bounded LIFO stack of cached blocks of one order. Plain memory: whoever may touch it
/// (the owning thread, or the holder of the enclosing lock) is decided outside.
@usableFromInline
package struct Magazine {
    @usableFromInline package var count: Int
    @usableFromInline package let capacity: Int
    /// Blocks moved at once between this magazine and the level behind it.
    let batch: Int
    @usableFromInline package let blockBytes: Int
    @usableFromInline package let entries: UnsafeMutablePointer<CachedBlock>

    var isEmpty: Bool { count == 0 }
    var isFull: Bool { count == capacity }

    /// Moves up to `limit` entries from the top of `source` onto this magazine; returns how many.
    mutating func take(from source: inout Magazine, limit: Int) -> Int {
        let moved = min(limit, source.count, capacity - count)
        guard moved > 0 else { return 0 }
        (entries + count).update(from: source.entries + (source.count - moved), count: moved)
        count += moved
        source.count -= moved
        return moved
    }

    /// Removes the `moved` oldest entries (the bottom of the stack, the coldest blocks).
    mutating func dropBottom(_ moved: Int) {
        guard moved > 0 else { return }
        entries.update(from: entries + moved, count: count - moved)
        count -= moved
    }
}

/// How many blocks of each order a thread magazine and a depot hold.
package struct MagazineSizes {
    package let capacities: [Int]
    package let batches: [Int]

    /// Capacity per order: the byte budget over the block size, from 2 to 64 blocks, even.
    init(geometry: BuddyGeometry, cachedMaxOrder: Int, budgetBytes: Int) {
        var capacities: [Int] = []
        var batches: [Int] = []
        for order in 0...cachedMaxOrder {
            let fitting = budgetBytes / geometry.blockSize(order: order)
            let capacity = max(2, min(64, fitting)) & ~1
            capacities.append(capacity)
            batches.append(capacity / 2)
        }
        self.capacities = capacities
        self.batches = batches
    }

    package var entryCount: Int { capacities.reduce(0, +) }
}
