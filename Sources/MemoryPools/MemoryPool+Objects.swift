import BuddyCaches
import BuddyCore
import BuddySlabs
import BuddySystem
import Synchronization

// Objects below a page: unmovable requests up to 3840 bytes (SizeClasses) come from slabs,
// buddy blocks cut into objects of one class. The inlined paths take an object from, or give
// one back to, the calling thread's heap; the out-of-line paths find slabs, check every free
// (double, interior, wrong pool, wrong size class) and hand empty slabs back.

extension MemoryPool {
    /// Whether a request is for an object (a size and alignment a class serves, unmovable, in
    /// a pool that serves objects). Inlinable: with a literal size above 3840 it folds away.
    @inlinable @inline(__always)
    func isObjectRequest(byteCount: Int, alignment: Int, mobility: Mobility) -> Bool {
        UInt(bitPattern: byteCount &- 1) < UInt(SizeClasses.maxObjectBytes) && objectsServed && mobility == .unmovable
            && UInt(bitPattern: alignment &- 1) < UInt(SizeClasses.maxAlignment)
    }

    /// An object from the calling thread's heap, lock-free (the C fast path); nil sends the
    /// caller out of line.
    @inlinable @inline(__always)
    func cachedObject(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        guard objectsInline, alignment & (alignment &- 1) == 0,
              let classIndex = SizeClasses.index(size: byteCount, alignment: alignment)
        else { return nil }
        return objectFastPath.allocate(classIndex: classIndex)
    }

    /// Frees an object of the first region lock-free: into the thread's own slab, or one atomic
    /// or into another heap's (the C fast path). False sends the caller to the checked slow
    /// path (which also reports a double free the fast path saw).
    @inlinable @inline(__always)
    func freeCachedObject(_ address: UInt, byteCount: Int?) -> Bool {
        // A sized free names its class; a size no class has (-1) never matches one.
        let expectedBytes = byteCount.map { SizeClasses.classBytes(size: $0, alignment: 1) ?? -1 } ?? 0
        return finished(objectFastPath.free(address, expectedBytes: expectedBytes))
    }

    /// `freeCachedObject` (unsized) for `deallocate`, which loaded the address's state byte.
    @inlinable @inline(__always)
    func freeCachedObject(_ address: UInt, offset: UInt, state: UInt8) -> Bool {
        finished(objectFastPath.free(address, offset: offset, state: state))
    }

    /// Whether a lock-free free is done (an emptied slab handed to the heap's decision first).
    @inlinable @inline(__always)
    func finished(_ free: ObjectFastPath.Free) -> Bool {
        switch free {
        case .done: return true
        case .notDone: return false
        case .slabEmptied(let slab):
            objectSlabEmptied(slab)
            return true
        }
    }

    /// A lock-free free emptied a slab that is not its class's current one: keep it as the
    /// spare, make it current or give it back, holding the calling thread's heap exclusively.
    /// The malloc library calls it inside its reentry guard (handing a slab back takes locks).
    @usableFromInline @inline(never)
    package func objectSlabEmptied(_ slab: UnsafeMutablePointer<SlabDescriptor>) {
        guard let slabs, let cache = cacheFastPath.currentThreadCache() else { return }
        cache.pointee.lock.locked { _ in
            guard let heap = cache.pointee.objectHeap?.assumingMemoryBound(to: SlabHeap.self),
                  // A drainer may have given it back in between.
                  slab.pointee.owner.load(ordering: .relaxed) == SlabHeap.id(heap), slab.pointee.isEmpty
            else { return }
            slabs.emptied(slab, heap: heap, backend: self)
        }
    }

    /// `objectSlabEmptied` for the malloc library, which holds the slab as a raw pointer.
    package func objectSlabEmptied(_ slab: UnsafeMutableRawPointer) {
        objectSlabEmptied(slab.assumingMemoryBound(to: SlabDescriptor.self))
    }

    /// The C object fast path's constants for the malloc library's entry points, or nil when
    /// this pool's objects take the Swift paths (it scrubs, counts sites or has no caches).
    package var objectPathForC: UnsafeMutableRawPointer? { objectsInline ? UnsafeMutableRawPointer(objectFastPath.path) : nil }

    // MARK: Out of line

