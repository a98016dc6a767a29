import BuddyCaches
import BuddyConfig
import BuddyCore
import BuddySystem
import Synchronization

/// The checks of a configuration made in code that do not depend on the machine (the
/// environment's resolver makes its own, pointing at the token): what `MemoryPool.init` runs first.
extension PoolConfiguration {
    /// The buddy geometry these settings describe.
    public func geometry() throws(PoolError) -> BuddyGeometry {
        do {
            return try BuddyGeometry(minBlockSize: minBlock, maxOrder: maxOrder)
        } catch {
            throw .invalidConfiguration(pool: name, reason: error.message)
        }
    }

    /// Checks the numbers that do not depend on the machine.
    public func validate() throws(PoolError) {
        let geometry = try geometry()
        func invalid(_ reason: String) -> PoolError { .invalidConfiguration(pool: name, reason: reason) }
        guard !name.isEmpty else { throw invalid("the pool needs a name") }
        guard capacity > 0 else { throw invalid("capacity must be positive") }
        guard capacity % geometry.superblockSize == 0 else {
            throw invalid("capacity \(formatBytes(capacity)) is not a multiple of the \(formatBytes(geometry.superblockSize)) superblock")
        }
        guard minimumBytes >= 0, minimumBytes <= capacity else {
            throw invalid("min \(formatBytes(minimumBytes)) must be between 0 and the size \(formatBytes(capacity))")
        }
        if let maximumBytes, maximumBytes < capacity {
            throw invalid("size \(formatBytes(capacity)) exceeds max \(formatBytes(maximumBytes))")
        }
        if let cacheOrder = cache.maxOrder, cacheOrder > geometry.maxOrder || cacheOrder < 0 {
            throw invalid("cache max order \(cacheOrder) outside 0...\(geometry.maxOrder)")
        }
        switch (policy, weights) {
        case (.weighted, nil): throw invalid("policy weighted needs weights (e.g. [0: 3, 1: 1])")
        case (.weighted, let weights?):
            if !nodes.isEmpty && nodes != weights.nodes {
                throw invalid("nodes \(nodes) differ from the weighted nodes \(weights.nodes); leave nodes empty or name the same")
            }
        case (_, let weights?): throw invalid("weights \(weights) apply to policy weighted only (the policy is \(policy))")
        case (_, nil): break
        }
        if case .perGroup(let cpus) = cache.sharding, cpus < 1 {
            throw invalid("cache groups need at least one CPU")
        }
    }
}
