import BuddyCaches
import BuddyCore
import Synchronization

// Runs of superblocks (and whole superblocks) freed into and taken from the pool's RunStash
// without the pool lock: the checks of a run's free read only what the caller's ownership keeps
// still (the head's state byte, the superblock's owner, the run's length), and the state byte
// changes from allocated to cached by one compare and exchange, so a double free of a run is
// still found (by the checked path, which sees `cached`).

extension MemoryPool {
    /// Keeps a freed run or whole superblock of an own region in the run stash, lock-free; false
    /// sends the caller to the checked free under the lock (which also names every bad free).
    func keepRunUnlocked(_ address: UInt, byteCount: Int?) -> Bool {
        guard runsKeptUnlocked, !isForkedChild, let (region, offset, firstSlot) = ownRegion(of: address),
              offset & (UInt(truncatingIfNeeded: geometry.superblockSize) &- 1) == 0
        else { return false }
        let superblock = Int(truncatingIfNeeded: offset &>> UInt(truncatingIfNeeded: geometry.superblockShift))
        // Not lent to another pool (nor given back by a shrink, whose state byte is not allocated).
        guard region.owners[superblock].load(ordering: .relaxed) == id else { return false }
        let slot = firstSlot &+ superblock
        let state = runStash.head(slot: slot)
        let value = state.pointee.load(ordering: .relaxed)
        let tag = value &>> 4
        let raised = tag == BlockState.Tag.raisedUnmovable.rawValue
        guard Int(value & 0x0F) == geometry.maxOrder, raised || tag == BlockState.Tag.allocatedUnmovable.rawValue else { return false }
        let count = runStash.runLength(slot: slot)
        if let byteCount, !sizeMatches(byteCount, run: count, order: geometry.maxOrder, raised: raised) { return false }
        guard runStash.keep(slot: slot, count: count, state: state, allocated: value) else { return false }
        countUnlockedRun(kept: true)
        return true
    }

    /// A kept run of `count` own superblocks starting on `alignment`, marked allocated (raised:
    /// with the raised flag, which run heads carry), lock-free; nil when none is kept.
    func keptRun(count: Int, alignment: Int, raised: Bool) -> UnsafeMutableRawPointer? {
        guard let slot = runStash.take(count: count, alignment: alignment, boundary: 0, raised: raised) else { return nil }
        countUnlockedRun(kept: false)
        // Invariant: own superblocks lie in mapped regions, never at address 0.
        return UnsafeMutableRawPointer(bitPattern: runStash.base(slot: slot)).unsafelyUnwrapped
    }

    /// Counts a run kept or taken without the lock: in the calling thread's cache (its plain
    /// loads and stores), or with one atomic add for a thread without one.
    private func countUnlockedRun(kept: Bool) {
        if let cache = cacheFastPath.currentThreadCache() {
            if kept {
                cache.pointee.runsKept.store(cache.pointee.runsKept.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
            } else {
                cache.pointee.runsTaken.store(cache.pointee.runsTaken.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
            }
        } else if kept {
            runStash.keepsUnlocked.wrappingAdd(1, ordering: .relaxed)
        } else {
            runStash.takesUnlocked.wrappingAdd(1, ordering: .relaxed)
        }
    }

    /// A request's run from the stash before anything else (`allocateOutOfLine`): 2 MiB and
    /// larger unmovable requests of a pool whose runs are kept without the lock.
    @inline(__always)
    func keptRun(byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        // Bad requests (a negative size, an alignment not a power of two) go on to be refused.
        guard runsKeptUnlocked, byteCount > geometry.superblockSize &>> 1, alignment > 0, alignment & (alignment &- 1) == 0, !isForkedChild
        else { return nil }
        if let (order, raised) = geometry.order(byteCount: byteCount, alignment: alignment) {
            return order == geometry.maxOrder ? keptRun(count: 1, alignment: 0, raised: raised) : nil
        }
        return keptRun(count: geometry.superblockCount(byteCount: byteCount), alignment: alignment, raised: true)
    }
}

extension MemoryPool {
    /// Runs kept and taken without the pool lock so far (for tests and the statistics' counts).
    package var unlockedRunOperations: (kept: Int, taken: Int) {
        unlockedRunOperations(census: caches?.census(byThread: false) ?? PoolCaches.Census())
    }

    /// The same from a census of the caches already taken: the threads' counts and those of
    /// threads without a cache.
    func unlockedRunOperations(census: PoolCaches.Census) -> (kept: Int, taken: Int) {
        (runStash.keepsUnlocked.load(ordering: .relaxed) + census.runsKept, runStash.takesUnlocked.load(ordering: .relaxed) + census.runsTaken)
    }
}
