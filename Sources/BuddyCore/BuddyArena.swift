import Synchronization

// BuddyArena: the buddy allocator over superblock slots (allocation, coalescing, runs,
// quarantine, attach and detach for lending) with its out-of-band metadata and invariant checks.

/// Where a buddy block lives: its superblock slot, its offset in minimum blocks inside the
/// slot, and its order.
public struct BlockLocation: Equatable, Sendable {
    public let slot: Int
    public let blockOffset: Int
    public let order: Int

    package init(slot: Int, blockOffset: Int, order: Int) {
        self.slot = slot
        self.blockOffset = blockOffset
        self.order = order
    }
}

/// A block handed out by `BuddyArena.allocate`.
public struct BuddyAllocation: Equatable, Sendable {
    public let address: UInt
    public let location: BlockLocation

    package init(address: UInt, location: BlockLocation) {
        self.address = address
        self.location = location
    }
}

/// What the arena knows about an address.
public enum BlockLookup: Equatable, Sendable {
    /// The head of a block, with its current state.
    case head(BlockLocation, BlockState)
    /// Inside a block but not at its start.
    case interior(slot: Int, blockOffset: Int)
    /// Not on a minimum-block boundary.
    case misaligned(slot: Int)
    /// No attached superblock holds the address.
    case outside
}

/// What a free did, for the caller's accounting.
public struct BuddyRelease: Equatable, Sendable {
    public let slot: Int
    public let order: Int
    public let byteCount: Int
    /// The mobility class the block was allocated with.
    public let mobilityClass: Int
    /// The superblock (or, for a run, every superblock of it) is wholly free again.
    public let superblockFreed: Bool

    package init(slot: Int, order: Int, byteCount: Int, mobilityClass: Int, superblockFreed: Bool) {
        self.slot = slot
        self.order = order
        self.byteCount = byteCount
        self.mobilityClass = mobilityClass
        self.superblockFreed = superblockFreed
    }
}

/// A buddy allocator over superblock slots; pure algorithm, no system calls.
///
/// Each slot holds one superblock (order `maxOrder`) at any superblock-aligned address;
/// slots of one region are attached at consecutive addresses, so runs of superblocks are
/// found there. All metadata is out of band: free bitmaps per order with summary levels,
/// per-slot free counts, and one state byte per minimum block in a table the caller owns
/// (so several arenas can share a region's table while they own different superblocks).
/// Free memory is never read or written.
///
/// Superblocks are grouped by class (the pool's mobility): an allocation of class c takes
/// the smallest free block in superblocks of class c, then a whole free superblock, then
/// steals the largest free block of another class, as the kernel does with migratetypes.
///
/// Not thread-safe: the owning pool serializes every call except reads of state bytes.
/// A class rather than a noncopyable struct: its methods then work on one object in place,
/// with no whole-value copies in unoptimized (and sanitizer) builds.
public final class BuddyArena {
    public static let noClass: UInt8 = 0xFF

    public let geometry: BuddyGeometry
    public let slotCapacity: Int
    public let classCount: Int

    private let metadata: UnsafeMutableRawPointer
    public let metadataByteCount: Int
    private let ownsMetadata: Bool
    /// State table allocated by the standalone initializer, freed with the arena.
    private var ownedStateTable: UnsafeMutablePointer<Atomic<UInt8>>?
    private var ownedStateCount = 0

    // Carved from `metadata`; see `layout(...)`.
    private let freeSets: UnsafeMutablePointer<HierarchicalBitset>
    private let classSets: UnsafeMutablePointer<HierarchicalBitset>
    private let detachedSet: UnsafeMutablePointer<HierarchicalBitset>
    private let classSetCounts: UnsafeMutablePointer<Int>
    private let classOrderMasks: UnsafeMutablePointer<UInt32>
    @usableFromInline let slotBases: UnsafeMutablePointer<UInt>
    @usableFromInline let slotStates: UnsafeMutablePointer<UnsafeMutablePointer<Atomic<UInt8>>?>
    private let slotClasses: UnsafeMutablePointer<UInt8>
    /// 1 for a slot being evacuated: its free blocks are hidden from allocation.
    private let slotQuarantined: UnsafeMutablePointer<UInt8>
    /// 1 for a superblock whose memory is known to be zero: attached fresh from the kernel (or
    /// cleared) and no block of it freed since. What `zero=alloc` pools need not clear again.
    private let slotPristine: UnsafeMutablePointer<UInt8>
    @usableFromInline let runLengths: UnsafeMutablePointer<UInt32>
    private let slotFreeCounts: UnsafeMutablePointer<UInt16>
    private let freeCounts: UnsafeMutablePointer<Int>

    /// Attached address ranges, sorted by base, `rangeCount` of them: consecutive slots at
    /// consecutive addresses. In the metadata buffer, like every mutable field: a class's own
    /// `var`s cost a dynamic exclusivity check (a runtime call) on every access.
    private let ranges: UnsafeMutablePointer<SlotRange>
    /// freeBytes, attachedSlotCount, rangeCount.
    private let scalars: UnsafeMutablePointer<Int>

    struct SlotRange {
        var base: UInt
        var firstSlot: Int
        var count: Int
    }

    public var freeBytes: Int { scalars[0] }
    public var attachedSlotCount: Int { scalars[1] }
    private var rangeCount: Int {
        get { scalars[2] }
        set { scalars[2] = newValue }
    }

    // MARK: Creation

    /// Bytes of metadata an arena needs, not counting the caller's state table.
    public static func metadataByteCount(geometry: BuddyGeometry, slotCapacity: Int, classCount: Int) -> Int {
        layout(geometry: geometry, slotCapacity: slotCapacity, classCount: classCount).total
    }

