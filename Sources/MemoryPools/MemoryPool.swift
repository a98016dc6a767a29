import BuddyCaches
import BuddyConfig
import BuddyCore
import BuddySlabs
import BuddySystem
import Synchronization

// MemoryPool: what a pool is made of and how it is created (regions, metadata, arena, caches,
// registration) and torn down. Allocation, frees, reclaim, lending, statistics and handles are
// the extensions in the files named after them; the state under the lock is PoolCore's.

/// A named pool of memory on chosen NUMA nodes, run by its own buddy allocator.
///
/// Thread-safe. Small unmovable blocks go through per-thread magazines and per-CPU depots
/// without taking the pool lock; everything else takes the pool's priority-inheriting mutex.
/// Every free is checked (foreign, interior, double, wrong pool, wrong size) in release
/// builds too; a bad free stops the process with a message naming the pool and address.
public final class MemoryPool: @unchecked Sendable, CustomStringConvertible {
    // @unchecked: stored properties are immutable, atomics, or behind `core`'s mutex; the raw
    // pointers in `fastRegions` reach metadata whose mutable parts are atomics.
    public let name: String
    public let configuration: PoolConfiguration
    public let geometry: BuddyGeometry
    /// Nodes the pool's memory is placed on (set at creation, changed by `migrate(to:)`).
    public var nodes: NodeSet { placementState.locked { $0.nodes } }
    /// The placement policy of the pool's memory (a migrated pool is bound to its new nodes).
    public var policy: PlacementPolicy { placementState.locked { $0.policy } }
    /// Nodes and policy; a leaf lock.
    let placementState: Mutex<PoolPlacement>
    /// The regions the pool mapped at creation (one, or one per node for `bind` over several nodes).
    public let regions: [Region]

    let id: UInt32
    let token: UInt64
    /// The pool's own superblocks and the regions that hold them.
    let own: OwnSuperblocks
    /// Superblocks the pool could ever hold at once: its own and what it may borrow.
    let superblockLimit: Int
    /// Whether frees and allocations touch the memory (`zero=free|alloc`, `poison=1`). Stored:
    /// reading it through `configuration` on the locked paths copied the configuration (64
    /// instructions of memcpy per free, callgrind).
    let scrubs: Bool
    /// `fit=exact`: unmovable requests keep only the minimum blocks they need (stored, as `scrubs`).
    let fitsExactly: Bool
    var managedRegions: [ManagedRegion] { own.regions }
    let core: Mutex<PoolCore>
    /// Freed runs and whole superblocks kept for reuse, with or without the pool lock.
    let runStash: RunStash
    /// Whether runs are kept and taken without the pool lock (the pool caches runs and neither
    /// scrubs nor counts sites, which the locked paths do).
    let runsKeptUnlocked: Bool
    let caches: PoolCaches?
    /// The caches' lock-free operations, inline so the fast path retains nothing.
    @usableFromInline let cacheFastPath: CacheFastPath
    /// Objects below a page (nil: this pool hands out blocks only: it scrubs or counts sites).
    let slabs: PoolSlabs?
    /// The lock-free start of an object free in the first region.
    @usableFromInline let objectFastPath: ObjectFastPath
    /// Whether small unmovable requests take the inlined object path (a thread cache serves them).
    @usableFromInline let objectsInline: Bool
    /// `slabs != nil`: small unmovable requests are objects (never the block caches).
    @usableFromInline let objectsServed: Bool
    private let cacheIndex: Int?
    let metadata: MetadataBuffer
    /// The fork generation the pool was made in; in a later one (a fork child) it is unusable.
    let forkGeneration: Int
    let keptAcrossFork: Bool
    let topology: NUMATopology
    /// The lending group the pool belongs to, set by `PoolSet`.
    let lending = Mutex<LendingGroupReference>(LendingGroupReference())
    /// Movable allocations handed out as handles.
    let handles = HandleTable()
    /// Called to move raw-pointer movable blocks during compaction; nil: they stay put.
    let relocationHandler = Mutex<RelocationHandler?>(nil)
    /// Asked to drop reclaimable allocations before a request fails.
    let shrinkers = Mutex<ShrinkerList>(ShrinkerList())
    /// Live blocks by allocation site, when the configuration asks for it.
    let accounting: AllocationAccounting?
    /// `accounting != nil`, as a plain flag (the inlined paths do not test it: such a pool's
    /// `cacheFastPath` sends every call out of line).
    let countsSites: Bool

