import BuddyCaches
import BuddyConfig
import BuddyCore
import BuddySystem
import Glibc
import Synchronization

// Reclaim: choosing superblocks to empty (the one score, `PoolCore.score`), relocation handlers
// and shrinkers, compaction, and `shrink(to:)` / `grow(to:)` with their system calls.

extension MemoryPool {
    // MARK: Candidates

    /// The cheapest superblocks to reclaim, cheapest first: wholly free ones, then those with
    /// the fewest movable and reclaimable bytes to move or drop. A superblock holding any
    /// unmovable block (cached blocks count as unmovable) is never a candidate; runs are not either.
    public func reclaimCandidates(count: Int) -> [SuperblockCandidate] {
        core.locked { core in candidates(core, count: max(0, count), compactableOnly: false) }
    }

    /// Every superblock the pool manages with its live bytes by mobility and free bytes (runs
    /// included), in slot order: what the tracker knows, like /proc/pagetypeinfo per block.
    public func superblockUsage() -> [SuperblockCandidate] {
        core.locked { core in core.scores }
    }

    func candidates(_ core: borrowing PoolCore, count: Int, compactableOnly: Bool) -> [SuperblockCandidate] {
        let eligible = core.scores.filter { compactableOnly ? $0.isCompactable : $0.isReclaimable }
        return Array(eligible.sorted(by: SuperblockCandidate.cheaperFirst).prefix(count))
    }

    // MARK: Handlers and shrinkers

    /// Lets compaction move raw-pointer movable blocks: the handler copies the bytes and updates
    /// every reference, or returns false to keep the block where it is. Called without the pool
    /// lock, from whichever thread compacts. Nil: raw movable blocks stay put.
    public func setRelocationHandler(_ handler: RelocationHandler?) {
        relocationHandler.locked { $0 = handler }
    }

    /// Registers a shrinker: asked, before a request fails, to free reclaimable allocations
    /// (with `deallocate`) and to return how many bytes it freed. Called without the pool lock.
    @discardableResult
    public func registerShrinker(_ shrink: @escaping @Sendable (ShrinkRequest) -> Int) -> ShrinkerRegistration {
        shrinkers.locked { list in
            list.nextID += 1
            list.entries.append((list.nextID, shrink))
            return ShrinkerRegistration(id: list.nextID)
        }
    }

    public func unregisterShrinker(_ registration: ShrinkerRegistration) {
        shrinkers.locked { list in list.entries.removeAll { $0.id == registration.id } }
    }

    /// Asks the shrinkers for `bytesWanted`; returns what they report freeing.
    func runShrinkers(bytesWanted: Int) -> Int {
        let list = shrinkers.locked { $0.entries }
        guard !list.isEmpty, bytesWanted > 0 else { return 0 }
        let ranges = core.locked { core in
            candidates(core, count: 8, compactableOnly: false).filter { $0.reclaimableBytes > 0 }.map {
                $0.baseAddress..<($0.baseAddress + UInt(geometry.superblockSize))
            }
        }
        var freed = 0
        var calls = 0
        for entry in list where freed < bytesWanted {
            freed += max(0, entry.shrink(ShrinkRequest(pool: name, bytesWanted: bytesWanted - freed, preferredRanges: ranges)))
            calls += 1
        }
        core.locked { core in
            core.counters.shrinkerCalls += calls
            core.counters.bytesReclaimed += freed
        }
        Diagnostics.report(.info, DiagnosticEvent(
            .shrinker, .info, subject: "pool \(name)", message: "shrinkers freed \(formatBytes(freed)) of \(formatBytes(bytesWanted)) asked", bytes: freed))
        return freed
    }

    /// The pressure step: compaction for whole superblocks (or a window of adjacent ones for a
    /// run), then shrinkers. Returns bytes made free.
    func reclaim(bytes: Int, superblocks: Int) -> Int {
        let wanted = max(bytes, superblocks << geometry.superblockShift)
        var freed = 0
        // Shrinkers can turn a superblock compactable (its reclaimable blocks gone), so compaction
        // gets another turn after them.
        for _ in 0..<3 where freed < wanted {
            if configuration.compaction {
                let report = superblocks > 1 ? compactRun(count: superblocks) : compact(superblocks: superblocks)
                freed += report.superblocksFreed << geometry.superblockShift
                if freed >= wanted { break }
            }
            let dropped = runShrinkers(bytesWanted: wanted - freed)
            guard dropped > 0 else { break }
            freed += dropped
        }
        return freed
    }

    // MARK: Compaction

