import BuddyCaches
import BuddyConfig
import BuddyCore
import BuddySlabs
import BuddySystem
import Synchronization

// Frees: the inlinable fast path into the thread's magazine, and the checked slow path that
// names every bad pointer (foreign, interior, double, wrong pool, wrong size) before it stops.

/// What is wrong with a pointer handed to `deallocate`.
public enum DeallocationProblem: Sendable, Equatable, CustomStringConvertible {
    /// Not memory of any BuddyPools pool.
    case foreign
    /// A block of another pool (or of a superblock this pool lent to another pool).
    case wrongPool(owner: String)
    /// Inside a block (or a run) rather than at its start.
    case interior(blockStart: UInt?, blockBytes: Int)
    /// The block is already free (or sitting in a cache after an earlier free).
    case doubleFree(blockBytes: Int)
    /// A sized free named a byte count the block was not allocated with.
    case wrongSize(given: Int, allocatedBytes: Int)
    /// The block's state byte holds a value no code writes.
    case corruptedMetadata(UInt8)
    /// In a superblock `shrink(to:)` gave back to the kernel: every block there was freed before.
    case releasedSuperblock
    /// A movable block behind a handle, freed through its raw address: the handle would go on
    /// naming memory the pool reuses. Free it with `deallocate(_ handle:)`.
    case ownedByHandle(MovableHandle)

    public var description: String {
        switch self {
        case .foreign: "foreign pointer: not memory of any BuddyPools pool"
        case .wrongPool(let owner): "wrong pool: the block belongs to pool '\(owner)'"
        case .interior(let start, let bytes):
            "interior pointer: inside the \(formatBytes(bytes)) block" + (start.map { " that starts at 0x\(String($0, radix: 16))" } ?? "")
        case .doubleFree(let bytes): "double free: the \(formatBytes(bytes)) block at this address is already free"
        case .wrongSize(let given, let allocated): "wrong size: freed with byteCount \(given), allocated as a \(formatBytes(allocated)) block"
        case .corruptedMetadata(let value): "corrupted metadata: state byte 0x\(String(value, radix: 16))"
        case .releasedSuperblock: "double free: the address is in a superblock the pool released with shrink(to:)"
        case .ownedByHandle(let handle): "the block belongs to movable \(handle): free it with deallocate(handle), not its address"
        }
    }
}

extension MemoryPool {
    /// Frees a block. A pointer this pool did not hand out, or one already freed, stops the
    /// process with a message naming the pool and the address (release builds included).
    /// In a fork child, freeing memory of a pool made before the fork does nothing.
    @inlinable
    public func deallocate(_ pointer: UnsafeMutableRawPointer) {
        let address = UInt(bitPattern: pointer)
        // One load of the state byte tells a cached block from an object in the first region.
        let offset = address &- objectFastPath.regionBase
        if offset < objectFastPath.spanBytes {
            let value = objectFastPath.states[Int(truncatingIfNeeded: offset &>> UInt(truncatingIfNeeded: objectFastPath.minBlockShift))]
                .load(ordering: .relaxed)
            if value &>> 4 == BlockState.Tag.allocatedUnmovable.rawValue {
                if let (state, order) = cacheFastPath.cacheableHead(offset: offset, value: value),
                   cacheFastPath.push(address: address, state: state, order: order) {
                    return
                }
            } else if freeCachedObject(address, offset: offset, state: value) {
                return
            }
        }
        deallocateSlowly(address, byteCount: nil)
    }

    /// A block's lock-free free into the thread's magazine alone, for the malloc library (whose
    /// C free has tried the object fast path first): true when the magazine took it; false sends
    /// the caller to `deallocate`, which checks the pointer again and names what is wrong. Never
    /// calls malloc nor takes a lock.
    @inlinable @inline(__always)
    package func deallocateCachedBlock(_ pointer: UnsafeMutableRawPointer) -> Bool {
        let address = UInt(bitPattern: pointer)
        guard let (state, order) = cacheFastPath.cacheableHead(at: address, expectedOrder: nil) else { return false }
        return cacheFastPath.push(address: address, state: state, order: order)
    }