    /// The object path of a request: nil when the request is not for an object.
    func objectAllocation(byteCount: Int, alignment: Int, mobility: Mobility) -> Result<UnsafeMutableRawPointer, PoolError>? {
        guard let slabs, mobility == .unmovable, byteCount > 0, alignment > 0, alignment & (alignment - 1) == 0,
              let classBytes = SizeClasses.classBytes(size: byteCount, alignment: alignment)
        else { return nil }
        let classIndex = SizeClasses.index(classBytes: classBytes)
        guard let info = slabs.classes[classIndex] else { return nil }
        if isForkedChild { return .failure(.unavailableAfterFork(pool: name)) }
        // Twice at most: the second turn only when the heap that asked for the slab is gone.
        for _ in 0..<2 {
            let found = withObjectHeap { heap -> (UInt?, UInt) in
                (slabs.allocate(classIndex: classIndex, heap: heap, backend: self), SlabHeap.id(heap))
            }
            if let address = found.0 { return .success(UnsafeMutableRawPointer(bitPattern: address).unsafelyUnwrapped) }
            // A new slab, made without holding the heap: the pool's pressure steps may drain it.
            switch makeSlab(info, classIndex: classIndex, owner: found.1) {
            case .success(let slab):
                // Installed and taken from in one hold of the heap: a drainer in between would
                // give the still-empty slab back.
                let address = withObjectHeap { heap -> UInt? in
                    guard slab.pointee.owner.load(ordering: .relaxed) == SlabHeap.id(heap) else { return nil }
                    slabs.install(slab, heap: heap)
                    return PoolSlabs.take(classIndex: classIndex, heap: heap)
                }
                if let address { return .success(UnsafeMutableRawPointer(bitPattern: address).unsafelyUnwrapped) }
                // Invariant: a slab no heap installed is owned by no one and still empty.
                assert(slab.pointee.isEmpty, "an uninstalled slab has objects in use")
                releaseSlab(slab)
            case .failure(let error):
                return .failure(error)
            }
        }
        return .failure(exhaustedForObject(byteCount: byteCount, alignment: alignment))
    }

    /// Runs `body` with the calling thread's heap held exclusively: its own (under its cache's
    /// lock, which drainers take too), or the pool's shared heap for a thread without a cache.
    func withObjectHeap<R: Sendable>(_ body: (UnsafeMutablePointer<SlabHeap>) -> R) -> R {
        // Invariant: only pools that serve objects get here.
        let slabs = self.slabs.unsafelyUnwrapped
        if let caches, let cache = caches.threadCacheOrCreate(backend: self) {
            return cache.pointee.lock.locked { _ in
                if cache.pointee.objectHeap == nil {
                    // Invariant: the cache reserved room for a heap (ThreadCache.objectHeapReserve).
                    assert(SlabHeap.requiredBytes <= ThreadCache.objectHeapReserve, "the thread cache's heap room is too small")
                    cache.pointee.objectHeap = UnsafeMutableRawPointer(SlabHeap.initialize(at: cache.pointee.objectHeapStorage))
                }
                return body(cache.pointee.objectHeap.unsafelyUnwrapped.assumingMemoryBound(to: SlabHeap.self))
            }
        }
        return slabs.withSharedHeap(body)
    }

    /// A buddy block made a slab of `info`'s class, owned by `owner` (through the whole
    /// pressure ladder when the pool is short).
    private func makeSlab(_ info: SlabClass, classIndex: Int, owner: UInt) -> Result<UnsafeMutablePointer<SlabDescriptor>, PoolError> {
        var knownZero = false
        let block = blockAllocation(order: info.order, alignmentRaised: false, mobility: .unmovable, byteCount: info.slabBytes,
                                    alignment: 1, knownZero: &knownZero)
        guard case .success(let pointer) = block else {
            if case .failure(let error) = block { return .failure(error) }
            return .failure(exhaustedForObject(byteCount: info.objectBytes, alignment: 1))
        }
        let base = UInt(bitPattern: pointer)
        let made = core.locked { core -> UnsafeMutablePointer<SlabDescriptor>? in
            guard case .head(let location, _) = core.arena.lookup(base), let (region, superblock) = regionOf(slot: location.slot, core: core),
                  let table = region.slabTables.tableOrCreate(superblock: superblock)
            else { return nil }
            let offset = Int(base - region.superblockBase(superblock))
            let slab = table + (offset >> region.slabTables.unitShift)
            slab.pointee.start(base: base, order: info.order, classIndex: classIndex, objectBytes: info.objectBytes,
                               objectCount: info.objectCount, owner: owner)
            // Interior bytes first, the head last: a reader that sees the slab tag finds a started descriptor.
            for inner in 1..<(1 << info.order) {
                core.arena.state(slot: location.slot, offset: location.blockOffset + inner).pointee.store(
                    BlockState.Tag.slabInterior.byte(order: info.order), ordering: .relaxed)
            }
            core.arena.state(slot: location.slot, offset: location.blockOffset).pointee.store(
                BlockState.Tag.slab.byte(order: info.order), ordering: .releasing)
            return slab
        }
        guard let made else {
            deallocate(pointer)
            return .failure(.system(SystemError(.insufficientMemory, call: "mmap(a slab table of pool \(name))",
                                                advice: "the object layer could not map the descriptors of a superblock")))
        }
        return .success(made)
    }