    /// Moves movable blocks out of the cheapest superblocks until `superblocks` of them are
    /// wholly free (or nothing more can move). Handle-backed blocks move under the pool lock
    /// unless pinned; raw blocks move only through the relocation handler. Unmovable blocks
    /// never move. Caches are drained first, so their blocks do not hold superblocks.
    @discardableResult
    public func compact(superblocks wanted: Int = 1) -> CompactionReport {
        evacuate { core in
            var chosen: [Int] = []
            var room = movableRoom(core)
            let targets = candidates(core, count: core.arena.slotCapacity, compactableOnly: true)
                .filter { $0.freeBytes < geometry.superblockSize && $0.movableBytes > 0 }
            for target in targets where chosen.count < wanted {
                // Moving only pays when the blocks fit in superblocks already in use; otherwise a
                // free superblock would be used up to free another.
                room -= target.freeBytes
                guard room >= target.movableBytes else { break }
                room -= target.movableBytes
                chosen.append(target.slot)
            }
            return chosen
        }
    }

    /// Empties the cheapest window of `count` address-adjacent superblocks (each wholly free or
    /// holding only movable blocks), so a run of that size fits. Blocks may move into free
    /// superblocks elsewhere: the window, not the count of free superblocks, is what matters.
    @discardableResult
    public func compactRun(count: Int) -> CompactionReport {
        // A window of no superblocks, or of more than the pool has, cannot be emptied.
        guard count >= 1, count <= superblockLimit else { return CompactionReport() }
        return evacuate { core in
            let arena = core.arena
            let superblock = UInt(geometry.superblockSize)
            let scores = (0..<arena.slotCapacity).map { arena.isAttached(slot: $0) ? core.score(slot: $0) : nil }
            var best: (cost: Int, first: Int)?
            for first in 0...max(0, arena.slotCapacity - count) where first + count <= arena.slotCapacity {
                var cost = 0
                var usable = true
                for slot in first..<(first + count) {
                    guard let score = scores[slot], score.isCompactable,
                          arena.baseAddress(slot: slot) == arena.baseAddress(slot: first) + UInt(slot - first) * superblock
                    else {
                        usable = false
                        break
                    }
                    cost += score.cost
                }
                if usable, cost > 0, best == nil || cost < best!.cost { best = (cost, first) }
            }
            guard let best else { return [] }
            let window = Array(best.first..<(best.first + count))
            // Room outside the window: free bytes anywhere else, free superblocks included.
            let outside = arena.freeBytes - window.reduce(0) { $0 + arena.freeBytes(slot: $1) }
            return outside >= best.cost ? window.filter { !arena.isWhollyFree(slot: $0) } : []
        }
    }

