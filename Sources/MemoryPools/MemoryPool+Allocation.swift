import BuddyCaches
import BuddyConfig
import BuddyCore
import BuddySystem
import Synchronization

// Allocation: the inlinable fast path (a cached unmovable block), the slow path through the
// pool lock, runs of superblocks, and the pressure ladder (drain caches, recall loans, borrow,
// reclaim) tried before a request is reported exhausted. Also the pool as the caches' backend.

extension MemoryPool {
    /// Allocates `byteCount` bytes aligned to `alignment` (a power of two).
    ///
    /// Requests up to a superblock get one buddy block (size rounded up to a power of two);
    /// larger ones a run of contiguous superblocks. Small unmovable requests are served from
    /// the calling thread's magazine without a lock or an atomic read-modify-write.
    /// - Throws: `PoolError.exhausted` when nothing fits after draining caches (and, for pools
    ///   that may, after recalling loans, borrowing and reclaiming); the pool stays usable.
    ///
    /// `file` and `line` name the caller for allocation accounting (see `topAllocationSites`);
    /// they cost nothing when the pool does not count by site.
    ///
    /// Inlinable with its cached path (and `deallocate`): in buddypools-bench fixed-4K that took
    /// a pair, its loop included, from 205 to 152 instructions (callgrind) and from 9.9-15 to 9.2-9.4 ns.
    @inlinable
    public func allocate(
        byteCount: Int, alignment: Int = 16, mobility: Mobility = .unmovable, file: StaticString = #fileID, line: UInt = #line
    ) throws(PoolError) -> UnsafeMutableRawPointer {
        if let cached = allocateFromCaches(byteCount: byteCount, alignment: alignment, mobility: mobility) { return cached }
        return try allocateOutOfLine(byteCount: byteCount, alignment: alignment, mobility: mobility, file: file, line: line)
    }

    /// The lock-free part of `allocate` alone: an object from the thread's heap or a block from
    /// its magazine, or nil (then `tryAllocate` does the rest, the pressure ladder once). For the
    /// C API, which wants the reason of a failure without a throw.
    @inlinable @inline(__always)
    package func allocateFromCaches(byteCount: Int, alignment: Int, mobility: Mobility = .unmovable) -> UnsafeMutableRawPointer? {
        if isObjectRequest(byteCount: byteCount, alignment: alignment, mobility: mobility) {
            return cachedObject(byteCount: byteCount, alignment: alignment)
        }
        return cachedAllocation(byteCount: byteCount, alignment: alignment, mobility: mobility)
    }

    /// Everything but the fast path of `allocate`, out of line: the throw and the accounting
    /// would otherwise give the fast path a stack frame and register spills (about 20
    /// instructions of a 4 KiB pair, counted with callgrind).
    @usableFromInline @inline(never)
    func allocateOutOfLine(
        byteCount: Int, alignment: Int, mobility: Mobility, file: StaticString, line: UInt
    ) throws(PoolError) -> UnsafeMutableRawPointer {
        // A kept run or superblock first, lock-free (2 MiB and larger, unmovable), before the
        // frame the rest needs (its Result is large: 88 instructions a 16 MiB request, callgrind).
        if mobility == .unmovable, let run = keptRun(byteCount: byteCount, alignment: alignment) { return run }
        return try allocateRest(byteCount: byteCount, alignment: alignment, mobility: mobility, file: file, line: line)
    }

    @inline(never)
    private func allocateRest(
        byteCount: Int, alignment: Int, mobility: Mobility, file: StaticString, line: UInt
    ) throws(PoolError) -> UnsafeMutableRawPointer {
        try allocationResult(byteCount: byteCount, alignment: alignment, mobility: mobility, file: file, line: line).get()
    }

    /// `allocate` without the Swift error machinery: a failure is returned, not thrown, so no
    /// `swift_willThrow` hook runs (a test harness or a debugger may install one that allocates).
    public func tryAllocate(
        byteCount: Int, alignment: Int = 16, mobility: Mobility = .unmovable, file: StaticString = #fileID, line: UInt = #line
    ) -> Result<UnsafeMutableRawPointer, PoolError> {
        allocationResult(byteCount: byteCount, alignment: alignment, mobility: mobility, file: file, line: line)
    }

