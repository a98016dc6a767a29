import BuddyCore

/// Runs of superblocks kept for reuse: a freed unmovable run stays allocated in the arena, its
/// head marked cached, so the next request of the same length takes it without searching the
/// superblock bitmap (fixed-16M in buddypools-bench). Bounded by `runCacheBudget` bytes (half
/// the pool's cache budget) and 16 entries; under pressure, on `drainCaches()` and before any
/// reclaim, the runs go back to the buddy allocator. Reclaim sees them as allocated unmovable
/// memory, as it sees blocks in thread caches.
struct CachedRun {
    let slot: Int
    let count: Int
}

extension PoolCore {
    /// Entries the run cache holds at most; its storage is reserved up front, so keeping a run
    /// allocates nothing (a realtime thread frees runs too).
    static let runCacheEntries = 16

    /// A cached run of `count` superblocks whose start meets `alignment` and that does not cross
    /// a multiple of `boundary`, marked allocated again; nil when none is kept.
    mutating func takeCachedRun(count: Int, alignment: Int, boundary: Int) -> BuddyAllocation? {
        let superblock = UInt(arena.geometry.superblockSize)
        guard let index = cachedRuns.lastIndex(where: { run in
            let base = arena.baseAddress(slot: run.slot)
            return run.count == count && (alignment <= Int(superblock) || base & UInt(alignment - 1) == 0)
                && (boundary == 0 || base / UInt(boundary) == (base + UInt(count) * superblock - 1) / UInt(boundary))
        }) else { return nil }
        let run = cachedRuns.remove(at: index)
        cachedRunBytes -= run.count << arena.geometry.superblockShift
        // Run heads carry the raised flag: they are never taken for a cacheable block.
        arena.state(slot: run.slot, offset: 0).pointee.store(
            BlockState.allocated(order: arena.geometry.maxOrder, mobilityClass: Mobility.unmovable.rawValue, alignmentRaised: true).rawValue,
            ordering: .relaxed)
        checkAfterOperation(slot: run.slot)
        let location = BlockLocation(slot: run.slot, blockOffset: 0, order: arena.geometry.maxOrder)
        return BuddyAllocation(address: arena.address(of: location), location: location)
    }

    /// Keeps a freed unmovable run for reuse when the budget allows; false: free it.
    mutating func keepRun(_ location: BlockLocation, mobility: Mobility) -> Bool {
        let count = arena.runLength(slot: location.slot)
        let bytes = count << arena.geometry.superblockShift
        guard mobility == .unmovable, count > 1, cachedRuns.count < Self.runCacheEntries, cachedRunBytes + bytes <= runCacheBudget
        else { return false }
        arena.state(slot: location.slot, offset: 0).pointee.store(
            BlockState.cached(order: arena.geometry.maxOrder).rawValue, ordering: .relaxed)
        cachedRuns.append(CachedRun(slot: location.slot, count: count))
        cachedRunBytes += bytes
        checkAfterOperation(slot: location.slot)
        return true
    }

    /// Frees every kept run to the buddy allocator; returns their bytes.
    mutating func releaseCachedRuns() -> Int {
        let bytes = cachedRunBytes
        while let run = cachedRuns.popLast() {
            freeRun(BlockLocation(slot: run.slot, blockOffset: 0, order: arena.geometry.maxOrder), mobility: .unmovable)
        }
        cachedRunBytes = 0
        return bytes
    }
}
