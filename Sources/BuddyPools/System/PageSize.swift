/// What backs a region's memory.
public enum PageSize: String, Sendable, CaseIterable, Codable, CustomStringConvertible {
    /// 4 KiB pages with transparent hugepages switched off for the range.
    case base
    /// Transparent hugepages (madvise), which the kernel may or may not supply.
    case transparent
    /// 2 MiB hugetlb pages from the reserved pool.
    case huge2M
    /// 1 GiB hugetlb pages from the reserved pool.
    case huge1G

    /// The size of one page (for `transparent`, the size of a transparent hugepage on x86-64).
    public var bytes: Int {
        switch self {
        case .base: 4096
        case .transparent, .huge2M: 2 << 20
        case .huge1G: 1 << 30
        }
    }

    /// Whether pages come from the hugetlb pool (reserved with nr_hugepages).
    public var isHugetlb: Bool { self == .huge2M || self == .huge1G }

    /// The next size to try when this one cannot be had: 1G -> 2M -> THP -> base.
    public var fallback: PageSize? {
        switch self {
        case .huge1G: .huge2M
        case .huge2M: .transparent
        case .transparent: .base
        case .base: nil
        }
    }

    /// log2 of the hugetlb page size, as MAP_HUGE_* wants it; 0 for non-hugetlb pages.
    var hugetlbShift: Int32 {
        switch self {
        case .huge2M: 21
        case .huge1G: 30
        case .base, .transparent: 0
        }
    }

    /// The sysfs directory name of this hugetlb size, e.g. `hugepages-2048kB`.
    var sysfsDirectoryName: String? {
        isHugetlb ? "hugepages-\(bytes / 1024)kB" : nil
    }

    /// The spelling of the configuration grammar: `4K`, `thp`, `2M`, `1G`.
    public var configurationToken: String {
        switch self {
        case .base: "4K"
        case .transparent: "thp"
        case .huge2M: "2M"
        case .huge1G: "1G"
        }
    }

    public init?(configurationToken token: String) {
        switch token.lowercased() {
        case "4k", "base": self = .base
        case "thp", "transparent": self = .transparent
        case "2m": self = .huge2M
        case "1g": self = .huge1G
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .base: "4 KiB base pages"
        case .transparent: "transparent hugepages"
        case .huge2M: "2 MiB hugepages"
        case .huge1G: "1 GiB hugepages"
        }
    }
}

/// Where a region's pages may come from.
public enum PlacementPolicy: String, Sendable, CaseIterable, Codable {
    /// Only the given nodes; the request fails when they are full.
    case bind
    /// The given nodes first, then the nearest others (MPOL_PREFERRED_MANY for several nodes).
    case preferred
    /// Round-robin page by page over the given nodes.
    case interleave
}