    /// The body of `tryAllocate`, inlined into it and into `allocateOutOfLine` (a call between
    /// them passed the large Result through memory: 36 instructions of a 2 MiB pair, callgrind).
    @inline(__always)
    private func allocationResult(
        byteCount: Int, alignment: Int, mobility: Mobility, file: StaticString, line: UInt
    ) -> Result<UnsafeMutableRawPointer, PoolError> {
        let result: Result<UnsafeMutableRawPointer, PoolError>
        var knownZero = false
        if isObjectRequest(byteCount: byteCount, alignment: alignment, mobility: mobility),
           let object = objectAllocation(byteCount: byteCount, alignment: alignment, mobility: mobility) {
            result = object
        } else if let cached = cachedAllocation(byteCount: byteCount, alignment: alignment, mobility: mobility) {
            result = .success(cached)
        } else {
            result = allocateSlowly(byteCount: byteCount, alignment: alignment, mobility: mobility, knownZero: &knownZero)
        }
        if scrubs, case .success(let pointer) = result {
            prepareHandedOut(pointer, byteCount: blockBytes(forRequest: byteCount, alignment: alignment, mobility: mobility, trims: true),
                             knownZero: knownZero)
        }
        if countsSites, case .success(let pointer) = result {
            noteAllocated(pointer, held: blockBytes(forRequest: byteCount, alignment: alignment, mobility: mobility, trims: true), file: file, line: line)
        }
        return result
    }

    /// Records a block for allocation accounting, with the bytes it really holds.
    @inline(never)
    func noteAllocated(_ pointer: UnsafeMutableRawPointer, held: Int, file: StaticString, line: UInt) {
        accounting?.record(UInt(bitPattern: pointer), bytes: held, site: AllocationSite(file: file, line: line))
    }

    /// The fast path: a small unmovable request from this thread's magazine, with any alignment
    /// the block already has (a buddy block of order k is aligned to its own size, so a page-
    /// aligned 4 KiB request is as fast as any other).
    @inlinable @inline(__always)
    func cachedAllocation(byteCount: Int, alignment: Int, mobility: Mobility) -> UnsafeMutableRawPointer? {
        let fast = cacheFastPath
        // 1 ... maxCachedBytes as one unsigned comparison (0 and negatives wrap to the top).
        guard mobility == .unmovable, UInt(bitPattern: byteCount &- 1) < UInt(bitPattern: fast.maxCachedBytes),
              alignment > 0, alignment & (alignment &- 1) == 0
        else { return nil }
        let order = fast.order(byteCount: byteCount)
        // At most the block's own size: alignment >> log2(block) is 0 or 1.
        guard alignment &>> (fast.minBlockShift &+ order) <= 1, let address = fast.pop(order: order) else { return nil }
        // Invariant: cached addresses are block starts inside a mapped region, never 0.
        assert(address != 0, "a cached block at address 0")
        return UnsafeMutableRawPointer(bitPattern: address).unsafelyUnwrapped
    }

