import BuddyPools
import FakeMachines
import Testing

/// Weighted placement without a NUMA machine: the weight lists, the order superblocks take,
/// and what `weights=` makes of a pool (FourNodeGuestTests checks where the pages land).
@Suite("Weighted placement")
struct WeightedPlacementTests {
    @Test("weight lists parse sorted by node, and every bad one says which piece is wrong")
    func parsing() throws {
        let weights = try NodeWeights(parsing: "2:1,0:3")
        #expect(weights.entries.map(\.node) == [0, 2] && weights.entries.map(\.weight) == [3, 1])
        #expect(weights.description == "0:3,2:1" && weights.nodes == [0, 2] && weights.totalWeight == 4)
        let bad: [(String, String)] = [
            ("", "'' is not node:weight"), ("0", "'0' is not node:weight"), ("0:3,", "'' is not node:weight"),
            ("0:3:1", "'0:3:1' is not node:weight"), ("-1:3", "-1 is not a node id"), ("0:1001", "the weight 1001 of node 0"),
            ("0:-2", "the weight -2 of node 0"), ("1:1,1:2", "node 1 is weighted twice"), ("99999999:1", "99999999 is not a node id"),
        ]
        for (text, message) in bad {
            #expect(throws: NodeWeights.ParseError.self, "\(text)") { _ = try NodeWeights(parsing: text) }
            do {
                _ = try NodeWeights(parsing: text)
            } catch {
                #expect(error.description.contains(message), "\(text): \(error)")
            }
        }
    }

    @Test("every prefix of the plan is within one superblock per node of the ratio", arguments: ["0:3,1:1", "0:1,1:1", "0:5,2:3,3:1", "1:7", "0:1000,1:1"])
    func planFollowsRatio(text: String) throws {
        let weights = try NodeWeights(parsing: text)
        let plan = weights.plan(chunks: 2000)
        #expect(plan.count == 2000)
        var counts: [Int: Int] = [:]
        for (index, node) in plan.enumerated() {
            counts[node, default: 0] += 1
            for entry in weights.entries {
                let ideal = Double((index + 1) * entry.weight) / Double(weights.totalWeight)
                #expect(abs(Double(counts[entry.node] ?? 0) - ideal) < 1.0 + 1e-9,
                        "\(text): after \(index + 1) chunks node \(entry.node) has \(counts[entry.node] ?? 0), ideal \(ideal)")
            }
        }
        #expect(try NodeWeights(parsing: "0:3,1:1").plan(chunks: 8) == [0, 0, 1, 0, 0, 0, 1, 0])
        #expect(weights.plan(chunks: 0).isEmpty && weights.plan(chunks: -3).isEmpty)
    }

    @Test("weights=0:3,1:1 makes a weighted pool on nodes 0 and 1")
    func configuration() throws {
        let plans = try PoolSet.plan(environment: ["BUDDYPOOLS": "w:size=64M,page=4K,weights=0:3,1:1"], topology: FakeTopology.machine)
        let configuration = try #require(plans.first).configuration
        #expect(configuration.policy == .weighted)
        #expect(configuration.nodes == [0, 1])
        #expect(configuration.weights == (try NodeWeights(parsing: "0:3,1:1")))
        let explicit = try PoolSet.plan(environment: ["BUDDYPOOLS": "w:size=64M,page=4K,policy=weighted,nodes=0-1,weights=0:3,1:1"],
                                        topology: FakeTopology.machine)
        #expect(explicit.first?.configuration == configuration)
    }

    @Test("a weighted pool's hugepages are checked per node: node 1 has none, so 2M falls back")
    func hugepagesPerNode() throws {
        // Node 0 has 512 free 2 MiB pages, node 1 none: the quarter on node 1 cannot be hugetlb.
        let plans = try PoolSet.plan(environment: ["BUDDYPOOLS": "w:size=64M,page=2M,weights=0:3,1:1"], topology: FakeTopology.machine)
        let plan = try #require(plans.first)
        #expect(plan.pageSizes.first != .huge2M && plan.fallbacks.first?.reason.contains("node 1 has 0 free") == true, "\(plan)")
        #expect(throws: ConfigurationError.self) {
            _ = try PoolSet.plan(environment: ["BUDDYPOOLS": "w:size=64M,page=2M!,weights=0:3,1:1"], topology: FakeTopology.machine)
        }
    }

    @Test("PoolConfiguration checks weights against the policy and the nodes")
    func validation() throws {
        var configuration = PoolConfiguration(name: "w", capacity: 8 << 20)
        configuration.policy = .weighted
        #expect(throws: PoolError.self) { try configuration.validate() }
        configuration.weights = try NodeWeights(parsing: "0:1")
        try configuration.validate()
        configuration.nodes = [1]
        #expect(throws: PoolError.self) { try configuration.validate() }
        configuration.nodes = []
        configuration.policy = .interleave
        #expect(throws: PoolError.self) { try configuration.validate() }
    }

    @Test("a weighted pool on this machine's node 0 allocates and says where its superblocks are")
    func onThisMachine() throws {
        var configuration = PoolConfiguration(name: "weighted", capacity: 16 << 20)
        configuration.policy = .weighted
        configuration.weights = try NodeWeights(parsing: "0:1")
        configuration.pageSize = .base
        let pool = try MemoryPool(configuration: configuration)
        #expect(pool.regions.count == 1 && pool.regions[0].weights == configuration.weights && pool.regions[0].policy == .weighted)
        let block = try pool.allocate(byteCount: 2 << 20)
        pool.deallocate(block)
        let report = pool.regions[0].verifyPlacement()
        #expect(report.fractionOnIntendedNodes == 1, "\(report)")
    }
}
