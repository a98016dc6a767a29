import BuddyCaches
import BuddyConfig
import BuddyCore
import BuddySystem
import Synchronization

/// PoolCore: the state behind a pool's mutex and every change made to it under the lock.
/// Allocation and free through the arena and the tracker (this file); loans, lending and the
/// superblocks `shrink(to:)` released (PoolCore+Superblocks.swift). `MemoryPool`'s extensions
/// decide when to call these; PoolCore decides nothing but keeps its state consistent.

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
    /// Blocks the buddy allocator gave the caches minus those they gave back.
    var cacheNetBlocks = 0
}

/// The pool's own superblocks: slots 0..<count, region after region. Immutable, so the pool
/// reads it with or without the lock.
struct OwnSuperblocks: @unchecked Sendable {
    // @unchecked: the regions are immutable apart from their atomic state bytes and owners.
    let regions: [ManagedRegion]
    let count: Int

    init(regions: [ManagedRegion]) {
        self.regions = regions
        count = regions.reduce(0) { $0 + $1.superblockCount }
    }

    func contains(slot: Int) -> Bool { slot >= 0 && slot < count }

    /// The region and superblock index behind an own slot.
    func location(slot: Int) -> (region: ManagedRegion, superblock: Int) {
        var first = 0
        for region in regions {
            if slot < first + region.superblockCount { return (region, slot - first) }
            first += region.superblockCount
        }
        preconditionFailure("slot \(slot) is not an own slot")
    }

    /// The own slot of a superblock of one of the own regions.
    func slot(region: ManagedRegion, superblock: Int) -> Int {
        var first = 0
        for candidate in regions {
            if candidate === region { return first + superblock }
            first += candidate.superblockCount
        }
        preconditionFailure("region is not an own region")
    }
}

/// Everything behind the pool's mutex: the buddy arena, the tracker, counters and loans.
struct PoolCore: ~Copyable, @unchecked Sendable {
    // @unchecked: only reached through the pool's Mutex; the raw metadata it points at is
    // either guarded by that mutex or made of atomics (state bytes, owners).
    /// The arena and tracker, replaced by a larger copy when borrowing needs more slots.
    var slots: SlotStorage
    var arena: BuddyArena { slots.arena }
    /// Calls `body` with the arena and no retain or release around it: a call through `arena`
    /// on an inout PoolCore retains and releases the arena (about 40 instructions; three times
    /// a pair on the locked path, callgrind). Invariant: `slots` holds the arena for as long as
    /// `body` runs, so `body` must not replace `slots` (growSlots); the arena's own methods
    /// cannot reach it.
    @inline(__always)
    func withArena<Result>(_ body: (BuddyArena) -> Result) -> Result {
        assert(slots.unretainedArena.takeUnretainedValue() === slots.arena, "the unretained arena is the storage's own")
        return slots.unretainedArena._withUnsafeGuaranteedRef(body)
    }
    var tracker: FragmentationTracker { slots.tracker }
    /// Slots the storage may grow to: the own superblocks plus what lower-priority pools can lend.
    let slotLimit: Int
    var placement: SlotStorage.Placement
    /// False: every allocation uses class 0, so mobility does not steer placement.
    let grouping: Bool
    let poolID: UInt32
    let own: OwnSuperblocks
    var counters = PoolCounters()
    /// Borrowed superblocks by the slot they occupy here.
    var borrowed: [Int: Loan] = [:]
    /// Own superblocks lent out, by own slot: the borrower's id.
    var lent: [Int: UInt32] = [:]
    /// Borrowed superblocks that became free and were detached, to hand back after unlocking.
    var pendingReturns: [Loan] = []
    /// Own slots whose memory `shrink(to:)` gave back to the kernel.
    var released: Set<Int> = []
    /// Freed runs kept for reuse (RunStash, PoolCore+RunCache.swift), shared with the pool's
    /// paths that keep and take runs without this lock.
    let runStash: RunStash
    /// Own superblocks not yet made readable and writable (PoolCore+Commit.swift).
    var uncommitted: UncommittedSuperblocks
    var cachedRunBytes: Int { runStash.bytes }
    var runCacheBudget: Int { runStash.budget }