    /// The region and superblock index of an attached slot: own, or the lender's for a loan.
    func regionOf(slot: Int, core: borrowing PoolCore) -> (ManagedRegion, Int)? {
        if own.contains(slot: slot) { return own.location(slot: slot) }
        guard let loan = core.borrowed[slot] else { return nil }
        return (loan.region, loan.superblock)
    }

    private func exhaustedForObject(byteCount: Int, alignment: Int) -> PoolError {
        let threadCached = caches?.census(byThread: false).cachedBytes ?? 0
        return .exhausted(core.locked { core in
            core.counters.failures += 1
            return Exhaustion(
                pool: name, requestedBytes: byteCount, alignment: alignment, mobility: .unmovable,
                managedBytes: core.managedBytes, freeBytes: core.arena.freeBytes,
                largestFreeBlockBytes: core.arena.largestFreeOrder.map { geometry.blockSize(order: $0) } ?? 0,
                cachedBytes: max(0, threadCached + core.cachedRunBytes), drainFailureErrno: 0)
        })
    }
}

extension MemoryPool: SlabBackend {
    /// An empty slab's block back to the buddy allocator: state bytes as a plain allocated block
    /// again, the descriptor cleared, then freed.
    package func releaseSlab(_ slab: UnsafeMutablePointer<SlabDescriptor>) {
        let base = slab.pointee.base
        let order = slab.pointee.order
        let returns = core.locked { core -> [Loan] in
            guard case .head(let location, let state) = core.arena.lookup(base), state.kind == .slab else {
                // Invariant: a live descriptor's base is the head of its slab block.
                preconditionFailure("BuddyPools: pool '\(name)': slab at 0x\(String(base, radix: 16)) has state \(core.arena.lookup(base))")
            }
            for inner in 1..<(1 << order) {
                core.arena.state(slot: location.slot, offset: location.blockOffset + inner).pointee.store(0, ordering: .relaxed)
            }
            core.arena.state(slot: location.slot, offset: location.blockOffset).pointee.store(
                BlockState.Tag.allocatedUnmovable.byte(order: order), ordering: .relaxed)
            slab.pointee.owner.store(0, ordering: .relaxed)
            slab.pointee.base = 0
            core.freeBlock(location, mobility: .unmovable)
            core.counters.deallocations += 1
            return core.takePendingReturns()
        }
        deliverReturns(returns)
    }
}

// MARK: Checked frees, validation and draining of objects

/// What an address is to the object layer.
enum ObjectLookup {
    /// Not in a slab of this pool: the block paths answer.
    case notObject
    case object(UnsafeMutablePointer<SlabDescriptor>, index: Int)
    case problem(DeallocationProblem)
}