    /// An arena with `slotCapacity` empty slots; attach superblocks before allocating.
    /// - Parameter metadata: zeroed storage of `metadataByteCount(...)` bytes (16-byte aligned) the
    ///   caller keeps alive (e.g. populated and mlock'd on the pool's node); nil allocates it here.
    public init(geometry: BuddyGeometry, slotCapacity: Int, classCount: Int = 3, metadata: UnsafeMutableRawBufferPointer? = nil) {
        precondition(slotCapacity > 0 && slotCapacity < Int(UInt32.max), "slot capacity \(slotCapacity) out of range")
        // The state byte tells three allocated classes apart (BlockState.Tag).
        precondition((1...3).contains(classCount), "class count \(classCount) out of range 1...3")
        let plan = Self.layout(geometry: geometry, slotCapacity: slotCapacity, classCount: classCount)
        let storage: UnsafeMutableRawPointer
        if let metadata {
            precondition(metadata.count >= plan.total, "metadata buffer of \(metadata.count) bytes, \(plan.total) needed")
            storage = metadata.baseAddress!
            ownsMetadata = false
        } else {
            storage = UnsafeMutableRawPointer.allocate(byteCount: plan.total, alignment: 64)
            storage.initializeMemory(as: UInt8.self, repeating: 0, count: plan.total)
            ownsMetadata = true
        }
        self.geometry = geometry
        self.slotCapacity = slotCapacity
        self.classCount = classCount
        self.metadata = storage
        self.metadataByteCount = plan.total

        let maxOrder = geometry.maxOrder
        freeSets = (storage + plan.freeSets).bindMemory(to: HierarchicalBitset.self, capacity: maxOrder + 1)
        classSets = (storage + plan.classSets).bindMemory(to: HierarchicalBitset.self, capacity: max(1, classCount * maxOrder))
        detachedSet = (storage + plan.detachedSet).bindMemory(to: HierarchicalBitset.self, capacity: 1)
        classSetCounts = (storage + plan.classSetCounts).bindMemory(to: Int.self, capacity: max(1, classCount * maxOrder))
        classOrderMasks = (storage + plan.classOrderMasks).bindMemory(to: UInt32.self, capacity: classCount)
        slotBases = (storage + plan.slotBases).bindMemory(to: UInt.self, capacity: slotCapacity)
        slotStates = (storage + plan.slotStates).bindMemory(to: UnsafeMutablePointer<Atomic<UInt8>>?.self, capacity: slotCapacity)
        slotClasses = (storage + plan.slotClasses).bindMemory(to: UInt8.self, capacity: slotCapacity)
        slotQuarantined = (storage + plan.slotQuarantined).bindMemory(to: UInt8.self, capacity: slotCapacity)
        slotPristine = (storage + plan.slotPristine).bindMemory(to: UInt8.self, capacity: slotCapacity)
        runLengths = (storage + plan.runLengths).bindMemory(to: UInt32.self, capacity: slotCapacity)
        slotFreeCounts = (storage + plan.slotFreeCounts).bindMemory(to: UInt16.self, capacity: max(1, slotCapacity * maxOrder))
        freeCounts = (storage + plan.freeCounts).bindMemory(to: Int.self, capacity: maxOrder + 1)
        ranges = (storage + plan.ranges).bindMemory(to: SlotRange.self, capacity: slotCapacity)
        scalars = (storage + plan.scalars).bindMemory(to: Int.self, capacity: 3)

        for order in 0...maxOrder {
            let words = (storage + plan.freeWords[order]).bindMemory(to: UInt64.self, capacity: 1)
            (freeSets + order).initialize(to: HierarchicalBitset(bitCount: slotCapacity &<< (maxOrder - order), storage: words))
        }
        for index in 0..<(classCount * maxOrder) {
            let words = (storage + plan.classWords + index * plan.slotSetWords * 8).bindMemory(to: UInt64.self, capacity: 1)
            (classSets + index).initialize(to: HierarchicalBitset(bitCount: slotCapacity, storage: words))
        }
        let detachedWords = (storage + plan.detachedWords).bindMemory(to: UInt64.self, capacity: 1)
        detachedSet.initialize(to: HierarchicalBitset(bitCount: slotCapacity, storage: detachedWords))
        slotClasses.update(repeating: Self.noClass, count: slotCapacity)
        for slot in 0..<slotCapacity { detachedSet.pointee.insert(slot) }
    }

    /// An arena over plain memory: `superblockCount` superblocks starting at `base`, which must be
    /// aligned to the superblock size. The arena owns its state table. For tests and for memory
    /// the caller maps itself (device memory, shared memory).
    public convenience init(geometry: BuddyGeometry, base: UnsafeMutableRawPointer, superblockCount: Int, classCount: Int = 3) {
        precondition(Int(bitPattern: base) & (geometry.superblockSize - 1) == 0, "base must be aligned to the superblock size")
        self.init(geometry: geometry, slotCapacity: superblockCount, classCount: classCount)
        let count = superblockCount &<< geometry.maxOrder
        let table = UnsafeMutablePointer<Atomic<UInt8>>.allocate(capacity: count)
        for index in 0..<count { (table + index).initialize(to: Atomic(0)) }
        ownedStateTable = table
        ownedStateCount = count
        _ = attach(base: UInt(bitPattern: base), stateTable: table, superblockCount: superblockCount, firstSlot: 0)
    }

    deinit {
        if let ownedStateTable {
            ownedStateTable.deinitialize(count: ownedStateCount)
            ownedStateTable.deallocate()
        }
        if ownsMetadata { metadata.deallocate() }
    }

    private struct Layout {
        var total = 0
        var freeSets = 0, classSets = 0, detachedSet = 0, classSetCounts = 0, classOrderMasks = 0
        var slotBases = 0, slotStates = 0, slotClasses = 0, slotQuarantined = 0, slotPristine = 0, runLengths = 0, slotFreeCounts = 0, freeCounts = 0
        var ranges = 0, scalars = 0
        var freeWords: [Int] = []
        var classWords = 0, detachedWords = 0, slotSetWords = 0
    }

    private static func layout(geometry: BuddyGeometry, slotCapacity: Int, classCount: Int) -> Layout {
        var plan = Layout()
        func take(_ bytes: Int, alignment: Int = 16) -> Int {
            plan.total = (plan.total + alignment - 1) & ~(alignment - 1)
            defer { plan.total += bytes }
            return plan.total
        }
        let maxOrder = geometry.maxOrder
        let descriptor = MemoryLayout<HierarchicalBitset>.stride
        plan.freeSets = take((maxOrder + 1) * descriptor)
        plan.classSets = take(max(1, classCount * maxOrder) * descriptor)
        plan.detachedSet = take(descriptor)
        plan.classSetCounts = take(max(1, classCount * maxOrder) * 8)
        plan.classOrderMasks = take(classCount * 4)
        plan.slotBases = take(slotCapacity * 8)
        plan.slotStates = take(slotCapacity * 8)
        plan.slotClasses = take(slotCapacity)
        plan.slotQuarantined = take(slotCapacity)
        plan.slotPristine = take(slotCapacity)
        plan.runLengths = take(slotCapacity * 4)
        plan.slotFreeCounts = take(max(1, slotCapacity * maxOrder) * 2)
        plan.freeCounts = take((maxOrder + 1) * 8)
        plan.ranges = take(slotCapacity * MemoryLayout<SlotRange>.stride)
        plan.scalars = take(3 * 8)
        plan.freeWords = (0...maxOrder).map { order in
            take(HierarchicalBitset.wordCount(bitCount: slotCapacity &<< (maxOrder - order)) * 8)
        }
        plan.slotSetWords = HierarchicalBitset.wordCount(bitCount: slotCapacity)
        plan.classWords = take(max(1, classCount * maxOrder) * plan.slotSetWords * 8)
        plan.detachedWords = take(plan.slotSetWords * 8)
        plan.total = (plan.total + 63) & ~63
        return plan
    }

    // MARK: Growing

