/// A superblock borrowed from another pool: where it lives and whom it goes back to.
struct Loan {
    let region: ManagedRegion
    let superblock: Int
    let lenderID: UInt32
}

/// Running totals kept under the pool lock (the caches fold theirs in separately).
struct PoolCounters {
    var allocations = 0
    var deallocations = 0
    var failures = 0
    /// Bytes of blocks the buddy allocator has handed out (to callers or to caches).
    var allocatedBytes = 0
    var highWaterBytes = 0
    var superblocksBorrowed = 0
    var superblocksReturned = 0
    var superblocksLent = 0
    var superblocksRecalled = 0
    var cacheDrains = 0
    var compactions = 0
    var bytesMoved = 0
    var shrinkerCalls = 0
    var bytesReclaimed = 0
    var superblocksCompacted = 0
    var relocationsRefused = 0
}

/// Everything behind the pool's mutex: the buddy arena, the tracker, counters and loans.
struct PoolCore: ~Copyable, @unchecked Sendable {
    // @unchecked: only reached through the pool's Mutex; the raw metadata it points at is
    // either guarded by that mutex or made of atomics (state bytes, owners).
    let arena: BuddyArena
    let tracker: FragmentationTracker
    /// False: every allocation uses class 0, so mobility does not steer placement.
    let grouping: Bool
    var counters = PoolCounters()
    /// Borrowed superblocks by the slot they occupy here.
    var borrowed: [Int: Loan] = [:]
    /// Own superblocks lent out, by own slot: the borrower's id.
    var lent: [Int: UInt32] = [:]
    /// This pool ran short and wants its lent superblocks back as they become free.
    var recallRequested = false
    /// Borrowed superblocks that became free and were detached, to hand back after unlocking.
    var pendingReturns: [Loan] = []
    /// Own slots whose memory `shrink(to:)` gave back to the kernel.
    var released: Set<Int> = []

    init(arena: BuddyArena, tracker: FragmentationTracker, grouping: Bool) {
        self.arena = arena
        self.tracker = tracker
        self.grouping = grouping
    }

    /// The superblock group a mobility allocates from: its own, or one for all when grouping is off.
    @inline(__always)
    func groupClass(_ mobility: Mobility) -> Int { grouping ? mobility.rawValue : 0 }

    mutating func allocateBlock(order: Int, alignmentRaised: Bool, mobility: Mobility, allowSteal: Bool = true) -> BuddyAllocation? {
        guard let block = arena.allocate(
            order: order, mobilityClass: mobility.rawValue, alignmentRaised: alignmentRaised, groupClass: groupClass(mobility),
            allowSteal: allowSteal)
        else {
            return nil
        }
        let bytes = arena.geometry.blockSize(order: order)
        tracker.add(slot: block.location.slot, bytes: bytes, mobility: mobility)
        noteAllocated(bytes)
        return block
    }

    mutating func allocateRun(count: Int, alignment: Int, boundary: Int, mobility: Mobility) -> BuddyAllocation? {
        guard let run = arena.allocateRun(
            count: count, alignment: alignment, boundary: boundary, mobilityClass: mobility.rawValue, groupClass: groupClass(mobility))
        else {
            return nil
        }
        let superblock = arena.geometry.superblockSize
        for slot in run.location.slot..<(run.location.slot + count) {
            tracker.add(slot: slot, bytes: superblock, mobility: mobility)
        }
        noteAllocated(count * superblock)
        return run
    }

    private mutating func noteAllocated(_ bytes: Int) {
        counters.allocatedBytes += bytes
        if counters.allocatedBytes > counters.highWaterBytes { counters.highWaterBytes = counters.allocatedBytes }
    }

    /// Frees a checked block (allocated or cached) and updates the tracker; a borrowed
    /// superblock that becomes free goes back to its lender when the lender wants it or this
    /// pool has another free superblock.
    @discardableResult
    mutating func freeBlock(_ location: BlockLocation, mobility: Mobility) -> BuddyRelease {
        let runLength = max(1, arena.runLength(slot: location.slot))
        let release = arena.free(location)
        if runLength > 1 {
            for slot in location.slot..<(location.slot + runLength) {
                tracker.remove(slot: slot, bytes: arena.geometry.superblockSize, mobility: mobility)
            }
        } else {
            tracker.remove(slot: location.slot, bytes: release.byteCount, mobility: mobility)
        }
        counters.allocatedBytes -= release.byteCount
        if release.superblockFreed {
            for slot in location.slot..<(location.slot + runLength) where borrowed[slot] != nil {
                returnIfUnneeded(slot: slot)
            }
        }
        return release
    }

    private mutating func returnIfUnneeded(slot: Int) {
        guard let loan = borrowed[slot] else { return }
        let lenderWantsIt = LoanBoard.isRecalling(loan.lenderID)
        guard lenderWantsIt || arena.whollyFreeSlotCount > 1 else { return }
        detachLoan(slot: slot)
    }

    /// Detaches a wholly free borrowed superblock and queues it for return.
    mutating func detachLoan(slot: Int) {
        guard let loan = borrowed[slot], arena.detach(slot: slot) != nil else { return }
        borrowed[slot] = nil
        tracker.reset(slot: slot)
        loan.region.setOwner(superblock: loan.superblock, 0)
        pendingReturns.append(loan)
        counters.superblocksReturned += 1
    }

    /// Mobility of an allocated head, from its state byte (cached blocks are unmovable).
    static func mobility(of state: BlockState) -> Mobility {
        if case .allocated(let mobilityClass, _) = state.kind { return Mobility(rawValue: mobilityClass) ?? .unmovable }
        return .unmovable
    }
}