extension MemoryPool {
    /// Finds the slab and object of `address` in any region of the pool (own or borrowed).
    func objectLookup(_ address: UInt) -> ObjectLookup {
        guard objectsServed else { return .notObject }
        let region: ManagedRegion
        if let value = objectFastPath.stateByte(at: address) {
            // The first region, without a search: most slow frees are blocks, told apart here
            // by the tag's raw value (BlockState.kind is a switch over every tag).
            let tag = value &>> 4
            guard tag == BlockState.Tag.slab.rawValue || tag == BlockState.Tag.slabInterior.rawValue else { return .notObject }
            region = managedRegions[0]
        } else if let own = managedRegions.first(where: { $0.contains(address) }) {
            region = own
        } else if let lent = core.locked({ core in core.borrowed.values.first { $0.region.contains(address) }?.region }) {
            region = lent
        } else {
            return .notObject
        }
        let offset = Int(address &- region.base)
        let value = BlockState(rawValue: region.states[offset >> geometry.minBlockShift].load(ordering: .relaxed))
        guard value.kind == .slab || value.kind == .slabInterior else { return .notObject }
        let superblock = offset >> geometry.superblockShift
        // Another pool's superblock: the block path names the owner.
        guard region.owner(superblock: superblock) == id else { return .notObject }
        let head = address & ~UInt((geometry.minBlockSize << value.order) - 1)
        guard let slab = region.slabTables.descriptor(superblock: superblock, offsetInSuperblock: Int(head - region.superblockBase(superblock))),
              slab.pointee.base == head
        else { return .problem(.corruptedMetadata(value.rawValue)) }
        guard let index = SlabDescriptor.objectIndex(of: address, in: slab) else {
            let bytes = slab.pointee.objectBytes
            let inside = Int(address - head) / bytes
            // Past the last object is the slab's unused tail: inside no object.
            let start = inside < slab.pointee.objectCount ? head + UInt(inside * bytes) : nil
            return .problem(.interior(blockStart: start, blockBytes: bytes))
        }
        return .object(slab, index: index)
    }

    /// Whether a sized free names a size this object's class serves (for some alignment).
    func objectSizeMatches(_ byteCount: Int, objectBytes: Int) -> Bool {
        guard byteCount > 0 else { return false }
        var alignment = 1
        while alignment <= SizeClasses.maxAlignment {
            if SizeClasses.classBytes(size: byteCount, alignment: alignment) == objectBytes { return true }
            alignment <<= 1
        }
        return false
    }

    /// The checked free of an object; a bad one stops the process.
    func freeObjectSlowly(_ slab: UnsafeMutablePointer<SlabDescriptor>, index: Int, address: UInt, byteCount: Int?) {
        let objectBytes = slab.pointee.objectBytes
        if let byteCount, !objectSizeMatches(byteCount, objectBytes: objectBytes) {
            badDeallocation(address, .wrongSize(given: byteCount, allocatedBytes: objectBytes))
        }
        var result = ObjectFree.freed
        if let caches, let slabs, let cache = caches.currentThreadCache(), let raw = cache.pointee.objectHeap,
           slab.pointee.owner.load(ordering: .relaxed) == UInt(bitPattern: raw) {
            result = cache.pointee.lock.locked { _ -> ObjectFree in
                let heap = raw.assumingMemoryBound(to: SlabHeap.self)
                let freed = PoolSlabs.free(slab, index: index, heapID: SlabHeap.id(heap))
                if freed == .slabEmpty { slabs.emptied(slab, heap: heap, backend: self) }
                return freed
            }
        } else {
            result = PoolSlabs.free(slab, index: index, heapID: 0)
        }
        if result == .doubleFree { badDeallocation(address, .doubleFree(blockBytes: objectBytes)) }
    }

    /// `validate` for objects: nil when the object is live (and, with `byteCount`, of its class).
    func objectProblem(_ slab: UnsafeMutablePointer<SlabDescriptor>, index: Int, byteCount: Int?) -> DeallocationProblem? {
        let word = index >> 6, bit: UInt64 = 1 << UInt64(index & 63)
        let available = slab.pointee.freeBits(word).pointee.load(ordering: .relaxed) | slab.pointee.remoteBits(word).pointee.load(ordering: .relaxed)
        if available & bit != 0 { return .doubleFree(blockBytes: slab.pointee.objectBytes) }
        if let byteCount, !objectSizeMatches(byteCount, objectBytes: slab.pointee.objectBytes) {
            return .wrongSize(given: byteCount, allocatedBytes: slab.pointee.objectBytes)
        }
        return nil
    }

    /// Empties a thread's heap for the caches (a drain, or the thread's exit).
    package func drainObjectHeap(_ heap: UnsafeMutableRawPointer, retiring: Bool) -> Int {
        slabs?.drain(heap: heap.assumingMemoryBound(to: SlabHeap.self), retiring: retiring, backend: self) ?? 0
    }
}

// MARK: Statistics