    /// Copies every slot's state into `larger`, a fresh arena of the same geometry and classes
    /// with at least as many slots: what a pool does when it needs more slots to borrow into.
    /// O(slots x orders); the state bytes (kept with the regions) are not copied.
    public func copyState(into larger: BuddyArena) {
        precondition(larger.geometry == geometry && larger.classCount == classCount && larger.slotCapacity >= slotCapacity
            && larger.attachedSlotCount == 0, "copyState needs a fresh arena at least as large")
        let maxOrder = geometry.maxOrder
        for order in 0...maxOrder {
            freeSets[order].forEach { larger.freeSets[order].insert($0) }
            larger.freeCounts[order] = freeCounts[order]
        }
        for index in 0..<(classCount * maxOrder) {
            classSets[index].forEach { larger.classSets[index].insert($0) }
            larger.classSetCounts[index] = classSetCounts[index]
        }
        for index in 0..<classCount { larger.classOrderMasks[index] = classOrderMasks[index] }
        for slot in 0..<slotCapacity {
            larger.slotBases[slot] = slotBases[slot]
            larger.slotStates[slot] = slotStates[slot]
            larger.slotClasses[slot] = slotClasses[slot]
            larger.slotQuarantined[slot] = slotQuarantined[slot]
            larger.slotPristine[slot] = slotPristine[slot]
            larger.runLengths[slot] = runLengths[slot]
            for order in 0..<maxOrder { larger.slotFreeCounts[slot * maxOrder + order] = slotFreeCounts[slot * maxOrder + order] }
            if !detachedSet.pointee.contains(slot) { larger.detachedSet.pointee.remove(slot) }
        }
        for index in 0..<rangeCount { larger.ranges[index] = ranges[index] }
        for index in 0..<3 { larger.scalars[index] = scalars[index] }
    }

    // MARK: Attaching superblocks

    /// Attaches `superblockCount` superblocks at consecutive addresses from `base` to consecutive
    /// slots from `firstSlot` (or the first run of detached slots when nil); returns the first slot.
    /// `firstSlot` must name detached slots.
    /// `stateTable` points at the state bytes of the first superblock, all zero.
    /// Returns nil when no run of detached slots at or after `searchFrom` is long enough.
    @discardableResult
    /// `pristine`: the memory is known to be zero (fresh from the kernel, or cleared).
    public func attach(
        base: UInt, stateTable: UnsafeMutablePointer<Atomic<UInt8>>, superblockCount: Int = 1, firstSlot: Int? = nil,
        searchFrom: Int = 0, pristine: Bool = false
    ) -> Int? {
        guard let start = firstSlot ?? findDetachedRun(count: superblockCount, from: searchFrom) else { return nil }
        precondition(base & UInt(geometry.superblockSize - 1) == 0, "superblock base is not aligned")
        for index in 0..<superblockCount {
            let slot = start + index
            precondition(detachedSet.pointee.contains(slot), "slot \(slot) is attached already")
            detachedSet.pointee.remove(slot)
            slotBases[slot] = base + UInt(index &<< geometry.superblockShift)
            slotStates[slot] = stateTable + (index &<< geometry.maxOrder)
            slotClasses[slot] = Self.noClass
            slotPristine[slot] = pristine ? 1 : 0
            addFree(slot: slot, index: slot, order: geometry.maxOrder)
            scalars[1] += 1
        }
        insertRange(base: base, firstSlot: start, count: superblockCount)
        return start
    }

    /// Detaches a wholly free superblock (to lend it) and returns its base address; nil if it is in use.
    public func detach(slot: Int) -> UInt? {
        guard isWhollyFree(slot: slot) else { return nil }
        let base = slotBases[slot]
        removeFree(slot: slot, index: slot, order: geometry.maxOrder)
        state(slot: slot, offset: 0).pointee.store(BlockState.interior.rawValue, ordering: .relaxed)
        slotBases[slot] = 0
        slotStates[slot] = nil
        slotClasses[slot] = Self.noClass
        detachedSet.pointee.insert(slot)
        scalars[1] -= 1
        removeRange(base: base, slot: slot)
        return base
    }

    @inlinable
    public func isAttached(slot: Int) -> Bool { slot >= 0 && slot < slotCapacity && slotBases[slot] != 0 }
    public func isWhollyFree(slot: Int) -> Bool { isAttached(slot: slot) && freeSets[geometry.maxOrder].contains(slot) }
    @inlinable
    public func baseAddress(slot: Int) -> UInt { slotBases[slot] }
    /// The class a superblock is tagged with, or nil when it is wholly free or detached.
    public func mobilityClass(slot: Int) -> Int? { slotClasses[slot] == Self.noClass ? nil : Int(slotClasses[slot]) }
    /// Superblocks of a run starting at this slot (0 when the slot does not start a run).
    @inlinable
    public func runLength(slot: Int) -> Int { Int(runLengths[slot]) }
    public var whollyFreeSlotCount: Int { freeCounts[geometry.maxOrder] }
    public func freeBlockCount(order: Int) -> Int { freeCounts[order] }
    /// Wholly free slots in address order of their slot index.
    public func forEachWhollyFreeSlot(_ body: (Int) -> Void) { freeSets[geometry.maxOrder].forEach(body) }

    /// Free blocks of `order` inside one superblock.
    public func freeBlockCount(slot: Int, order: Int) -> Int {
        guard isAttached(slot: slot) else { return 0 }
        if order == geometry.maxOrder { return isWhollyFree(slot: slot) ? 1 : 0 }
        return Int(slotCount(slot, order).pointee)
    }

    /// Free bytes inside one superblock.
    public func freeBytes(slot: Int) -> Int {
        if isWhollyFree(slot: slot) { return geometry.superblockSize }
        var total = 0
        for order in 0..<geometry.maxOrder {
            total += Int(slotFreeCounts[slot * geometry.maxOrder + order]) &<< (geometry.minBlockShift + order)
        }
        return total
    }

    /// The largest order with a free block anywhere, or nil when nothing is free.
    public var largestFreeOrder: Int? {
        (0...geometry.maxOrder).last { freeCounts[$0] > 0 }
    }

    // MARK: Lookup

    /// The slot holding `address`, if an attached superblock does.
    public func slot(containing address: UInt) -> Int? {
        var low = 0, high = rangeCount
        while low < high {
            let mid = (low + high) / 2
            if ranges[mid].base <= address { low = mid + 1 } else { high = mid }
        }
        guard low > 0 else { return nil }
        let range = ranges[low - 1]
        let offset = Int(address - range.base) &>> geometry.superblockShift
        return offset < range.count ? range.firstSlot + offset : nil
    }

    /// What `address` is to this arena.
    public func lookup(_ address: UInt) -> BlockLookup {
        guard let slot = slot(containing: address) else { return .outside }
        let offsetBytes = Int(address - slotBases[slot])
        guard offsetBytes & (geometry.minBlockSize - 1) == 0 else { return .misaligned(slot: slot) }
        let offset = offsetBytes &>> geometry.minBlockShift
        let value = BlockState(rawValue: state(slot: slot, offset: offset).pointee.load(ordering: .relaxed))
        if value == .interior { return .interior(slot: slot, blockOffset: offset) }
        return .head(BlockLocation(slot: slot, blockOffset: offset, order: value.order), value)
    }

    /// The state byte of a block head (shared with lock-free caches, hence atomic).
    @inlinable @inline(__always)
    public func state(slot: Int, offset: Int) -> UnsafeMutablePointer<Atomic<UInt8>> {
        // Invariant: the slot is attached, so its state pointer is set and covers 1 << maxOrder bytes.
        assert(slotStates[slot] != nil && offset >= 0 && offset < geometry.blocksPerSuperblock, "slot \(slot) is not attached")
        return slotStates[slot].unsafelyUnwrapped + offset
    }

    @inlinable @inline(__always)
    public func address(of location: BlockLocation) -> UInt {
        slotBases[location.slot] + UInt(location.blockOffset &<< geometry.minBlockShift)
    }

    // MARK: Allocation

