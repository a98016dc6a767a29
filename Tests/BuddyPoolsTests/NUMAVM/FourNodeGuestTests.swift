import BuddyPools
import Foundation
import TestSupport
import Testing

/// Serialized: the guest has little memory, and the spill test fills node 3 on purpose.
@Suite("NUMAVM four-node guest", .serialized, NUMAVMGuest.only(.fourNode))
struct FourNodeGuestTests {
    @Test("topology reports the memory-less node, the CPU-less node and the distances qemu was given")
    func topology() throws {
        let topology = try NUMATopology.current()
        #expect(topology.nodes.map(\.id) == [0, 1, 2, 3])
        let memoryless = try #require(topology.node(2))
        #expect(memoryless.isMemoryless && memoryless.cpus == [2])
        let cpuless = try #require(topology.node(3))
        #expect(cpuless.isCPUless && !cpuless.isMemoryless && cpuless.totalBytes > 400 << 20)
        #expect(topology.distance(from: 0, to: 3) == 40)
        #expect(topology.distance(from: 1, to: 3) == 30)
        #expect(topology.distance(from: 0, to: 1) == 20)
        #expect(topology.memoryNodes == [0, 1, 3])
        #expect(topology.nodesByDistance(from: 3) == [3, 1, 0, 2] || topology.nodesByDistance(from: 3) == [3, 1, 2, 0])
    }

    @Test("regions bound to each node with memory land there", arguments: [0, 1, 3], [PageSize.huge2M, .base])
    func regionsLand(node: Int, pageSize: PageSize) throws {
        try PlacementExpectations.regionLands(on: node, pageSize: pageSize)
    }

