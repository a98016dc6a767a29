import BuddyCore

// Runs of superblocks kept for reuse, under the pool lock: a freed unmovable run (or a whole
// superblock allocated as one block) stays allocated in the arena, its head marked cached, so the
// next request of the same length takes it without searching the superblock bitmap. The table is
// the pool's RunStash, which the pool's lock-free paths (MemoryPool+RunStash.swift) share.
// Borrowed superblocks are never kept: they go home. Bounded by the stash's budget (half the
// pool's cache budget) and its 16 entries; under pressure, on `drainCaches()` and before any
// reclaim, the runs go back to the buddy allocator.

extension PoolCore {
    /// A cached run of `count` superblocks whose start meets `alignment` and that does not cross
    /// a multiple of `boundary`, marked allocated again; nil when none is kept.
    mutating func takeCachedRun(count: Int, alignment: Int, boundary: Int, alignmentRaised: Bool = true) -> BuddyAllocation? {
        // Run heads carry the raised flag: they are never taken for a cacheable block.
        guard let slot = runStash.take(count: count, alignment: alignment, boundary: boundary, raised: alignmentRaised) else { return nil }
        checkAfterOperation(slot: slot)
        let location = BlockLocation(slot: slot, blockOffset: 0, order: arena.geometry.maxOrder)
        return BuddyAllocation(address: arena.baseAddress(slot: slot), location: location)
    }

    /// Keeps a freed unmovable run or superblock for reuse when the budget allows; false: free it.
    mutating func keepRun(_ location: BlockLocation, mobility: Mobility) -> Bool {
        // Borrowed superblocks sit above the own slots; they are not kept.
        guard mobility == .unmovable, location.order == arena.geometry.maxOrder, location.blockOffset == 0, own.contains(slot: location.slot)
        else { return false }
        let state = arena.state(slot: location.slot, offset: 0)
        let allocated = state.pointee.load(ordering: .relaxed)
        guard runStash.keep(slot: location.slot, count: max(1, arena.runLength(slot: location.slot)), state: state, allocated: allocated)
        else { return false }
        checkAfterOperation(slot: location.slot)
        return true
    }

    /// Frees every kept run to the buddy allocator; returns their bytes.
    mutating func releaseCachedRuns() -> Int {
        let maxOrder = arena.geometry.maxOrder
        // Nothing is allocated here: exhaustion takes this path, on realtime threads too.
        return runStash.drain { slot, _ in
            freeRun(BlockLocation(slot: slot, blockOffset: 0, order: maxOrder), mobility: .unmovable)
        }
    }
}
