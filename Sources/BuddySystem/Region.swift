import BuddyCore
import Glibc

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
    public let nodes: NodeSet
    public let policy: PlacementPolicy
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
    public init(
        label: String = "region", byteCount: Int, nodes: NodeSet, policy: PlacementPolicy = .bind,
        pageSize: PageSize = .huge2M, strictPageSize: Bool = false, locked: Bool = false,
        alignment: Int = 2 << 20, topology: NUMATopology? = nil, checkHugepagesFirst: Bool = true,
        inheritedByFork: Bool = false, populate: Bool = true
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

        let (mapped, candidate, steps) = try Self.walkFallbacks(
            from: pageSize, strict: strictPageSize, label: label, byteCount: byteCount
        ) { candidate throws(SystemError) in
            if checkHugepagesFirst || !candidate.isHugetlb {
                try PlacementCheck.checkCapacity(
                    byteCount: byteCount, nodes: memoryNodes, policy: policy, pageSize: candidate, topology: machine)
            }
            return try Self.mapAndPopulate(
                byteCount: byteCount, nodes: memoryNodes, policy: policy, pageSize: candidate,
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
            }
        }
        self.label = label
        self.address = UInt(bitPattern: mapped.base)
        self.byteCount = byteCount
        self.pageSize = candidate
        self.requestedPageSize = pageSize
        self.fallbacks = steps
        self.nodes = memoryNodes
        self.policy = policy
        self.isLocked = locked
        self.notes = notes
    }

    /// The page size a region would get, and the fallbacks on the way, without mapping anything.
    public static func predictPageSize(
        byteCount: Int, nodes: NodeSet, policy: PlacementPolicy, pageSize: PageSize, strictPageSize: Bool, topology: NUMATopology
    ) throws(SystemError) -> (PageSize, [PageSizeFallback]) {
        let memoryNodes = try PlacementCheck.validate(nodes: nodes, policy: policy, topology: topology)
        let (_, size, steps) = try walkFallbacks(from: pageSize, strict: strictPageSize, label: nil, byteCount: byteCount) { candidate throws(SystemError) in
            try PlacementCheck.checkCapacity(byteCount: byteCount, nodes: memoryNodes, policy: policy, pageSize: candidate, topology: topology)
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
        byteCount: Int, nodes: NodeSet, policy: PlacementPolicy, pageSize: PageSize, alignment: Int,
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

        if case .failure(let error) = MemoryCalls.mapFixed(base, byteCount, hugePageShift: pageSize.hugetlbShift) {
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
        if topology.isNUMAAvailable, case .failure(let error) = MemoryCalls.bind(base, byteCount, mode: mode, nodes: bindNodes) {
            throw fail(error.explained(
                as: .invalidPlacement,
                advice: "the kernel rejected the node set \(bindNodes); check `buddypools info` for the nodes with memory this cpuset allows"))
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
        guard populate else { return (base, notes + ["not populated: pages fault in on first touch"]) }
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
