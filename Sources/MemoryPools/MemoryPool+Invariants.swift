import BuddyCore
import BuddySlabs
import Synchronization

// Invariant checks in tiers: `assert`s beside each `// Invariant:` (debug builds); with
// `-Xswiftc -DBUDDYPOOLS_INTERNAL_CHECKS`, the superblock every locked operation touched is
// rechecked after it (`checkAfterOperation`); and `checkInvariants()`, the full recount tests run.

extension MemoryPool {
    /// Checks the buddy arena (bitmaps against state bytes, no overlap, alignment, byte totals)
    /// and recounts the tracker and the byte counters from the state bytes. For tests and
    /// debugging: O(managed bytes / minBlock) under the pool lock.
    public func checkInvariants() throws(BuddyInvariantViolation) {
        try core.locked { core throws(BuddyInvariantViolation) in
            try core.arena.checkInvariants()
            var allocated = 0
            for slot in 0..<core.arena.slotCapacity where core.arena.isAttached(slot: slot) {
                allocated += try core.checkTracker(slot: slot)
            }
            // The run stash's lengths, read without the lock, agree with the arena's.
            for slot in 0..<own.count where core.arena.isAttached(slot: slot)
                && runStash.runLength(slot: slot) != max(1, core.arena.runLength(slot: slot)) {
                throw BuddyInvariantViolation(
                    "pool '\(name)': slot \(slot) heads a run of \(core.arena.runLength(slot: slot)) in the arena, \(runStash.runLength(slot: slot)) in the run stash")
            }
            try checkSlabs(core)
            let managed = core.managedBytes
            guard allocated == core.counters.allocatedBytes, allocated == managed - core.arena.freeBytes else {
                throw BuddyInvariantViolation(
                    "pool '\(name)': \(allocated) bytes allocated by recount, counter \(core.counters.allocatedBytes), managed minus free \(managed - core.arena.freeBytes)")
            }
        }
    }
}

extension PoolCore {
    /// Recounts one superblock's live bytes by mobility and its allocations from the state
    /// bytes and compares them with the tracker; returns the live bytes.
    func checkTracker(slot: Int) throws(BuddyInvariantViolation) -> Int {
        let geometry = arena.geometry
        var bytes = [0, 0, 0]
        var count = 0
        let run = arena.runLength(slot: slot)
        arena.forEachBlock(inSlot: slot) { location, state in
            guard state.kind != .free else { return }
            let mobility = PoolCore.mobility(of: state)
            bytes[mobility.rawValue] += run > 1 ? geometry.superblockSize : geometry.blockSize(order: location.order)
            // An exact-size allocation is one, however many pieces it has.
            if !state.isTrimmedPiece { count += 1 }
        }
        if run == 0, arena.isRunBody(slot: slot) {
            // A run body: counted with the run's mobility, one allocation per superblock.
            let mobility = (0..<3).first { tracker.bytes(slot: slot, mobility: Mobility(rawValue: $0)!) > 0 } ?? 0
            bytes[mobility] = geometry.superblockSize
            count = 1
        }
        for mobility in Mobility.allCases where tracker.bytes(slot: slot, mobility: mobility) != bytes[mobility.rawValue] {
            throw BuddyInvariantViolation(
                "pool #\(poolID) slot \(slot): tracker has \(tracker.bytes(slot: slot, mobility: mobility)) \(mobility) bytes, recount \(bytes[mobility.rawValue])")
        }
        guard tracker.allocationCount(slot: slot) == count else {
            throw BuddyInvariantViolation("pool #\(poolID) slot \(slot): tracker counts \(tracker.allocationCount(slot: slot)) allocations, recount \(count)")
        }
        return bytes.reduce(0, +)
    }

    /// With BUDDYPOOLS_INTERNAL_CHECKS: the arena and the tracker of the superblock an operation
    /// just changed, checked before the lock is released; a violation stops the process.
    /// Without the flag it compiles to nothing.
    @inline(__always)
    func checkAfterOperation(slot: Int) {
        #if BUDDYPOOLS_INTERNAL_CHECKS
        do throws(BuddyInvariantViolation) {
            try arena.checkInvariants(slot: slot)
            if arena.isAttached(slot: slot) { _ = try checkTracker(slot: slot) }
        } catch {
            fatalError("BuddyPools internal check after an operation on pool #\(poolID): \(error)")
        }
        #endif
    }
}

extension MemoryPool {
    /// Every live slab: its head and interior state bytes say slab of its order, its bitmaps are
    /// disjoint with no bit past the last object, and (no call in flight) its free count matches.
    func checkSlabs(_ core: borrowing PoolCore) throws(BuddyInvariantViolation) {
        guard objectsServed else { return }
        for slot in 0..<core.arena.slotCapacity where core.arena.isAttached(slot: slot) {
            guard let (region, superblock) = regionOf(slot: slot, core: core), let table = region.slabTables.table(superblock: superblock) else { continue }
            let start = region.superblockBase(superblock)
            for unit in 0..<region.slabTables.units {
                let slab = table + unit
                let base = slab.pointee.base
                guard base != 0 else { continue }
                guard base == start + UInt(unit << region.slabTables.unitShift) else {
                    throw BuddyInvariantViolation("pool '\(name)': slab descriptor of unit \(unit) has base 0x\(String(base, radix: 16))")
                }
                let order = slab.pointee.order
                let offset = Int(base - start) >> geometry.minBlockShift
                for inner in 0..<(1 << order) {
                    let expected = inner == 0 ? BlockState.Tag.slab.byte(order: order) : BlockState.Tag.slabInterior.byte(order: order)
                    let value = core.arena.state(slot: slot, offset: offset + inner).pointee.load(ordering: .relaxed)
                    guard value == expected else {
                        throw BuddyInvariantViolation("pool '\(name)': slab at 0x\(String(base, radix: 16)) has state \(BlockState(rawValue: value)) at block \(inner)")
                    }
                }
                var free = 0
                for word in 0..<slab.pointee.words {
                    let bits = slab.pointee.freeBits(word).pointee.load(ordering: .relaxed), remote = slab.pointee.remoteBits(word).pointee.load(ordering: .relaxed)
                    let valid: UInt64 = slab.pointee.objectCount - word * 64 >= 64 ? ~0 : (1 << UInt64(slab.pointee.objectCount - word * 64)) - 1
                    guard bits & remote == 0, (bits | remote) & ~valid == 0 else {
                        throw BuddyInvariantViolation("pool '\(name)': slab at 0x\(String(base, radix: 16)) word \(word): free 0x\(String(bits, radix: 16)) remote 0x\(String(remote, radix: 16))")
                    }
                    free += bits.nonzeroBitCount
                }
                guard free == slab.pointee.freeCount else {
                    throw BuddyInvariantViolation("pool '\(name)': slab at 0x\(String(base, radix: 16)) counts \(slab.pointee.freeCount) free, its bitmap \(free)")
                }
            }
        }
    }
}
