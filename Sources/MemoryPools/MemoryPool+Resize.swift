import BuddyCore

// Growth in place: what `realloc` tries before it moves the data.

extension MemoryPool {
    /// Makes the block at `pointer` hold `byteCount` bytes where it lies, if it can: true when
    /// it held that many already, or its block grew into free buddies above it (a block of order
    /// k at an address aligned to 2^(k+1) blocks takes its free buddy of order k, and so on up to
    /// the order `byteCount` needs). False leaves the block as it was: the caller moves the data.
    /// Only a whole unmovable buddy block below a superblock grows: objects, runs, exact-size
    /// allocations, movable and reclaimable blocks (their handles and shrinkers know their size),
    /// pools that zero, poison or count sites, and pointers that are not an allocation's start
    /// answer false (a bad pointer is reported by the free that follows, not here). A buddy held
    /// in a thread's magazine is not free: in a pool with caches, growth succeeds only where the
    /// arena itself holds the buddies (orders above the cached ones, or a magazine that never
    /// took them).
    public func resizeInPlace(_ pointer: UnsafeMutableRawPointer, byteCount: Int) -> Bool {
        guard byteCount > 0, !scrubs, !countsSites, !isForkedChild,
              let (order, _) = geometry.order(byteCount: byteCount, alignment: 1) else { return false }
        let address = UInt(bitPattern: pointer)
        return core.locked { core -> Bool in
            guard case .head(let location, let state) = core.withArena({ $0.lookup(address) }),
                  case .allocated = state.kind, !state.isTrimmed, PoolCore.mobility(of: state) == .unmovable,
                  core.arena.runLength(slot: location.slot) <= 1
            else { return false }
            if order <= location.order { return true }
            return core.extendBlock(location, toOrder: order, mobility: .unmovable)
        }
    }
}