    /// The own regions, flattened for the free fast path: base, size, state bytes, owners.
    let fastRegions: UnsafeMutablePointer<CacheRegion>
    let fastRegionCount: Int

    /// Creates the pool: maps, binds, populates (and locks) its memory now.
    public convenience init(configuration: PoolConfiguration) throws(PoolError) {
        try self.init(configuration: configuration, topology: nil, borrowHeadroom: 0)
    }

    /// - Parameter borrowHeadroom: superblocks this pool may borrow beyond its own (slots reserved up front).
    init(configuration: PoolConfiguration, topology knownTopology: NUMATopology?, borrowHeadroom: Int) throws(PoolError) {
        try configuration.validate()
        let geometry = try configuration.geometry()
        let topology: NUMATopology
        if let knownTopology {
            topology = knownTopology
        } else {
            do throws(SystemError) {
                topology = try NUMATopology.current()
            } catch {
                throw .system(error)
            }
        }
        let nodes = configuration.weights?.nodes ?? (configuration.nodes.isEmpty ? topology.memoryNodes : configuration.nodes)
        let id: UInt32
        do throws(SystemError) {
            id = try PoolRegistry.register(name: configuration.name)
        } catch {
            throw .system(error)
        }
        var regions: [Region] = []
        var managed: [ManagedRegion] = []
        do {
            for (regionNodes, bytes) in Self.regionPlan(configuration: configuration, nodes: nodes, geometry: geometry) {
                let region = try Region(
                    label: "pool \(configuration.name)", byteCount: bytes, nodes: regionNodes, policy: configuration.policy,
                    pageSize: configuration.pageSize, strictPageSize: configuration.strictPageSize,
                    locked: configuration.locked, alignment: geometry.superblockSize, topology: topology,
                    inheritedByFork: configuration.keptAcrossFork, populate: configuration.populatedAtCreation,
                    weights: configuration.policy == .weighted ? configuration.weights : nil)
                regions.append(region)
                managed.append(try ManagedRegion(region: region, geometry: geometry, homePoolID: id))
            }
        } catch {
            PoolRegistry.unregister(id: id)
            throw .system(error)
        }
        if configuration.placementCheck != .off {
            do throws(SystemError) {
                try Self.checkPlacement(of: managed, pool: configuration.name, strict: configuration.placementCheck == .strict)
            } catch {
                PoolRegistry.unregister(id: id)
                throw .system(error)
            }
        }
        let own = OwnSuperblocks(regions: managed)
        // Borrowing slots: an eighth of the own ones to start with, more when a borrow needs them;
        // a locked pool reserves them all now (growing them maps memory, never done on its path).
        let slotLimit = own.count + borrowHeadroom
        let placement = SlotStorage.Placement(geometry: geometry, nodes: nodes, locked: configuration.locked, label: "pool \(configuration.name)")
        let fastBytes = managed.count * MemoryLayout<CacheRegion>.stride
        let slots: SlotStorage
        do {
            let reserved = configuration.locked ? borrowHeadroom : min(borrowHeadroom, max(1, own.count / 8))
            slots = try SlotStorage(slotCapacity: own.count + reserved, placement: placement)
            metadata = try MetadataBuffer(byteCount: fastBytes + SlabHeap.requiredBytes + ObjectFastPath.requiredBytes + 128, nodes: nodes, locked: configuration.locked,
                                          label: "pool \(configuration.name)")
        } catch {
            PoolRegistry.unregister(id: id)
            throw .system(error)
        }
        var nextSlot = 0
        for region in managed {
            // Fresh from the kernel every page is zero; a poisoned pool fills its regions with the
            // pattern instead (every free byte of such a pool holds it, see prepareHandedOut).
            if configuration.poison, let base = UnsafeMutableRawPointer(bitPattern: region.base) {
                if region.region.commitsOnDemand {
                    do throws(SystemError) {
                        try region.region.commit(offset: 0, byteCount: region.byteCount)
                    } catch {
                        PoolRegistry.unregister(id: id)
                        throw .system(error)
                    }
                }
                MemoryClearing.poison(base, region.byteCount)
            }
            _ = slots.arena.attach(
                base: region.base, stateTable: region.states, superblockCount: region.superblockCount, firstSlot: nextSlot,
                pristine: !configuration.poison)
            nextSlot += region.superblockCount
        }
        var offset = 0
        fastRegions = metadata.slice(offset: &offset, byteCount: fastBytes).bindMemory(to: CacheRegion.self, capacity: managed.count)
        let sharedHeapStorage = metadata.slice(offset: &offset, byteCount: SlabHeap.requiredBytes)
        let objectPathStorage = metadata.slice(offset: &offset, byteCount: ObjectFastPath.requiredBytes)
        for (index, region) in managed.enumerated() {
            (fastRegions + index).initialize(to: CacheRegion(
                base: region.base, byteCount: UInt(region.byteCount), states: region.states, owners: region.owners))
        }
        fastRegionCount = managed.count

        self.name = configuration.name
        self.configuration = configuration
        self.geometry = geometry
        placementState = Mutex(PoolPlacement(nodes: nodes, policy: configuration.policy))
        self.regions = regions
        self.id = id
        self.token = UInt64(id)
        self.own = own
        self.superblockLimit = slotLimit
        self.scrubs = configuration.zeroing != .none || configuration.poison
        fitsExactly = configuration.fit == .exact
        self.topology = topology
        self.forkGeneration = PoolRegistry.forkGeneration
        keptAcrossFork = configuration.keptAcrossFork
        let runCacheBudget = configuration.cache.enabled
            ? configuration.cache.budgets(poolCapacity: configuration.capacity, cpus: max(1, (configuration.cpus ?? topology.allowedCPUs).count)).runs
            : 0
        runStash = RunStash(own: own, budget: runCacheBudget, geometry: geometry)
        runsKeptUnlocked = runCacheBudget > 0 && !(configuration.zeroing != .none || configuration.poison) && !configuration.allocationAccounting
        core = Mutex(PoolCore(
            slots: slots, slotLimit: slotLimit, placement: placement, grouping: configuration.mobilityGrouping, poolID: id, own: own,
            runStash: runStash, allCommitted: configuration.poison))

        let index = configuration.cache.enabled ? CacheIndexRegistry.reserve(token: UInt64(id)) : nil
        cacheIndex = index
        if let index {
            do {
                caches = try PoolCaches(
                    geometry: geometry, configuration: configuration.cache, poolCapacity: configuration.capacity,
                    cacheIndex: index, token: UInt64(id), cpus: configuration.cpus ?? topology.allowedCPUs,
                    topology: topology, locked: configuration.locked, nodes: nodes)
            } catch {
                CacheIndexRegistry.release(index)
                PoolRegistry.unregister(id: id)
                throw .system(error)
            }
        } else {
            caches = nil
        }
        // Pools that count allocation sites, zero or poison keep every call out of line, where
        // that work is done.
        let inline = !configuration.allocationAccounting && configuration.zeroing == .none && !configuration.poison
        cacheFastPath = caches?.fastPath(poolID: id, region: fastRegions.pointee, inline: inline, exactFit: configuration.fit == .exact)
            ?? .disabled(region: fastRegions.pointee, geometry: geometry)
        accounting = configuration.allocationAccounting ? AllocationAccounting() : nil
        countsSites = configuration.allocationAccounting
        // Objects: every pool but those whose blocks are scrubbed or counted one by one.
        let servesObjects = inline
        if servesObjects {
            slabs = PoolSlabs(geometry: geometry, sharedHeapStorage: sharedHeapStorage)
            // A locked pool maps every table now: making one later would be a system call on
            // the realtime path.
            if configuration.locked {
                for region in managed {
                    for superblock in 0..<region.superblockCount where region.slabTables.tableOrCreate(superblock: superblock) == nil {
                        if let index { CacheIndexRegistry.release(index) }
                        PoolRegistry.unregister(id: id)
                        throw .system(SystemError(.insufficientMemory, call: "mmap(slab tables of pool \(configuration.name))",
                                                  advice: "a locked pool maps and locks its slab tables at creation; raise RLIMIT_MEMLOCK"))
                    }
                }
            }
        } else {
            slabs = nil
        }
        objectsInline = servesObjects && caches != nil
        objectsServed = servesObjects
        objectFastPath = ObjectFastPath(
            storage: objectPathStorage, regionBase: fastRegions.pointee.base, regionBytes: fastRegions.pointee.byteCount,
            states: fastRegions.pointee.states, owners: fastRegions.pointee.owners, tables: managed[0].slabTables, geometry: geometry,
            poolID: id, cacheIndex: index ?? 0, token: UInt64(id), enabled: objectsInline)
        for region in managed { PoolRegistry.addRange(region.addressRange, pool: id) }
        if let index, let caches { CacheIndexRegistry.bind(index, caches: caches, backend: self) }
        Diagnostics.report(.debug, DiagnosticEvent(.lifecycle, .debug, subject: "pool \(name)", message: "created: \(self)", bytes: capacity))
    }