    /// A block of `order` for mobility `mobilityClass`; nil when no block of that order is free.
    /// O(maxOrder) word operations plus O(log64 slots) for each bitmap search.
    /// - Parameter groupClass: the superblock group to search and tag (default: `mobilityClass`);
    ///   pass one class for all mobilities to turn grouping off while the state byte keeps the mobility.
    /// - Parameter allowSteal: false returns nil instead of taking a block from another class's superblock.
    public func allocate(
        order: Int, mobilityClass: Int, alignmentRaised: Bool = false, groupClass: Int? = nil, allowSteal: Bool = true
    ) -> BuddyAllocation? {
        let stateClass = mobilityClass
        let mobilityClass = groupClass ?? mobilityClass
        let maxOrder = geometry.maxOrder
        var found: (order: Int, slot: Int)?
        if order < maxOrder, let own = smallestFree(atLeast: order, mobilityClass: mobilityClass) {
            found = own
        } else if let slot = freeSets[maxOrder].first() {
            found = (maxOrder, slot)
        } else if allowSteal, order < maxOrder, let stolen = largestFreeInOtherClass(atLeast: order, mobilityClass: mobilityClass) {
            // Steal the largest block, as the kernel does; take the whole superblock over when it is
            // mostly free. (Claiming every superblock an unmovable steal touches, the kernel's rule
            // for pageblocks, spread unmovable blocks over more superblocks in the churn experiment.)
            if stolen.order >= maxOrder - 1 || freeBytes(slot: stolen.slot) * 2 >= geometry.superblockSize {
                retag(slot: stolen.slot, to: mobilityClass)
            }
            found = stolen
        }
        guard let (foundOrder, slot) = found else { return nil }

        let index: Int
        if foundOrder == maxOrder {
            index = slot
            removeFree(slot: slot, index: index, order: maxOrder)
            slotClasses[slot] = UInt8(mobilityClass)
        } else {
            let span = maxOrder - foundOrder
            // Invariant: the class set said this slot has a free block of foundOrder.
            let listed = freeSets[foundOrder].first(in: (slot &<< span)..<((slot + 1) &<< span))
            assert(listed != nil, "slot \(slot) is in a class set of order \(foundOrder) without a free block")
            index = listed.unsafelyUnwrapped
            removeFree(slot: slot, index: index, order: foundOrder)
        }
        let offset = (index &<< foundOrder) & (geometry.blocksPerSuperblock - 1)
        var splitOrder = foundOrder
        while splitOrder > order {
            splitOrder -= 1
            let buddyOffset = offset + (1 &<< splitOrder)
            addFree(slot: slot, index: (slot &<< (maxOrder - splitOrder)) | (buddyOffset &>> splitOrder), order: splitOrder)
        }
        state(slot: slot, offset: offset).pointee.store(
            BlockState.allocated(order: order, mobilityClass: stateClass, alignmentRaised: alignmentRaised).rawValue,
            ordering: .relaxed)
        let location = BlockLocation(slot: slot, blockOffset: offset, order: order)
        return BuddyAllocation(address: address(of: location), location: location)
    }

    /// Returns an allocated or cached block to the free bitmaps, merging it with free buddies
    /// (every piece of an exact-size allocation, given its first).
    /// The caller has checked the location with `lookup` (a head whose state is allocated, cached
    /// or trimmed).
    @discardableResult
    public func free(_ location: BlockLocation) -> BuddyRelease {
        let slot = location.slot
        // Whatever was written to the block is in the superblock now.
        slotPristine[slot] = 0
        let head = BlockState(rawValue: state(slot: slot, offset: location.blockOffset).pointee.load(ordering: .relaxed))
        let mobility: Int
        if case .allocated(let mobilityClass, _) = head.kind { mobility = mobilityClass } else { mobility = 0 }
        if runLengths[slot] > 1 {
            return freeRun(firstSlot: slot, mobilityClass: mobility)
        }
        if head.isTrimmed { return freeTrimmed(location) }
        let order = release(slot: slot, offset: location.blockOffset, order: location.order)
        return BuddyRelease(
            slot: slot, order: location.order, byteCount: geometry.blockSize(order: location.order),
            mobilityClass: mobility, superblockFreed: order == geometry.maxOrder)
    }

    /// Lists a block as free, merged with its free buddies; returns the order it ended at.
    @inline(__always)
    private func release(slot: Int, offset blockOffset: Int, order blockOrder: Int) -> Int {
        let maxOrder = geometry.maxOrder
        var order = blockOrder
        var offset = blockOffset
        while order < maxOrder {
            let buddyOffset = offset ^ (1 &<< order)
            let buddyState = state(slot: slot, offset: buddyOffset)
            guard buddyState.pointee.load(ordering: .relaxed) == BlockState.free(order: order).rawValue else { break }
            removeFree(slot: slot, index: (slot &<< (maxOrder - order)) | (buddyOffset &>> order), order: order)
            // The higher of the two heads becomes interior of the merged block.
            state(slot: slot, offset: max(offset, buddyOffset)).pointee.store(BlockState.interior.rawValue, ordering: .relaxed)
            offset = min(offset, buddyOffset)
            order += 1
        }
        addFree(slot: slot, index: (slot &<< (maxOrder - order)) | (offset &>> order), order: order)
        if order == maxOrder {
            slotClasses[slot] = Self.noClass
            slotQuarantined[slot] = 0
        }
        return order
    }

    // MARK: Growth in place

    /// Grows an allocated block to `order` where it lies (realloc's growth without a copy): the
    /// block of `order` containing it must start at its address, and each buddy above it, of
    /// orders `location.order ..< order`, must be free and whole (free in this arena; a block in
    /// a cache is not). Those buddies leave the free bitmaps and become interior of the grown
    /// block, whose head keeps its mobility (no longer raised: its order is now its size's).
    /// Returns the grown block's location, or nil with nothing changed. Below a superblock only.
    public func extend(_ location: BlockLocation, toOrder order: Int) -> BlockLocation? {
        let slot = location.slot, offset = location.blockOffset, maxOrder = geometry.maxOrder
        guard order > location.order, order < maxOrder, offset & ((1 &<< order) - 1) == 0, runLengths[slot] <= 1 else { return nil }
        let head = BlockState(rawValue: state(slot: slot, offset: offset).pointee.load(ordering: .relaxed))
        guard case .allocated(let mobilityClass, _) = head.kind, !head.isTrimmed, head.order == location.order else { return nil }
        for buddyOrder in location.order..<order {
            let buddy = offset + (1 &<< buddyOrder)
            guard state(slot: slot, offset: buddy).pointee.load(ordering: .relaxed) == BlockState.free(order: buddyOrder).rawValue else {
                return nil
            }
        }
        for buddyOrder in location.order..<order {
            let buddy = offset + (1 &<< buddyOrder)
            removeFree(slot: slot, index: (slot &<< (maxOrder - buddyOrder)) | (buddy &>> buddyOrder), order: buddyOrder)
            state(slot: slot, offset: buddy).pointee.store(BlockState.interior.rawValue, ordering: .relaxed)
        }
        state(slot: slot, offset: offset).pointee.store(
            BlockState.allocated(order: order, mobilityClass: mobilityClass).rawValue, ordering: .relaxed)
        return BlockLocation(slot: slot, blockOffset: offset, order: order)
    }

    // MARK: Exact sizes