    @inline(never)
    /// `knownZero` is set when the block comes from memory no free has touched since the kernel
    /// zeroed it (what `zero=alloc` and `poison=1` pools need not clear or check).
    private func allocateSlowly(
        byteCount: Int, alignment: Int, mobility: Mobility, knownZero: inout Bool
    ) -> Result<UnsafeMutableRawPointer, PoolError> {
        guard byteCount > 0 else { return .failure(invalidRequest(byteCount, alignment, .zeroOrNegativeSize)) }
        guard alignment > 0, alignment & (alignment &- 1) == 0 else { return .failure(invalidRequest(byteCount, alignment, .alignmentNotPowerOfTwo)) }
        guard let (order, raised) = geometry.order(byteCount: byteCount, alignment: alignment) else {
            if mobility == .unmovable, !isForkedChild, let address = keptRun(count: geometry.superblockCount(byteCount: byteCount), alignment: alignment, raised: true) {
                return .success(address)
            }
            return contiguousAllocation(byteCount: byteCount, alignment: alignment, boundary: 0, mobility: mobility, knownZero: &knownZero)
        }
        if let blocks = trimmedBlocks(byteCount: byteCount, order: order, mobility: mobility) {
            return allocation(byteCount: byteCount, alignment: alignment, mobility: mobility, superblocksNeeded: 1, avoidsSteal: avoidsSteals,
                              knownZero: &knownZero) { core, allowSteal in
                core.allocateTrimmed(blocks: blocks, order: order, alignmentRaised: raised, allowSteal: allowSteal)
            }
        }
        if order == geometry.maxOrder, mobility == .unmovable, !isForkedChild, let address = keptRun(count: 1, alignment: 0, raised: raised) {
            return .success(address)
        }
        if mobility == .unmovable, !raised, order <= cacheFastPath.maxOrder, !isForkedChild, let caches {
            if let address = cacheFastPath.pop(order: order) ?? caches.refillAndPop(order: order, backend: self) {
                return .success(UnsafeMutableRawPointer(bitPattern: address).unsafelyUnwrapped)
            }
        }
        return blockAllocation(order: order, alignmentRaised: raised, mobility: mobility, byteCount: byteCount, alignment: alignment,
                               knownZero: &knownZero)
    }

    /// The minimum blocks an exact-size allocation of the request keeps (`fit=exact`, unmovable,
    /// fewer than its power-of-two block of `order` holds), or nil for a whole block.
    func trimmedBlocks(byteCount: Int, order: Int, mobility: Mobility) -> Int? {
        guard fitsExactly, mobility == .unmovable, order > 0 else { return nil }
        // Requests with an order are at most a superblock: the sum cannot overflow.
        let blocks = (byteCount &+ geometry.minBlockSize &- 1) &>> geometry.minBlockShift
        return blocks < 1 &<< order ? blocks : nil
    }

    /// Whether some own region holds an address aligned to `alignment` (above a superblock) with
    /// `superblocks` superblocks after it: otherwise no amount of freeing could serve the request.
    private func alignmentFits(_ alignment: Int, superblocks: Int) -> Bool {
        let mask = UInt(alignment) - 1
        let bytes = UInt(superblocks) << UInt(geometry.superblockShift)
        return managedRegions.contains { region in
            let (raised, overflow) = region.base.addingReportingOverflow(mask)
            guard !overflow else { return false }
            let start = raised & ~mask
            let end = region.base + UInt(region.byteCount)
            return start < end && end - start >= bytes
        }
    }

    /// A run of contiguous memory that starts on `alignment` and does not cross a multiple of
    /// `boundary` (0: no boundary), e.g. a DMA buffer whose upper 32 address bits must not change.
    /// Runs never span two regions; in a 1 GiB-page pool a run inside one 1 GiB page is also
    /// physically contiguous.
    public func allocateContiguous(
        byteCount: Int, alignment: Int = 4096, boundary: Int = 0, mobility: Mobility = .unmovable,
        file: StaticString = #fileID, line: UInt = #line
    ) throws(PoolError) -> UnsafeMutableRawPointer {
        var knownZero = false
        let pointer = try contiguousAllocation(
            byteCount: byteCount, alignment: alignment, boundary: boundary, mobility: mobility, knownZero: &knownZero).get()
        if scrubs {
            prepareHandedOut(pointer, byteCount: blockBytes(forRequest: byteCount, alignment: alignment, mobility: mobility, trims: false),
                             knownZero: knownZero)
        }
        if countsSites {
            noteAllocated(pointer, held: blockBytes(forRequest: byteCount, alignment: alignment, mobility: mobility, trims: false), file: file, line: line)
        }
        return pointer
    }