    deinit {
        Diagnostics.report(.debug, DiagnosticEvent(.lifecycle, .debug, subject: "pool \(name)", message: "released", bytes: capacity))
        if let cacheIndex { CacheIndexRegistry.release(cacheIndex) }
        PoolRegistry.unregister(id: id)
        fastRegions.deinitialize(count: fastRegionCount)
    }

    /// Compares where each superblock's first page landed (sampled with move_pages as the region
    /// was made) with the nodes it was placed on: a warning names the pages elsewhere, or with
    /// `placement=strict` creation fails (also when the kernel could not say where they are).
    static func checkPlacement(of regions: [ManagedRegion], pool: String, strict: Bool) throws(SystemError) {
        for region in regions {
            let intended = region.region.nodes
            let elsewhere = region.superblockNodes.filter { $0 >= 0 && !intended.contains($0) }
            let unknown = region.superblockNodes.filter { $0 < 0 }.count
            if !elsewhere.isEmpty {
                let advice = "\(elsewhere.count) of \(region.superblockCount) sampled superblocks of pool '\(pool)' are on nodes "
                    + "\(NodeSet(elsewhere)), not on its nodes \(intended) (\(region.region.policy)); the nodes may be short of memory"
                if strict { throw SystemError(.invalidPlacement, call: "placement check (move_pages)", advice: advice) }
                Diagnostics.report(.warning, DiagnosticEvent(.placement, .warning, subject: "pool \(pool)", message: advice))
            } else if unknown > 0, strict {
                throw SystemError(.invalidPlacement, call: "placement check (move_pages)",
                                  advice: "the kernel could not say where \(unknown) of \(region.superblockCount) superblocks of pool '\(pool)' are, and placement=strict needs to know")
            }
        }
    }

