import CNuma
#if canImport(Glibc)
import Glibc
#endif

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
    func consuming(byteCount: Int, pageSize: PageSize, nodes: NodeSet) -> NUMATopology {
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

    /// The topology of this machine now.
    public static func current() throws(SystemError) -> NUMATopology {
        let numa = cnuma_available() == 1
        var nodes: [NUMANode] = []
        var distances: [Int: [Int: Int]] = [:]
        let nodeIDs = numa ? (0...Int(cnuma_max_node())).filter { cnuma_node_present(Int32($0)) == 1 } : [0]
        for id in nodeIDs {
            nodes.append(readNode(id, numa: numa))
        }
        guard !nodes.isEmpty else {
            throw SystemError(.unsupported, call: "numa_max_node", advice: "the kernel reports no NUMA node; is /sys mounted?")
        }
        for a in nodeIDs {
            var row: [Int: Int] = [:]
            for b in nodeIDs {
                let d = Int(cnuma_distance(Int32(a), Int32(b)))
                row[b] = d > 0 ? d : (a == b ? 10 : 20)
            }
            distances[a] = row
        }
        let memlock = cnuma_memlock_limit()
        return NUMATopology(
            nodes: nodes, distances: distances, isNUMAAvailable: numa,
            transparentHugepages: readTransparentHugepageMode(),
            memlockLimitBytes: memlock == UInt64.max ? nil : memlock,
            allowedNodes: NodeSet(readList { cnuma_allowed_nodes($0, $1) }),
            allowedCPUs: CPUSet(readList { cnuma_allowed_cpus($0, $1) }),
            supportsPreferredMany: cnuma_has_preferred_many() == 1,
            kernelRelease: kernelRelease())
    }

    private static func readNode(_ id: Int, numa: Bool) -> NUMANode {
        let directory = "/sys/devices/system/node/node\(id)"
        var info = SysfsFile.meminfo(numa ? "\(directory)/meminfo" : "/proc/meminfo")
        if info.isEmpty, numa {
            var free: Int64 = 0
            let total = cnuma_node_size(Int32(id), &free)
            info = ["MemTotal": Int(max(total, 0)), "MemFree": Int(max(free, 0))]
        }
        let total = info["MemTotal"] ?? 0
        let free = info["MemFree"] ?? 0
        let reclaimable = (info["Inactive(file)"] ?? 0) + (info["Active(file)"] ?? 0) / 2 + (info["SReclaimable"] ?? 0)
        let hugepageRoot = numa ? "\(directory)/hugepages" : "/sys/kernel/mm/hugepages"
        let hugepages: [HugepageCounts] = [PageSize.huge2M, .huge1G].compactMap { size in
            let path = "\(hugepageRoot)/\(size.sysfsDirectoryName!)"
            guard let total = SysfsFile.readInt("\(path)/nr_hugepages") else { return nil }
            return HugepageCounts(
                pageSize: size, total: total, free: SysfsFile.readInt("\(path)/free_hugepages") ?? 0,
                surplus: SysfsFile.readInt("\(path)/surplus_hugepages") ?? 0)
        }
        let cpus = CPUSet(readList { cnuma_node_cpus(Int32(id), $0, $1) })
        return NUMANode(
            id: id, cpus: cpus, totalBytes: total, freeBytes: free,
            availableBytes: min(total, free + reclaimable), hugepages: hugepages)
    }

    /// Calls a C function that fills an int array and returns the count, growing the array as needed.
    private static func readList(_ fill: (UnsafeMutablePointer<Int32>, Int32) -> Int32) -> [Int] {
        var capacity = 256
        while true {
            var buffer = [Int32](repeating: 0, count: capacity)
            let count = Int(buffer.withUnsafeMutableBufferPointer { fill($0.baseAddress!, Int32(capacity)) })
            if count < 0 { return [] }
            if count <= capacity { return buffer[0..<count].map(Int.init) }
            capacity = count
        }
    }

    private static func readTransparentHugepageMode() -> TransparentHugepageMode {
        guard let line = SysfsFile.readLine("/sys/kernel/mm/transparent_hugepage/enabled"),
              let open = line.firstIndex(of: "["), let close = line.firstIndex(of: "]")
        else { return .unavailable }
        return TransparentHugepageMode(rawValue: String(line[line.index(after: open)..<close])) ?? .unavailable
    }

    private static func kernelRelease() -> String {
        var name = utsname()
        uname(&name)
        return withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }
}
