import BuddyPools
import Testing

@Suite("NUMAVM two-node guest", NUMAVMGuest.only(.twoNode))
struct TwoNodeGuestTests {
    @Test("the topology matches what qemu was given")
    func topology() throws {
        let topology = try NUMATopology.current()
        #expect(topology.nodes.map(\.id) == [0, 1])
        #expect(topology.nodes.map(\.cpus) == [[0], [1]])
        for node in topology.nodes {
            #expect(node.totalBytes > 600 << 20 && node.totalBytes <= 768 << 20, "node \(node.id): \(node.totalBytes)")
            #expect(node.hugepages(.huge2M)?.total == 64)
        }
        #expect(topology.distance(from: 0, to: 1) == 20)
        #expect(topology.distance(from: 1, to: 1) == 10)
    }

    @Test("regions bound to each node land there", arguments: [0, 1], [PageSize.huge2M, .base])
    func regionsLand(node: Int, pageSize: PageSize) throws {
        try PlacementExpectations.regionLands(on: node, pageSize: pageSize)
    }

    @Test("interleave spreads pages over both nodes")
    func interleave() throws {
        for pageSize in [PageSize.base, .huge2M] {
            let region = try Region(byteCount: 64 << 20, nodes: [0, 1], policy: .interleave, pageSize: pageSize, strictPageSize: true)
            let report = region.verifyPlacement()
            #expect(report.fractionOnIntendedNodes == 1.0)
            for node in [0, 1] {
                let share = Double(report.pagesByNode[node] ?? 0) / Double(report.sampledPages)
                #expect(share > 0.35 && share < 0.65, "\(pageSize) node \(node) share \(share): \(report)")
            }
        }
    }

    @Test("a bind pool over both nodes gets one region per node")
    func regionPerNode() throws {
        var configuration = PoolConfiguration(name: "both", capacity: 64 << 20)
        configuration.nodes = [0, 1]
        configuration.pageSize = .huge2M
        let pool = try MemoryPool(configuration: configuration)
        #expect(pool.regions.map(\.nodes) == [[0], [1]])
        for region in pool.regions { #expect(region.verifyPlacement().fractionOnIntendedNodes == 1.0) }
    }
}