    /// One region for the whole pool, except `bind` over several nodes: one region per node,
    /// superblocks shared out evenly, so every superblock's node is known and verifiable.
    package static func regionPlan(configuration: PoolConfiguration, nodes: NodeSet, geometry: BuddyGeometry) -> [(NodeSet, Int)] {
        let superblocks = configuration.capacity >> geometry.superblockShift
        guard configuration.policy == .bind, nodes.count > 1, superblocks >= nodes.count else {
            return [(nodes, configuration.capacity)]
        }
        let share = superblocks / nodes.count
        let extra = superblocks % nodes.count
        return nodes.enumerated().map { index, node in
            (NodeSet([node]), (share + (index < extra ? 1 : 0)) << geometry.superblockShift)
        }
    }

    /// Bytes the pool mapped at creation.
    public var capacity: Int { configuration.capacity }
    public var priority: Int { configuration.priority }
    public var isLocked: Bool { configuration.locked }

    /// Whether this process is a fork child of the process that made the pool.
    /// In a fork child, pools made before the fork refuse requests and ignore frees, unless
    /// they are kept across fork (`keptAcrossFork`): then the child's copy is its own pool.
    var isForkedChild: Bool { !keptAcrossFork && PoolRegistry.forkGeneration != forkGeneration }

    public var description: String {
        "pool '\(name)': \(formatBytes(capacity)) on nodes \(nodes), \(regions.first?.pageSize.description ?? "?"), priority \(priority)"
    }
}

/// A weak link from a pool to its lending group (the group is owned by the `PoolSet`).
struct LendingGroupReference {
    weak var group: LendingGroup?
}

/// Where a pool's memory is: its nodes and policy.
struct PoolPlacement: Sendable {
    var nodes: NodeSet
    var policy: PlacementPolicy
}
