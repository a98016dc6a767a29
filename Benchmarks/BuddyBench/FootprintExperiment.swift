import BuddyPools
import Glibc
import Synchronization

/// What a pool keeps for itself, with default configurations: bytes left in caches after one
/// thread frees everything it allocated (64 MiB pool); bytes left in caches by 64 threads that
/// each allocated and freed four 2 MiB and sixteen 64 KiB blocks once, then wait (1 GiB pool);
/// and the metadata of a set of 64 pools of 64 MiB with distinct priorities. Each as a share of
/// the pool (or the set's managed bytes).
struct FootprintExperiment {
    let node: Int

    func run() -> ScenarioResult {
        var result = ScenarioResult(scenario: .footprint, contender: .buddypools, status: .ok, note: "default configurations, transparent pages")
        guard let one = oneThread(), let idle = idleThreads(), let metadata = poolSetMetadata() else {
            return ScenarioResult(scenario: .footprint, contender: .buddypools, status: .failed, note: "could not create the pools")
        }
        result.metrics["cached_after_free_fraction"] = one
        result.metrics["cached_64_idle_threads_fraction"] = idle
        result.metrics["metadata_64_pools_fraction"] = metadata
        return result
    }

    private func pool(_ name: String, capacity: Int) -> MemoryPool? {
        var configuration = PoolConfiguration(name: name, capacity: capacity)
        configuration.nodes = [node]
        configuration.pageSize = .transparent
        return try? MemoryPool(configuration: configuration)
    }

    /// One thread allocates 2000 blocks of log-uniform sizes 4 KiB ... 1 MiB, then frees them all.
    private func oneThread() -> Double? {
        guard let pool = pool("footprint-one", capacity: 64 << 20) else { return nil }
        var random = WorkloadRandom(seed: 17)
        var blocks: [UnsafeMutableRawPointer] = []
        for _ in 0..<2000 {
            if let block = try? pool.allocate(byteCount: random.logUniformSize(lowShift: 12, highShift: 20)) { blocks.append(block) }
        }
        for block in blocks { pool.deallocate(block) }
        let stats = pool.statistics
        return Double(stats.cachedBytes) / Double(stats.capacityBytes)
    }

    /// 64 threads each allocate and free four 2 MiB and sixteen 64 KiB blocks once, then wait
    /// while the caches are counted.
    private func idleThreads() -> Double? {
        guard let pool = pool("footprint-idle", capacity: 1 << 30) else { return nil }
        let done = Atomic<Int>(0)
        let release = Atomic<Int>(0)
        let threads = 64
        var handles: [pthread_t] = []
        final class Context: @unchecked Sendable {
            // @unchecked: immutable; the pool and atomics are thread-safe.
            let body: @Sendable () -> Void
            init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        }
        for _ in 0..<threads {
            let context = Unmanaged.passRetained(Context {
                var blocks: [UnsafeMutableRawPointer] = []
                for _ in 0..<4 { if let block = try? pool.allocate(byteCount: 2 << 20) { blocks.append(block) } }
                for _ in 0..<16 { if let block = try? pool.allocate(byteCount: 64 << 10) { blocks.append(block) } }
                for block in blocks { pool.deallocate(block) }
                done.add(1, ordering: .releasing)
                while release.load(ordering: .acquiring) == 0 { usleep(1000) }
            }).toOpaque()
            var thread = pthread_t()
            pthread_create(&thread, nil, { raw in
                Unmanaged<Context>.fromOpaque(raw!).takeRetainedValue().body()
                return nil
            }, context)
            handles.append(thread)
        }
        while done.load(ordering: .acquiring) < threads { usleep(1000) }
        let stats = pool.statistics
        release.store(1, ordering: .releasing)
        for thread in handles { pthread_join(thread, nil) }
        return Double(stats.cachedBytes) / Double(stats.capacityBytes)
    }

    /// 64 pools of 64 MiB with priorities 0 ... 63: every pool may borrow from all below it.
    private func poolSetMetadata() -> Double? {
        let configurations = (0..<64).map { index -> PoolConfiguration in
            var configuration = PoolConfiguration(name: "set\(index)", capacity: 64 << 20)
            configuration.nodes = [node]
            configuration.pageSize = .transparent
            configuration.priority = index
            return configuration
        }
        guard let set = try? PoolSet(configurations: configurations) else { return nil }
        let stats = set.statistics
        let metadata = stats.pools.reduce(0) { $0 + $1.metadataBytes }
        return Double(metadata) / Double(stats.capacityBytes)
    }
}
