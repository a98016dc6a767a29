import BuddyCore
import Glibc
import Synchronization

// Region: one mapping of one page size and placement, with the page-size fallback chain and
// the steps of creation (reserve, map, mbind, advise, populate, lock) through the door.

/// One step down the page-size fallback chain and why it was taken.
public struct PageSizeFallback: Sendable, Equatable, CustomStringConvertible {
    public let from: PageSize
    public let to: PageSize
    public let reason: String

    public var description: String { "\(from) -> \(to): \(reason)" }
}

/// One mmap'd range with one page size and one placement policy, populated at creation
/// (and mlock'd when `locked`), unmapped when the last reference goes away.
///
/// The start is aligned to `alignment` (at least the page size), so superblocks of that size
/// are naturally aligned in the address space whatever backs them.
public final class Region: Sendable, CustomStringConvertible {
    public let label: String
    private let address: UInt
    public let byteCount: Int
    /// The page size the region got, after any fallback.
    public let pageSize: PageSize
    public let requestedPageSize: PageSize
    /// Each fallback step with its reason, in order; empty when the requested size was used.
    public let fallbacks: [PageSizeFallback]
    /// Nodes the region's pages are placed on (after a migration, the nodes it moved to).
    public var nodes: NodeSet { placement.locked { $0.nodes } }
    public var policy: PlacementPolicy { placement.locked { $0.policy } }
    /// The shares per node of a `weighted` region (nil for the other policies).
    public var weights: NodeWeights? { placement.locked { $0.weights } }
    /// Where the region is placed: set at creation, changed only by a migration.
    private let placement: Mutex<Placement>

    public struct Placement: Sendable, Equatable {
        public var nodes: NodeSet
        public var policy: PlacementPolicy
        public var weights: NodeWeights?

        package init(nodes: NodeSet, policy: PlacementPolicy, weights: NodeWeights?) {
            self.nodes = nodes
            self.policy = policy
            self.weights = weights
        }
    }
    public let isLocked: Bool
    /// Remarks about how the request was carried out (e.g. mlock skipped for hugetlb).
    public let notes: [String]