    /// Frees a block, also checking that `byteCount` is the size it was allocated with.
    @inlinable
    public func deallocate(_ pointer: UnsafeMutableRawPointer, byteCount: Int) {
        let address = UInt(bitPattern: pointer)
        // Sizes a class serves are objects in a pool that serves objects: those first.
        if UInt(bitPattern: byteCount &- 1) < UInt(SizeClasses.maxObjectBytes), objectsServed {
            if freeCachedObject(address, byteCount: byteCount) { return }
        } else if UInt(bitPattern: byteCount &- 1) < UInt(bitPattern: cacheFastPath.maxCachedBytes),
                  let (state, order) = cacheFastPath.cacheableHead(at: address, expectedOrder: cacheFastPath.order(byteCount: byteCount)),
                  cacheFastPath.push(address: address, state: state, order: order) {
            return
        }
        deallocateSlowly(address, byteCount: byteCount)
    }

    /// Other regions, full magazines, other threads' first frees, uncached blocks, pools that
    /// count allocation sites, and every bad pointer. Out of line, so the fast path above
    /// needs no stack frame.
    @usableFromInline @inline(never)
    func deallocateSlowly(_ address: UInt, byteCount: Int?) {
        if countsSites { accounting?.forget(address) }
        // Runs and whole superblocks into the run stash, without the lock.
        if keepRunUnlocked(address, byteCount: byteCount) { return }
        switch objectLookup(address) {
        case .notObject: break
        // In a fork child, a parent's objects are left alone, as its blocks are.
        case .object(let slab, let index):
            if !isForkedChild { freeObjectSlowly(slab, index: index, address: address, byteCount: byteCount) }
            return
        case .problem(let problem):
            if isForkedChild { return }
            badDeallocation(address, problem)
        }
        if !isForkedChild, let caches, let (state, order) = cacheableBlock(at: address, expectedOrder: byteCount.flatMap {
            $0 > 0 ? geometry.order(byteCount: $0, alignment: 1)?.order : nil
        }) {
            if scrubs { scrubFreed(address, byteCount: geometry.blockSize(order: order)) }
            if !cacheFastPath.push(address: address, state: state, order: order) {
                caches.pushSlow(address: address, state: state, order: order, backend: self)
            }
            return
        }
        deallocateChecked(address, byteCount: byteCount)
    }

    /// Nil when `pointer` may be freed (with `byteCount`, when given); otherwise what is wrong.
    /// Never traps.
    public func validate(_ pointer: UnsafeRawPointer, byteCount: Int? = nil) -> DeallocationProblem? {
        let address = UInt(bitPattern: pointer)
        switch objectLookup(address) {
        case .notObject: break
        case .object(let slab, let index): return objectProblem(slab, index: index, byteCount: byteCount)
        case .problem(let problem): return problem
        }
        return core.locked { core in
            switch classify(address, byteCount: byteCount, core: &core) {
            case .problem(let problem): return problem
            case .freeable(_, _, let mobility): return handleProblem(address, mobility: mobility)
            }
        }
    }

    /// Whether `pointer` is the start of a live allocation of this pool.
    public func owns(_ pointer: UnsafeRawPointer) -> Bool { validate(pointer) == nil }

    /// The bytes the block at `pointer` holds (its power-of-two block, its run, or the minimum
    /// blocks of an exact-size allocation), or nil when
    /// `pointer` is not a live allocation of this pool.
    public func allocatedSize(of pointer: UnsafeRawPointer) -> Int? {
        let address = UInt(bitPattern: pointer)
        switch objectLookup(address) {
        case .notObject: break
        case .object(let slab, let index): return objectProblem(slab, index: index, byteCount: nil) == nil ? slab.pointee.objectBytes : nil
        case .problem: return nil
        }
        return core.locked { core in
            guard case .freeable(let location, _, _) = classify(address, byteCount: nil, core: &core) else { return nil }
            return core.arena.heldBytes(location)
        }
    }

