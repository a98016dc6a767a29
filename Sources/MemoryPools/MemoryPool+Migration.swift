import BuddyCore
import BuddySystem
import Glibc
import Synchronization

// Migration: a pool's superblocks, with their live data, moved to other nodes at the same
// addresses (the kernel's page migration, mbind with MPOL_MF_MOVE), its metadata and depots
// with them; and the pool's placement, sampled page by page.

/// What `MemoryPool.migrate` did.
public struct MigrationReport: Sendable, CustomStringConvertible {
    public let pool: String
    public let targetNodes: NodeSet
    /// Superblocks whose pages were moved (or were already on the target nodes).
    public let superblocksMoved: Int
    public let bytesMoved: Int
    /// Superblocks of the selection left where they are: lent to a pool whose policy does not
    /// allow the target nodes, or borrowed by this pool from another pool's region.
    public let superblocksLeftInPlace: Int
    /// Every own superblock's node after the migration (its first page, sampled with move_pages).
    public let superblocksByNode: [Int: Int]
    /// Sampled pages of the moved superblocks after the migration, by node.
    public let movedPagesByNode: [Int: Int]
    public let duration: Duration
    /// What could not be moved along (metadata the kernel kept where it was).
    public let notes: [String]

    /// Share of the sampled pages of the moved superblocks that are on the target nodes.
    public var fractionOnTarget: Double {
        let total = movedPagesByNode.values.reduce(0, +)
        return total == 0 ? 1 : Double(movedPagesByNode.filter { targetNodes.contains($0.key) }.values.reduce(0, +)) / Double(total)
    }

    public var description: String {
        let perNode = superblocksByNode.keys.sorted().map { "node \($0): \(superblocksByNode[$0]!)" }.joined(separator: ", ")
        return "pool '\(pool)' migrated to nodes \(targetNodes): \(superblocksMoved) superblocks (\(formatBytes(bytesMoved))) in \(duration), "
            + "\(superblocksLeftInPlace) left in place; superblocks by node: \(perNode)"
            + (notes.isEmpty ? "" : "; " + notes.joined(separator: "; "))
    }
}

extension MemoryPool {
    /// Moves every superblock the pool owns, with its live data, to `nodes`, keeping every
    /// address, and binds the pool to them (later faults, after a shrink and grow, land there).
    ///
    /// Checked first: the nodes must exist and have memory in this cpuset, and hold the bytes
    /// (free hugepages of the pool's size for hugetlb pools). When the kernel cannot move every
    /// page, what moved is moved back and the error says so; the pool stays usable where it
    /// was. Superblocks lent to a pool whose policy does not allow the target nodes stay put.
    /// Locked pools stay locked. Costs one mbind per run of superblocks (the kernel copies
    /// every page) and takes no pool lock: allocations and frees go on while pages move.
    public func migrate(to nodes: NodeSet) throws(PoolError) -> MigrationReport {
        try migrate(selection: nil, to: nodes)
    }

    /// Moves only the superblocks that hold `blocks` (for example the blocks one thread uses).
    /// The pool's nodes become its old nodes and the target's; the rest is as `migrate(to:)`.
    public func migrate(superblocksOf blocks: [UnsafeRawPointer], to nodes: NodeSet) throws(PoolError) -> MigrationReport {
        try migrate(selection: blocks.map { UInt(bitPattern: $0) }, to: nodes)
    }

    /// Where the pool's pages are now: per region, `sampleCount` pages spread over it.
    public func verifyPlacement(sampleCount: Int = 512) -> [PlacementReport] {
        regions.map { $0.verifyPlacement(sampleCount: sampleCount) }
    }

    /// One run of consecutive superblocks of one region, and the node each was on before.
    private struct MigrationRun {
        let region: ManagedRegion
        let first: Int
        var count: Int
        var nodesBefore: [Int]
        var base: UInt { region.superblockBase(first) }
        var byteCount: Int { count << region.geometry.superblockShift }
    }