    public var baseAddress: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: address)! }
    public var addressRange: Range<UInt> { address..<(address + UInt(byteCount)) }

    /// Maps, binds, populates and optionally locks a region.
    ///
    /// - Parameters:
    ///   - strictPageSize: fail with `SystemError` instead of falling back 1G -> 2M -> THP -> base.
    ///   - alignment: power of two the start must be aligned to (the superblock size for pools).
    ///   - topology: the machine; read anew when nil.
    ///   - checkHugepagesFirst: compare per-node free hugepage counts before mapping (the default).
    ///     false trusts the kernel alone: MADV_POPULATE_WRITE's EFAULT is then the only guard
    ///     against binding to a node without hugepages (it still never SIGBUSes).
    ///   - inheritedByFork: leave out MADV_DONTFORK, so a fork child has the region copy-on-write.
    ///   - populate: false leaves base and transparent pages to fault in on first touch
    ///     (hugetlb and locked regions are always populated).
    ///   - weights: the shares of a `weighted` region (required with it, its nodes are `nodes`):
    ///     each chunk of `alignment` bytes is bound to one node, in the order `NodeWeights.plan` gives.
    public init(
        label: String = "region", byteCount: Int, nodes: NodeSet, policy: PlacementPolicy = .bind,
        pageSize: PageSize = .huge2M, strictPageSize: Bool = false, locked: Bool = false,
        alignment: Int = 2 << 20, topology: NUMATopology? = nil, checkHugepagesFirst: Bool = true,
        inheritedByFork: Bool = false, populate: Bool = true, weights: NodeWeights? = nil
    ) throws(SystemError) {
        guard byteCount > 0 else {
            throw SystemError(.invalidArgument, call: "region size check", advice: "a region needs a size above zero")
        }
        // No address space is this large (x86-64 has 47 bits for a process); refusing it here
        // keeps the sums below (size plus alignment slack) from overflowing.
        guard byteCount <= 1 << 52, alignment <= 1 << 52 else {
            throw SystemError(.invalidArgument, call: "region size check",
                              advice: "\(formatBytes(byteCount)) aligned to \(formatBytes(alignment)) is more than any address space holds")
        }
        guard alignment > 0, alignment & (alignment - 1) == 0, byteCount % min(alignment, 4096) == 0 else {
            throw SystemError(
                .invalidArgument, call: "region alignment check",
                advice: "alignment must be a power of two and the size (\(byteCount)) a multiple of 4 KiB")
        }
        let machine: NUMATopology
        if let topology { machine = topology } else { machine = try NUMATopology.current() }
        let memoryNodes = try PlacementCheck.validate(nodes: nodes, policy: policy, topology: machine)
        let shares = try Self.checkWeights(weights, policy: policy, nodes: memoryNodes)

        let (mapped, candidate, steps) = try Self.walkFallbacks(
            from: pageSize, strict: strictPageSize, label: label, byteCount: byteCount
        ) { candidate throws(SystemError) in
            let chunk = max(alignment, candidate.bytes)
            let runs = shares.map { Self.weightedRuns(byteCount: byteCount, chunk: chunk, weights: $0) }
            if checkHugepagesFirst || !candidate.isHugetlb {
                if let runs {
                    for (node, bytes) in Self.bytesPerNode(runs) {
                        try PlacementCheck.checkCapacity(byteCount: bytes, nodes: [node], policy: .bind, pageSize: candidate, topology: machine)
                    }
                } else {
                    try PlacementCheck.checkCapacity(
                        byteCount: byteCount, nodes: memoryNodes, policy: policy, pageSize: candidate, topology: machine)
                }
            }
            return try Self.mapAndPopulate(
                byteCount: byteCount, nodes: memoryNodes, policy: policy, weightedRuns: runs, pageSize: candidate,
                alignment: max(alignment, candidate.bytes), topology: machine, label: label,
                inheritedByFork: inheritedByFork, populate: populate || locked || candidate.isHugetlb)
        }
        var notes = mapped.notes
        if locked {
            if candidate.isHugetlb {
                notes.append("hugetlb pages are never swapped or migrated by compaction; mlock skipped (it would only count against RLIMIT_MEMLOCK)")
            } else if case .failure(let error) = MemoryCalls.lock(mapped.base, byteCount) {
                Self.unmap(mapped.base, byteCount, label: label)
                throw error.explained(as: .permissionDenied, advice: PlacementCheck.memlockAdvice(byteCount: byteCount, topology: machine))
            } else if candidate == .transparent, case .failure(let error) = MemoryCalls.advise(mapped.base, byteCount, .noHugepage) {
                // Populated and locked, the pages are final: khugepaged must not collapse the
                // base pages among them later (a collapse faults every access to its range).
                notes.append("khugepaged may still collapse pages of this locked region: \(error)")
            }
        }
        self.label = label
        self.address = UInt(bitPattern: mapped.base)
        self.byteCount = byteCount
        self.pageSize = candidate
        self.requestedPageSize = pageSize
        self.fallbacks = steps
        self.placement = Mutex(Placement(nodes: memoryNodes, policy: policy, weights: shares))
        self.isLocked = locked
        self.notes = notes
        self.commitsOnDemand = !(populate || locked || candidate.isHugetlb)
    }

    /// Whether the region is a reservation whose parts must be committed before first use
    /// (created with `populate: false` on base or transparent pages, unlocked).
    public let commitsOnDemand: Bool

    /// Makes `byteCount` bytes at `offset` readable and writable (mprotect), committing them;
    /// again on a committed part is harmless. Only regions that commit on demand need it.
    /// - Throws: `SystemError` with ENOMEM when the kernel refuses the charge (strict
    ///   overcommit, RLIMIT_DATA), or EINVAL for a range outside the region or not page-aligned.
    public func commit(offset: Int, byteCount length: Int) throws(SystemError) {
        guard offset >= 0, length > 0, offset <= byteCount - length, offset % 4096 == 0, length % 4096 == 0 else {
            throw SystemError(.invalidArgument, call: "region commit check",
                              advice: "\(length) bytes at offset \(offset) are not whole pages of this \(formatBytes(byteCount)) region")
        }
        if case .failure(let error) = MemoryCalls.commit(baseAddress + offset, length) {
            throw error.explained(advice: "the kernel refused to commit \(formatBytes(length)) of \(label); check vm.overcommit_memory and ulimit -d")
        }
    }

    /// The page size a region would get, and the fallbacks on the way, without mapping anything.
    public static func predictPageSize(
        byteCount: Int, nodes: NodeSet, policy: PlacementPolicy, pageSize: PageSize, strictPageSize: Bool, topology: NUMATopology,
        alignment: Int = 2 << 20, weights: NodeWeights? = nil
    ) throws(SystemError) -> (PageSize, [PageSizeFallback]) {
        let memoryNodes = try PlacementCheck.validate(nodes: nodes, policy: policy, topology: topology)
        let shares = try checkWeights(weights, policy: policy, nodes: memoryNodes)
        let (_, size, steps) = try walkFallbacks(from: pageSize, strict: strictPageSize, label: nil, byteCount: byteCount) { candidate throws(SystemError) in
            if let shares {
                let runs = weightedRuns(byteCount: byteCount, chunk: max(alignment, candidate.bytes), weights: shares)
                for (node, bytes) in bytesPerNode(runs) {
                    try PlacementCheck.checkCapacity(byteCount: bytes, nodes: [node], policy: .bind, pageSize: candidate, topology: topology)
                }
            } else {
                try PlacementCheck.checkCapacity(byteCount: byteCount, nodes: memoryNodes, policy: policy, pageSize: candidate, topology: topology)
            }
        }
        return (size, steps)
    }

    /// Tries `attempt` with the requested page size and, unless strict, with each fallback
    /// after a shortage (hugepages missing, THP off); other errors end the walk.
    private static func walkFallbacks<T>(
        from requested: PageSize, strict: Bool, label: String?, byteCount: Int, attempt: (PageSize) throws(SystemError) -> T
    ) throws(SystemError) -> (T, PageSize, [PageSizeFallback]) {
        var candidate = requested
        var steps: [PageSizeFallback] = []
        while true {
            do throws(SystemError) {
                return (try attempt(candidate), candidate, steps)
            } catch {
                guard error.kind == .hugepagesUnavailable || error.kind == .unsupported, !strict, let next = candidate.fallback else {
                    throw error
                }
                steps.append(PageSizeFallback(from: candidate, to: next, reason: error.advice))
                if let label {
                    Diagnostics.report(.warning, DiagnosticEvent(.pageSizeFallback, .warning, subject: label,
                        message: "\(candidate) unavailable, falling back to \(next): \(error.advice)", bytes: byteCount))
                }
                candidate = next
            }
        }
    }

    /// Records where a migration put the region's pages (the kernel's policy of the range was
    /// set by the migration's mbind).
    package func placementChanged(to new: Placement) { placement.locked { $0 = new } }

    deinit {
        // munmap also drops the mlock; nothing else refers to the range once the region is gone.
        Self.unmap(baseAddress, byteCount, label: label)
    }

    /// munmap with its failure reported (a deinit or a failed creation cannot do more).
    private static func unmap(_ base: UnsafeMutableRawPointer, _ byteCount: Int, label: String) {
        if case .failure(let error) = MemoryCalls.unmap(base, byteCount) {
            Diagnostics.report(.warning, DiagnosticEvent(.lifecycle, .warning, subject: label, message: "\(error)", bytes: byteCount))
        }
    }

    public var description: String {
        let hex = "0x" + String(address, radix: 16)
        return "\(label): \(formatBytes(byteCount)) at \(hex), \(pageSize), \(policy) nodes \(nodes)\(isLocked ? ", locked" : "")"
    }

    /// Maps one attempt at `pageSize`; on any failure nothing stays mapped.
    private static func mapAndPopulate(
        byteCount: Int, nodes: NodeSet, policy: PlacementPolicy, weightedRuns: [WeightedRun]?, pageSize: PageSize, alignment: Int,
        topology: NUMATopology, label: String, inheritedByFork: Bool, populate: Bool
    ) throws(SystemError) -> (base: UnsafeMutableRawPointer, notes: [String]) {
        var notes: [String] = []
        let reservation: UnsafeMutableRawPointer
        switch MemoryCalls.reserveAddressSpace(byteCount + alignment) {
        case .success(let pointer): reservation = pointer
        case .failure(let error): throw error.explained(advice: "the address space is exhausted or vm.max_map_count is reached")
        }
        // Keep the aligned middle of the reservation; give back the slack on both sides.
        let start = (UInt(bitPattern: reservation) + UInt(alignment) - 1) & ~UInt(alignment - 1)
        let reservationEnd = UInt(bitPattern: reservation) + UInt(byteCount + alignment)
        let base = reservation + Int(start - UInt(bitPattern: reservation))
        let head = Int(start - UInt(bitPattern: reservation)), tail = Int(reservationEnd - start) - byteCount
        if head > 0 { unmap(reservation, head, label: label) }
        if tail > 0 { unmap(base + byteCount, tail, label: label) }
        func fail(_ error: SystemError) -> SystemError {
            unmap(base, byteCount, label: label)
            return error
        }

        // A region left to fault in stays a reservation (PROT_NONE) and its user commits each
        // part before first use (`commit(offset:byteCount:)`): a process that maps a large heap
        // is charged for what it uses, not for the heap's size, even under strict overcommit.
        if populate, case .failure(let error) = MemoryCalls.mapFixed(base, byteCount, hugePageShift: pageSize.hugetlbShift) {
            if pageSize.isHugetlb {
                throw fail(error.explained(
                    as: .hugepagesUnavailable,
                    advice: "the kernel could not reserve \(byteCount / pageSize.bytes) \(pageSize); "
                        + PlacementCheck.reserveAdvice(pageSize: pageSize, pages: byteCount / pageSize.bytes, nodes: nodes, topology: topology)))
            }
            throw fail(error.explained(advice: "the kernel refused the mapping; check vm.overcommit_memory and ulimit -v"))
        }

        let (mode, bindNodes, modeNote) = PlacementCheck.kernelMode(policy: policy, nodes: nodes, topology: topology)
        if let modeNote { notes.append(modeNote) }
        for run in weightedRuns ?? [WeightedRun(node: -1, offset: 0, byteCount: byteCount)] where topology.isNUMAAvailable {
            let runNodes = run.node < 0 ? bindNodes : NodeSet([run.node])
            if case .failure(let error) = MemoryCalls.bind(base + run.offset, run.byteCount, mode: mode, nodes: runNodes) {
                throw fail(error.explained(
                    as: .invalidPlacement,
                    advice: "the kernel rejected the node set \(runNodes); check `buddypools info` for the nodes with memory this cpuset allows"))
            }
        }

        let hugepageAdvice: MemoryAdvice? = switch pageSize {
        case .transparent: .hugepage
        case .base: .noHugepage
        case .huge2M, .huge1G: nil
        }
        if let hugepageAdvice, case .failure(let error) = MemoryCalls.advise(base, byteCount, hugepageAdvice) {
            // Without the advice THP follows the system setting: the region still works, on other pages.
            notes.append("\(error)")
        }
        // Regions are not inherited (unless asked): fork stays cheap and a child never
        // copy-on-writes hugetlb pages.
        if !inheritedByFork, case .failure(let error) = MemoryCalls.advise(base, byteCount, .dontFork) {
            throw fail(error.explained(advice: "pool memory must not be inherited across fork"))
        }

        // Base and transparent pages may be left to fault in (never hugetlb or locked ones).
        guard populate else { return (base, notes + ["not populated: committed a superblock at a time on first use, pages fault in on first touch"]) }
        switch PagePopulation.populate(base, byteCount: byteCount, pageSize: pageSize) {
        case .populated:
            break
        case .touched:
            // Kernels before 5.14 lack MADV_POPULATE_WRITE; the capacity checks above stand in for its EFAULT.
            notes.append("populated by touching each page (no MADV_POPULATE_WRITE on this kernel)")
        case .failed(let error):
            switch error.errno {
            case EFAULT where pageSize.isHugetlb, ENOMEM where pageSize.isHugetlb:
                throw fail(error.explained(
                    as: .hugepagesUnavailable,
                    advice: "nodes \(nodes) ran out of \(pageSize) while populating (policy \(policy)); "
                        + PlacementCheck.reserveAdvice(pageSize: pageSize, pages: byteCount / pageSize.bytes, nodes: nodes, topology: topology)))
            default:
                throw fail(error.explained(
                    as: .insufficientMemory,
                    advice: "nodes \(nodes) could not supply \(formatBytes(byteCount)) of \(pageSize); free memory there or use policy=preferred"))
            }
        }
        return (base, notes)
    }
}