/// One size class, like a line of /proc/slabinfo.
public struct SlabClassStatistics: Sendable, Codable, Equatable {
    public var objectBytes: Int
    public var objectsInUse: Int
    public var objectsTotal: Int
    public var slabs: Int
    public var slabBytes: Int
    /// Slabs with no object in use (kept for reuse; they count as cached, not used).
    public var emptySlabs: Int
}

extension MemoryPool {
    /// Every live slab of the pool's attached superblocks, by class (pool lock held). Exact when
    /// no call is in flight.
    func slabCensus(_ core: borrowing PoolCore) -> [SlabClassStatistics] {
        guard let slabs else { return [] }
        var rows = [SlabClassStatistics?](repeating: nil, count: SizeClasses.count)
        for slot in 0..<core.arena.slotCapacity where core.arena.isAttached(slot: slot) {
            guard let (region, superblock) = regionOf(slot: slot, core: core),
                  let table = region.slabTables.table(superblock: superblock) else { continue }
            let start = region.superblockBase(superblock)
            for unit in 0..<region.slabTables.units {
                let slab = table + unit
                guard slab.pointee.base == start + UInt(unit << region.slabTables.unitShift) else { continue }
                let classIndex = slab.pointee.classIndex
                let inUse = slab.pointee.objectsInUse
                var row = rows[classIndex] ?? SlabClassStatistics(
                    objectBytes: slab.pointee.objectBytes, objectsInUse: 0, objectsTotal: 0, slabs: 0, slabBytes: 0, emptySlabs: 0)
                row.objectsInUse += inUse
                row.objectsTotal += slab.pointee.objectCount
                row.slabs += 1
                row.slabBytes += slabs.classes[classIndex]?.slabBytes ?? 0
                if inUse == 0 { row.emptySlabs += 1 }
                rows[classIndex] = row
            }
        }
        return rows.compactMap { $0 }
    }

    /// Slab tables of the pool's own regions (borrowed superblocks' count with their lenders),
    /// and the shared heap.
    var slabMetadataBytes: Int {
        guard objectsServed else { return 0 }
        return managedRegions.reduce(0) { $0 + $1.slabTables.metadataBytes }
    }

    /// `/proc/slabinfo` for this pool: one line per class with slabs.
    public var slabReport: String {
        let rows = statistics.slabs
        var lines = ["# pool \(name): objects below a page (SizeClasses)",
                     "# class  in-use   total    slabs  slab-bytes  empty"]
        for row in rows {
            lines.append(String(row.objectBytes).leftPadded(7) + String(row.objectsInUse).leftPadded(9) + String(row.objectsTotal).leftPadded(8)
                + String(row.slabs).leftPadded(9) + String(row.slabBytes).leftPadded(12) + String(row.emptySlabs).leftPadded(7))
        }
        if rows.isEmpty { lines.append("# no slabs") }
        return lines.joined(separator: "\n")
    }
}

// MARK: What a request costs

extension MemoryPool {
    /// The bytes a request would hold if served: its object class, its buddy block (its kept
    /// minimum blocks in a `fit=exact` pool) or its run of superblocks; nil when no pool could
    /// serve it (a bad size or alignment).
    public func heldBytes(forByteCount byteCount: Int, alignment: Int = 16, mobility: Mobility = .unmovable) -> Int? {
        guard byteCount > 0, alignment > 0, alignment & (alignment - 1) == 0 else { return nil }
        if objectsServed, mobility == .unmovable, let classBytes = SizeClasses.classBytes(size: byteCount, alignment: alignment),
           slabs?.classes[SizeClasses.index(classBytes: classBytes)] != nil {
            return classBytes
        }
        // A run longer than the pool could ever hold is no answer.
        if geometry.order(byteCount: byteCount, alignment: alignment) == nil, geometry.superblockCount(byteCount: byteCount) > superblockLimit { return nil }
        return blockBytes(forRequest: byteCount, alignment: alignment, mobility: mobility, trims: true)
    }

    /// The slab size this pool cuts objects of `objectBytes` (a class size) from, or nil.
    public func slabBytes(forObjectBytes objectBytes: Int) -> Int? {
        guard let slabs, (1...SizeClasses.maxObjectBytes).contains(objectBytes),
              SizeClasses.classBytes(size: objectBytes, alignment: 1) == objectBytes else { return nil }
        return slabs.classes[SizeClasses.index(classBytes: objectBytes)]?.slabBytes
    }
}