    private func migrate(selection: [UInt]?, to target: NodeSet) throws(PoolError) -> MigrationReport {
        let clock = ContinuousClock()
        let start = clock.now
        guard !isForkedChild else { throw .unavailableAfterFork(pool: name) }
        let call = "migrate pool '\(name)' to nodes \(target)"
        func failure(_ error: SystemError) -> PoolError { .system(error.explained(call: call, advice: error.advice)) }
        let machine: NUMATopology
        do throws(SystemError) {
            machine = try NUMATopology.current()  // anew: the free memory of the nodes now
            _ = try PlacementCheck.validate(nodes: target, policy: .bind, topology: machine)
        } catch {
            throw failure(error)
        }

        let (runs, leftInPlace) = plan(selection: selection, target: target)
        // Room on the target for what is not there yet; hugetlb pools need free hugepages there.
        var needed: [PageSize: Int] = [:]
        for run in runs {
            let elsewhere = run.nodesBefore.filter { !target.contains($0) }.count
            needed[run.region.region.pageSize, default: 0] += elsewhere << geometry.superblockShift
        }
        for (pageSize, bytes) in needed where bytes > 0 {
            do throws(SystemError) {
                try PlacementCheck.checkCapacity(byteCount: bytes, nodes: target, policy: .bind, pageSize: pageSize, topology: machine)
            } catch {
                throw failure(error)
            }
        }

        var done: [MigrationRun] = []
        for run in runs {
            // Invariant: a run lies inside its region (plan cuts runs at region ends).
            assert(run.first + run.count <= run.region.superblockCount, "a migration run beyond its region")
            let pointer = UnsafeMutableRawPointer(bitPattern: run.base).unsafelyUnwrapped
            let result = MemoryCalls.bind(pointer, run.byteCount, mode: PolicyMode.bind, nodes: target,
                                          flags: PolicyMode.moveFlag | PolicyMode.strictFlag)
            if case .failure(let error) = result {
                let restored = moveBack(done + [run])
                throw failure(error.explained(
                    as: error.errno == EIO || error.errno == ENOMEM ? .insufficientMemory : error.kind,
                    advice: "the kernel could not move every page of \(formatBytes(run.byteCount)) at 0x\(String(run.base, radix: 16)) to nodes \(target) "
                        + "(\(error)); \(restored) the pool stays where it was and stays usable"))
            }
            done.append(run)
        }

        let notes = moveMetadata(to: selection == nil ? target : nodes.union(target))
        let moved = Set(done.map { ObjectIdentifier($0.region) })
        for region in managedRegions where moved.contains(ObjectIdentifier(region)) {
            region.resampleNodes()
            let whole = selection == nil && done.filter { $0.region === region }.reduce(0) { $0 + $1.count } == region.superblockCount
            let old = region.region
            old.placementChanged(to: whole
                ? Region.Placement(nodes: target, policy: .bind, weights: nil)
                : Region.Placement(nodes: old.nodes.union(target), policy: old.policy == .weighted ? .bind : old.policy, weights: nil))
        }
        placementState.locked { placement in
            placement = selection == nil ? PoolPlacement(nodes: target, policy: .bind) : PoolPlacement(nodes: placement.nodes.union(target), policy: placement.policy)
        }
        var byNode: [Int: Int] = [:]
        for region in managedRegions {
            for node in region.superblockNodes { byNode[node, default: 0] += 1 }
        }
        let superblocks = done.reduce(0) { $0 + $1.count }
        return MigrationReport(
            pool: name, targetNodes: target, superblocksMoved: superblocks, bytesMoved: superblocks << geometry.superblockShift,
            superblocksLeftInPlace: leftInPlace, superblocksByNode: byNode, movedPagesByNode: sampleNodes(of: done),
            duration: clock.now - start, notes: notes)
    }

    /// The runs of own superblocks to move, and how many of the selection stay put.
    private func plan(selection: [UInt]?, target: NodeSet) -> ([MigrationRun], Int) {
        let group = lendingGroup
        var leftInPlace = 0
        var wanted: Set<UInt>?
        if let selection {
            // A block in no own region is in a superblock this pool borrowed: its region is another pool's.
            var superblocks = Set<UInt>()
            for address in selection {
                if let region = managedRegions.first(where: { $0.contains(address) }) {
                    superblocks.insert(region.superblockBase(region.superblockIndex(of: address)))
                } else {
                    leftInPlace += 1
                }
            }
            wanted = superblocks
        }
        var runs: [MigrationRun] = []
        for region in managedRegions {
            var current: MigrationRun?
            for index in 0..<region.superblockCount {
                var take = wanted.map { $0.contains(region.superblockBase(index)) } ?? true
                let owner = region.owner(superblock: index)
                if take, owner != id, owner != 0, let borrower = group?.pool(id: owner),
                   borrower.policy.restrictsToNodes, !target.subtracting(borrower.nodes).isEmpty {
                    take = false  // its borrower may not hold memory on the target nodes
                    leftInPlace += 1
                }
                if take {
                    if current == nil { current = MigrationRun(region: region, first: index, count: 0, nodesBefore: []) }
                    current!.count += 1
                    current!.nodesBefore.append(region.node(ofSuperblock: index))
                } else if let run = current {
                    runs.append(run)
                    current = nil
                }
            }
            if let run = current { runs.append(run) }
        }
        return (runs, leftInPlace)
    }