    private func contiguousAllocation(
        byteCount: Int, alignment: Int, boundary: Int, mobility: Mobility, knownZero: inout Bool
    ) -> Result<UnsafeMutableRawPointer, PoolError> {
        guard byteCount > 0 else { return .failure(invalidRequest(byteCount, alignment, .zeroOrNegativeSize)) }
        guard alignment > 0, alignment & (alignment &- 1) == 0, boundary >= 0, boundary & (boundary &- 1) == 0 else {
            return .failure(invalidRequest(byteCount, alignment, .alignmentNotPowerOfTwo))
        }
        if let (order, raised) = geometry.order(byteCount: byteCount, alignment: alignment) {
            // A buddy block is aligned to its size, so it crosses no boundary at least as large.
            guard boundary == 0 || boundary >= geometry.blockSize(order: order) else {
                return .failure(invalidRequest(byteCount, boundary, .largerThanPool))
            }
            return blockAllocation(order: order, alignmentRaised: raised, mobility: mobility, byteCount: byteCount, alignment: alignment,
                                   knownZero: &knownZero)
        }
        // Every bound before any arithmetic that could overflow: the count first (a superblock
        // count never overflows), then what it implies.
        let count = geometry.superblockCount(byteCount: byteCount)
        guard count <= superblockLimit else {
            return .failure(invalidRequest(byteCount, alignment, .largerThanPool))
        }
        guard boundary == 0 || boundary >> geometry.superblockShift >= count else {
            return .failure(invalidRequest(byteCount, boundary, .largerThanPool))
        }
        if alignment > geometry.superblockSize, !alignmentFits(alignment, superblocks: count) {
            return .failure(invalidRequest(byteCount, alignment, .alignmentUnsatisfiable))
        }
        // The closure is passed directly, not stored: a stored closure escapes and boxes its captures on the heap.
        return allocation(byteCount: byteCount, alignment: alignment, mobility: mobility, superblocksNeeded: count, avoidsSteal: false,
                          knownZero: &knownZero) { core, _ in
            core.allocateRun(count: count, alignment: alignment, boundary: boundary, mobility: mobility)
        }
    }

    func blockAllocation(
        order: Int, alignmentRaised: Bool, mobility: Mobility, byteCount: Int, alignment: Int, knownZero: inout Bool
    ) -> Result<UnsafeMutableRawPointer, PoolError> {
        // Unmovable and reclaimable blocks would rather a movable superblock were emptied than be
        // scattered into one: a movable superblock holding an unmovable block never compacts again.
        allocation(byteCount: byteCount, alignment: alignment, mobility: mobility, superblocksNeeded: 1,
                   avoidsSteal: mobility != .movable && avoidsSteals, knownZero: &knownZero) { core, allowSteal in
            core.allocateBlock(order: order, alignmentRaised: alignmentRaised, mobility: mobility, allowSteal: allowSteal)
        }
    }

    /// Tries under the lock (one acquisition when memory is there); under pressure drains caches,
    /// recalls and borrows superblocks, reclaims, and tries again after each step that freed
    /// something. With `avoidsSteal`, the first try refuses to take a block from another mobility's
    /// superblock; only after compaction has had its turn may it.
    private func allocation(
        byteCount: Int, alignment: Int, mobility: Mobility, superblocksNeeded: Int, avoidsSteal: Bool, knownZero: inout Bool,
        using attempt: (inout PoolCore, _ allowSteal: Bool) -> BuddyAllocation?
    ) -> Result<UnsafeMutableRawPointer, PoolError> {
        if isForkedChild { return .failure(.unavailableAfterFork(pool: name)) }
        let scrubs = self.scrubs
        func tryOnce(allowSteal: Bool = true) -> UnsafeMutableRawPointer? {
            let (pointer, zero) = core.locked { core -> (UnsafeMutableRawPointer?, Bool) in
                guard let block = attempt(&core, allowSteal) else { return (nil, false) }
                core.counters.allocations += 1
                // Only pools that scrub ask, and every superblock of a run must be untouched.
                let zero = scrubs && core.arena.isPristine(slot: block.location.slot)
                    && (1..<max(1, core.arena.runLength(slot: block.location.slot))).allSatisfy { core.arena.isPristine(slot: block.location.slot + $0) }
                return (UnsafeMutableRawPointer(bitPattern: block.address), zero)
            }
            if pointer != nil { knownZero = zero }
            return pointer
        }
        if let pointer = tryOnce(allowSteal: !avoidsSteal) { return .success(pointer) }
        if avoidsSteal {
            compact(superblocks: 1)
            if let pointer = tryOnce() { return .success(pointer) }
        }
        var drainFailure: SystemError?
        for step in PressureStep.inOrder where isAllowed(step) {
            guard relieve(step, superblocksNeeded: superblocksNeeded, byteCount: byteCount, drainFailure: &drainFailure) else { continue }
            if let pointer = tryOnce() { return .success(pointer) }
        }
        let threadCached = caches?.census(byThread: false).cachedBytes ?? 0
        let exhaustion = core.locked { core -> Exhaustion in
            let cached = threadCached + core.cachedRunBytes
            core.counters.failures += 1
            return Exhaustion(
                pool: name, requestedBytes: byteCount, alignment: alignment, mobility: mobility,
                managedBytes: core.managedBytes, freeBytes: core.arena.freeBytes,
                largestFreeBlockBytes: core.arena.largestFreeOrder.map { geometry.blockSize(order: $0) } ?? 0,
                cachedBytes: max(0, cached), drainFailureErrno: drainFailure?.errno ?? 0)
        }
        return .failure(.exhausted(exhaustion))
    }