    /// The unlocked check for any of the pool's own regions (the fast path covers the first).
    private func cacheableBlock(at address: UInt, expectedOrder: Int?) -> (UnsafeMutablePointer<Atomic<UInt8>>, Int)? {
        guard let (region, offset, _) = ownRegion(of: address) else { return nil }
        return CacheFastPath.cacheableHead(
            offset: offset, states: region.states, owners: region.owners, minBlockShift: geometry.minBlockShift,
            minBlockMask: UInt(geometry.minBlockSize - 1), superblockShift: geometry.superblockShift, maxOrder: cacheFastPath.maxOrder, poolID: id, expectedOrder: expectedOrder)
    }

    /// The own region holding `address`, its offset there and the region's first own slot,
    /// without the lock (the regions are fixed while the pool lives); nil outside them.
    @inline(__always)
    func ownRegion(of address: UInt) -> (region: CacheRegion, offset: UInt, firstSlot: Int)? {
        var firstSlot = 0
        for index in 0..<fastRegionCount {
            let region = fastRegions[index]
            let offset = address &- region.base
            if offset < region.byteCount { return (region, offset, firstSlot) }
            firstSlot &+= Int(truncatingIfNeeded: region.byteCount &>> UInt(truncatingIfNeeded: geometry.superblockShift))
        }
        return nil
    }

    private func deallocateChecked(_ address: UInt, byteCount: Int?) {
        if isForkedChild { return }
        let returnsPending = core.locked { core -> Bool in
            switch classify(address, byteCount: byteCount, core: &core) {
            case .problem(let problem):
                // The process stops here, holding the lock: nothing may touch the pool any more.
                badDeallocation(address, problem)
            case .freeable(let location, _, let mobility):
                if let problem = handleProblem(address, mobility: mobility) { badDeallocation(address, problem) }
                if scrubs { scrubFreed(address, byteCount: core.arena.heldBytes(location)) }
                core.freeBlock(location, mobility: mobility)
                core.counters.deallocations += 1
                return !core.pendingReturns.isEmpty
            }
        }
        if returnsPending { deliverReturns(core.locked { $0.takePendingReturns() }) }
    }

    /// A movable block a handle owns may only be freed through the handle (pool lock held).
    private func handleProblem(_ address: UInt, mobility: Mobility) -> DeallocationProblem? {
        guard mobility == .movable, let index = handles.handleAtAddress[address], let handle = handles.handle(index: index) else { return nil }
        return .ownedByHandle(handle)
    }

    /// Stops the process: memory would be corrupted if it went on. `fatalError` keeps its
    /// message in release builds (precondition drops it under -O).
    func badDeallocation(_ address: UInt, _ problem: DeallocationProblem) -> Never {
        fatalError("BuddyPools: pool '\(name)': deallocate(0x\(String(address, radix: 16))): \(problem)")
    }

    enum Classification {
        case freeable(BlockLocation, BlockState, Mobility)
        case problem(DeallocationProblem)
    }

    /// Everything the slow path knows about an address. Caller holds the pool lock.
    /// `core` is inout only to be passed by address: a borrowing parameter here was copied (320
    /// bytes of memcpy per checked free, callgrind). Nothing is changed.
    func classify(_ address: UInt, byteCount: Int?, core: inout PoolCore) -> Classification {
        switch core.withArena({ $0.lookup(address) }) {
        case .outside:
            return .problem(ownerProblem(of: address))
        case .misaligned(let slot):
            return .problem(enclosingBlockProblem(slot: slot, offset: Int(address - core.arena.baseAddress(slot: slot)) >> geometry.minBlockShift, core: core))
        case .interior(let slot, let offset):
            return .problem(enclosingBlockProblem(slot: slot, offset: offset, core: core))
        case .head(let location, let state):
            let run = core.arena.runLength(slot: location.slot)
            // arena.heldBytes from what is loaded already: calling it here retained and released
            // the arena on every checked free (+58 instructions a 4K pair, callgrind).
            let blockBytes = run > 1 ? run << geometry.superblockShift
                : state.isTrimmed ? core.arena.trimmedBlockCount(location) << geometry.minBlockShift : geometry.blockSize(order: location.order)
            switch state.kind {
            case .free, .cached:
                return .problem(.doubleFree(blockBytes: blockBytes))
            case .interior:
                return .problem(enclosingBlockProblem(slot: location.slot, offset: location.blockOffset, core: core))
            case .invalid:
                return .problem(.corruptedMetadata(state.rawValue))
            case .slab, .slabInterior:
                // objectLookup answers for every slab of this pool before the block path runs.
                return .problem(.corruptedMetadata(state.rawValue))
            case .allocated(_, let raised):
                if let byteCount, !sizeMatches(byteCount, run: run, order: location.order, raised: raised) {
                    return .problem(.wrongSize(given: byteCount, allocatedBytes: blockBytes))
                }
                return .freeable(location, state, PoolCore.mobility(of: state))
            case .trimmed:
                // Any size that needs the same minimum blocks (an alignment may have raised the
                // block the allocation was cut from, never the blocks it kept).
                if let byteCount, byteCount <= 0 || byteCount > blockBytes || blockBytes - byteCount >= geometry.minBlockSize {
                    return .problem(.wrongSize(given: byteCount, allocatedBytes: blockBytes))
                }
                return .freeable(location, state, .unmovable)
            case .trimmedPiece:
                return .problem(enclosingBlockProblem(slot: location.slot, offset: location.blockOffset, core: core))
            }
        }
    }