    /// Binds each superblock of `runs` back to the node it was on and moves its pages there.
    private func moveBack(_ runs: [MigrationRun]) -> String {
        var failed = 0
        for run in runs {
            let region = run.region.region
            if region.policy != .weighted {
                // The region's own policy again (bind, preferred or interleave over its nodes).
                let (mode, nodes, _) = PlacementCheck.kernelMode(policy: region.policy, nodes: region.nodes, topology: topology)
                let pointer = UnsafeMutableRawPointer(bitPattern: run.base).unsafelyUnwrapped
                if case .failure = MemoryCalls.bind(pointer, run.byteCount, mode: mode, nodes: nodes, flags: PolicyMode.moveFlag) {
                    failed += run.count
                }
            } else {
                // A weighted region binds each superblock to one node: the node it was on.
                for (offset, node) in run.nodesBefore.enumerated() {
                    let pointer = UnsafeMutableRawPointer(bitPattern: run.region.superblockBase(run.first + offset)).unsafelyUnwrapped
                    let nodes = node >= 0 ? NodeSet([node]) : region.nodes
                    if case .failure = MemoryCalls.bind(pointer, 1 << geometry.superblockShift, mode: PolicyMode.bind, nodes: nodes,
                                                         flags: PolicyMode.moveFlag) {
                        failed += 1
                    }
                }
            }
            run.region.resampleNodes()
        }
        let total = runs.reduce(0) { $0 + $1.count }
        return failed == 0
            ? "the \(total) superblocks it had started on were moved back;"
            : "\(failed) of \(total) superblocks could not be moved back (their pages may sit on either node);"
    }

    /// Moves the pool's metadata (state bytes, owners, slab tables, arena, depots) along.
    private func moveMetadata(to nodes: NodeSet) -> [String] {
        var failures: [SystemError] = []
        if case .failure(let error) = metadata.move(to: nodes) { failures.append(error) }
        for region in managedRegions { failures += region.moveMetadata(to: nodes) }
        if let caches, case .failure(let error) = caches.moveDepots(to: nodes) { failures.append(error) }
        core.locked { core in
            if case .failure(let error) = core.slots.buffer.move(to: nodes) { failures.append(error) }
            let old = core.placement
            core.placement = SlotStorage.Placement(geometry: old.geometry, nodes: nodes, locked: old.locked, label: old.label)
        }
        return failures.isEmpty ? [] : ["\(failures.count) metadata mappings stayed where they were (\(failures[0]))"]
    }

    /// Up to 64 pages of each moved superblock, by node.
    private func sampleNodes(of runs: [MigrationRun]) -> [Int: Int] {
        let granule = regions.first?.pageSize.isHugetlb == true ? regions[0].pageSize.bytes : 4096
        let perSuperblock = max(1, min(64, geometry.superblockSize / granule))
        let step = geometry.superblockSize / perSuperblock
        var pages: [UnsafeRawPointer] = []
        for run in runs {
            for index in 0..<(run.count * perSuperblock) {
                pages.append(UnsafeRawPointer(bitPattern: run.base + UInt(index * step)).unsafelyUnwrapped)
            }
        }
        var byNode: [Int: Int] = [:]
        for chunk in stride(from: 0, to: pages.count, by: 4096) {
            let slice = Array(pages[chunk..<min(pages.count, chunk + 4096)])
            guard case .success(let nodes) = PagePlacement.query(slice) else { continue }
            for node in nodes { byNode[node ?? -1, default: 0] += 1 }
        }
        return byNode
    }
}
