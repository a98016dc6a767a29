import BuddyCore
import BuddySystem

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
    /// Orders up to this one may be cached (nil: every order the budgets allow, up to the largest
    /// whose blocks are at most 1/32 of the pool).
    public var maxOrder: Int?
    public var sharding: Sharding = .perCPU
    /// Bytes all the pool's caches may hold at once: every thread's magazines, every depot and
    /// the runs of superblocks kept for reuse (`cache-bytes`). nil: 1/32 of the pool. Half is for
    /// runs, an eighth for the depots, the rest is granted to threads as they make their caches;
    /// so whatever the number of threads, at most this much memory sits in caches, where it
    /// cannot be lent, reclaimed or coalesced.
    public var totalBytes: Int?
    /// Bytes one thread's magazines may hold (`thread-cache-bytes`), at most its share of
    /// `totalBytes`. nil: the threads' share split over the CPUs the process may use, at least
    /// 256 KiB (when the budget allows). The cached orders follow: an order is cached only if its
    /// blocks fit the grant, so a small pool does not cache its largest blocks.
    public var threadBytes: Int?
    /// Formerly bytes per order of one thread's magazine; now read as `threadBytes` when that is nil.
    public var magazineBytes: Int?

    public init() {}

    /// How a pool's cache budget is shared out.
    package struct Budgets: Sendable, Equatable {
        /// What the threads' grants may add up to, and the most one thread is granted.
        package let threads: Int
        package let perThread: Int
        /// What all depots together may hold.
        package let depots: Int
        /// What the runs of superblocks kept for reuse may add up to.
        package let runs: Int
    }

    /// The budgets for a pool of `capacity` bytes used by `cpus` CPUs.
    package func budgets(poolCapacity capacity: Int, cpus: Int) -> Budgets {
        let total = max(0, totalBytes ?? capacity / 32)
        let runs = total / 2
        let depots = total / 8
        let threads = total - runs - depots
        let perThread = min(threads, max(0, threadBytes ?? magazineBytes ?? max(256 << 10, threads / max(1, cpus))))
        return Budgets(threads: threads, perThread: perThread, depots: depots, runs: runs)
    }
}
