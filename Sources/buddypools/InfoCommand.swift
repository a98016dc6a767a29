import ArgumentParser
import BuddyPools

/// The first thing to run on a new machine: what BuddyPools sees and what it would create.
struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show NUMA nodes, distances, hugepages, THP mode, limits and the configured pools.")

    @Flag(help: "Also create the configured pools, run a short self-test of objects below a page in each (random sizes 8 B-3840 B) and print its slabs per size class, like /proc/slabinfo.")
    var slabs = false

    @Option(help: "Objects the --slabs self-test keeps live in each pool.")
    var objects = 20_000

    func run() throws {
        let topology = try NUMATopology.current()
        print(Self.describe(topology))
        print("")
        print("Configured pools (\(ProcessEnvironment.current()["BUDDYPOOLS"] == nil ? "defaults: BUDDYPOOLS is not set" : "BUDDYPOOLS"))")
        do {
            let plans = try PoolSet.plan(environment: ProcessEnvironment.current(), topology: topology)
            print(CheckCommand.table(plans))
        } catch {
            print("  invalid: \(error)")
        }
        if slabs { try Self.slabSelfTest(objects: objects) }
    }

    /// Creates the configured pool set, fills each pool with `objects` objects of random sizes
    /// (fewer if a pool runs dry), prints its slab report, then frees everything and checks
    /// that no slab is left.
    static func slabSelfTest(objects: Int) throws {
        guard objects > 0 else { throw ValidationError("--objects must be positive") }
        let set = try PoolSet(environment: ProcessEnvironment.current())
        var random = SystemRandomNumberGenerator()
        for pool in set.pools {
            print("")
            var live: [UnsafeMutableRawPointer] = []
            live.reserveCapacity(objects)
            var refused: PoolError?
            for _ in 0..<objects {
                switch pool.tryAllocate(byteCount: Int.random(in: 8...SizeClasses.maxObjectBytes, using: &random), alignment: 8) {
                case .success(let pointer): live.append(pointer)
                case .failure(let error): refused = error
                }
                if refused != nil { break }
            }
            print(pool.slabReport)
            let statistics = pool.statistics
            print("# \(live.count) objects live; used \(ByteCount.format(statistics.usedBytes)), metadata \(ByteCount.format(statistics.metadataBytes))"
                + (refused.map { "; stopped early: \($0)" } ?? ""))
            for pointer in live { pool.deallocate(pointer) }
            pool.drainCaches()
            let left = pool.statistics.slabs.count
            print("# after freeing everything: \(left == 0 ? "no slab left" : "\(left) classes still hold slabs")")
            if left != 0 { throw ExitCode.failure }
        }
    }

    /// One row per node: its network interfaces and PCI functions (nodeless ones last).
    static func devicesByNode(_ topology: NUMATopology) -> String {
        let devices = topology.devices()
        var table = TextTable("node", "network interfaces", "PCI devices")
        let keys = Set(devices.map { $0.node ?? -1 }).sorted { ($0 < 0 ? Int.max : $0) < ($1 < 0 ? Int.max : $1) }
        for key in keys {
            let here = devices.filter { ($0.node ?? -1) == key }
            let interfaces = here.filter { $0.kind == .network }.map(\.description)
            let functions = here.filter { $0.kind == .pci }.map(\.name)
            table.add(key < 0 ? "none" : "\(key)", interfaces.isEmpty ? "-" : interfaces.joined(separator: ", "),
                      functions.isEmpty ? "-" : functions.joined(separator: " "))
        }
        return devices.isEmpty ? "  (sysfs lists no PCI device or network interface)" : table.render()
    }

    static func describe(_ topology: NUMATopology) -> String {
        var lines: [String] = []
        lines.append("Kernel \(topology.kernelRelease), NUMA \(topology.isNUMAAvailable ? "available" : "not available (one node stands for the machine)")")
        lines.append("Nodes")
        let hugetlbSizes = PageSize.hugetlbSizes
        var nodes = TextTable(
            ["node", "cpus", "memory", "free", "available"] + hugetlbSizes.map { "\($0.configurationToken) pages free/total" } + ["kind"])
        for node in topology.nodes {
            let kind = node.isMemoryless ? "memory-less" : node.isCPUless ? "CPU-less (memory only)" : ""
            nodes.add(
                ["\(node.id)", node.cpus.isEmpty ? "-" : node.cpus.description, ByteCount.format(node.totalBytes),
                 ByteCount.format(node.freeBytes), ByteCount.format(node.availableBytes)]
                    + hugetlbSizes.map { size in node.hugepages(size).map { "\($0.free)/\($0.total)" } ?? "n/a" } + [kind])
        }
        lines.append(nodes.render())
        lines.append("Distances")
        var distances = TextTable(["node"] + topology.nodes.map { "\($0.id)" })
        for from in topology.nodes {
            distances.add(["\(from.id)"] + topology.nodes.map { topology.distance(from: from.id, to: $0.id).map(String.init) ?? "?" })
        }
        lines.append(distances.render())
        lines.append("Devices by node (near=<PCI address or interface> places a pool on its device's node)")
        lines.append(Self.devicesByNode(topology))
        lines.append("Transparent hugepages: \(topology.transparentHugepages.rawValue)")
        lines.append("Memlock limit (RLIMIT_MEMLOCK): \(topology.memlockLimitBytes.map(ByteCount.format) ?? "unlimited")")
        lines.append("Allowed nodes (cpuset): \(topology.allowedNodes)   allowed CPUs: \(topology.allowedCPUs)")
        lines.append("MPOL_PREFERRED_MANY: \(topology.supportsPreferredMany ? "supported" : "not supported (preferred uses the first node)")")
        if topology.nodes.allSatisfy({ ($0.hugepages(.huge2M)?.total ?? 0) == 0 }) {
            lines.append("No 2 MiB hugepages are reserved; pools fall back to transparent hugepages. Reserve some with:")
            lines.append("  echo 512 > /proc/sys/vm/nr_hugepages   (or per node: /sys/devices/system/node/nodeN/hugepages/\(PageSize.huge2M.sysfsDirectoryName ?? "")/nr_hugepages)")
        }
        return lines.joined(separator: "\n")
    }
}
