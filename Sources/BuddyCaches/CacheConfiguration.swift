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
    /// Orders up to this one are cached (nil: the largest order whose blocks are at most 1/32 of
    /// the pool, so caches cannot hoard a small pool).
    public var maxOrder: Int?
    public var sharding: Sharding = .perCPU
    /// Bytes one thread may hold per order in its magazine, at most 64 blocks (nil: capacity / 64,
    /// clamped to 256 KiB...32 MiB).
    public var magazineBytes: Int?

    public init() {}
}
