import CNuma
#if canImport(Glibc)
import Glibc
#endif

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
    public init(
        label: String = "region", byteCount: Int, nodes: NodeSet, policy: PlacementPolicy = .bind,
        pageSize: PageSize = .huge2M, strictPageSize: Bool = false, locked: Bool = false,
        alignment: Int = 2 << 20, topology: NUMATopology? = nil, checkHugepagesFirst: Bool = true
    ) throws(SystemError) {
        guard byteCount > 0 else {
            throw SystemError(.invalidArgument, call: "region size check", advice: "a region needs a size above zero")
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
                alignment: max(alignment, candidate.bytes), topology: machine)
        }
        var notes = mapped.notes
        if locked {
            if candidate.isHugetlb {
                notes.append("hugetlb pages are never swapped or migrated by compaction; mlock skipped (it would only count against RLIMIT_MEMLOCK)")
            } else if cnuma_lock(UnsafeMutableRawPointer(bitPattern: mapped.address), byteCount) != 0 {
                let code = currentErrno()
                _ = cnuma_unmap(UnsafeMutableRawPointer(bitPattern: mapped.address), byteCount)
                throw SystemError(
                    .permissionDenied, call: "mlock(\(formatBytes(byteCount)))", errno: code,
                    advice: PlacementCheck.memlockAdvice(byteCount: byteCount, topology: machine))
            }
        }
        self.label = label
        self.address = mapped.address
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
        _ = cnuma_unmap(baseAddress, byteCount)
    }

    public var description: String {
        let hex = "0x" + String(address, radix: 16)
        return "\(label): \(formatBytes(byteCount)) at \(hex), \(pageSize), \(policy) nodes \(nodes)\(isLocked ? ", locked" : "")"
    }

    /// Maps one attempt at `pageSize`; on any failure nothing stays mapped.
    private static func mapAndPopulate(
        byteCount: Int, nodes: NodeSet, policy: PlacementPolicy, pageSize: PageSize, alignment: Int,
        topology: NUMATopology
    ) throws(SystemError) -> (address: UInt, notes: [String]) {
        var notes: [String] = []
        guard let reservation = cnuma_reserve_address_space(byteCount + alignment) else {
            throw SystemError(
                .insufficientMemory, call: "mmap(PROT_NONE, \(formatBytes(byteCount + alignment)))", errno: currentErrno(),
                advice: "the address space is exhausted or vm.max_map_count is reached")
        }
        let start = (UInt(bitPattern: reservation) + UInt(alignment) - 1) & ~UInt(alignment - 1)
        let reservationEnd = UInt(bitPattern: reservation) + UInt(byteCount + alignment)
        if start > UInt(bitPattern: reservation) {
            _ = cnuma_unmap(reservation, Int(start - UInt(bitPattern: reservation)))
        }
        if reservationEnd > start + UInt(byteCount) {
            _ = cnuma_unmap(UnsafeMutableRawPointer(bitPattern: start + UInt(byteCount)), Int(reservationEnd - start - UInt(byteCount)))
        }
        // Invariant: [start, start + byteCount) is our PROT_NONE reservation, replaced in place below.
        let base = UnsafeMutableRawPointer(bitPattern: start)!
        func fail(_ error: SystemError) -> SystemError {
            _ = cnuma_unmap(base, byteCount)
            return error
        }

        guard cnuma_map_fixed(base, byteCount, pageSize.hugetlbShift) != nil else {
            let code = currentErrno()
            if pageSize.isHugetlb {
                throw fail(SystemError(
                    .hugepagesUnavailable, call: "mmap(MAP_HUGETLB, \(pageSize))", errno: code,
                    advice: "the kernel could not reserve \(byteCount / pageSize.bytes) \(pageSize); "
                        + PlacementCheck.reserveAdvice(pageSize: pageSize, pages: byteCount / pageSize.bytes, nodes: nodes, topology: topology)))
            }
            throw fail(SystemError(
                .insufficientMemory, call: "mmap(\(formatBytes(byteCount)))", errno: code,
                advice: "the kernel refused the mapping; check vm.overcommit_memory and ulimit -v"))
        }

        let (mode, modeNote) = PlacementCheck.kernelMode(policy: policy, nodes: nodes, topology: topology)
        if let modeNote { notes.append(modeNote) }
        let bindNodes = mode == CNUMA_MPOL_PREFERRED && policy == .preferred ? NodeSet([nodes.first!]) : nodes
        let maskBits = ((nodes.last ?? 0) / 64 + 1) * 64
        let mask = bindNodes.maskWords(bitCount: maskBits)
        let bound = mask.withUnsafeBufferPointer {
            cnuma_mbind(base, byteCount, Int32(mode), $0.baseAddress, UInt(maskBits + 1), 0)
        }
        if bound != 0, topology.isNUMAAvailable {
            let code = currentErrno()
            throw fail(SystemError(
                .invalidPlacement, call: "mbind(\(policy), nodes \(bindNodes))", errno: code,
                advice: "the kernel rejected the node set; check `buddypools info` for nodes with memory in this cpuset"))
        }

        switch pageSize {
        case .transparent: _ = cnuma_advise(base, byteCount, CNUMA_ADVISE_HUGEPAGE)
        case .base: _ = cnuma_advise(base, byteCount, CNUMA_ADVISE_NOHUGEPAGE)
        case .huge2M, .huge1G: break
        }
        // Regions are not inherited: fork stays cheap and a child never copy-on-writes hugetlb pages.
        _ = cnuma_advise(base, byteCount, CNUMA_ADVISE_DONTFORK)

        switch PagePopulation.populate(base, byteCount: byteCount, pageSize: pageSize) {
        case .populated:
            break
        case .touched:
            // Kernels before 5.14 lack MADV_POPULATE_WRITE; the capacity checks above stand in for its EFAULT.
            notes.append("populated by touching each page (no MADV_POPULATE_WRITE on this kernel)")
        case .failed(let code):
            switch code {
            case EFAULT where pageSize.isHugetlb, ENOMEM where pageSize.isHugetlb:
                throw fail(SystemError(
                    .hugepagesUnavailable, call: "madvise(MADV_POPULATE_WRITE, \(pageSize))", errno: code,
                    advice: "nodes \(nodes) ran out of \(pageSize) while populating (policy \(policy)); "
                        + PlacementCheck.reserveAdvice(pageSize: pageSize, pages: byteCount / pageSize.bytes, nodes: nodes, topology: topology)))
            default:
                throw fail(SystemError(
                    .insufficientMemory, call: "madvise(MADV_POPULATE_WRITE, \(formatBytes(byteCount)))", errno: code,
                    advice: "nodes \(nodes) could not supply \(formatBytes(byteCount)) of \(pageSize); free memory there or use policy=preferred"))
            }
        }
        return (start, notes)
    }
}
