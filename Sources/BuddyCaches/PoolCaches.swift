import BuddyCore
import BuddySystem
import Glibc
import Synchronization

/// The caches in front of one pool: per-thread magazines (lock-free for their owner) and
/// per-CPU, per-group or per-node depots behind them (one mutex each). Only unmovable blocks
/// of orders up to `maxOrder` pass through them.
package final class PoolCaches: @unchecked Sendable {
    // @unchecked: immutable configuration; depots behind their mutexes; thread caches follow the
    // ownership protocol described on `ThreadCache`; counters are atomics.
    package let cacheIndex: Int
    package let token: UInt64
    package let maxOrder: Int
    package let sizes: MagazineSizes
    package let geometry: BuddyGeometry
    package let locked: Bool
    package let nodes: NodeSet
    package let sharding: CacheConfiguration.Sharding

    private let depots: UnsafeMutablePointer<Mutex<DepotShard>>
    package let depotCount: Int
    /// Depot index for each CPU id; CPUs beyond the table or outside `cpus=` share the last depot.
    private let depotOfCPU: [Int]
    private let depotStorage: MetadataBuffer
    /// Caches of live threads, for draining under pressure. Lock order: this list, a thread's
    /// cache lock, a depot, the pool core.
    private let threadCaches = Mutex<[ThreadCacheHandle]>([])

    /// Bytes in magazines and depots, as of each thread's last slow path.
    package let cachedBytes = Atomic<Int>(0)
    package let cachedAllocations = Atomic<Int>(0)
    package let cachedFrees = Atomic<Int>(0)

    struct DepotShard: @unchecked Sendable {
        // @unchecked: the magazines are only touched while holding the depot's mutex.
        let magazines: UnsafeMutablePointer<Magazine>
    }

    /// A thread cache in the drain list.
    struct ThreadCacheHandle: @unchecked Sendable, Equatable {
        // @unchecked: the list only hands it to drainers, who take the cache's own lock.
        let cache: UnsafeMutablePointer<ThreadCache>
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
        // By default cache only blocks up to 1/32 of the pool, so caches cannot hoard a small pool.
        let defaultMax = (0...geometry.maxOrder).last { geometry.blockSize(order: $0) <= max(poolCapacity / 32, geometry.minBlockSize) } ?? 0
        maxOrder = configuration.maxOrder ?? defaultMax
        let budget = configuration.magazineBytes ?? min(32 << 20, max(256 << 10, poolCapacity / 64))
        sizes = MagazineSizes(geometry: geometry, cachedMaxOrder: maxOrder, budgetBytes: budget)

        let (table, count) = Self.depotTable(sharding: configuration.sharding, cpus: cpus, topology: topology)
        depotOfCPU = table
        depotCount = count
        let orderCount = maxOrder + 1
        // A depot holds two magazines' worth of each order.
        let perDepot = orderCount * MemoryLayout<Magazine>.stride + 2 * sizes.entryCount * MemoryLayout<CachedBlock>.stride + 64 * orderCount
        depotStorage = try MetadataBuffer(byteCount: perDepot * count + 4096, nodes: nodes, locked: locked, label: "cache depots")
        depots = UnsafeMutablePointer<Mutex<DepotShard>>.allocate(capacity: count)
        var offset = 0
        for index in 0..<count {
            let magazines = depotStorage.slice(offset: &offset, byteCount: orderCount * MemoryLayout<Magazine>.stride)
                .bindMemory(to: Magazine.self, capacity: orderCount)
            for order in 0..<orderCount {
                let capacity = 2 * sizes.capacities[order]
                let entries = depotStorage.slice(offset: &offset, byteCount: capacity * MemoryLayout<CachedBlock>.stride)
                    .bindMemory(to: CachedBlock.self, capacity: capacity)
                (magazines + order).initialize(to: Magazine(
                    count: 0, capacity: capacity, batch: sizes.batches[order],
                    blockBytes: geometry.blockSize(order: order), entries: entries))
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

    /// The lock-free operations, as a value the pool keeps inline (no class reference to
    /// retain on the fast path), for a pool whose first region is `region`.
    package func fastPath(poolID: UInt32, region: CacheRegion) -> CacheFastPath {
        CacheFastPath(
            cacheIndex: cacheIndex, token: token, maxOrder: maxOrder, minBlockShift: geometry.minBlockShift,
            superblockShift: geometry.superblockShift, maxCachedBytes: geometry.blockSize(order: maxOrder), poolID: poolID,
            regionBase: region.base, regionBytes: region.byteCount, states: region.states, owners: region.owners)
    }

    /// The calling thread's cache for this pool, if it has one.
    package func currentThreadCache() -> UnsafeMutablePointer<ThreadCache>? {
        ThreadCache.current(cacheIndex: cacheIndex, token: token)
    }

    // MARK: Slow path (owner thread, under its cache lock)

    /// Refills the calling thread's magazine from its depot, then from the pool, and pops.
    package func refillAndPop(order: Int, backend: some CacheBackend) -> UInt? {
        guard let cache = threadCacheOrCreate() else { return nil }
        return cache.pointee.lock.locked { _ -> UInt? in
            let magazine = cache.pointee.magazines + order
            if magazine.pointee.isEmpty {
                let wanted = magazine.pointee.batch
                var got = withDepot { $0.magazines[order].count > 0 ? magazine.pointee.take(from: &$0.magazines[order], limit: wanted) : 0 }
                if got == 0 {
                    got = backend.refillCache(order: order, into: magazine.pointee.entries + magazine.pointee.count, count: wanted)
                    magazine.pointee.count += got
                    cachedBytes.add(got * magazine.pointee.blockBytes, ordering: .relaxed)
                }
                guard got > 0 else {
                    fold(cache)
                    return nil
                }
            }
            magazine.pointee.count -= 1
            let block = magazine.pointee.entries[magazine.pointee.count]
            block.state.pointee.store(BlockState.allocated(order: order, mobilityClass: 0).rawValue, ordering: .relaxed)
            cache.pointee.pendingCachedBytes -= magazine.pointee.blockBytes
            cache.pointee.pendingAllocations += 1
            fold(cache)
            return block.address
        }
    }

    /// Pushes a checked block, making room by moving a batch to the depot or the pool.
    package func pushSlow(address: UInt, state: UnsafeMutablePointer<Atomic<UInt8>>, order: Int, backend: some CacheBackend) {
        guard let cache = threadCacheOrCreate() else {
            // No cache could be made (out of memory for metadata): free straight to the pool.
            var block = CachedBlock(address: address, state: state)
            state.pointee.store(BlockState.cached(order: order).rawValue, ordering: .relaxed)
            cachedBytes.add(geometry.blockSize(order: order), ordering: .relaxed)
            releaseToBackend(order: order, from: &block, count: 1, backend: backend)
            return
        }
        cache.pointee.lock.locked { _ in
            let magazine = cache.pointee.magazines + order
            if magazine.pointee.isFull {
                let batch = magazine.pointee.batch
                let moved = withDepot { depot -> Int in
                    let target = depot.magazines + order
                    let room = min(batch, target.pointee.capacity - target.pointee.count)
                    guard room > 0 else { return 0 }
                    (target.pointee.entries + target.pointee.count).update(from: magazine.pointee.entries, count: room)
                    target.pointee.count += room
                    return room
                }
                if moved > 0 {
                    magazine.pointee.dropBottom(moved)
                } else {
                    releaseToBackend(order: order, from: magazine.pointee.entries, count: batch, backend: backend)
                    magazine.pointee.dropBottom(batch)
                }
            }
            state.pointee.store(BlockState.cached(order: order).rawValue, ordering: .relaxed)
            magazine.pointee.entries[magazine.pointee.count] = CachedBlock(address: address, state: state)
            magazine.pointee.count += 1
            cache.pointee.pendingCachedBytes += magazine.pointee.blockBytes
            cache.pointee.pendingFrees += 1
            fold(cache)
        }
    }

    /// The calling thread's cache, created (and registered for draining) on first use.
    package func threadCacheOrCreate() -> UnsafeMutablePointer<ThreadCache>? {
        if let cache = currentThreadCache() { return cache }
        let root = ThreadCacheRoot.currentOrCreate()
        if let stale = root[cacheIndex] {
            // A pool that used this index is gone; its blocks went with its memory.
            ThreadCache.destroy(stale.assumingMemoryBound(to: ThreadCache.self))
            root[cacheIndex] = nil
        }
        guard let cache = ThreadCache.make(
            token: token, sizes: sizes, geometry: geometry, cacheIndex: cacheIndex, locked: locked, nodes: nodes)
        else { return nil }
        threadCaches.locked { $0.append(ThreadCacheHandle(cache: cache)) }
        root[cacheIndex] = UnsafeMutableRawPointer(cache)
        return cache
    }

    private func fold(_ cache: UnsafeMutablePointer<ThreadCache>) {
        if cache.pointee.pendingCachedBytes != 0 {
            cachedBytes.add(cache.pointee.pendingCachedBytes, ordering: .relaxed)
            cache.pointee.pendingCachedBytes = 0
        }
        if cache.pointee.pendingAllocations != 0 {
            cachedAllocations.add(cache.pointee.pendingAllocations, ordering: .relaxed)
            cache.pointee.pendingAllocations = 0
        }
        if cache.pointee.pendingFrees != 0 {
            cachedFrees.add(cache.pointee.pendingFrees, ordering: .relaxed)
            cache.pointee.pendingFrees = 0
        }
    }

    private func withDepot<R>(_ body: (inout DepotShard) -> R) -> R {
        let cpu = ThreadCalls.currentCPU() ?? -1
        let index = cpu >= 0 && cpu < depotOfCPU.count ? depotOfCPU[cpu] : depotCount - 1
        return depots[index].locked { body(&$0) }
    }

    private func releaseToBackend(order: Int, from entries: UnsafeMutablePointer<CachedBlock>, count: Int, backend: some CacheBackend) {
        guard count > 0 else { return }
        backend.releaseCached(order: order, from: entries, count: count)
        cachedBytes.add(-count * geometry.blockSize(order: order), ordering: .relaxed)
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
                for order in 0...maxOrder where depot.magazines[order].count > 0 {
                    let magazine = depot.magazines + order
                    bytes += magazine.pointee.count * magazine.pointee.blockBytes
                    releaseToBackend(order: order, from: magazine.pointee.entries, count: magazine.pointee.count, backend: backend)
                    magazine.pointee.count = 0
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
        return threadCaches.locked { caches in
            var result = DrainResult()
            if let current, caches.contains(ThreadCacheHandle(cache: current)) {
                result.freedBytes += current.pointee.lock.locked { _ in flushMagazines(of: current, backend: backend) }
            }
            let others = drainHoldingLocks(caches, from: 0, skipping: current, raised: 0, backend: backend)
            result.freedBytes += others.freedBytes
            result.barrierFailure = others.barrierFailure
            return result
        }
    }

    /// Takes the lock of each cache from `index` on (list order, so drainers never deadlock) and
    /// raises its flag; at the end of the list, one heavy barrier, then each owner's current
    /// fast-path operation is waited out and its magazines emptied. Recursion rather than a
    /// list of held locks: nothing is allocated on this path, which exhaustion takes.
    private func drainHoldingLocks(
        _ caches: [ThreadCacheHandle], from index: Int, skipping current: UnsafeMutablePointer<ThreadCache>?, raised: Int,
        backend: some CacheBackend
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
                while cache.pointee.inUse.load(ordering: .acquiring) != 0 { sched_yield() }
                result.freedBytes += flushMagazines(of: cache, backend: backend)
                cache.pointee.drainRequested.store(0, ordering: .releasing)
            }
            return result
        }
        let cache = caches[index].cache
        if cache == current {
            return drainHoldingLocks(caches, from: index + 1, skipping: current, raised: raised, backend: backend)
        }
        return cache.pointee.lock.locked { _ in
            cache.pointee.drainRequested.store(1, ordering: .sequentiallyConsistent)
            return drainHoldingLocks(caches, from: index + 1, skipping: current, raised: raised + 1, backend: backend)
        }
    }

    /// Returns a departing thread's blocks to the pool and frees its cache.
    package func retire(_ cache: UnsafeMutablePointer<ThreadCache>, backend: some CacheBackend) {
        threadCaches.locked { caches in
            caches.removeAll { $0.cache == cache }
            cache.pointee.lock.locked { _ -> Void in flushMagazines(of: cache, backend: backend) }
        }
        ThreadCache.destroy(cache)
    }

    /// Caller holds the cache's lock, and the owner is not inside a fast-path operation.
    @discardableResult
    private func flushMagazines(of cache: UnsafeMutablePointer<ThreadCache>, backend: some CacheBackend) -> Int {
        var freed = 0
        for order in 0..<cache.pointee.orderCount {
            let magazine = cache.pointee.magazines + order
            guard magazine.pointee.count > 0 else { continue }
            freed += magazine.pointee.count * magazine.pointee.blockBytes
            releaseToBackend(order: order, from: magazine.pointee.entries, count: magazine.pointee.count, backend: backend)
            magazine.pointee.count = 0
        }
        fold(cache)
        return freed
    }

    /// Threads that hold a cache for this pool now.
    package var threadCacheCount: Int { threadCaches.locked { $0.count } }

    /// Memory of the depots and of every live thread cache.
    package var storageBytes: Int {
        let perThread = MemoryLayout<ThreadCache>.stride + sizes.capacities.count * MemoryLayout<Magazine>.stride
            + sizes.entryCount * MemoryLayout<CachedBlock>.stride
        return depotStorage.byteCount + threadCacheCount * perThread
    }
}