    /// Quarantines the chosen superblocks, moves their movable blocks elsewhere (handles under the
    /// lock, raw blocks through the relocation handler outside it), and reports.
    private func evacuate(choose: (borrowing PoolCore) -> [Int]) -> CompactionReport {
        drainCaches()
        let handler = relocationHandler.locked { $0 }
        var report = CompactionReport()
        var external: [(Relocation, source: BlockLocation, destination: BlockLocation)] = []
        var processed: [Int] = []
        core.locked { core in
            processed = choose(core)
            // All at once, so nothing moved out of one lands in another.
            for slot in processed { core.arena.quarantine(slot: slot) }
            for slot in processed {
                var blocks: [(BlockLocation, BlockState)] = []
                core.arena.forEachBlock(inSlot: slot) { location, state in
                    if state.isAllocated { blocks.append((location, state)) }
                }
                for (location, state) in blocks {
                    guard case .allocated(let mobilityClass, let raised) = state.kind, mobilityClass == Mobility.movable.rawValue else {
                        report.blocksSkipped += 1
                        continue
                    }
                    let source = core.arena.address(of: location)
                    let size = geometry.blockSize(order: location.order)
                    if let index = handles.handleAtAddress[source] {
                        guard let saved = handles.beginMove(index) else {
                            report.blocksSkipped += 1
                            continue
                        }
                        guard let destination = core.allocateBlock(order: location.order, alignmentRaised: raised, mobility: .movable) else {
                            handles.finishMove(index, from: source, to: source, state: saved)
                            report.blocksSkipped += 1
                            continue
                        }
                        // Invariant: both addresses are blocks of `size` bytes in mapped pool memory.
                        UnsafeMutableRawPointer(bitPattern: destination.address)!.copyMemory(
                            from: UnsafeRawPointer(bitPattern: source)!, byteCount: size)
                        handles.finishMove(index, from: source, to: destination.address, state: saved)
                        accounting?.move(from: source, to: destination.address)
                        // What stays behind is freed memory: scrubbed like any free.
                        if scrubs { scrubFreed(source, byteCount: size) }
                        core.freeBlock(location, mobility: .movable)
                        report.blocksMoved += 1
                        report.bytesMoved += size
                    } else if handler != nil,
                              let destination = core.allocateBlock(order: location.order, alignmentRaised: raised, mobility: .movable) {
                        external.append((Relocation(source: source, destination: destination.address, byteCount: size), location, destination.location))
                    } else {
                        report.blocksSkipped += 1
                    }
                }
            }
        }
        // The relocation handler runs without the pool lock: it may allocate, free, or take its own locks.
        let accepted = external.map { handler?($0.0) ?? false }
        let returns = core.locked { core -> [Loan] in
            for (plan, moved) in zip(external, accepted) {
                if moved {
                    accounting?.move(from: plan.0.source, to: plan.0.destination)
                    if scrubs { scrubFreed(plan.0.source, byteCount: plan.0.byteCount) }
                    core.freeBlock(plan.source, mobility: .movable)
                    report.blocksMoved += 1
                    report.bytesMoved += plan.0.byteCount
                } else {
                    core.freeBlock(plan.destination, mobility: .movable)
                    report.blocksSkipped += 1
                    core.counters.relocationsRefused += 1
                }
            }
            for slot in processed {
                if core.arena.isWhollyFree(slot: slot) { report.superblocksFreed += 1 }
                core.arena.releaseQuarantine(slot: slot)
            }
            core.counters.compactions += 1
            core.counters.superblocksCompacted += report.superblocksFreed
            core.counters.bytesMoved += report.bytesMoved
            return core.takePendingReturns()
        }
        deliverReturns(returns)
        if report.blocksMoved > 0 || report.superblocksFreed > 0 {
            Diagnostics.report(.info, DiagnosticEvent(
                .compaction, .info, subject: "pool \(name)",
                message: "compaction freed \(report.superblocksFreed) superblocks, moved \(report.blocksMoved) blocks (\(formatBytes(report.bytesMoved)))",
                bytes: report.bytesMoved))
        }
        return report
    }

    /// Free bytes in partly used, movable superblocks: where moved blocks can go without taking a
    /// wholly free superblock.
    private func movableRoom(_ core: borrowing PoolCore) -> Int {
        let movableGroup = core.groupClass(.movable)
        return core.scores.filter { score in
            core.arena.mobilityClass(slot: score.slot) == movableGroup && score.freeBytes < geometry.superblockSize
                && !score.inRun && !core.arena.isQuarantined(slot: score.slot)
        }.reduce(0) { $0 + $1.freeBytes }
    }

    // MARK: Shrinking and growing

    /// Gives memory back until the pool manages at most `targetBytes` (a target below 0 means 0):
    /// free borrowed superblocks go home, free own superblocks go back to the kernel
    /// (MADV_DONTNEED), and when none is free the cheapest are compacted and the shrinkers asked.
    /// `grow(to:)` brings them back. What "back to the kernel" means depends on the pages:
    /// base and transparent pages leave the process's resident memory (Rss falls); hugetlb pages
    /// leave the mapping and return to the system's hugepage pool (free_hugepages rises), where
    /// any process may take them before `grow` asks again. Superblocks smaller than their page
    /// (2 MiB superblocks on 1 GiB pages) stay managed: `keptForPageSizeBytes` says how many.
    @discardableResult
    public func shrink(to targetBytes: Int) -> ShrinkReport {
        var report = ShrinkReport()
        drainCaches()
        let superblock = geometry.superblockSize
        while true {
            let (managed, step) = core.locked { core -> (Int, ShrinkStep) in
                let managed = core.managedBytes
                guard managed > targetBytes else { return (managed, .done) }
                if let slot = core.borrowed.keys.sorted().first(where: { core.arena.isWhollyFree(slot: $0) }) {
                    core.detachLoan(slot: slot)
                    return (managed, .returned(core.takePendingReturns()))
                }
                let whollyFree = (0..<own.count).reversed().filter { core.arena.isWhollyFree(slot: $0) }
                if let slot = whollyFree.first(where: { own.location(slot: $0).region.region.pageSize.bytes <= superblock }),
                   let (region, index) = core.detachForRelease(slot: slot) {
                    return (managed - superblock, .detached(slot: slot, region: region, superblock: index))
                }
                // Free superblocks are there but their pages are larger: reclaiming more would not help.
                if !whollyFree.isEmpty { return (managed, .keptForPageSize(bytes: whollyFree.count * superblock)) }
                return (managed, .needsReclaim)
            }
            report.managedBytesAfter = managed
            switch step {
            case .done:
                return report
            case .keptForPageSize(let bytes):
                report.keptForPageSizeBytes = bytes
                return report
            case .returned(let loans):
                deliverReturns(loans)
                report.returnedBytes += loans.count * superblock
            case .detached(let slot, let region, let index):
                // Out of the arena, so nothing can allocate it while its pages go back (outside the lock).
                if let error = releasePages(region: region, superblock: index) {
                    core.locked { core in core.reattachReleased(slot: slot, pristine: false) }
                    report.managedBytesAfter += superblock
                    report.systemError = error
                    return report
                }
                report.releasedBytes += superblock
            case .needsReclaim:
                let compaction = configuration.compaction ? compact(superblocks: 1) : CompactionReport()
                report.compaction.superblocksFreed += compaction.superblocksFreed
                report.compaction.blocksMoved += compaction.blocksMoved
                report.compaction.bytesMoved += compaction.bytesMoved
                report.compaction.blocksSkipped += compaction.blocksSkipped
                if compaction.superblocksFreed == 0 {
                    let freed = runShrinkers(bytesWanted: superblock)
                    report.shrinkerBytes += freed
                    if freed == 0 { return report }
                }
            }
        }
    }

