import BuddyCore

// The machine as the process sees it: nodes, CPUs, memory, hugepages, distances, cpuset, limits.

/// Hugepages of one size on one node, as sysfs counts them.
public struct HugepageCounts: Sendable, Equatable, Codable {
    public let pageSize: PageSize
    /// Pages in the pool (nr_hugepages).
    public let total: Int
    /// Pages not handed out to any mapping yet (free_hugepages).
    public let free: Int
    /// Pages allocated beyond nr_hugepages through overcommit (surplus_hugepages).
    public let surplus: Int

    public init(pageSize: PageSize, total: Int, free: Int, surplus: Int = 0) {
        self.pageSize = pageSize
        self.total = total
        self.free = free
        self.surplus = surplus
    }
}

/// One NUMA node as the kernel numbers it.
public struct NUMANode: Sendable, Equatable, Identifiable {
    public let id: Int
    public let cpus: CPUSet
    public let totalBytes: Int
    /// MemFree of the node.
    public let freeBytes: Int
    /// MemFree plus file-backed and reclaimable slab memory: what the node can give before the OOM killer runs.
    public let availableBytes: Int
    /// 2 MiB and 1 GiB hugepage counts, where the kernel supports the size.
    public let hugepages: [HugepageCounts]

    /// A node with CPUs and no memory: it can run threads but cannot hold a region.
    public var isMemoryless: Bool { totalBytes == 0 }
    /// A node with memory and no CPUs: how CXL expanders and HBM appear.
    public var isCPUless: Bool { cpus.isEmpty }

    public init(id: Int, cpus: CPUSet, totalBytes: Int, freeBytes: Int, availableBytes: Int? = nil, hugepages: [HugepageCounts] = []) {
        self.id = id
        self.cpus = cpus
        self.totalBytes = totalBytes
        self.freeBytes = freeBytes
        self.availableBytes = availableBytes ?? freeBytes
        self.hugepages = hugepages
    }

    public func hugepages(_ size: PageSize) -> HugepageCounts? {
        hugepages.first { $0.pageSize == size }
    }
}

/// How the kernel hands out transparent hugepages (/sys/kernel/mm/transparent_hugepage/enabled).
public enum TransparentHugepageMode: String, Sendable, Codable {
    case always, madvise, never, unavailable
}

/// The machine as this process sees it: nodes, distances, hugepages, limits and what the
/// cpuset allows. Read it once with `NUMATopology.current()`; it does not update itself.
public struct NUMATopology: Sendable {
    public let nodes: [NUMANode]
    /// False when the kernel has no NUMA support; then one node 0 stands for the machine.
    public let isNUMAAvailable: Bool
    public let transparentHugepages: TransparentHugepageMode
    /// RLIMIT_MEMLOCK in bytes, nil when unlimited.
    public let memlockLimitBytes: UInt64?
    /// Nodes the cpuset lets this process allocate on.
    public let allowedNodes: NodeSet
    /// CPUs this thread may run on.
    public let allowedCPUs: CPUSet
    /// Whether mbind accepts MPOL_PREFERRED_MANY (kernel 5.15 and later).
    public let supportsPreferredMany: Bool
    public let kernelRelease: String
    /// Where device attributes are read (`near=`, `buddypools info`): /sys, or a copy of its
    /// layout for tests.
    public var deviceRoot = "/sys"
    private let distanceTable: [Int: [Int: Int]]

    public init(
        nodes: [NUMANode], distances: [Int: [Int: Int]], isNUMAAvailable: Bool = true,
        transparentHugepages: TransparentHugepageMode = .madvise, memlockLimitBytes: UInt64? = nil,
        allowedNodes: NodeSet? = nil, allowedCPUs: CPUSet? = nil, supportsPreferredMany: Bool = true,
        kernelRelease: String = ""
    ) {
        self.nodes = nodes.sorted { $0.id < $1.id }
        self.distanceTable = distances
        self.isNUMAAvailable = isNUMAAvailable
        self.transparentHugepages = transparentHugepages
        self.memlockLimitBytes = memlockLimitBytes
        self.allowedNodes = allowedNodes ?? NodeSet(nodes.map(\.id))
        self.allowedCPUs = allowedCPUs ?? nodes.reduce(CPUSet()) { $0.union($1.cpus) }
        self.supportsPreferredMany = supportsPreferredMany
        self.kernelRelease = kernelRelease
    }

    public var nodeIDs: NodeSet { NodeSet(nodes.map(\.id)) }
    /// Nodes that hold memory and that the cpuset allows: where `nodes=all` places pools.
    public var memoryNodes: NodeSet { NodeSet(nodes.filter { !$0.isMemoryless }.map(\.id)).intersection(allowedNodes) }

    public func node(_ id: Int) -> NUMANode? { nodes.first { $0.id == id } }

    /// numa_distance between two nodes (10 is local); nil when either node is unknown.
    public func distance(from a: Int, to b: Int) -> Int? { distanceTable[a]?[b] }

    /// The node whose CPUs include `cpu`.
    public func node(ofCPU cpu: Int) -> NUMANode? { nodes.first { $0.cpus.contains(cpu) } }

    /// Node ids ordered by distance from `origin` (the origin first), ties by id.
    public func nodesByDistance(from origin: Int) -> [Int] {
        nodes.map(\.id).sorted {
            let left = distance(from: origin, to: $0) ?? .max, right = distance(from: origin, to: $1) ?? .max
            return left != right ? left < right : $0 < $1
        }
    }