    /// Makes an allocated block of `location.order` an exact-size allocation of its first
    /// `blocks` minimum blocks (1 ..< 1 << order), as the kernel's `alloc_pages_exact` does: the
    /// kept part is one piece per set bit of `blocks`, largest first, each aligned to its size
    /// (the first `trimmed`, the rest `trimmedPiece`); the tail goes back to the free bitmaps as
    /// blocks of rising order. No tail block merges: its buddy lies just below it and holds a
    /// kept piece, whose head is not free. Returns the first piece's location.
    public func trim(_ location: BlockLocation, keeping blocks: Int) -> BlockLocation {
        let slot = location.slot, start = location.blockOffset, size = 1 &<< location.order
        // Invariant: the caller keeps part of the block and holds its head allocated.
        assert(blocks > 0 && blocks < size && BlockState(rawValue: state(slot: slot, offset: start).pointee.load(ordering: .relaxed)).isAllocated,
               "trim of \(blocks) blocks of an order-\(location.order) block")
        let maxOrder = geometry.maxOrder
        var offset = start
        var firstOrder = -1
        for order in stride(from: location.order - 1, through: 0, by: -1) where blocks & (1 &<< order) != 0 {
            let tag: BlockState.Tag = firstOrder < 0 ? .trimmed : .trimmedPiece
            if firstOrder < 0 { firstOrder = order }
            state(slot: slot, offset: offset).pointee.store(tag.byte(order: order), ordering: .relaxed)
            offset += 1 &<< order
        }
        var position = blocks
        while position < size {
            // A multiple of 2^order below `size`: the block fits before the end.
            let order = position.trailingZeroBitCount
            addFree(slot: slot, index: (slot &<< (maxOrder - order)) | ((start + position) &>> order), order: order)
            position += 1 &<< order
        }
        return BlockLocation(slot: slot, blockOffset: start, order: firstOrder)
    }

    /// The bytes an allocated head holds: its run, every piece of an exact-size allocation, or
    /// its block.
    public func heldBytes(_ location: BlockLocation) -> Int {
        let run = runLength(slot: location.slot)
        if run > 1 { return run &<< geometry.superblockShift }
        if BlockState(rawValue: state(slot: location.slot, offset: location.blockOffset).pointee.load(ordering: .relaxed)).isTrimmed {
            return trimmedBlockCount(location) &<< geometry.minBlockShift
        }
        return geometry.blockSize(order: location.order)
    }

    /// The minimum blocks an exact-size allocation holds, from its first piece.
    public func trimmedBlockCount(_ location: BlockLocation) -> Int {
        var blocks = 0
        forEachTrimmedPiece(location) { _, order in blocks += 1 &<< order }
        return blocks
    }

    /// The first piece of the exact-size allocation a `trimmedPiece` at `offset` belongs to:
    /// the nearest `trimmed` head below it (only its own pieces lie in between).
    public func trimmedStart(slot: Int, pieceOffset offset: Int) -> BlockLocation? {
        var candidate = offset - 1
        while candidate >= 0 {
            let value = BlockState(rawValue: state(slot: slot, offset: candidate).pointee.load(ordering: .relaxed))
            if value.isTrimmed { return BlockLocation(slot: slot, blockOffset: candidate, order: value.order) }
            candidate -= 1
        }
        return nil
    }

    /// Calls `body` with each piece (offset, order) of the exact-size allocation at `location`;
    /// the next piece is read after `body` returns.
    private func forEachTrimmedPiece(_ location: BlockLocation, _ body: (Int, Int) -> Void) {
        var offset = location.blockOffset
        var order = location.order
        while true {
            body(offset, order)
            offset += 1 &<< order
            guard offset < geometry.blocksPerSuperblock else { return }
            let next = BlockState(rawValue: state(slot: location.slot, offset: offset).pointee.load(ordering: .relaxed))
            guard next.isTrimmedPiece else { return }
            order = next.order
        }
    }

    /// Frees every piece of an exact-size allocation, first to last, with no array (a locked
    /// pool's free allocates nothing). Freeing a piece leaves the next piece's head as it was, so
    /// the walk finds it after the release: no free block can contain an allocated piece, so no
    /// merge reaches it. The last piece's merges may clear the byte after it, which ends the walk.
    private func freeTrimmed(_ location: BlockLocation) -> BuddyRelease {
        var bytes = 0
        var superblockFreed = false
        forEachTrimmedPiece(location) { offset, order in
            bytes += geometry.blockSize(order: order)
            if release(slot: location.slot, offset: offset, order: order) == geometry.maxOrder { superblockFreed = true }
        }
        return BuddyRelease(slot: location.slot, order: location.order, byteCount: bytes, mobilityClass: 0, superblockFreed: superblockFreed)
    }

    // MARK: Runs of superblocks

    /// `count` wholly free superblocks at consecutive addresses, the first aligned to
    /// `alignment` and the whole run inside one `boundary`-aligned window (0: no boundary).
    /// O(slots) word operations in the worst case.
    /// A count of 1 is one superblock placed by `alignment` and `boundary` (an alignment above the
    /// superblock on a request that fits in one); it is an ordinary block of order maxOrder.
    public func allocateRun(count: Int, alignment: Int = 0, boundary: Int = 0, mobilityClass: Int, groupClass: Int? = nil) -> BuddyAllocation? {
        guard count >= 1, count <= slotCapacity, alignment >= 0, boundary >= 0,
              let first = findRun(count: count, alignment: alignment, boundary: boundary)
        else { return nil }
        let maxOrder = geometry.maxOrder
        for index in 0..<count {
            let slot = first + index
            removeFree(slot: slot, index: slot, order: maxOrder)
            slotClasses[slot] = UInt8(groupClass ?? mobilityClass)
            if index > 0 { state(slot: slot, offset: 0).pointee.store(BlockState.interior.rawValue, ordering: .relaxed) }
        }
        if count > 1 { runLengths[first] = UInt32(count) }
        // Run heads carry the raised flag: they are never cached and their size is the run's.
        state(slot: first, offset: 0).pointee.store(
            BlockState.allocated(order: maxOrder, mobilityClass: mobilityClass, alignmentRaised: true).rawValue, ordering: .relaxed)
        let location = BlockLocation(slot: first, blockOffset: 0, order: maxOrder)
        return BuddyAllocation(address: slotBases[first], location: location)
    }

    /// The first slot of a run that fits. Runs are taken from the top of the slot range while
    /// single blocks fill from the bottom, so the two rarely get in each other's way.
    private func findRun(count: Int, alignment: Int, boundary: Int) -> Int? {
        count <= 64 ? findShortRun(count: count, alignment: alignment, boundary: boundary)
            : findLongRun(count: count, alignment: alignment, boundary: boundary)
    }

    /// Word-parallel: AND-ing a word with itself shifted 1...count-1 leaves bit j set exactly
    /// when slots j ..< j + count are all wholly free. Highest candidates first.
    private func findShortRun(count: Int, alignment: Int, boundary: Int) -> Int? {
        let free = freeSets[geometry.maxOrder]
        let words = free.wordCount
        for wordIndex in stride(from: words - 1, through: 0, by: -1) {
            let low = free.word(wordIndex)
            guard low != 0 else { continue }
            let high = wordIndex + 1 < words ? free.word(wordIndex + 1) : 0
            var candidates = low
            for shift in 1..<count where candidates != 0 {
                candidates &= (low &>> UInt64(shift)) | (high &<< UInt64(64 - shift))
            }
            while candidates != 0 {
                let bit = 63 - candidates.leadingZeroBitCount
                candidates &= ~(1 &<< UInt64(bit))
                let first = wordIndex &<< 6 | bit
                if runFits(first: first, count: count, alignment: alignment, boundary: boundary) { return first }
            }
        }
        return nil
    }

