import BuddyCaches
import BuddyConfig
import BuddyCore
import BuddySystem
import Synchronization

/// Fragmentation of one order, as the kernel measures it for its zones.
public struct OrderFragmentation: Sendable, Codable, Equatable {
    public let order: Int
    public let blockBytes: Int
    public let freeBlocks: Int
    /// The kernel's extfrag index (fragmentation_index) for a request of this order: nil when
    /// a free block of this order or larger exists (the request would succeed), towards 0 when
    /// failure would come from lack of memory, towards 1 when from fragmentation.
    public let externalFragmentationIndex: Double?
    /// Share of free memory in blocks too small for this order (the unusable free space index).
    public let unusableFreeSpaceIndex: Double

    /// Both indexes from free block counts per order (index = order).
    public static func compute(freeBlocksByOrder counts: [Int], minBlockSize: Int) -> [OrderFragmentation] {
        let freeUnits = counts.enumerated().reduce(0) { $0 + ($1.element << $1.offset) }
        let totalBlocks = counts.reduce(0, +)
        return counts.indices.map { order in
            let suitable = counts.indices.filter { $0 >= order }.reduce(0) { $0 + (counts[$1] << ($1 - order)) }
            let extfrag: Double? = if totalBlocks == 0 {
                0
            } else if suitable > 0 {
                nil
            } else {
                1 - (1 + Double(freeUnits) / Double(1 << order)) / Double(totalBlocks)
            }
            let unusable = freeUnits == 0 ? 0 : Double(freeUnits - (suitable << order)) / Double(freeUnits)
            return OrderFragmentation(
                order: order, blockBytes: minBlockSize << order, freeBlocks: counts[order],
                externalFragmentationIndex: extfrag, unusableFreeSpaceIndex: unusable)
        }
    }
}

/// A snapshot of one pool. Reading it counts what the caches hold (walking the threads'
/// caches and the depots), then takes the pool lock once and walks the superblocks. Exact when
/// no operation is in flight: `usedBytes` is 0 once everything is freed.
public struct PoolStatistics: Sendable, Codable, Equatable {
    public var name: String
    public var nodes: String
    public var pageSize: PageSize
    public var priority: Int
    public var locked: Bool
    public var minBlockBytes: Int
    /// Inclusive.
    public var maxOrder: Int
    public var superblockBytes: Int
    /// Bytes mapped at creation.
    public var capacityBytes: Int
    /// Own bytes made readable and writable: all of `capacityBytes` for a pool populated at
    /// creation; for a malloc heap's pool (`populatedAtCreation = false`), the superblocks it has
    /// used or lent so far, what strict overcommit charges it.
    public var committedBytes: Int
    /// Bytes the pool manages now: own superblocks minus lent ones plus borrowed ones.
    public var managedBytes: Int
    /// Free in the buddy allocator.
    public var freeBytes: Int
    /// Held by thread magazines, per-CPU depots and the runs kept for reuse, ready for reuse.
    public var cachedBytes: Int
    /// Handed out to callers: managed - free - cached.
    public var usedBytes: Int
    /// Most bytes the buddy allocator has had out at once (callers and caches).
    public var highWaterBytes: Int
    /// Free blocks per order, like /proc/buddyinfo (index = order).
    public var freeBlocksByOrder: [Int]
    /// The same per NUMA node the superblocks sit on ("-1": unknown).
    public var freeBlocksByNode: [String: [Int]]
    public var largestFreeBlockBytes: Int
    public var allocationCount: Int
    public var deallocationCount: Int
    public var failureCount: Int
    /// Buddy metadata: the arena's bitmaps and counters for every slot it holds now (own and
    /// borrowing), the tracker, and the state bytes and owner words of the own regions. Exact.
    public var metadataBytes: Int
    /// `metadataBytes` over the pool's own bytes (`capacityBytes`).
    public var metadataFraction: Double
    /// Memory of the caches' magazines and depots.
    public var cacheStorageBytes: Int
    public var threadCaches: Int
    /// The most all caches may hold at once (threads' grants and depots: `cache-bytes`).
    public var cacheBudgetBytes: Int
    /// Bytes granted to the threads that have caches now.
    public var cacheGrantedBytes: Int
    /// What each thread's magazines hold now, largest first.
    public var cachedBytesByThread: [Int]
    public var lentBytes: Int
    public var borrowedBytes: Int
    /// Superblocks borrowed now, by lender name.
    public var borrowedFrom: [String: Int]
    /// Superblocks lent now, by borrower name.
    public var lentTo: [String: Int]
    public var superblocksBorrowedTotal: Int
    public var superblocksReturnedTotal: Int
    /// Superblocks by the mobility group that holds them, like /proc/pagetypeinfo (wholly free ones apart).
    public var superblocksByMobility: [String: Int]
    public var whollyFreeSuperblocks: Int
    public var fragmentation: [OrderFragmentation]
    public var cacheDrains: Int
    public var compactions: Int
    public var bytesMoved: Int
    public var shrinkerCalls: Int
    public var bytesReclaimed: Int
    /// Superblocks compaction emptied, and raw blocks whose relocation handler said no.
    public var superblocksCompacted: Int
    public var relocationsRefused: Int
    /// Own memory `shrink(to:)` gave back to the kernel.
    public var releasedBytes: Int
    public var movableHandles: Int
    /// Objects below a page, per size class with slabs (like /proc/slabinfo). Slabs count in
    /// `usedBytes` whole while any object in them is in use, and in `cachedBytes` when empty.
    public var slabs: [SlabClassStatistics]
}

