import BuddyPools
import CoreMetrics
import Synchronization

/// Reports pools through swift-metrics: gauges for bytes and fragmentation, counters for calls,
/// failures, lending and reclaim. Call `update()` from a timer (or `run(every:)`); each update
/// reads one statistics snapshot per pool, which walks superblocks, never CPUs.
///
/// Labels: `buddypools_<name>` with a `pool` dimension, e.g. `buddypools_free_bytes{pool="hot"}`.
public final class PoolMetrics: Sendable {
    private let pools: [MemoryPool]
    private let prefix: String
    private let factory: (any MetricsFactory)?
    /// The counter values already reported, per pool, so each update adds only the difference.
    private let reported = Mutex<[String: [String: Int]]>([:])

    /// - Parameters:
    ///   - factory: where the metrics go; nil uses the one `MetricsSystem.bootstrap` installed.
    public init(pools: [MemoryPool], prefix: String = "buddypools", factory: (any MetricsFactory)? = nil) {
        self.pools = pools
        self.prefix = prefix
        self.factory = factory
    }

    public convenience init(poolSet: PoolSet, prefix: String = "buddypools", factory: (any MetricsFactory)? = nil) {
        self.init(pools: poolSet.pools, prefix: prefix, factory: factory)
    }

    /// Gauges: bytes by state, loans, fragmentation of the largest order. Counters: deltas since the last update.
    public func update() {
        for pool in pools {
            let stats = pool.statistics
            let dimensions = [("pool", pool.name)]
            let gauges: [(String, Double)] = [
                ("capacity_bytes", Double(stats.capacityBytes)),
                ("committed_bytes", Double(stats.committedBytes)),
                ("managed_bytes", Double(stats.managedBytes)),
                ("free_bytes", Double(stats.freeBytes)),
                ("used_bytes", Double(stats.usedBytes)),
                ("cached_bytes", Double(stats.cachedBytes)),
                ("high_water_bytes", Double(stats.highWaterBytes)),
                ("largest_free_block_bytes", Double(stats.largestFreeBlockBytes)),
                ("lent_bytes", Double(stats.lentBytes)),
                ("borrowed_bytes", Double(stats.borrowedBytes)),
                ("released_bytes", Double(stats.releasedBytes)),
                ("wholly_free_superblocks", Double(stats.whollyFreeSuperblocks)),
                ("unusable_free_space_index", stats.fragmentation.last?.unusableFreeSpaceIndex ?? 0),
                ("metadata_bytes", Double(stats.metadataBytes)),
            ]
            for (name, value) in gauges { gauge(name, dimensions).record(value) }
            let totals: [(String, Int)] = [
                ("allocations_total", stats.allocationCount),
                ("deallocations_total", stats.deallocationCount),
                ("failures_total", stats.failureCount),
                ("superblocks_borrowed_total", stats.superblocksBorrowedTotal),
                ("superblocks_returned_total", stats.superblocksReturnedTotal),
                ("compactions_total", stats.compactions),
                ("bytes_moved_total", stats.bytesMoved),
                ("shrinker_calls_total", stats.shrinkerCalls),
                ("bytes_reclaimed_total", stats.bytesReclaimed),
                ("cache_drains_total", stats.cacheDrains),
            ]
            let deltas = reported.withLock { reported -> [(String, Int)] in
                var previous = reported[pool.name] ?? [:]
                defer { reported[pool.name] = previous }
                return totals.map { name, value in
                    defer { previous[name] = value }
                    return (name, max(0, value - (previous[name] ?? 0)))
                }
            }
            for (name, delta) in deltas where delta > 0 { counter(name, dimensions).increment(by: Int64(delta)) }
        }
    }

    /// Updates every `interval` until the task is cancelled.
    public func run(every interval: Duration) async {
        while !Task.isCancelled {
            update()
            try? await Task.sleep(for: interval)
        }
    }

    private func gauge(_ name: String, _ dimensions: [(String, String)]) -> Gauge {
        if let factory { return Gauge(label: "\(prefix)_\(name)", dimensions: dimensions, factory: factory) }
        return Gauge(label: "\(prefix)_\(name)", dimensions: dimensions)
    }

    private func counter(_ name: String, _ dimensions: [(String, String)]) -> Counter {
        if let factory { return Counter(label: "\(prefix)_\(name)", dimensions: dimensions, factory: factory) }
        return Counter(label: "\(prefix)_\(name)", dimensions: dimensions)
    }
}