    /// Walks the runs of wholly free slots from the bottom, jumping past what cannot fit.
    private func findLongRun(count: Int, alignment: Int, boundary: Int) -> Int? {
        let free = freeSets[geometry.maxOrder]
        var position = 0
        while let start = free.next(from: position) {
            let end = free.nextClear(from: start)
            var candidate = start
            while candidate + count <= end {
                if runFits(first: candidate, count: count, alignment: alignment, boundary: boundary) { return candidate }
                candidate += 1
            }
            position = end + 1
        }
        return nil
    }

    /// Whether `count` free slots from `first` form one aligned, boundary-respecting address range.
    private func runFits(first: Int, count: Int, alignment: Int, boundary: Int) -> Bool {
        let base = slotBases[first]
        let superblock = UInt(geometry.superblockSize)
        if alignment > geometry.superblockSize, base & UInt(alignment - 1) != 0 { return false }
        if boundary > 0, base / UInt(boundary) != (base + UInt(count) * superblock - 1) / UInt(boundary) { return false }
        for index in 1..<count where slotBases[first + index] != base + UInt(index) * superblock { return false }
        return true
    }

    private func freeRun(firstSlot: Int, mobilityClass: Int) -> BuddyRelease {
        let count = Int(runLengths[firstSlot])
        for slot in firstSlot..<(firstSlot + count) { slotPristine[slot] = 0 }
        runLengths[firstSlot] = 0
        for slot in firstSlot..<(firstSlot + count) {
            addFree(slot: slot, index: slot, order: geometry.maxOrder)
            slotClasses[slot] = Self.noClass
            slotQuarantined[slot] = 0
        }
        return BuddyRelease(
            slot: firstSlot, order: geometry.maxOrder, byteCount: count &<< geometry.superblockShift,
            mobilityClass: mobilityClass, superblockFreed: true)
    }

    // MARK: Walking blocks

    /// Calls `body` with every block head of a slot (free, allocated or cached) in address order.
    public func forEachBlock(inSlot slot: Int, _ body: (BlockLocation, BlockState) -> Void) {
        guard isAttached(slot: slot) else { return }
        var offset = 0
        while offset < geometry.blocksPerSuperblock {
            let value = BlockState(rawValue: state(slot: slot, offset: offset).pointee.load(ordering: .relaxed))
            guard value != .interior else { return }  // Only a run body has no head at offset 0.
            body(BlockLocation(slot: slot, blockOffset: offset, order: value.order), value)
            offset += 1 &<< value.order
        }
    }

    // MARK: Evacuation

    /// Hides a partly used superblock's free blocks from allocation while its live blocks are
    /// moved out, so they are not moved straight back in. Frees into it still work; when it
    /// becomes wholly free the quarantine ends by itself.
    public func quarantine(slot: Int) {
        guard isAttached(slot: slot), slotQuarantined[slot] == 0, slotClasses[slot] != Self.noClass else { return }
        for order in 0..<geometry.maxOrder where slotCount(slot, order).pointee > 0 {
            removeClassMember(Int(slotClasses[slot]), order: order, slot: slot)
        }
        slotQuarantined[slot] = 1
    }

    /// Ends a quarantine: the slot's free blocks can be allocated again.
    public func releaseQuarantine(slot: Int) {
        guard slotQuarantined[slot] != 0 else { return }
        slotQuarantined[slot] = 0
        guard slotClasses[slot] != Self.noClass else { return }
        for order in 0..<geometry.maxOrder where slotCount(slot, order).pointee > 0 {
            insertClassMember(Int(slotClasses[slot]), order: order, slot: slot)
        }
    }

    public func isQuarantined(slot: Int) -> Bool { slotQuarantined[slot] != 0 }

    /// Whether the superblock's memory is known to be zero (see `attach(pristine:)`): every block
    /// allocated from it is zero until written.
    public func isPristine(slot: Int) -> Bool { slotPristine[slot] != 0 }

    /// Whether a slot is a run's second or later superblock (no head at offset 0).
    public func isRunBody(slot: Int) -> Bool {
        isAttached(slot: slot) && runLengths[slot] == 0
            && state(slot: slot, offset: 0).pointee.load(ordering: .relaxed) == BlockState.interior.rawValue
    }

    // MARK: Bitmap bookkeeping

    @inline(__always)
    private func slotCount(_ slot: Int, _ order: Int) -> UnsafeMutablePointer<UInt16> {
        slotFreeCounts + (slot * geometry.maxOrder + order)
    }

    private func addFree(slot: Int, index: Int, order: Int) {
        freeSets[order].insert(index)
        let offset = (index &<< order) & (geometry.blocksPerSuperblock - 1)
        state(slot: slot, offset: offset).pointee.store(BlockState.free(order: order).rawValue, ordering: .relaxed)
        freeCounts[order] += 1
        scalars[0] += geometry.blockSize(order: order)
        guard order < geometry.maxOrder else { return }
        let count = slotCount(slot, order)
        count.pointee += 1
        if count.pointee == 1, slotClasses[slot] != Self.noClass, slotQuarantined[slot] == 0 {
            insertClassMember(Int(slotClasses[slot]), order: order, slot: slot)
        }
    }

    private func removeFree(slot: Int, index: Int, order: Int) {
        freeSets[order].remove(index)
        freeCounts[order] -= 1
        scalars[0] -= geometry.blockSize(order: order)
        guard order < geometry.maxOrder else { return }
        let count = slotCount(slot, order)
        count.pointee -= 1
        if count.pointee == 0, slotClasses[slot] != Self.noClass, slotQuarantined[slot] == 0 {
            removeClassMember(Int(slotClasses[slot]), order: order, slot: slot)
        }
    }

    private func insertClassMember(_ mobilityClass: Int, order: Int, slot: Int) {
        let index = mobilityClass * geometry.maxOrder + order
        classSets[index].insert(slot)
        classSetCounts[index] += 1
        if classSetCounts[index] == 1 { classOrderMasks[mobilityClass] |= 1 &<< UInt32(order) }
    }

    private func removeClassMember(_ mobilityClass: Int, order: Int, slot: Int) {
        let index = mobilityClass * geometry.maxOrder + order
        classSets[index].remove(slot)
        classSetCounts[index] -= 1
        if classSetCounts[index] == 0 { classOrderMasks[mobilityClass] &= ~(1 &<< UInt32(order)) }
    }

    /// Moves a partly used superblock's free blocks from its class's sets to another class.
    public func retag(slot: Int, to mobilityClass: Int) {
        let old = slotClasses[slot]
        guard old != Self.noClass, Int(old) != mobilityClass else { return }
        for order in 0..<geometry.maxOrder where slotCount(slot, order).pointee > 0 && slotQuarantined[slot] == 0 {
            removeClassMember(Int(old), order: order, slot: slot)
            insertClassMember(mobilityClass, order: order, slot: slot)
        }
        slotClasses[slot] = UInt8(mobilityClass)
    }

