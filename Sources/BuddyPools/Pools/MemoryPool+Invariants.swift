extension MemoryPool {
    /// Checks the buddy arena (bitmaps against state bytes, no overlap, alignment, byte totals)
    /// and recounts the tracker and the byte counters from the state bytes. For tests and
    /// debugging: O(managed bytes / minBlock) under the pool lock.
    public func checkInvariants() throws(BuddyInvariantViolation) {
        try core.locked { core throws(BuddyInvariantViolation) in
            try core.arena.checkInvariants()
            var allocated = 0
            for slot in 0..<core.arena.slotCapacity where core.arena.isAttached(slot: slot) {
                var bytes = [0, 0, 0]
                var count = 0
                let run = core.arena.runLength(slot: slot)
                core.arena.forEachBlock(inSlot: slot) { location, state in
                    guard state.kind != .free else { return }
                    let mobility = PoolCore.mobility(of: state)
                    let size = run > 1 ? geometry.superblockSize : geometry.blockSize(order: location.order)
                    bytes[mobility.rawValue] += size
                    count += 1
                }
                if run == 0, core.arena.isRunBody(slot: slot) {
                    // A run body: counted with the run's mobility, one allocation per superblock.
                    let mobility = (0..<3).first { core.tracker.bytes(slot: slot, mobility: Mobility(rawValue: $0)!) > 0 } ?? 0
                    bytes[mobility] = geometry.superblockSize
                    count = 1
                }
                for mobility in Mobility.allCases where core.tracker.bytes(slot: slot, mobility: mobility) != bytes[mobility.rawValue] {
                    throw BuddyInvariantViolation(
                        "pool '\(name)' slot \(slot): tracker has \(core.tracker.bytes(slot: slot, mobility: mobility)) \(mobility) bytes, recount \(bytes[mobility.rawValue])")
                }
                guard core.tracker.allocationCount(slot: slot) == count else {
                    throw BuddyInvariantViolation("pool '\(name)' slot \(slot): tracker counts \(core.tracker.allocationCount(slot: slot)) allocations, recount \(count)")
                }
                allocated += bytes.reduce(0, +)
            }
            let managed = core.arena.attachedSlotCount << geometry.superblockShift
            guard allocated == core.counters.allocatedBytes, allocated == managed - core.arena.freeBytes else {
                throw BuddyInvariantViolation(
                    "pool '\(name)': \(allocated) bytes allocated by recount, counter \(core.counters.allocatedBytes), managed minus free \(managed - core.arena.freeBytes)")
            }
        }
    }
}