    func sizeMatches(_ byteCount: Int, run: Int, order: Int, raised: Bool) -> Bool {
        guard byteCount > 0 else { return false }
        if run > 1 { return geometry.superblockCount(byteCount: byteCount) == run }
        if raised { return byteCount <= geometry.blockSize(order: order) }
        return geometry.order(byteCount: byteCount, alignment: 1)?.order == order
    }

    /// An address inside a block: find the block that encloses it.
    private func enclosingBlockProblem(slot: Int, offset: Int, core: borrowing PoolCore) -> DeallocationProblem {
        for order in 0...geometry.maxOrder {
            let head = offset & ~((1 << order) - 1)
            let state = BlockState(rawValue: core.arena.state(slot: slot, offset: head).pointee.load(ordering: .relaxed))
            guard state != .interior, state.order >= order else { continue }
            // Inside an exact-size allocation: name its start and the bytes it holds.
            if state.isTrimmed || state.isTrimmedPiece,
               let first = state.isTrimmed ? BlockLocation(slot: slot, blockOffset: head, order: state.order)
                   : core.arena.trimmedStart(slot: slot, pieceOffset: head) {
                return .interior(blockStart: core.arena.address(of: first), blockBytes: core.arena.trimmedBlockCount(first) << geometry.minBlockShift)
            }
            // Any other block starting at the address itself is not taken for the enclosing one.
            guard order > 0 else { continue }
            let start = core.arena.baseAddress(slot: slot) + UInt(head << geometry.minBlockShift)
            let bytes = geometry.blockSize(order: state.order)
            return state.kind == .free ? .doubleFree(blockBytes: bytes) : .interior(blockStart: start, blockBytes: bytes)
        }
        // Inside a run: the head is in an earlier slot.
        var first = slot
        while first > 0, core.arena.isAttached(slot: first - 1), core.arena.runLength(slot: first) <= 1,
              BlockState(rawValue: core.arena.state(slot: first, offset: 0).pointee.load(ordering: .relaxed)) == .interior {
            first -= 1
        }
        let run = core.arena.runLength(slot: first)
        if run > 1, first + run > slot {
            return .interior(blockStart: core.arena.baseAddress(slot: first), blockBytes: run << geometry.superblockShift)
        }
        return .interior(blockStart: nil, blockBytes: geometry.minBlockSize)
    }

    /// An address no attached superblock of this pool holds: another pool's, or nobody's.
    private func ownerProblem(of address: UInt) -> DeallocationProblem {
        for region in managedRegions where region.contains(address) {
            let owner = region.owner(superblock: region.superblockIndex(of: address))
            if owner == id { return .releasedSuperblock }
            return .wrongPool(owner: (PoolRegistry.name(of: owner) ?? "#\(owner)") + " (a superblock this pool lent)")
        }
        if let owner = PoolRegistry.regionOwner(of: address) { return .wrongPool(owner: owner) }
        return .foreign
    }
}
