import BuddyCore
/// Where a region's pages really are, sampled with move_pages(2), and what backs them.
public struct PlacementReport: Sendable, CustomStringConvertible {
    public let intendedNodes: NodeSet
    public let policy: PlacementPolicy
    public let sampledPages: Int
    /// Sampled pages found on each node.
    public let pagesByNode: [Int: Int]
    /// Sampled pages that were not resident or could not be queried.
    public let pagesNotPresent: Int
    /// The page size the kernel reports for the mapping (smaps KernelPageSize, AnonHugePages).
    public let observedPageSize: PageSize
    /// Share of the resident bytes backed by hugepages (1 for hugetlb; AnonHugePages / Rss for THP).
    public let hugepageFraction: Double
    /// Why the kernel could not say where the pages are (move_pages failed), or nil.
    public let queryError: SystemError?

    public var pagesOnIntendedNodes: Int {
        pagesByNode.filter { intendedNodes.contains($0.key) }.values.reduce(0, +)
    }

    /// Fraction of the sampled pages that sit on the intended nodes.
    public var fractionOnIntendedNodes: Double {
        sampledPages == 0 ? 0 : Double(pagesOnIntendedNodes) / Double(sampledPages)
    }

    public var description: String {
        let perNode = pagesByNode.keys.sorted().map { "node \($0): \(pagesByNode[$0]!)" }.joined(separator: ", ")
        let percent = (fractionOnIntendedNodes * 1000).rounded() / 10
        if let queryError { return "placement unknown: \(queryError); backed by \(observedPageSize)" }
        return "\(percent)% of \(sampledPages) sampled pages on nodes \(intendedNodes) (\(perNode)); backed by \(observedPageSize)"
    }
}

extension Region {
    /// Samples up to `sampleCount` pages spread evenly over the region and asks the kernel
    /// which node holds each one. Costs one move_pages call and one read of /proc/self/smaps.
    public func verifyPlacement(sampleCount: Int = 512) -> PlacementReport {
        let granule = pageSize.isHugetlb ? pageSize.bytes : 4096
        let pages = byteCount / granule
        let samples = max(1, min(sampleCount, pages))
        let stride = pages / samples
        // One page from each stride-sized window, at a varying offset: a fixed power-of-two stride
        // would see only every second page and hide interleaving.
        let addresses: [UnsafeRawPointer] = (0..<samples).map { index in
            let jitter = stride > 1 ? (index &* 0x13C_6EF3) % stride : 0  // An odd multiplier visits every offset.
            return UnsafeRawPointer(baseAddress + (index * stride + jitter) * granule)
        }
        var byNode: [Int: Int] = [:]
        var missing = 0
        var queryError: SystemError?
        switch PlacementCalls.queryNodes(addresses) {
        case .success(let status):
            for node in status {
                if node >= 0 { byNode[Int(node), default: 0] += 1 } else { missing += 1 }
            }
        case .failure(let error):
            missing = samples
            queryError = error
        }
        let backing = SmapsBacking.read(range: addressRange)
        return PlacementReport(
            intendedNodes: nodes, policy: policy, sampledPages: samples, pagesByNode: byNode,
            pagesNotPresent: missing, observedPageSize: backing?.pageSize ?? pageSize,
            hugepageFraction: backing?.hugepageFraction ?? 0, queryError: queryError)
    }
}

/// Where pages are, for any memory of this process.
public enum PagePlacement {
    /// The node holding the page of each address (move_pages(2) in query mode), nil when
    /// the page is not resident or the kernel cannot say.
    public static func nodes(of addresses: [UnsafeRawPointer]) -> [Int?] {
        switch query(addresses) {
        case .success(let nodes): nodes
        case .failure: addresses.map { _ in nil }
        }
    }

    /// The same, with the reason when the kernel could not answer at all.
    public static func query(_ addresses: [UnsafeRawPointer]) -> Result<[Int?], SystemError> {
        PlacementCalls.queryNodes(addresses).map { status in status.map { $0 >= 0 ? Int($0) : nil } }
    }
}

/// What /proc/self/smaps says backs an address range.
struct SmapsBacking {
    let pageSize: PageSize
    let hugepageFraction: Double

    static func read(range: Range<UInt>) -> SmapsBacking? {
        guard let text = SysfsFile.read("/proc/self/smaps", limit: 64 << 20) else { return nil }
        var inRange = false
        var kernelPageSize = 0, rss = 0, anonHuge = 0, hugetlb = 0
        for line in text.split(separator: "\n") {
            if let dash = line.firstIndex(of: "-"), line.first?.isHexDigit == true,
               let space = line.firstIndex(of: " "), dash < space,
               let start = UInt(line[..<dash], radix: 16), let end = UInt(line[line.index(after: dash)..<space], radix: 16) {
                inRange = start < range.upperBound && end > range.lowerBound
                continue
            }
            guard inRange else { continue }
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2, let value = Int(fields[1]) else { continue }
            switch fields[0] {
            case "KernelPageSize:": kernelPageSize = max(kernelPageSize, value * 1024)
            case "Rss:": rss += value * 1024
            case "AnonHugePages:": anonHuge += value * 1024
            case "Private_Hugetlb:", "Shared_Hugetlb:": hugetlb += value * 1024
            default: break
            }
        }
        if let size = PageSize.hugetlb(bytes: kernelPageSize) { return SmapsBacking(pageSize: size, hugepageFraction: 1) }
        if hugetlb > 0 { return SmapsBacking(pageSize: .huge2M, hugepageFraction: 1) }
        guard kernelPageSize > 0 else { return nil }
        let fraction = rss == 0 ? 0 : Double(anonHuge) / Double(rss)
        return SmapsBacking(pageSize: fraction > 0 ? .transparent : .base, hugepageFraction: fraction)
    }
}