    init(slots: SlotStorage, slotLimit: Int, placement: SlotStorage.Placement, grouping: Bool, poolID: UInt32, own: OwnSuperblocks,
         runStash: RunStash, allCommitted: Bool) {
        self.slots = slots
        self.slotLimit = slotLimit
        self.placement = placement
        self.grouping = grouping
        self.poolID = poolID
        self.own = own
        self.runStash = runStash
        uncommitted = UncommittedSuperblocks(own: own, allCommitted: allCommitted)
    }

    /// Bytes the pool manages now: own superblocks minus lent and released, plus borrowed.
    var managedBytes: Int { arena.attachedSlotCount &<< arena.geometry.superblockShift }

    /// The superblock group a mobility allocates from: its own, or one for all when grouping is off.
    @inline(__always)
    func groupClass(_ mobility: Mobility) -> Int { grouping ? mobility.rawValue : 0 }

    mutating func allocateBlock(order: Int, alignmentRaised: Bool, mobility: Mobility, allowSteal: Bool = true) -> BuddyAllocation? {
        if order == arena.geometry.maxOrder, mobility == .unmovable,
           let kept = takeCachedRun(count: 1, alignment: 0, boundary: 0, alignmentRaised: alignmentRaised) {
            return kept
        }
        let group = groupClass(mobility)
        guard let block = withArena({ $0.allocate(
            order: order, mobilityClass: mobility.rawValue, alignmentRaised: alignmentRaised, groupClass: group, allowSteal: allowSteal) })
        else {
            return nil
        }
        guard commitOnFirstUse(slot: block.location.slot, count: 1) else {
            _ = withArena { $0.free(block.location) }
            return nil
        }
        let bytes = arena.geometry.blockSize(order: order)
        tracker.add(slot: block.location.slot, bytes: bytes, mobility: mobility)
        noteAllocated(bytes)
        checkAfterOperation(slot: block.location.slot)
        return block
    }

    /// An unmovable block of `order` cut to its first `blocks` minimum blocks (`fit=exact`): the
    /// tail goes straight back to the free bitmaps, and the tracker and counters hold only the
    /// kept bytes. The location returned is the allocation's first piece.
    mutating func allocateTrimmed(blocks: Int, order: Int, alignmentRaised: Bool, allowSteal: Bool) -> BuddyAllocation? {
        // The high-water mark counts the kept bytes only, not the whole block for an instant.
        let highWater = counters.highWaterBytes
        guard let block = allocateBlock(order: order, alignmentRaised: alignmentRaised, mobility: .unmovable, allowSteal: allowSteal) else {
            return nil
        }
        let whole = arena.geometry.blockSize(order: order), kept = blocks &<< arena.geometry.minBlockShift
        let first = arena.trim(block.location, keeping: blocks)
        tracker.remove(slot: block.location.slot, bytes: whole, mobility: .unmovable)
        tracker.add(slot: block.location.slot, bytes: kept, mobility: .unmovable)
        counters.allocatedBytes -= whole - kept
        counters.highWaterBytes = max(highWater, counters.allocatedBytes)
        checkAfterOperation(slot: block.location.slot)
        return BuddyAllocation(address: block.address, location: first)
    }

    mutating func allocateRun(count: Int, alignment: Int, boundary: Int, mobility: Mobility) -> BuddyAllocation? {
        if mobility == .unmovable, let kept = takeCachedRun(count: count, alignment: alignment, boundary: boundary) {
            return kept
        }
        guard let run = arena.allocateRun(
            count: count, alignment: alignment, boundary: boundary, mobilityClass: mobility.rawValue, groupClass: groupClass(mobility))
        else {
            return nil
        }
        guard commitOnFirstUse(slot: run.location.slot, count: count) else {
            _ = withArena { $0.free(run.location) }
            return nil
        }
        let superblock = arena.geometry.superblockSize
        for slot in run.location.slot..<(run.location.slot + count) {
            tracker.add(slot: slot, bytes: superblock, mobility: mobility)
        }
        if count > 1, own.contains(slot: run.location.slot) { runStash.noteRun(slot: run.location.slot, count: count) }
        noteAllocated(count * superblock)
        checkAfterOperation(slot: run.location.slot)
        return run
    }

