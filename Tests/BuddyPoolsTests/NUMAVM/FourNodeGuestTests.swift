import BuddyPools
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
}