extension MemoryPool {
    public var statistics: PoolStatistics {
        // Counted before taking the pool lock: the lock order is thread-cache list, cache, depot, pool.
        let census = caches?.census() ?? PoolCaches.Census()
        let unlockedRuns = unlockedRunOperations(census: census)
        return core.locked { core in
            let slabRows = slabCensus(core)
            let emptySlabBytes = slabRows.reduce(0) { total, row in total + (row.slabs == 0 ? 0 : row.emptySlabs * row.slabBytes / row.slabs) }
            let cached = census.cachedBytes + core.cachedRunBytes + emptySlabBytes
            let managed = core.managedBytes
            let counts = (0...geometry.maxOrder).map { core.arena.freeBlockCount(order: $0) }
            var byNode: [String: [Int]] = [:]
            for slot in 0..<core.arena.slotCapacity where core.arena.isAttached(slot: slot) {
                let key = String(core.superblockNode(slot))
                var row = byNode[key] ?? [Int](repeating: 0, count: geometry.maxOrder + 1)
                for order in 0...geometry.maxOrder { row[order] += core.arena.freeBlockCount(slot: slot, order: order) }
                byNode[key] = row
            }
            var byMobility: [String: Int] = [:]
            for slot in 0..<core.arena.slotCapacity where core.arena.isAttached(slot: slot) {
                if let group = core.arena.mobilityClass(slot: slot), let mobility = Mobility(rawValue: group) {
                    byMobility[mobility.description, default: 0] += 1
                }
            }
            var borrowedFrom: [String: Int] = [:]
            for loan in core.borrowed.values { borrowedFrom[PoolRegistry.name(of: loan.lenderID) ?? "#\(loan.lenderID)", default: 0] += 1 }
            var lentTo: [String: Int] = [:]
            for borrower in core.lent.values { lentTo[PoolRegistry.name(of: borrower) ?? "#\(borrower)", default: 0] += 1 }
            let metadata = core.slots.metadataBytes + ownRegionMetadataBytes + slabMetadataBytes
            let used = managed - core.arena.freeBytes - max(0, cached)
            return PoolStatistics(
                name: name, nodes: nodes.description, pageSize: regions.first?.pageSize ?? configuration.pageSize,
                priority: priority, locked: configuration.locked, minBlockBytes: geometry.minBlockSize, maxOrder: geometry.maxOrder,
                superblockBytes: geometry.superblockSize, capacityBytes: capacity,
                committedBytes: capacity - (core.uncommitted.count << geometry.superblockShift), managedBytes: managed,
                freeBytes: core.arena.freeBytes, cachedBytes: max(0, cached), usedBytes: max(0, used),
                highWaterBytes: core.counters.highWaterBytes, freeBlocksByOrder: counts, freeBlocksByNode: byNode,
                largestFreeBlockBytes: core.arena.largestFreeOrder.map { geometry.blockSize(order: $0) } ?? 0,
                allocationCount: core.counters.allocations + census.allocations + unlockedRuns.taken,
                // Frees into caches are not counted as they happen: blocks in caches now, plus those
                // popped, minus those the caches took from the buddy allocator, were pushed.
                deallocationCount: core.counters.deallocations + census.cachedBlocks + census.allocations - core.counters.cacheNetBlocks
                    + unlockedRuns.kept,
                failureCount: core.counters.failures,
                metadataBytes: metadata, metadataFraction: Double(metadata) / Double(max(1, capacity)),
                cacheStorageBytes: census.storageBytes, threadCaches: census.threads,
                cacheBudgetBytes: (caches.map { $0.threadBudget + $0.depotBudget } ?? 0) + core.runCacheBudget,
                cacheGrantedBytes: census.grantedBytes,
                cachedBytesByThread: census.bytesByThread,
                lentBytes: core.lent.count << geometry.superblockShift, borrowedBytes: core.borrowed.count << geometry.superblockShift,
                borrowedFrom: borrowedFrom, lentTo: lentTo, superblocksBorrowedTotal: core.counters.superblocksBorrowed,
                superblocksReturnedTotal: core.counters.superblocksReturned, superblocksByMobility: byMobility,
                whollyFreeSuperblocks: core.arena.whollyFreeSlotCount,
                fragmentation: OrderFragmentation.compute(freeBlocksByOrder: counts, minBlockSize: geometry.minBlockSize),
                cacheDrains: core.counters.cacheDrains, compactions: core.counters.compactions, bytesMoved: core.counters.bytesMoved,
                shrinkerCalls: core.counters.shrinkerCalls, bytesReclaimed: core.counters.bytesReclaimed,
                superblocksCompacted: core.counters.superblocksCompacted, relocationsRefused: core.counters.relocationsRefused,
                releasedBytes: core.released.count << geometry.superblockShift, movableHandles: handles.handleAtAddress.count,
                slabs: slabRows)
        }
    }

    /// The state bytes (one per minimum block) and owner words of the pool's own regions; the
    /// regions of superblocks it borrowed count with their lenders.
    private var ownRegionMetadataBytes: Int {
        managedRegions.reduce(0) { $0 + ($1.superblockCount << geometry.maxOrder) + $1.superblockCount * 4 }
    }
}