    /// Whether an allocation would have to steal: no free block of its class is large enough and
    /// no superblock is wholly free.
    public func wouldSteal(order: Int, mobilityClass: Int) -> Bool {
        freeCounts[geometry.maxOrder] == 0 && (order >= geometry.maxOrder || smallestFree(atLeast: order, mobilityClass: mobilityClass) == nil)
    }

    private func smallestFree(atLeast order: Int, mobilityClass: Int) -> (order: Int, slot: Int)? {
        let candidates = classOrderMasks[mobilityClass] & (~0 &<< UInt32(order))
        guard candidates != 0 else { return nil }
        let found = candidates.trailingZeroBitCount
        // Invariant: a set mask bit means the class set of that order is not empty.
        let slot = classSets[mobilityClass * geometry.maxOrder + found].first()
        assert(slot != nil, "class \(mobilityClass) order mask has order \(found) with an empty class set")
        return (found, slot.unsafelyUnwrapped)
    }

    private func largestFreeInOtherClass(atLeast order: Int, mobilityClass: Int) -> (order: Int, slot: Int)? {
        var best: (order: Int, mobilityClass: Int)?
        for other in 0..<classCount where other != mobilityClass {
            let candidates = classOrderMasks[other] & (~0 &<< UInt32(order))
            guard candidates != 0 else { continue }
            let highest = 31 - candidates.leadingZeroBitCount
            if best == nil || highest > best!.order { best = (highest, other) }
        }
        guard let best else { return nil }
        // Invariant: as in smallestFree, a mask bit means a non-empty class set.
        let slot = classSets[best.mobilityClass * geometry.maxOrder + best.order].first()
        assert(slot != nil, "class \(best.mobilityClass) order mask has order \(best.order) with an empty class set")
        return (best.order, slot.unsafelyUnwrapped)
    }

    private func findDetachedRun(count: Int, from start: Int) -> Int? {
        var candidate = detachedSet.pointee.next(from: start)
        while let first = candidate {
            guard first + count <= slotCapacity else { return nil }
            if let gap = (first..<(first + count)).first(where: { !detachedSet.pointee.contains($0) }) {
                candidate = detachedSet.pointee.next(from: gap + 1)
            } else {
                return first
            }
        }
        return nil
    }

    private func insertRange(base: UInt, firstSlot: Int, count: Int) {
        var position = 0
        while position < rangeCount, ranges[position].base <= base { position += 1 }
        insertRangeEntry(SlotRange(base: base, firstSlot: firstSlot, count: count), at: position)
        // Merge with neighbours that continue both the addresses and the slot numbers.
        var index = max(position - 1, 0)
        while index + 1 < rangeCount {
            let left = ranges[index], right = ranges[index + 1]
            if left.base + UInt(left.count &<< geometry.superblockShift) == right.base,
               left.firstSlot + left.count == right.firstSlot {
                ranges[index].count += right.count
                removeRangeEntry(at: index + 1)
            } else if index >= position {
                break
            } else {
                index += 1
            }
        }
    }

    private func removeRange(base: UInt, slot: Int) {
        var index = rangeCount - 1
        while index >= 0, ranges[index].base > base { index -= 1 }
        guard index >= 0 else { return }
        let range = ranges[index]
        let position = slot - range.firstSlot
        removeRangeEntry(at: index)
        if position + 1 < range.count {
            insertRangeEntry(SlotRange(base: base + UInt(geometry.superblockSize), firstSlot: slot + 1, count: range.count - position - 1), at: index)
        }
        if position > 0 { insertRangeEntry(SlotRange(base: range.base, firstSlot: range.firstSlot, count: position), at: index) }
    }

    private func insertRangeEntry(_ entry: SlotRange, at index: Int) {
        // Invariant: ranges never outnumber slots (each holds at least one attached slot).
        assert(rangeCount < slotCapacity, "more address ranges than slots")
        (ranges + index + 1).update(from: ranges + index, count: rangeCount - index)
        ranges[index] = entry
        rangeCount += 1
    }

    private func removeRangeEntry(at index: Int) {
        (ranges + index).update(from: ranges + index + 1, count: rangeCount - index - 1)
        rangeCount -= 1
    }

    // MARK: Invariants

    /// Recounts everything from the state bytes and compares with the bitmaps and counters.
    /// O(managed bytes / minBlock): for tests and debugging, not for production paths.
    public func checkInvariants() throws(BuddyInvariantViolation) {
        let maxOrder = geometry.maxOrder
        var recountedFree = [Int](repeating: 0, count: maxOrder + 1)
        var recountedBytes = 0
        var attached = 0
        var runRemaining = 0
        for slot in 0..<slotCapacity {
            guard isAttached(slot: slot) else {
                guard detachedSet.pointee.contains(slot), slotClasses[slot] == Self.noClass, runRemaining == 0 else {
                    throw BuddyInvariantViolation("slot \(slot) is detached but marked in use or inside a run")
                }
                continue
            }
            attached += 1
            guard !detachedSet.pointee.contains(slot) else { throw BuddyInvariantViolation("slot \(slot) is attached and in the detached set") }
            guard slotBases[slot] & UInt(geometry.superblockSize - 1) == 0 else {
                throw BuddyInvariantViolation("slot \(slot) base 0x\(String(slotBases[slot], radix: 16)) is not superblock-aligned")
            }
            if runRemaining > 0 {
                runRemaining -= 1
                try checkRunBody(slot: slot)
                continue
            }
            if runLengths[slot] > 1 {
                runRemaining = Int(runLengths[slot]) - 1
                let head = BlockState(rawValue: state(slot: slot, offset: 0).pointee.load(ordering: .relaxed))
                // A run is allocated, or kept for reuse by its pool (cached).
                guard head.isAllocated || head.kind == .cached, head.order == maxOrder else {
                    throw BuddyInvariantViolation("run at slot \(slot) has head state \(head)")
                }
                try checkRunBody(slot: slot, headIsInterior: false)
                continue
            }
            let counts = try checkBlocks(slot: slot)
            for order in 0...maxOrder {
                recountedFree[order] += counts[order]
                recountedBytes += counts[order] * geometry.blockSize(order: order)
            }
        }
        guard runRemaining == 0 else { throw BuddyInvariantViolation("a run extends past the last slot") }
        guard attached == attachedSlotCount else {
            throw BuddyInvariantViolation("\(attached) slots attached, counter says \(attachedSlotCount)")
        }
        for order in 0...maxOrder {
            guard freeSets[order].summariesAreConsistent() else {
                throw BuddyInvariantViolation("order-\(order) bitmap summary levels disagree with the bitmap")
            }
            var listed = 0
            freeSets[order].forEach { _ in listed += 1 }
            guard listed == recountedFree[order], freeCounts[order] == recountedFree[order] else {
                throw BuddyInvariantViolation("order \(order): \(listed) bits set, counter \(freeCounts[order]), \(recountedFree[order]) free heads")
            }
        }
        guard recountedBytes == freeBytes else {
            throw BuddyInvariantViolation("free bytes counter \(freeBytes), recount \(recountedBytes)")
        }
        for mobilityClass in 0..<classCount {
            var mask: UInt32 = 0
            for order in 0..<maxOrder {
                let set = classSets[mobilityClass * maxOrder + order]
                var members = 0
                set.forEach { slot in
                    members += 1
                    if Int(slotClasses[slot]) != mobilityClass || slotCount(slot, order).pointee == 0 || slotQuarantined[slot] != 0 {
                        members = -1_000_000
                    }
                }
                guard members == classSetCounts[mobilityClass * maxOrder + order], set.summariesAreConsistent() else {
                    throw BuddyInvariantViolation("class \(mobilityClass) order \(order): class set disagrees with slot counts")
                }
                if members > 0 { mask |= 1 &<< UInt32(order) }
            }
            guard mask == classOrderMasks[mobilityClass] else {
                throw BuddyInvariantViolation("class \(mobilityClass): order mask \(classOrderMasks[mobilityClass]) should be \(mask)")
            }
        }
    }