/// Weighted placement: which bytes of a region go to which node.
extension Region {
    /// Consecutive chunks bound to one node.
    struct WeightedRun: Equatable {
        let node: Int
        let offset: Int
        let byteCount: Int
    }

    /// The weights of a `weighted` region, checked against its policy and nodes.
    static func checkWeights(_ weights: NodeWeights?, policy: PlacementPolicy, nodes: NodeSet) throws(SystemError) -> NodeWeights? {
        switch (policy, weights) {
        case (.weighted, nil):
            throw SystemError(.invalidArgument, call: "weights check", advice: "policy weighted needs weights, e.g. weights=0:3,1:1")
        case (.weighted, let weights?):
            guard weights.nodes == nodes else {
                throw SystemError(.invalidArgument, call: "weights check",
                                  advice: "the weights name nodes \(weights.nodes) and the region nodes \(nodes); name the same nodes")
            }
            return weights
        case (_, nil):
            return nil
        case (_, .some):
            throw SystemError(.invalidArgument, call: "weights check", advice: "weights apply to policy weighted only (the policy is \(policy))")
        }
    }

    /// The chunks of `chunk` bytes (the last one may be shorter) in `NodeWeights.plan` order,
    /// merged where neighbours share a node.
    static func weightedRuns(byteCount: Int, chunk: Int, weights: NodeWeights) -> [WeightedRun] {
        let chunks = (byteCount + chunk - 1) / chunk
        var runs: [WeightedRun] = []
        for (index, node) in weights.plan(chunks: chunks).enumerated() {
            let offset = index * chunk, bytes = min(chunk, byteCount - offset)
            if let last = runs.last, last.node == node {
                runs[runs.count - 1] = WeightedRun(node: node, offset: last.offset, byteCount: last.byteCount + bytes)
            } else {
                runs.append(WeightedRun(node: node, offset: offset, byteCount: bytes))
            }
        }
        return runs
    }

    static func bytesPerNode(_ runs: [WeightedRun]) -> [(node: Int, bytes: Int)] {
        var bytes: [Int: Int] = [:]
        for run in runs { bytes[run.node, default: 0] += run.byteCount }
        return bytes.keys.sorted().map { ($0, bytes[$0]!) }
    }
}