    @Test("binding to the memory-less node is rejected with a clear error")
    func memorylessRejected() throws {
        do {
            _ = try Region(byteCount: 4 << 20, nodes: [2], pageSize: .base)
            Issue.record("a region on a memory-less node was created")
        } catch {
            #expect(error.kind == .invalidPlacement)
            #expect(error.advice.contains("node 2 has no memory"), "\(error)")
            #expect(error.advice.contains("nearest node with memory is"), "\(error)")
        }
        #expect(throws: ConfigurationError.self) {
            _ = try PoolSet.plan(environment: ["BUDDYPOOLS": "a:size=4M,nodes=2"])
        }
    }

    @Test("preferred on a full CPU-less node spills to the nearest node by distance")
    func preferredSpill() throws {
        let topology = try NUMATopology.current()
        let free3 = try #require(topology.node(3)).availableBytes
        let size = (free3 + (96 << 20)) / (2 << 20) * (2 << 20)
        let region = try Region(byteCount: size, nodes: [3], policy: .preferred, pageSize: .base)
        let report = region.verifyPlacement(sampleCount: 2048)
        let onThree = report.pagesByNode[3] ?? 0, onOne = report.pagesByNode[1] ?? 0, onZero = report.pagesByNode[0] ?? 0
        #expect(onThree > report.sampledPages / 2, "\(report)")
        #expect(onOne > 0, "the spill goes to node 1 (distance 30): \(report)")
        #expect(onZero <= onOne / 10, "not to node 0 (distance 40): \(report)")
    }

    @Test("a pool on each node with memory allocates from that node")
    func poolPerNode() throws {
        let set = try PoolSet(environment: ["BUDDYPOOLS": "n0:size=16M,nodes=0;n1:size=16M,nodes=1;n3:size=16M,nodes=3"])
        for (name, node) in [("n0", 0), ("n1", 1), ("n3", 3)] {
            try PlacementExpectations.poolAllocates(on: node, pool: try #require(set[name]))
        }
    }

    @Test("borrowing takes the nearest lender's superblocks first")
    func nearestLender() throws {
        // hi lives on node 3: node 1 is at distance 30, node 0 at 40.
        let set = try PoolSet(environment: [
            "BUDDYPOOLS": "hi:size=4M,nodes=3,policy=preferred,priority=10,page=4K;far:size=8M,nodes=0,page=4K;near:size=8M,nodes=1,page=4K",
        ])
        let hi = try #require(set["hi"])
        var blocks: [UnsafeMutableRawPointer] = []
        for _ in 0..<6 { blocks.append(try hi.allocate(byteCount: 2 << 20)) }
        #expect(hi.statistics.borrowedFrom == ["near": 4], "the first loans come from node 1: \(hi.statistics.borrowedFrom)")
        blocks.append(try hi.allocate(byteCount: 2 << 20))
        #expect(hi.statistics.borrowedFrom == ["near": 4, "far": 1], "then node 0: \(hi.statistics.borrowedFrom)")
        let nodes = PagePlacement.nodes(of: blocks.map { UnsafeRawPointer($0) })
        #expect(nodes.prefix(2).allSatisfy { $0 == 3 } && nodes[2..<6].allSatisfy { $0 == 1 } && nodes[6] == 0, "\(nodes)")
        for block in blocks { hi.deallocate(block) }
    }

    @Test("preferred over several nodes uses MPOL_PREFERRED_MANY: a full first node spills to the other preferred node, not the nearest")
    func preferredMany() throws {
        // Node 1 filled past its free memory: MPOL_PREFERRED_MANY over {1, 3} spills to node 3
        // (in the set, distance 30); MPOL_PREFERRED (node 1 alone) would spill to node 0 (distance 20).
        let topology = try NUMATopology.current()
        #expect(topology.supportsPreferredMany, "the guest kernel (6.1) has MPOL_PREFERRED_MANY")
        let free1 = try #require(topology.node(1)).availableBytes
        let size = (free1 + (96 << 20)) / (2 << 20) * (2 << 20)
        let region = try Region(byteCount: size, nodes: [1, 3], policy: .preferred, pageSize: .base)
        #expect(region.notes.allSatisfy { !$0.contains("PREFERRED_MANY") }, "\(region.notes)")
        let report = region.verifyPlacement(sampleCount: 2048)
        let onOne = report.pagesByNode[1] ?? 0, onThree = report.pagesByNode[3] ?? 0, onZero = report.pagesByNode[0] ?? 0
        #expect(onOne > report.sampledPages / 2, "\(report)")
        #expect(onThree > 0, "the spill stays in the preferred set: \(report)")
        #expect(onZero <= onThree / 10, "not to node 0, nearer but not preferred: \(report)")
    }

    @Test("placement=strict fails a pool whose pages spilled off its node; placement=check makes it and warns")
    func strictPlacementOnSpill() throws {
        let topology = try NUMATopology.current()
        let free3 = try #require(topology.node(3)).availableBytes
        let size = (free3 + (64 << 20)) / (2 << 20) * (2 << 20)
        var configuration = PoolConfiguration(name: "spilled", capacity: size)
        configuration.nodes = [3]
        configuration.policy = .preferred
        configuration.pageSize = .base
        configuration.placementCheck = .strict
        do {
            _ = try MemoryPool(configuration: configuration)
            Issue.record("a pool with pages off node 3 was made under placement=strict")
        } catch {
            #expect("\(error)".contains("spilled") && "\(error)".contains("not on its nodes 3"), "\(error)")
        }
        let log = EventLog()
        let subscription = Diagnostics.subscribe { event in
            if event.kind == .placement, event.subject.contains("spilled") { log.append(event.message) }
        }
        defer { subscription.cancel() }
        configuration.placementCheck = .check
        let pool = try MemoryPool(configuration: configuration)
        #expect(log.entries.count == 1 && log.entries.first?.contains("not on its nodes 3") == true, "\(log.entries)")
        _ = pool
    }

    @Test("depots per node and per group of CPUs under the concurrency stress", arguments: ["node", "group2"])
    func sharding(kind: String) throws {
        try ConcurrencyTests.stress(threads: 3, sharding: kind == "node" ? .perNode : .perGroup(cpus: 2))
    }

    @Test("a cpuset allowing fewer nodes: pools on a disallowed node fail naming the cpuset, the allowed ones work")
    func restrictedCpuset() throws {
        try Cpuset.withMems("0") {
            let topology = try NUMATopology.current()
            #expect(topology.allowedNodes == [0])
            #expect(topology.memoryNodes == [0], "nodes=all means the allowed nodes with memory")
            do {
                _ = try PoolSet(environment: ["BUDDYPOOLS": "far:size=4M,nodes=1"])
                Issue.record("a pool on node 1 was made under a cpuset of node 0")
            } catch {
                #expect((error as? ConfigurationError)?.pool == "far", "\(error)")
                #expect("\(error)".contains("cpuset allows (0)") && "\(error)".contains("node 1 is not allowed"), "\(error)")
            }
            let set = try PoolSet(environment: ["BUDDYPOOLS": "near:size=8M,nodes=0;all:size=8M,nodes=all"])
            try PlacementExpectations.poolAllocates(on: 0, pool: try #require(set["near"]))
            try PlacementExpectations.poolAllocates(on: 0, pool: try #require(set["all"]))
        }
        #expect(try NUMATopology.current().allowedNodes == [0, 1, 3] || NUMATopology.current().allowedNodes == [0, 1, 2, 3])
    }
}

/// Runs a body with the process in a cgroup v2 cpuset allowing only some nodes (the guest mounts
/// cgroup2 at /sys/fs/cgroup; the test runs as root), then moves it back.
enum Cpuset {
    static let root = "/sys/fs/cgroup"

    static func write(_ text: String, to path: String) throws {
        try text.write(toFile: path, atomically: false, encoding: .utf8)
    }

    static func withMems(_ mems: String, _ body: () throws -> Void) throws {
        let group = "\(root)/buddypools-restricted"
        try write("+cpuset", to: "\(root)/cgroup.subtree_control")
        try? FileManager.default.createDirectory(atPath: group, withIntermediateDirectories: false)
        try write(mems, to: "\(group)/cpuset.mems")
        try write("\(getpid())", to: "\(group)/cgroup.procs")
        defer {
            try? write("\(getpid())", to: "\(root)/cgroup.procs")
            try? FileManager.default.removeItem(atPath: group)
        }
        try body()
    }
}
