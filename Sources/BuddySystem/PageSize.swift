import BuddyCore
/// What backs a region's memory.
///
/// Each size's facts live in one row of `properties` (its kernel size, hugetlb shift, sysfs and
/// configuration spellings, fallback): adding a page size is adding a case and its row.
public enum PageSize: String, Sendable, CaseIterable, Codable, CustomStringConvertible {
    /// 4 KiB pages with transparent hugepages switched off for the range.
    case base
    /// Transparent hugepages (madvise), which the kernel may or may not supply.
    case transparent
    /// 2 MiB hugetlb pages from the reserved pool.
    case huge2M
    /// 1 GiB hugetlb pages from the reserved pool.
    case huge1G

    private struct Properties {
        /// One page (for `transparent`, one transparent hugepage on x86-64).
        let bytes: Int
        /// log2 of the hugetlb page size (MAP_HUGE_*); 0 for pages that do not come from hugetlb.
        let hugetlbShift: Int32
        /// The spelling of BUDDYPOOLS's `page=` key, then accepted aliases (lower case).
        let tokens: [String]
        let fallback: PageSize?
        let description: String
    }

    private var properties: Properties {
        switch self {
        case .base: Properties(bytes: 4096, hugetlbShift: 0, tokens: ["4K", "base"], fallback: nil, description: "4 KiB base pages")
        case .transparent:
            Properties(bytes: 2 << 20, hugetlbShift: 0, tokens: ["thp", "transparent"], fallback: .base, description: "transparent hugepages")
        case .huge2M: Properties(bytes: 2 << 20, hugetlbShift: 21, tokens: ["2M"], fallback: .transparent, description: "2 MiB hugepages")
        case .huge1G: Properties(bytes: 1 << 30, hugetlbShift: 30, tokens: ["1G"], fallback: .huge2M, description: "1 GiB hugepages")
        }
    }

    /// The size of one page (for `transparent`, the size of a transparent hugepage on x86-64).
    public var bytes: Int { properties.bytes }

    /// Whether pages come from the hugetlb pool (reserved with nr_hugepages).
    public var isHugetlb: Bool { properties.hugetlbShift > 0 }

    /// The next size to try when this one cannot be had: 1G -> 2M -> THP -> base.
    public var fallback: PageSize? { properties.fallback }

    /// log2 of the hugetlb page size, as MAP_HUGE_* wants it; 0 for non-hugetlb pages.
    package var hugetlbShift: Int32 { properties.hugetlbShift }

    /// The hugetlb sizes, in the order sysfs lists them.
    package static var hugetlbSizes: [PageSize] { allCases.filter(\.isHugetlb) }

    /// The sysfs directory name of this hugetlb size, e.g. `hugepages-2048kB`.
    package var sysfsDirectoryName: String? {
        isHugetlb ? "hugepages-\(bytes / 1024)kB" : nil
    }

    /// The hugetlb size whose pages are `bytes` long (smaps' KernelPageSize), if any.
    package static func hugetlb(bytes: Int) -> PageSize? { hugetlbSizes.first { $0.bytes == bytes } }

    /// The spelling of the configuration grammar: `4K`, `thp`, `2M`, `1G`.
    public var configurationToken: String { properties.tokens[0] }

    /// Every grammar spelling, for help texts: `4K, thp, 2M or 1G`.
    package static var configurationTokens: String {
        let tokens = allCases.map(\.configurationToken)
        return tokens.dropLast().joined(separator: ", ") + " or " + tokens.last!
    }

    public init?(configurationToken token: String) {
        guard let size = PageSize.allCases.first(where: { $0.properties.tokens.contains { $0.lowercased() == token.lowercased() } }) else {
            return nil
        }
        self = size
    }

    public var description: String { properties.description }
}

/// Where a region's pages may come from.
public enum PlacementPolicy: String, Sendable, CaseIterable, Codable {
    /// Only the given nodes; the request fails when they are full.
    case bind
    /// The given nodes first, then the nearest others (MPOL_PREFERRED_MANY for several nodes).
    case preferred
    /// Round-robin page by page over the given nodes.
    case interleave
    /// Superblocks spread over the nodes of `weights` in their proportions, each bound to its
    /// node: placed by the pool, on any kernel.
    case weighted

    /// Whether the pages may come only from the pool's nodes (so loans from elsewhere are refused).
    public var restrictsToNodes: Bool { self == .bind || self == .weighted }
}