    /// The same machine after a region of `byteCount` bytes of `pageSize` took its memory from
    /// `nodes` (first node first): used to predict a whole pool set before creating it.
    package func consuming(byteCount: Int, pageSize: PageSize, nodes: NodeSet) -> NUMATopology {
        var remaining = pageSize.isHugetlb ? byteCount / pageSize.bytes : byteCount
        let updated = self.nodes.map { node -> NUMANode in
            guard remaining > 0, nodes.contains(node.id) else { return node }
            if pageSize.isHugetlb {
                let hugepages = node.hugepages.map { counts -> HugepageCounts in
                    guard counts.pageSize == pageSize else { return counts }
                    let taken = min(counts.free, remaining)
                    remaining -= taken
                    return HugepageCounts(pageSize: counts.pageSize, total: counts.total, free: counts.free - taken, surplus: counts.surplus)
                }
                return NUMANode(id: node.id, cpus: node.cpus, totalBytes: node.totalBytes, freeBytes: node.freeBytes,
                                availableBytes: node.availableBytes, hugepages: hugepages)
            }
            let taken = min(node.availableBytes, remaining)
            remaining -= taken
            return NUMANode(id: node.id, cpus: node.cpus, totalBytes: node.totalBytes, freeBytes: max(0, node.freeBytes - taken),
                            availableBytes: node.availableBytes - taken, hugepages: node.hugepages)
        }
        return NUMATopology(
            nodes: updated, distances: distanceTable, isNUMAAvailable: isNUMAAvailable, transparentHugepages: transparentHugepages,
            memlockLimitBytes: memlockLimitBytes, allowedNodes: allowedNodes, allowedCPUs: allowedCPUs,
            supportsPreferredMany: supportsPreferredMany, kernelRelease: kernelRelease)
    }

    /// The topology of this machine now. Fails only when the kernel reports no node or cannot
    /// say what the cpuset allows; distances it cannot give are 10 for a node to itself, else 20.
    public static func current() throws(SystemError) -> NUMATopology {
        let numa = TopologyCalls.isNUMAAvailable
        let nodeIDs = numa ? (0...TopologyCalls.maxNode).filter { TopologyCalls.isNodePresent($0) } : [0]
        var nodes: [NUMANode] = []
        for id in nodeIDs { nodes.append(try readNode(id, numa: numa)) }
        guard !nodes.isEmpty else {
            throw SystemError(.unsupported, call: "numa_max_node", advice: "the kernel reports no NUMA node; is /sys mounted?")
        }
        var distances: [Int: [Int: Int]] = [:]
        for a in nodeIDs {
            var row: [Int: Int] = [:]
            for b in nodeIDs {
                switch TopologyCalls.distance(a, b) {
                case .success(let distance): row[b] = distance
                case .failure: row[b] = a == b ? 10 : 20
                }
            }
            distances[a] = row
        }
        return NUMATopology(
            nodes: nodes, distances: distances, isNUMAAvailable: numa,
            transparentHugepages: readTransparentHugepageMode(),
            memlockLimitBytes: try TopologyCalls.memlockLimit().get(),
            allowedNodes: NodeSet(try TopologyCalls.allowedNodes().get()),
            allowedCPUs: CPUSet(try TopologyCalls.allowedCPUs().get()),
            supportsPreferredMany: TopologyCalls.supportsPreferredMany,
            kernelRelease: TopologyCalls.kernelRelease())
    }

    private static func readNode(_ id: Int, numa: Bool) throws(SystemError) -> NUMANode {
        let directory = "/sys/devices/system/node/node\(id)"
        var info = SysfsFile.meminfo(numa ? "\(directory)/meminfo" : "/proc/meminfo")
        if info.isEmpty, numa, case .success(let size) = TopologyCalls.nodeSize(id) {
            info = ["MemTotal": size.total, "MemFree": size.free]
        }
        let total = info["MemTotal"] ?? 0
        let free = info["MemFree"] ?? 0
        let reclaimable = (info["Inactive(file)"] ?? 0) + (info["Active(file)"] ?? 0) / 2 + (info["SReclaimable"] ?? 0)
        let hugepageRoot = numa ? "\(directory)/hugepages" : "/sys/kernel/mm/hugepages"
        let hugepages: [HugepageCounts] = PageSize.hugetlbSizes.compactMap { size in
            guard let name = size.sysfsDirectoryName else { return nil }
            let path = "\(hugepageRoot)/\(name)"
            guard let total = SysfsFile.readInt("\(path)/nr_hugepages") else { return nil }
            return HugepageCounts(
                pageSize: size, total: total, free: SysfsFile.readInt("\(path)/free_hugepages") ?? 0,
                surplus: SysfsFile.readInt("\(path)/surplus_hugepages") ?? 0)
        }
        let cpus = CPUSet(try (numa ? TopologyCalls.nodeCPUs(id) : TopologyCalls.allowedCPUs()).get())
        return NUMANode(
            id: id, cpus: cpus, totalBytes: total, freeBytes: free,
            availableBytes: min(total, free + reclaimable), hugepages: hugepages)
    }

    private static func readTransparentHugepageMode() -> TransparentHugepageMode {
        guard let line = SysfsFile.readLine("/sys/kernel/mm/transparent_hugepage/enabled"),
              let open = line.firstIndex(of: "["), let close = line.firstIndex(of: "]")
        else { return .unavailable }
        return TransparentHugepageMode(rawValue: String(line[line.index(after: open)..<close])) ?? .unavailable
    }
}