    /// Whether unmovable and reclaimable requests compact before they steal from movable
    /// superblocks (pools that group and may compact inline).
    var avoidsSteals: Bool { configuration.mobilityGrouping && configuration.compaction && !configuration.locked }

    /// What a pool may do before it reports exhaustion, in order.
    enum PressureStep {
        /// Built once: `allCases` would allocate a new array on every exhaustion.
        static let inOrder: [PressureStep] = [.drainLocalCaches, .drainThreadCaches, .recallLoans, .borrow, .reclaim]

        /// Empty this thread's magazines, the depots and the empty slabs this thread and the
        /// shared object heap keep.
        case drainLocalCaches
        /// Empty other threads' magazines (membarrier per thread holding blocks).
        case drainThreadCaches
        /// Ask borrowers for free loaned superblocks back.
        case recallLoans
        /// Borrow free superblocks from lower-priority pools.
        case borrow
        /// Compact movable blocks and call shrinkers.
        case reclaim
    }

    /// Locked (realtime) pools never reclaim inline on the allocating thread; they borrow only
    /// from locked pools (`canBorrow`), whose superblocks are populated and locked and are
    /// cleared with a memset, into borrowing slots reserved at creation: no system call, no fault.
    private func isAllowed(_ step: PressureStep) -> Bool {
        switch step {
        case .drainLocalCaches: true
        case .drainThreadCaches: caches != nil
        case .recallLoans, .borrow: true
        case .reclaim: !configuration.locked
        }
    }

    /// Runs one step; true when it may have made room.
    private func relieve(_ step: PressureStep, superblocksNeeded: Int, byteCount: Int, drainFailure: inout SystemError?) -> Bool {
        switch step {
        case .drainLocalCaches:
            // The shared object heap's empty slabs are a cache too: each may hold a superblock.
            let freed = (caches?.drainLocal(backend: self) ?? 0) + releaseCachedRuns() + (slabs?.drainShared(backend: self) ?? 0)
            if freed > 0 { noteCacheDrain(freed) }
            return freed > 0
        case .drainThreadCaches:
            guard let drained = caches?.drainAllThreads(backend: self) else { return false }
            if drained.freedBytes > 0 { noteCacheDrain(drained.freedBytes) }
            drainFailure = drained.barrierFailure
            return drained.freedBytes > 0
        case .recallLoans:
            return recallLoans() > 0
        case .borrow:
            return borrow(superblocks: superblocksNeeded) > 0
        case .reclaim:
            return reclaim(bytes: byteCount, superblocks: superblocksNeeded) > 0
        }
    }

    private func noteCacheDrain(_ bytes: Int) {
        core.locked { $0.counters.cacheDrains += 1 }
        Diagnostics.report(.debug, DiagnosticEvent(.cacheDrain, .debug, subject: "pool \(name)", message: "drained \(formatBytes(bytes)) from caches under pressure", bytes: bytes))
    }

    private func invalidRequest(_ byteCount: Int, _ alignment: Int, _ reason: InvalidRequest.Reason) -> PoolError {
        .invalidRequest(InvalidRequest(pool: name, byteCount: byteCount, alignment: alignment, reason: reason))
    }
}

