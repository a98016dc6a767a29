import BuddyCore
import BuddyCaches
import BuddySystem

/// Everything that defines one pool. Built in code or parsed from `BUDDYPOOLS`.
public struct PoolConfiguration: Sendable, Equatable {
    public var name: String
    /// Bytes the pool maps at creation; a multiple of the superblock size.
    public var capacity: Int
    /// Nodes the memory comes from; empty means every node with memory in the cpuset.
    public var nodes: NodeSet = []
    public var policy: PlacementPolicy = .bind
    /// Shares per node of a `weighted` pool (`weights=0:3,1:1`): its superblocks are bound to
    /// these nodes in these proportions, and they are its nodes.
    public var weights: NodeWeights?
    /// The device the pool was placed near (`near=0000:3b:00.0` or `near=eth0`): its node
    /// became `nodes`. Kept for display; nil when the nodes were named.
    public var nearDevice: String?
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
    /// What happens to freed memory (`zero=`): nothing (the default, for speed); cleared on free;
    /// or cleared on allocation, skipped where the pool knows the memory is still zero.
    public var zeroing: Zeroing = .none
    /// Fill freed blocks with a pattern and check it when they are handed out again (`poison=1`):
    /// a write after free is reported, naming the pool, the block and the first changed byte.
    public var poison = false
    /// Whether the pool lends superblocks to higher-priority pools (`lend=`). nil: unlocked pools
    /// lend, locked (realtime) pools do not.
    public var lends: Bool?
    /// What creation does with the sampled placement of the pool's pages (`placement=`).
    public var placementCheck: PlacementCheck = .check
    /// Whether a fork child keeps the pool: its memory inherited copy-on-write and usable there
    /// (a process's malloc heap needs this: shells and Python's subprocess fork without exec).
    /// Off by default: regions are MADV_DONTFORK, so fork stays cheap, a child never
    /// copy-on-writes hugetlb pages, and the child's pools refuse requests.
    public var keptAcrossFork = false
    /// Whether creation populates the pool's pages. Hugetlb pages are always populated (their
    /// reservation is what makes them safe); base and transparent pages may instead fault in on
    /// first touch, which a malloc heap inherited by every child process needs.
    public var populatedAtCreation = true
    /// How much of its power-of-two block an unmovable request between one minimum block and a
    /// superblock keeps (`fit=`).
    public var fit: Fit = .buddy

    /// How a request's size becomes the memory it holds.
    public enum Fit: String, Sendable, Equatable, CaseIterable {
        /// The whole power-of-two block (5 KiB holds 8 KiB), served from the thread's magazine.
        case buddy
        /// Only the minimum blocks asked for: the rest of the block goes back to the buddy
        /// allocator (the kernel's `alloc_pages_exact`), so less than one minimum block is
        /// wasted. A size that is not a power-of-two number of blocks takes the pool lock on
        /// allocation and free; movable and reclaimable requests, `allocateContiguous` and runs
        /// of superblocks keep whole blocks.
        case exact
    }

    /// What a pool does with freed memory.
    public enum Zeroing: String, Sendable, Equatable, CaseIterable {
        case none
        /// Cleared as it is freed, before anyone can get it again.
        case onFree = "free"
        /// Cleared as it is handed out, unless the pool knows it is still zero from the kernel.
        case onAllocation = "alloc"
    }

    /// What creation does when sampled pages are not on the pool's nodes.
    public enum PlacementCheck: String, Sendable, Equatable, CaseIterable {
        /// Not sampled beyond what statistics need.
        case off
        /// A warning diagnostic names the pages elsewhere (the default).
        case check
        /// Creation fails with a `SystemError` naming the nodes the pages are on.
        case strict
    }

    /// Whether the pool lends, after the default for its kind.
    public var lendsSuperblocks: Bool { lends ?? !locked }

    public init(name: String, capacity: Int) {
        self.name = name
        self.capacity = capacity
    }
}
