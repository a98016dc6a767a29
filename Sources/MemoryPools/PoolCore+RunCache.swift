import BuddyCore

/// Runs of superblocks kept for reuse: a freed unmovable run (or a whole superblock allocated as
/// one block) stays allocated in the arena, its head marked cached, so the next request of the
/// same length takes it without searching the superblock bitmap (fixed-2M and fixed-16M in
/// buddypools-bench). Borrowed superblocks are never kept: they go home. Bounded by `runCacheBudget` bytes (half
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
    mutating func takeCachedRun(count: Int, alignment: Int, boundary: Int, alignmentRaised: Bool = true) -> BuddyAllocation? {
        guard cachedRunCount > 0 else { return nil }
        let superblockShift = arena.geometry.superblockShift
        var index = cachedRunCount - 1
        while index >= 0 {
            let run = cachedRuns[index]
            if run.count == count {
                let base = arena.baseAddress(slot: run.slot)
                let aligned = alignment <= 1 &<< superblockShift || base & UInt(alignment - 1) == 0
                let inside = boundary == 0 || base / UInt(boundary) == (base + UInt(count &<< superblockShift) - 1) / UInt(boundary)
                if aligned && inside { break }
            }
            index -= 1
        }
        guard index >= 0 else { return nil }
        // Order does not matter: the last entry takes the taken one's place.
        let run = cachedRuns[index]
        cachedRunCount -= 1
        cachedRuns[index] = cachedRuns[cachedRunCount]
        cachedRunBytes -= run.count &<< superblockShift
        // Run heads carry the raised flag: they are never taken for a cacheable block.
        arena.state(slot: run.slot, offset: 0).pointee.store(
            BlockState.allocated(order: arena.geometry.maxOrder, mobilityClass: Mobility.unmovable.rawValue, alignmentRaised: alignmentRaised).rawValue,
            ordering: .relaxed)
        checkAfterOperation(slot: run.slot)
        let location = BlockLocation(slot: run.slot, blockOffset: 0, order: arena.geometry.maxOrder)
        return BuddyAllocation(address: arena.baseAddress(slot: run.slot), location: location)
    }

    /// Keeps a freed unmovable run or superblock for reuse when the budget allows; false: free it.
    mutating func keepRun(_ location: BlockLocation, mobility: Mobility) -> Bool {
        let count = max(1, arena.runLength(slot: location.slot))
        let bytes = count &<< arena.geometry.superblockShift
        // Borrowed superblocks sit above the own slots; they are not kept.
        guard mobility == .unmovable, location.order == arena.geometry.maxOrder, location.blockOffset == 0, own.contains(slot: location.slot),
              cachedRunCount < Self.runCacheEntries, cachedRunBytes + bytes <= runCacheBudget
        else { return false }
        arena.state(slot: location.slot, offset: 0).pointee.store(
            BlockState.cached(order: arena.geometry.maxOrder).rawValue, ordering: .relaxed)
        cachedRuns[cachedRunCount] = CachedRun(slot: location.slot, count: count)
        cachedRunCount += 1
        cachedRunBytes += bytes
        checkAfterOperation(slot: location.slot)
        return true
    }

    /// Frees every kept run to the buddy allocator; returns their bytes.
    mutating func releaseCachedRuns() -> Int {
        let bytes = cachedRunBytes
        while cachedRunCount > 0 {
            cachedRunCount -= 1
            freeRun(BlockLocation(slot: cachedRuns[cachedRunCount].slot, blockOffset: 0, order: arena.geometry.maxOrder), mobility: .unmovable)
        }
        cachedRunBytes = 0
        return bytes
    }
}