    /// Checks one attached superblock that is not part of a run: every head aligned to its order,
    /// no overlap, free blocks listed and merged, its counters and class-set membership.
    /// Returns its free blocks per order. O(blocks of one superblock).
    private func checkBlocks(slot: Int) throws(BuddyInvariantViolation) -> [Int] {
        let maxOrder = geometry.maxOrder
        var counts = [Int](repeating: 0, count: maxOrder + 1)
        var offset = 0
        // The order of the exact-size allocation's piece just passed (-1: none): a later piece
        // follows one of a higher order.
        var pieceOrder = -1
        while offset < geometry.blocksPerSuperblock {
            let value = BlockState(rawValue: state(slot: slot, offset: offset).pointee.load(ordering: .relaxed))
            let order = value.order
            guard value.kind != .interior, value.kind != .invalid, value.kind != .slabInterior else {
                throw BuddyInvariantViolation("slot \(slot) offset \(offset): expected a block head, found \(value)")
            }
            if value.isTrimmedPiece, pieceOrder <= order {
                throw BuddyInvariantViolation("slot \(slot) offset \(offset): \(value) follows no larger piece of an exact-size allocation")
            }
            pieceOrder = value.isTrimmed || value.isTrimmedPiece ? order : -1
            guard offset & ((1 &<< order) - 1) == 0, offset + (1 &<< order) <= geometry.blocksPerSuperblock else {
                throw BuddyInvariantViolation("slot \(slot) offset \(offset): \(value) is not aligned to its order")
            }
            // Inside a block every byte is interior; inside a slab each says the slab's order.
            let inside = value.kind == .slab ? BlockState.Tag.slabInterior.byte(order: order) : BlockState.interior.rawValue
            for inner in (offset + 1)..<(offset + (1 &<< order)) where state(slot: slot, offset: inner).pointee.load(ordering: .relaxed) != inside {
                throw BuddyInvariantViolation("slot \(slot) offset \(inner): head inside block at \(offset) (\(value)): overlap")
            }
            let bitIndex = (slot &<< (maxOrder - order)) | (offset &>> order)
            let listed = freeSets[order].contains(bitIndex)
            if value.kind == .free {
                guard listed else { throw BuddyInvariantViolation("slot \(slot) offset \(offset): free block missing from order-\(order) bitmap") }
                if order < maxOrder {
                    let buddy = offset ^ (1 &<< order)
                    if state(slot: slot, offset: buddy).pointee.load(ordering: .relaxed) == BlockState.free(order: order).rawValue {
                        throw BuddyInvariantViolation("slot \(slot): free buddies at \(offset) and \(buddy) of order \(order) were not merged")
                    }
                }
                counts[order] += 1
            } else if listed {
                throw BuddyInvariantViolation("slot \(slot) offset \(offset): \(value) is listed free in the order-\(order) bitmap")
            }
            offset += 1 &<< order
        }
        try checkSlotCounters(slot: slot, counts: counts)
        return counts
    }

    /// The cheap check `BUDDYPOOLS_INTERNAL_CHECKS` builds run after every pool operation: the
    /// superblocks of one slot (its run, when it is in one) and the free counters of every order.
    public func checkInvariants(slot: Int) throws(BuddyInvariantViolation) {
        guard isAttached(slot: slot) else { return }
        var first = slot
        while runLengths[first] <= 1, first > 0, isAttached(slot: first - 1), isRunBody(slot: first) { first -= 1 }
        if runLengths[first] > 1 {
            for member in (first + 1)..<(first + Int(runLengths[first])) { try checkRunBody(slot: member) }
            try checkRunBody(slot: first, headIsInterior: false)
        } else if !isRunBody(slot: slot) {
            _ = try checkBlocks(slot: slot)
        }
        var bytes = 0
        for order in 0...geometry.maxOrder { bytes += freeCounts[order] * geometry.blockSize(order: order) }
        guard bytes == freeBytes else { throw BuddyInvariantViolation("free counters say \(bytes) bytes, freeBytes \(freeBytes)") }
    }

    private func checkRunBody(slot: Int, headIsInterior: Bool = true) throws(BuddyInvariantViolation) {
        if headIsInterior, state(slot: slot, offset: 0).pointee.load(ordering: .relaxed) != 0 {
            throw BuddyInvariantViolation("slot \(slot) inside a run has a block head")
        }
        for offset in 1..<geometry.blocksPerSuperblock where state(slot: slot, offset: offset).pointee.load(ordering: .relaxed) != 0 {
            throw BuddyInvariantViolation("slot \(slot) inside a run has a head at offset \(offset)")
        }
        guard !freeSets[geometry.maxOrder].contains(slot), slotClasses[slot] != Self.noClass else {
            throw BuddyInvariantViolation("slot \(slot) inside a run is listed free or untagged")
        }
        for order in 0..<geometry.maxOrder where slotCount(slot, order).pointee != 0 {
            throw BuddyInvariantViolation("slot \(slot) inside a run counts free blocks")
        }
    }

    private func checkSlotCounters(slot: Int, counts: [Int]) throws(BuddyInvariantViolation) {
        let maxOrder = geometry.maxOrder
        let whole = counts[maxOrder] == 1
        if whole, slotClasses[slot] != Self.noClass || slotQuarantined[slot] != 0 {
            throw BuddyInvariantViolation("slot \(slot) is wholly free but tagged with class \(slotClasses[slot]) or quarantined")
        }
        if !whole, slotClasses[slot] == Self.noClass {
            throw BuddyInvariantViolation("slot \(slot) is in use but has no class")
        }
        for order in 0..<maxOrder {
            guard Int(slotCount(slot, order).pointee) == counts[order] else {
                throw BuddyInvariantViolation("slot \(slot) order \(order): counter \(slotCount(slot, order).pointee), recount \(counts[order])")
            }
            let member = !whole && classSets[Int(slotClasses[slot]) * maxOrder + order].contains(slot)
            guard member == (counts[order] > 0 && !whole && slotQuarantined[slot] == 0) else {
                throw BuddyInvariantViolation("slot \(slot) order \(order): class set membership \(member) with \(counts[order]) free blocks")
            }
        }
    }
}

/// A broken arena invariant, with what was found where.
public struct BuddyInvariantViolation: Error, Sendable, CustomStringConvertible {
    public let description: String
    package init(_ description: String) { self.description = description }
}
