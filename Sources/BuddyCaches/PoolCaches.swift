import BuddyCore
import BuddySystem
import Glibc
import Synchronization

/// The caches in front of one pool: per-thread magazines (lock-free for their owner) and
/// per-CPU, per-group or per-node depots behind them (one mutex each). Only unmovable blocks
/// of orders up to `maxOrder` pass through them.
///
/// Bounded: all caches together hold at most `CacheConfiguration.totalBytes`. The depots get a
/// quarter; each thread is granted part of the rest when it makes its cache, and its magazines
/// are sized to its grant. A thread that finds the budget spent first takes back the grants of
/// threads idle since the last such pass (it drains them), then takes what is left.
/// What the caches hold is counted when it is asked for (`census()`), not on every operation.
package final class PoolCaches: @unchecked Sendable {
    // @unchecked: immutable configuration; depots behind their mutexes; thread caches follow the
    // ownership protocol described on `ThreadCache`; counters are atomics.
    package let cacheIndex: Int
    package let token: UInt64
    package let maxOrder: Int
    package let geometry: BuddyGeometry
    package let locked: Bool
    package let nodes: NodeSet
    package let sharding: CacheConfiguration.Sharding
    /// Bytes the threads' grants may add up to, and the most one thread is granted.
    package let threadBudget: Int
    package let threadGrant: Int
    /// Bytes all depots together may hold.
    package let depotBudget: Int

    private let depots: UnsafeMutablePointer<Mutex<DepotShard>>
    package let depotCount: Int
    /// Depot index for each CPU id; CPUs beyond the table or outside `cpus=` share the last depot.
    private let depotOfCPU: [Int]
    private let depotStorage: MetadataBuffer

    /// Moves the depots to `nodes` (a migrating pool takes them along).
    package func moveDepots(to nodes: NodeSet) -> Result<Void, SystemError> { depotStorage.move(to: nodes) }
    /// Caches of live threads and their grants. Lock order: this list, a thread's cache lock, a
    /// depot, the pool core.
    private let threadCaches = Mutex<ThreadList>(ThreadList())
    /// Bumped by each idle pass; a cache whose owner has not taken its slow path since the
    /// previous pass is idle.
    private let epoch = Atomic<Int>(0)
    /// Fast-path allocations, and runs taken from and kept in the run stash, of threads that have exited.
    private let retiredAllocations = Atomic<Int>(0)
    private let retiredRunsTaken = Atomic<Int>(0)
    private let retiredRunsKept = Atomic<Int>(0)

    struct DepotShard: @unchecked Sendable {
        // @unchecked: the magazines are only touched while holding the depot's mutex.
        let magazines: UnsafeMutablePointer<Magazine>
    }

    /// A thread cache in the drain list.
    struct ThreadCacheHandle: @unchecked Sendable, Equatable {
        // @unchecked: the list only hands it to drainers, who take the cache's own lock.
        let cache: UnsafeMutablePointer<ThreadCache>
    }

    struct ThreadList: @unchecked Sendable {
        // @unchecked: only reached through its mutex.
        var caches: [ThreadCacheHandle] = []
        /// Sum of the caches' grants.
        var grantedBytes = 0
    }

    package init(
        geometry: BuddyGeometry, configuration: CacheConfiguration, poolCapacity: Int, cacheIndex: Int, token: UInt64,
        cpus: CPUSet, topology: NUMATopology, locked: Bool, nodes: NodeSet
    ) throws(SystemError) {
        self.geometry = geometry
        self.cacheIndex = cacheIndex
        self.token = token
        self.locked = locked
        self.nodes = nodes
        self.sharding = configuration.sharding
        let budgets = configuration.budgets(poolCapacity: poolCapacity, cpus: max(1, cpus.count))
        threadBudget = budgets.threads
        threadGrant = budgets.perThread
        depotBudget = budgets.depots
        let depotShare = budgets.depots
        // Never a block above 1/32 of the pool, and never one a full grant does not cache.
        let bounded = (0...geometry.maxOrder).last { geometry.blockSize(order: $0) <= max(poolCapacity / 32, geometry.minBlockSize) } ?? 0
        let wanted = min(configuration.maxOrder ?? geometry.maxOrder, bounded)
        let full = MagazineSizes(geometry: geometry, cachedMaxOrder: wanted, grantBytes: budgets.perThread)
        maxOrder = full.capacities.lastIndex { $0 > 0 } ?? 0

        let (table, count) = Self.depotTable(sharding: configuration.sharding, cpus: cpus, topology: topology)
        depotOfCPU = table
        depotCount = count
        let orderCount = maxOrder + 1
        let depotSizes = MagazineSizes(geometry: geometry, cachedMaxOrder: maxOrder, grantBytes: depotShare / count)
        let perDepot = orderCount * MemoryLayout<Magazine>.stride + (depotSizes.entryCount + orderCount) * MemoryLayout<CachedBlock>.stride
            + 64 * orderCount
        depotStorage = try MetadataBuffer(byteCount: perDepot * count + 4096, nodes: nodes, locked: locked, label: "cache depots")
        depots = UnsafeMutablePointer<Mutex<DepotShard>>.allocate(capacity: count)
        var offset = 0
        for index in 0..<count {
            let magazines = depotStorage.slice(offset: &offset, byteCount: orderCount * MemoryLayout<Magazine>.stride)
                .bindMemory(to: Magazine.self, capacity: orderCount)
            for order in 0..<orderCount {
                let capacity = depotSizes.capacities[order]
                let entries = depotStorage.slice(offset: &offset, byteCount: max(1, capacity) * MemoryLayout<CachedBlock>.stride)
                    .bindMemory(to: CachedBlock.self, capacity: max(1, capacity))
                (magazines + order).initialize(to: Magazine(capacity: capacity, blockBytes: geometry.blockSize(order: order), entries: entries))
            }
            (depots + index).initialize(to: Mutex(DepotShard(magazines: magazines)))
        }
        // Expedited membarrier makes draining other threads cheap; without it the global command
        // still works (slowly), and if neither does, drains skip other threads (see drainAllThreads).
        if case .failure(let error) = ThreadCalls.registerHeavyBarrier() {
            Diagnostics.report(.info, DiagnosticEvent(.cacheDrain, .info, subject: "caches", message: "\(error); draining other threads uses the slower global membarrier"))
        }
    }

    deinit {
        // Thread caches are freed by their owning threads (they notice the token is gone).
        for index in 0..<depotCount { depots[index].locked { depot -> Void in depot.magazines.deinitialize(count: maxOrder + 1) } }
        depots.deinitialize(count: depotCount)
        depots.deallocate()
    }

    /// Maps CPUs to depots for a sharding mode. CPUs outside `cpus` share one extra depot.
    private static func depotTable(sharding: CacheConfiguration.Sharding, cpus: CPUSet, topology: NUMATopology) -> ([Int], Int) {
        let configured = (try? TopologyCalls.configuredCPUs().get()) ?? 1
        let highest = max(cpus.last ?? 0, topology.allowedCPUs.last ?? 0, configured - 1)
        var table = [Int](repeating: -1, count: highest + 1)
        var count = 0
        switch sharding {
        case .perCPU:
            for cpu in cpus { table[cpu] = count; count += 1 }
        case .perGroup(let size):
            var members = 0
            for cpu in cpus {
                table[cpu] = count
                members += 1
                if members == size { count += 1; members = 0 }
            }
            if members > 0 { count += 1 }
        case .perNode:
            var nodeDepot: [Int: Int] = [:]
            for cpu in cpus {
                let node = topology.node(ofCPU: cpu)?.id ?? 0
                if nodeDepot[node] == nil { nodeDepot[node] = count; count += 1 }
                table[cpu] = nodeDepot[node]!
            }
        }
        let shared = count
        return (table.map { $0 < 0 ? shared : $0 }, count + 1)
    }

    /// The depot each CPU uses (for tests of the sharding modes).
    package func depotIndex(ofCPU cpu: Int) -> Int { cpu >= 0 && cpu < depotOfCPU.count ? depotOfCPU[cpu] : depotCount - 1 }

    /// The lock-free operations, as a value the pool keeps inline (no class reference to
    /// retain on the fast path), for a pool whose first region is `region`. With `exactFit`,
    /// only requests of one minimum block take the inlined allocation: a larger one must first
    /// be told from a size the pool trims (which the out-of-line path does, and then still
    /// serves power-of-two sizes from the magazines).
    package func fastPath(poolID: UInt32, region: CacheRegion, inline: Bool, exactFit: Bool) -> CacheFastPath {
        CacheFastPath(
            cacheIndex: cacheIndex, token: token, maxOrder: maxOrder, geometry: geometry,
            maxCachedBytes: geometry.blockSize(order: exactFit ? 0 : maxOrder), poolID: poolID, region: region, inline: inline)
    }

    /// The calling thread's cache for this pool, if it has one.
    package func currentThreadCache() -> UnsafeMutablePointer<ThreadCache>? {
        ThreadCache.current(cacheIndex: cacheIndex, token: token)
    }

    // MARK: Slow path (owner thread, under its cache lock)

    /// Refills the calling thread's magazine from its depot, then from the pool, and pops.
    package func refillAndPop(order: Int, backend: some CacheBackend) -> UInt? {
        guard let cache = threadCacheOrCreate(backend: backend) else { return nil }
        noteSlowPath(cache)
        // A grant taken back by an idle pass (0; an atomic, so no lock to read it) is asked for again.
        if cache.pointee.grantBytes.load(ordering: .relaxed) == 0 { regrant(cache, backend: backend) }
        return cache.pointee.lock.locked { _ -> UInt? in
            let magazine = cache.pointee.magazines + order
            guard magazine.pointee.capacity > 0 else { return nil }
            if magazine.pointee.isEmpty {
                let wanted = magazine.pointee.batch
                var got = withDepot { $0.magazines[order].isEmpty ? 0 : magazine.pointee.take(from: $0.magazines + order, limit: wanted) }
                if got == 0 {
                    let held = magazine.pointee.held
                    got = backend.refillCache(order: order, into: magazine.pointee.entries + held, count: wanted)
                    magazine.pointee.count.store(held + got, ordering: .relaxed)
                }
                guard got > 0 else { return nil }
            }
            let count = magazine.pointee.held - 1
            let block = magazine.pointee.entries[count]
            magazine.pointee.count.store(count, ordering: .relaxed)
            block.state.pointee.store(BlockState.allocated(order: order, mobilityClass: 0).rawValue, ordering: .relaxed)
            cache.pointee.allocations.store(cache.pointee.allocations.load(ordering: .relaxed) + 1, ordering: .relaxed)
            return block.address
        }
    }

    /// Pushes a checked block, making room by moving a batch to the depot or the pool.
    package func pushSlow(address: UInt, state: UnsafeMutablePointer<Atomic<UInt8>>, order: Int, backend: some CacheBackend) {
        guard let cache = threadCacheOrCreate(backend: backend) else {
            releaseOne(address: address, state: state, order: order, backend: backend)
            return
        }
        noteSlowPath(cache)
        if cache.pointee.grantBytes.load(ordering: .relaxed) == 0 { regrant(cache, backend: backend) }
        let pushed = cache.pointee.lock.locked { _ -> Bool in
            let magazine = cache.pointee.magazines + order
            guard magazine.pointee.capacity > 0 else { return false }
            if magazine.pointee.isFull {
                let batch = min(magazine.pointee.batch, magazine.pointee.held)
                let moved = withDepot { depot -> Int in
                    let target = depot.magazines + order
                    let room = min(batch, target.pointee.capacity - target.pointee.held)
                    guard room > 0 else { return 0 }
                    target.pointee.append(magazine.pointee.entries, count: room)
                    return room
                }
                if moved > 0 {
                    magazine.pointee.dropBottom(moved)
                } else {
                    backend.releaseCached(order: order, from: magazine.pointee.entries, count: batch)
                    magazine.pointee.dropBottom(batch)
                }
            }
            state.pointee.store(BlockState.cached(order: order).rawValue, ordering: .relaxed)
            let held = magazine.pointee.held
            magazine.pointee.entries[held] = CachedBlock(address: address, state: state)
            magazine.pointee.count.store(held + 1, ordering: .relaxed)
            return true
        }
        if !pushed { releaseOne(address: address, state: state, order: order, backend: backend) }
    }

    /// A free with no cache to take it (no grant, or no cache could be made): straight to the pool.
    private func releaseOne(address: UInt, state: UnsafeMutablePointer<Atomic<UInt8>>, order: Int, backend: some CacheBackend) {
        var block = CachedBlock(address: address, state: state)
        state.pointee.store(BlockState.cached(order: order).rawValue, ordering: .relaxed)
        backend.releaseCached(order: order, from: &block, count: 1)
    }

    private func noteSlowPath(_ cache: UnsafeMutablePointer<ThreadCache>) {
        cache.pointee.lastSlowPath.store(epoch.load(ordering: .relaxed), ordering: .relaxed)
    }

    /// The calling thread's cache, created (with a grant, and registered for draining) on first use.
    package func threadCacheOrCreate(backend: some CacheBackend) -> UnsafeMutablePointer<ThreadCache>? {
        if let cache = currentThreadCache() { return cache }
        let root = ThreadCacheRoot.currentOrCreate()
        if root[cacheIndex] != FastPathAccessors.noThreadCache {
            // A pool that used this index is gone; its blocks went with its memory.
            ThreadCache.destroy(root[cacheIndex].assumingMemoryBound(to: ThreadCache.self))
            root[cacheIndex] = FastPathAccessors.noThreadCache
        }
        let made = threadCaches.locked { list -> UnsafeMutablePointer<ThreadCache>? in
            let grant = takeGrant(&list, backend: backend)
            let sizes = MagazineSizes(geometry: geometry, cachedMaxOrder: maxOrder, grantBytes: threadGrant)
            guard let cache = ThreadCache.make(
                token: token, sizes: sizes, geometry: geometry, cacheIndex: cacheIndex, grantBytes: 0,
                epoch: epoch.load(ordering: .relaxed), locked: locked, nodes: nodes)
            else { return nil }
            apply(grant: grant, to: cache, list: &list)
            list.caches.append(ThreadCacheHandle(cache: cache))
            return cache
        }
        guard let made else { return nil }
        root[cacheIndex] = UnsafeMutableRawPointer(made)
        return made
    }

    /// A grant for a thread, from what the budget has left; when that is less than a full grant,
    /// threads idle since the last pass give theirs back first. List lock held.
    private func takeGrant(_ list: inout ThreadList, backend: some CacheBackend) -> Int {
        if threadBudget - list.grantedBytes < threadGrant { reclaimIdle(&list, backend: backend) }
        return max(0, min(threadGrant, threadBudget - list.grantedBytes))
    }

    /// Sets a cache's grant and sizes its magazines to it. List lock held; the owner is not in a
    /// fast-path operation (it is the caller, or a drainer holds its cache lock).
    private func apply(grant: Int, to cache: UnsafeMutablePointer<ThreadCache>, list: inout ThreadList) {
        list.grantedBytes += grant - cache.pointee.grantBytes.load(ordering: .relaxed)
        cache.pointee.grantBytes.store(grant, ordering: .relaxed)
        let sizes = MagazineSizes(geometry: geometry, cachedMaxOrder: maxOrder, grantBytes: grant)
        // Through the magazines' own pointer: a mutation reached through `cache.pointee` would be
        // an access of the whole header, which its owner reads on the fast path.
        let magazines = cache.pointee.magazines
        for order in 0..<cache.pointee.orderCount { magazines[order].resize(capacity: sizes.capacities[order]) }
    }

    /// An owner whose grant was taken back (it was idle) asks for one again.
    private func regrant(_ cache: UnsafeMutablePointer<ThreadCache>, backend: some CacheBackend) {
        guard cache.pointee.grantBytes.load(ordering: .relaxed) < threadGrant else { return }
        threadCaches.locked { list in
            let held = cache.pointee.grantBytes.load(ordering: .relaxed)
            guard held < threadGrant else { return }
            let grant = takeGrant(&list, backend: backend) + held
            cache.pointee.lock.locked { _ in apply(grant: min(grant, threadGrant), to: cache, list: &list) }
        }
    }

    /// The idle pass: drains the caches whose owners have not taken their slow path since the
    /// previous pass and takes their grants back. List lock held.
    private func reclaimIdle(_ list: inout ThreadList, backend: some CacheBackend) {
        let current = epoch.load(ordering: .relaxed)
        epoch.store(current + 1, ordering: .relaxed)
        let mine = currentThreadCache()
        let idle = list.caches.filter {
            $0.cache != mine && $0.cache.pointee.grantBytes.load(ordering: .relaxed) > 0 && $0.cache.pointee.lastSlowPath.load(ordering: .relaxed) < current
        }
        guard !idle.isEmpty else { return }
        let result = drainHoldingLocks(idle, from: 0, skipping: mine, raised: 0, backend: backend) { cache in
            // The owner is shut out (its lock is held, its flag raised): its capacities can change.
            self.apply(grant: 0, to: cache, list: &list)
        }
        if result.freedBytes > 0 {
            Diagnostics.report(.debug, DiagnosticEvent(.cacheDrain, .debug, subject: "caches",
                message: "took back the grants of \(idle.count) idle threads (\(formatBytes(result.freedBytes)) cached)", bytes: result.freedBytes))
        }
    }

    private func withDepot<R>(_ body: (inout DepotShard) -> R) -> R {
        let cpu = ThreadCalls.currentCPU() ?? -1
        return depots[depotIndex(ofCPU: cpu)].locked { body(&$0) }
    }

    // MARK: Draining (memory pressure, thread exit, shrink)

    /// Empties the calling thread's magazines and every depot into the pool; returns the bytes freed.
    @discardableResult
    package func drainLocal(backend: some CacheBackend) -> Int {
        var freed = 0
        if let cache = currentThreadCache() {
            freed += cache.pointee.lock.locked { _ in flushMagazines(of: cache, backend: backend) }
        }
        for index in 0..<depotCount {
            freed += depots[index].locked { depot in
                var bytes = 0
                for order in 0...maxOrder where !depot.magazines[order].isEmpty {
                    let magazine = depot.magazines + order
                    let held = magazine.pointee.held
                    bytes += held * magazine.pointee.blockBytes
                    backend.releaseCached(order: order, from: magazine.pointee.entries, count: held)
                    magazine.pointee.count.store(0, ordering: .relaxed)
                }
                return bytes
            }
        }
        return freed
    }

    /// What draining other threads' magazines gave back.
    package struct DrainResult {
        package var freedBytes = 0
        /// membarrier(2) failed: other threads' magazines were left alone (emptying them without
        /// the fence could race with their owners), so only this thread's blocks came back.
        package var barrierFailure: SystemError?
    }

    /// Empties other threads' magazines too. One membarrier(2) covers all of them: each other
    /// cache's lock is taken and its drain flag raised first.
    @discardableResult
    package func drainAllThreads(backend: some CacheBackend) -> DrainResult {
        let current = currentThreadCache()
        return threadCaches.locked { list in
            var result = DrainResult()
            if let current, list.caches.contains(ThreadCacheHandle(cache: current)) {
                result.freedBytes += current.pointee.lock.locked { _ in flushMagazines(of: current, backend: backend) }
            }
            let others = drainHoldingLocks(list.caches, from: 0, skipping: current, raised: 0, backend: backend) { _ in }
            result.freedBytes += others.freedBytes
            result.barrierFailure = others.barrierFailure
            return result
        }
    }

    /// Takes the lock of each cache from `index` on (list order, so drainers never deadlock) and
    /// raises its flag; at the end of the list, one heavy barrier, then each owner's current
    /// fast-path operation is waited out, its magazines emptied and `drained` called on it while
    /// its owner is still shut out. Recursion rather than a list of held locks: nothing is
    /// allocated on this path, which exhaustion takes.
    private func drainHoldingLocks(
        _ caches: [ThreadCacheHandle], from index: Int, skipping current: UnsafeMutablePointer<ThreadCache>?, raised: Int,
        backend: some CacheBackend, drained: (UnsafeMutablePointer<ThreadCache>) -> Void
    ) -> DrainResult {
        guard index < caches.count else {
            guard raised > 0 else { return DrainResult() }
            var result = DrainResult()
            if case .failure(let error) = ThreadCalls.heavyBarrier() {
                result.barrierFailure = error
                for handle in caches where handle.cache != current {
                    handle.cache.pointee.drainRequested.store(0, ordering: .releasing)
                }
                return result
            }
            for handle in caches where handle.cache != current {
                let cache = handle.cache
                // The owner finishes at most one fast-path operation; then it sees the request.
                // An owner from before a fork is not in this process: nothing to wait for.
                let ownerExists = cache.pointee.forkGeneration == ThreadCalls.forkGeneration
                while ownerExists, cache.pointee.inUse.load(ordering: .acquiring) != 0 { sched_yield() }
                result.freedBytes += flushMagazines(of: cache, backend: backend)
                drained(cache)
                cache.pointee.drainRequested.store(0, ordering: .releasing)
            }
            return result
        }
        let cache = caches[index].cache
        if cache == current {
            return drainHoldingLocks(caches, from: index + 1, skipping: current, raised: raised, backend: backend, drained: drained)
        }
        return cache.pointee.lock.locked { _ in
            cache.pointee.drainRequested.store(1, ordering: .sequentiallyConsistent)
            return drainHoldingLocks(caches, from: index + 1, skipping: current, raised: raised + 1, backend: backend, drained: drained)
        }
    }

    /// Returns a departing thread's blocks and grant to the pool and frees its cache.
    package func retire(_ cache: UnsafeMutablePointer<ThreadCache>, backend: some CacheBackend) {
        threadCaches.locked { list in
            list.caches.removeAll { $0.cache == cache }
            list.grantedBytes -= cache.pointee.grantBytes.load(ordering: .relaxed)
            cache.pointee.lock.locked { _ -> Void in
                flushMagazines(of: cache, backend: backend)
                if let heap = cache.pointee.objectHeap {
                    _ = backend.drainObjectHeap(heap, retiring: true)
                    cache.pointee.objectHeap = nil
                }
            }
        }
        retiredAllocations.add(cache.pointee.allocations.load(ordering: .relaxed), ordering: .relaxed)
        retiredRunsTaken.add(cache.pointee.runsTaken.load(ordering: .relaxed), ordering: .relaxed)
        retiredRunsKept.add(cache.pointee.runsKept.load(ordering: .relaxed), ordering: .relaxed)
        ThreadCache.destroy(cache)
    }

    /// Caller holds the cache's lock, and the owner is not inside a fast-path operation.
    @discardableResult
    private func flushMagazines(of cache: UnsafeMutablePointer<ThreadCache>, backend: some CacheBackend) -> Int {
        var freed = 0
        for order in 0..<cache.pointee.orderCount {
            let magazine = cache.pointee.magazines + order
            let held = magazine.pointee.held
            guard held > 0 else { continue }
            freed += held * magazine.pointee.blockBytes
            backend.releaseCached(order: order, from: magazine.pointee.entries, count: held)
            magazine.pointee.count.store(0, ordering: .relaxed)
        }
        if let heap = cache.pointee.objectHeap { freed += backend.drainObjectHeap(heap, retiring: false) }
        return freed
    }

    /// Takes back the grants of threads that have not needed their caches since the last pass
    /// (and drains them): what a long-running program calls when threads go quiet.
    package func releaseIdleCaches(backend: some CacheBackend) {
        threadCaches.locked { list in reclaimIdle(&list, backend: backend) }
    }

    // MARK: What the caches hold

    /// The caches counted now: exact when no operation is in flight.
    package struct Census: Sendable {
        package var cachedBytes = 0
        package var cachedBlocks = 0
        /// Blocks the threads took from their magazines on the fast path, exited threads included.
        package var allocations = 0
        /// Runs the threads took from and kept in the run stash without the pool lock, exited threads included.
        package var runsTaken = 0
        package var runsKept = 0
        /// Bytes each live thread's magazines hold, largest first.
        package var bytesByThread: [Int] = []
        package var grantedBytes = 0
        package var threads = 0
        package var storageBytes = 0

        package init() {}
    }

    /// Counts what every thread's magazines and every depot hold. Takes the list lock, then each
    /// depot; reads other threads' magazines without stopping them (counts are atomic).
    /// `byThread: false` allocates nothing (exhaustion reports on a realtime thread count this way).
    package func census(byThread: Bool = true) -> Census {
        var census = Census()
        threadCaches.locked { list in
            for handle in list.caches {
                let bytes = handle.cache.pointee.cachedBytes
                census.cachedBytes += bytes
                census.cachedBlocks += handle.cache.pointee.cachedBlocks
                census.allocations += handle.cache.pointee.allocations.load(ordering: .relaxed)
                census.runsTaken += handle.cache.pointee.runsTaken.load(ordering: .relaxed)
                census.runsKept += handle.cache.pointee.runsKept.load(ordering: .relaxed)
                if byThread { census.bytesByThread.append(bytes) }
                census.storageBytes += handle.cache.pointee.storage.takeUnretainedValue().byteCount
            }
            census.grantedBytes = list.grantedBytes
            census.threads = list.caches.count
        }
        census.allocations += retiredAllocations.load(ordering: .relaxed)
        census.runsTaken += retiredRunsTaken.load(ordering: .relaxed)
        census.runsKept += retiredRunsKept.load(ordering: .relaxed)
        if byThread { census.bytesByThread.sort(by: >) }
        for index in 0..<depotCount {
            depots[index].locked { depot in
                for order in 0...maxOrder {
                    census.cachedBytes += depot.magazines[order].held * depot.magazines[order].blockBytes
                    census.cachedBlocks += depot.magazines[order].held
                }
            }
        }
        census.storageBytes += depotStorage.byteCount
        return census
    }
}