    /// Grows an allocated block in place to `order` (the arena's `extend`), with the tracker and
    /// the counters; false when a buddy above it is not free, and nothing changed.
    mutating func extendBlock(_ location: BlockLocation, toOrder order: Int, mobility: Mobility) -> Bool {
        guard withArena({ $0.extend(location, toOrder: order) }) != nil else { return false }
        let added = arena.geometry.blockSize(order: order) - arena.geometry.blockSize(order: location.order)
        tracker.grow(slot: location.slot, bytes: added, mobility: mobility)
        noteAllocated(added)
        checkAfterOperation(slot: location.slot)
        return true
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
        if location.order == arena.geometry.maxOrder, keepRun(location, mobility: mobility) {
            // Still allocated from the arena's view: only the head's state byte changed.
            let bytes = max(1, arena.runLength(slot: location.slot)) &<< arena.geometry.superblockShift
            return BuddyRelease(slot: location.slot, order: location.order, byteCount: bytes, mobilityClass: mobility.rawValue, superblockFreed: false)
        }
        return freeRun(location, mobility: mobility)
    }

    /// Frees a block or a run in the arena and the tracker (the run cache's own free).
    @discardableResult
    mutating func freeRun(_ location: BlockLocation, mobility: Mobility) -> BuddyRelease {
        let runLength = max(1, withArena { $0.runLength(slot: location.slot) })
        if runLength > 1, own.contains(slot: location.slot) { runStash.noteRun(slot: location.slot, count: 0) }
        let release = withArena { $0.free(location) }
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
        for slot in location.slot..<(location.slot + runLength) { checkAfterOperation(slot: slot) }
        return release
    }

    /// Mobility of an allocated head, from its state byte (cached blocks are unmovable).
    @inline(__always)
    static func mobility(of state: BlockState) -> Mobility {
        switch state.tag {
        case .allocatedMovable, .raisedMovable: .movable
        case .allocatedReclaimable, .raisedReclaimable: .reclaimable
        default: .unmovable
        }
    }

    /// What the tracker knows of one attached superblock: its free and live bytes by mobility,
    /// and so what reclaiming it would cost. The one scoring of superblocks: reclaim candidates,
    /// compaction of a window for a run and the room compaction may move blocks into all read it.
    func score(slot: Int) -> SuperblockCandidate {
        let inRun = arena.runLength(slot: slot) > 1 || arena.isRunBody(slot: slot)
        return SuperblockCandidate(
            slot: slot, baseAddress: arena.baseAddress(slot: slot), node: superblockNode(slot),
            freeBytes: inRun ? 0 : arena.freeBytes(slot: slot),
            unmovableBytes: tracker.bytes(slot: slot, mobility: .unmovable),
            movableBytes: tracker.bytes(slot: slot, mobility: .movable),
            reclaimableBytes: tracker.bytes(slot: slot, mobility: .reclaimable),
            allocationCount: tracker.allocationCount(slot: slot), inRun: inRun)
    }

    /// Scores of every attached superblock, in slot order.
    var scores: [SuperblockCandidate] {
        (0..<arena.slotCapacity).filter { arena.isAttached(slot: $0) }.map { score(slot: $0) }
    }

    /// The node a slot's superblock sits on (-1: unknown).
    func superblockNode(_ slot: Int) -> Int {
        if own.contains(slot: slot) {
            let (region, superblock) = own.location(slot: slot)
            return region.node(ofSuperblock: superblock)
        }
        if let loan = borrowed[slot] { return loan.region.node(ofSuperblock: loan.superblock) }
        return -1
    }
}
