/// Everything that defines one pool. Built in code or parsed from `BUDDYPOOLS`.
public struct PoolConfiguration: Sendable, Equatable {
    public var name: String
    /// Bytes the pool maps at creation; a multiple of the superblock size.
    public var capacity: Int
    /// Nodes the memory comes from; empty means every node with memory in the cpuset.
    public var nodes: NodeSet = []
    public var policy: PlacementPolicy = .bind
    public var pageSize: PageSize = .huge2M
    /// Fail instead of falling back 1G -> 2M -> THP -> base.
    public var strictPageSize = false
    /// Higher priorities borrow superblocks from lower ones; equal priorities never take from each other.
    public var priority = 0
    /// Bytes this pool never lends below (`min`).
    public var minimumBytes = 0
    /// Ceiling including borrowed superblocks (`max`); nil: capacity plus whatever lenders can give.
    public var maximumBytes: Int?
    /// CPUs whose caches front this pool (`cpus`); nil: every CPU the process may use.
    public var cpus: CPUSet?
    /// Populate and mlock at creation; afterwards the allocation path makes no system call.
    public var locked = false
    /// Order-0 block size (`min-block`), a power of two from 64 B to 1 MiB.
    public var minBlock = 4096
    /// Inclusive maximum order (`max-order`); nil makes superblocks 2 MiB.
    public var maxOrder: Int?
    /// Group superblocks by mobility (turn off only to measure what grouping buys).
    public var mobilityGrouping = true
    /// Move movable blocks out of the cheapest superblocks when a request for a whole superblock,
    /// a run, a shrink or a borrower needs free superblocks (never inline for locked pools).
    public var compaction = true
    public var cache = CacheConfiguration()
    /// Record bytes per allocation tag (like the kernel's page_owner); costs a lock per allocation.
    public var allocationAccounting = false

    public init(name: String, capacity: Int) {
        self.name = name
        self.capacity = capacity
    }

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
        if case .perGroup(let cpus) = cache.sharding, cpus < 1 {
            throw invalid("cache groups need at least one CPU")
        }
    }
}

/// The per-CPU and per-thread caches in front of a pool.
public struct CacheConfiguration: Sendable, Equatable {
    /// How per-CPU depots are shared.
    public enum Sharding: Sendable, Equatable, CustomStringConvertible {
        /// One depot per CPU.
        case perCPU
        /// One depot per group of this many consecutive CPUs (large machines).
        case perGroup(cpus: Int)
        /// One depot per NUMA node.
        case perNode

        public var description: String {
            switch self {
            case .perCPU: "per CPU"
            case .perGroup(let cpus): "per group of \(cpus) CPUs"
            case .perNode: "per node"
            }
        }
    }

    /// Caches on; off sends every operation to the pool lock.
    public var enabled = true
    /// Orders up to this one are cached (nil: the largest order whose blocks are at most 1/32 of
    /// the pool, so caches cannot hoard a small pool).
    public var maxOrder: Int?
    public var sharding: Sharding = .perCPU
    /// Bytes one thread may hold per order in its magazine, at most 64 blocks (nil: capacity / 64,
    /// clamped to 256 KiB...32 MiB).
    public var magazineBytes: Int?

    public init() {}
}