extension MemoryPool: CacheBackend {
    package func refillCache(order: Int, into entries: UnsafeMutablePointer<CachedBlock>, count: Int) -> Int {
        // When stealing would be needed, refill nothing: the uncached path compacts first.
        let allowSteal = !avoidsSteals
        return core.locked { core in
            var got = 0
            while got < count, let block = core.allocateBlock(order: order, alignmentRaised: false, mobility: .unmovable, allowSteal: allowSteal) {
                let state = core.arena.state(slot: block.location.slot, offset: block.location.blockOffset)
                state.pointee.store(BlockState.cached(order: order).rawValue, ordering: .relaxed)
                entries[got] = CachedBlock(address: block.address, state: state)
                got += 1
            }
            core.counters.cacheNetBlocks += got
            return got
        }
    }

    package func releaseCached(order: Int, from entries: UnsafeMutablePointer<CachedBlock>, count: Int) {
        let returns = core.locked { core -> [Loan] in
            for index in 0..<count {
                // Invariant: cached entries are heads of attached blocks in state `cached`.
                guard case .head(let location, let state) = core.arena.lookup(entries[index].address) else {
                    preconditionFailure("cached block 0x\(String(entries[index].address, radix: 16)) is not a block head")
                }
                assert(state.kind == .cached, "cached block 0x\(String(entries[index].address, radix: 16)) is \(state)")
                core.freeBlock(location, mobility: .unmovable)
            }
            core.counters.cacheNetBlocks -= count
            return core.takePendingReturns()
        }
        deliverReturns(returns)
    }

    /// Prepares the calling thread for realtime use of this pool: creates and touches its
    /// cache and runs every cached size through the fast and slow paths once, so later
    /// operations take no page fault on metadata or on first-use code.
    public func prepareCurrentThread() {
        guard !isForkedChild else { return }
        _ = caches?.threadCacheOrCreate(backend: self)
        let orders = caches.map { 0...$0.maxOrder } ?? 0...0
        for order in orders {
            if let pointer = try? allocate(byteCount: geometry.blockSize(order: order)) { deallocate(pointer) }
        }
        // The object path: the thread's heap, made now in its cache's (locked) mapping; a slab
        // made later takes the pool lock but no system call (a locked pool mapped its tables).
        for size in [24, SizeClasses.maxObjectBytes] {
            if let pointer = try? allocate(byteCount: size, alignment: 8) { deallocate(pointer) }
        }
        // The locked path, the checked-free path and statistics, once each.
        if let pointer = try? allocate(byteCount: geometry.minBlockSize, mobility: .movable) {
            _ = validate(pointer)
            deallocate(pointer, byteCount: geometry.minBlockSize)
        }
        _ = statistics
    }
}

extension MemoryPool {
    /// Returns every cached block (this thread's, other threads', the depots') to the buddy
    /// allocator, so statistics and fragmentation reflect only live allocations.
    public func drainCaches() {
        releaseCachedRuns()
        if let caches {
            caches.drainAllThreads(backend: self)
            caches.drainLocal(backend: self)
        }
        slabs?.drainShared(backend: self)
    }

    /// Takes back the caches of threads that have not needed them since the previous call (each
    /// call starts a new period), so memory idle threads hold can be lent, reclaimed and coalesced.
    /// A program whose threads go quiet calls it now and then, off its realtime threads (it drains
    /// other threads' caches, which costs a membarrier). Returns the bytes given back.
    @discardableResult
    public func releaseIdleCaches() -> Int {
        guard let caches else { return 0 }
        let before = caches.census(byThread: false).cachedBytes
        caches.releaseIdleCaches(backend: self)
        return max(0, before - caches.census(byThread: false).cachedBytes)
    }

    /// Frees the runs kept for reuse to the buddy allocator; returns their bytes.
    @discardableResult
    func releaseCachedRuns() -> Int {
        let (bytes, returns) = core.locked { core in (core.releaseCachedRuns(), core.takePendingReturns()) }
        deliverReturns(returns)
        return bytes
    }
}