    private enum ShrinkStep {
        case done
        case keptForPageSize(bytes: Int)
        case returned([Loan])
        case detached(slot: Int, region: ManagedRegion, superblock: Int)
        case needsReclaim
    }

    /// Gives one detached superblock's pages back to the kernel: munlock for a locked pool (not
    /// for hugetlb pages, never locked), then MADV_DONTNEED. Base and transparent pages go back
    /// to the system and read as zeros when touched again; hugetlb pages go back to the hugepage
    /// pool (free_hugepages grows), from where `grow(to:)` must fault them in again.
    /// The error of the call that failed, or nil.
    private func releasePages(region: ManagedRegion, superblock: Int) -> SystemError? {
        // Invariant: a superblock of a mapped region does not start at address 0.
        let pointer = UnsafeMutableRawPointer(bitPattern: region.superblockBase(superblock)).unsafelyUnwrapped
        if region.region.isLocked, !region.region.pageSize.isHugetlb,
           case .failure(let error) = MemoryCalls.unlock(pointer, geometry.superblockSize) {
            return error.explained(advice: "pool \(name) keeps the superblock locked and managed")
        }
        if case .failure(let error) = MemoryCalls.advise(pointer, geometry.superblockSize, .dontNeed) {
            var advice = "the kernel kept the pages; pool \(name) keeps the superblock managed"
            // Locked again, as the pool promised.
            if region.region.isLocked, !region.region.pageSize.isHugetlb,
               case .failure(let relock) = MemoryCalls.lock(pointer, geometry.superblockSize) {
                advice += ", but locking it again failed too (\(relock))"
            }
            return error.explained(advice: advice)
        }
        return nil
    }

    /// Takes back superblocks `shrink(to:)` released until the pool manages `targetBytes` (or
    /// none is left): populates them again (and locks them for a locked pool). Returns the bytes added.
    @discardableResult
    public func grow(to targetBytes: Int) throws(PoolError) -> Int {
        var added = 0
        while let slot = core.locked({ core -> Int? in
            guard core.managedBytes < targetBytes else { return nil }
            return core.released.min()
        }) {
            let (region, superblock) = own.location(slot: slot)
            // Invariant: a superblock of a mapped region does not start at address 0.
            let pointer = UnsafeMutableRawPointer(bitPattern: region.superblockBase(superblock)).unsafelyUnwrapped
            if case .failed(let error) = PagePopulation.populate(pointer, byteCount: geometry.superblockSize, pageSize: region.region.pageSize) {
                throw .system(error.explained(
                    as: .insufficientMemory,
                    advice: "pool \(name) could not get a superblock of \(region.region.pageSize) back from its nodes"))
            }
            if region.region.isLocked, !region.region.pageSize.isHugetlb,
               case .failure(let error) = MemoryCalls.lock(pointer, geometry.superblockSize) {
                throw .system(error.explained(
                    as: .permissionDenied, advice: PlacementCheck.memlockAdvice(byteCount: geometry.superblockSize, topology: topology)))
            }
            // MADV_DONTNEED gave the pages back; populating them again brought zero pages (hugetlb
            // pages are zeroed as they are faulted in too). A poisoned pool fills them first.
            if configuration.poison { MemoryClearing.poison(pointer, geometry.superblockSize) }
            core.locked { core in core.reattachReleased(slot: slot, pristine: !configuration.poison) }
            added += geometry.superblockSize
        }
        return added
    }
}
