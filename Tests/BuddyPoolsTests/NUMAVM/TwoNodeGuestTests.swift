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
            // Node 0 is large enough for a gigabyte-aligned gigabyte above the kernel (boot-time 1 GiB page).
            let size = node.id == 0 ? 2304 << 20 : 768 << 20
            #expect(node.totalBytes > size - (168 << 20) && node.totalBytes <= size, "node \(node.id): \(node.totalBytes)")
            #expect(node.hugepages(.huge2M)?.total == 64)
        }
        #expect(topology.node(0)?.hugepages(.huge1G)?.total == 1)
        #expect(topology.distance(from: 0, to: 1) == 20)
        #expect(topology.distance(from: 1, to: 1) == 10)
    }

    @Test("regions bound to each node land there", arguments: [0, 1], [PageSize.huge2M, .base])
    func regionsLand(node: Int, pageSize: PageSize) throws {
        try PlacementExpectations.regionLands(on: node, pageSize: pageSize)
    }

    @Test("a heap pool, committed a superblock at a time, allocates on its node", arguments: [0, 1])
    func heapPoolLands(node: Int) throws {
        // As the malloc heap's pools are made: a reservation, mbind'd, committed on first use; the
        // policy set on the reservation must hold for every part committed later.
        var configuration = PoolConfiguration(name: "heap\(node)", capacity: 64 << 20)
        configuration.nodes = [node]
        configuration.pageSize = .transparent
        TestPools.asHeapPool(&configuration)
        let pool = try MemoryPool(configuration: configuration)
        #expect(pool.regions.allSatisfy { $0.commitsOnDemand })
        try PlacementExpectations.poolAllocates(on: node, pool: pool)
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

    @Test("a pool on 1 GiB pages gets a real 1 GiB page on node 0; shrink keeps superblocks smaller than their page")
    func gigantic() throws {
        var configuration = PoolConfiguration(name: "gigantic", capacity: 1 << 30)
        configuration.nodes = [0]
        configuration.pageSize = .huge1G
        configuration.strictPageSize = true
        configuration.placementCheck = .strict
        let pool = try MemoryPool(configuration: configuration)
        #expect(pool.regions.map(\.pageSize) == [.huge1G])
        let report = pool.regions[0].verifyPlacement()
        #expect(report.observedPageSize == .huge1G && report.fractionOnIntendedNodes == 1.0, "\(report)")
        #expect(try NUMATopology.current().node(0)?.hugepages(.huge1G)?.free == 0, "the reserved page is in use")
        var blocks: [UnsafeMutableRawPointer] = []
        for size in [4096, 1 << 20, 2 << 20, 64 << 20] {
            let block = try pool.allocate(byteCount: size)
            block.initializeMemory(as: UInt8.self, repeating: 0x6B, count: size)
            blocks.append(block)
        }
        try PlacementExpectations.poolAllocates(on: 0, pool: pool)
        let live = blocks[0]
        for block in blocks.dropFirst() { pool.deallocate(block) }
        // 2 MiB superblocks on one 1 GiB page: none can go back alone, and the live block survives.
        let shrink = pool.shrink(to: 0)
        #expect(shrink.releasedBytes == 0 && shrink.systemError == nil, "\(shrink)")
        #expect(shrink.keptForPageSizeBytes == (1 << 30) - (2 << 20), "\(shrink)")
        #expect(UnsafeRawBufferPointer(start: live, count: 4096).allSatisfy { $0 == 0x6B }, "the live block kept its data")
        pool.deallocate(live)
        try pool.checkInvariants()
    }

    @Test("1 GiB pages asked for on a node without them fall back, with the reason")
    func giganticFallback() throws {
        var configuration = PoolConfiguration(name: "gigantic-1", capacity: 64 << 20)
        configuration.nodes = [1]
        configuration.pageSize = .huge1G
        let pool = try MemoryPool(configuration: configuration)
        #expect(pool.regions[0].pageSize != .huge1G)
        #expect(pool.regions[0].fallbacks.first?.from == .huge1G, "\(pool.regions[0].fallbacks)")
    }
}
