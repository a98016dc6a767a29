import BuddyPools
import CTestSupport
import Synchronization
import TestSupport
import Testing

/// Replicated buffers where every node has a CPU and memory: a replica on each node, each
/// node's reader on its own replica, and updates racing readers on three other nodes.
@Suite("NUMAVM four nodes with CPUs: replicated buffers", .serialized, NUMAVMGuest.only(.fourCPUNodes))
struct FourNodeReplicaTests {
    static func set() throws -> PoolSet {
        try PoolSet(environment: ["BUDDYPOOLS": (0..<4).map { "n\($0):size=8M,nodes=\($0),page=4K" }.joined(separator: ";")])
    }

    @Test("one replica per node, every page of each on its own node")
    func placement() throws {
        let set = try Self.set()
        let buffer = try ReplicaWorkload.buffer(in: set)
        #expect(buffer.nodes == [0, 1, 2, 3])
        for node in 0..<4 {
            let replica = try #require(buffer.replicaAddresses(onNode: node))
            let pages = stride(from: 0, to: replica.count, by: 4096).map { replica.baseAddress! + $0 }
            let nodes = PagePlacement.nodes(of: pages)
            #expect(nodes.allSatisfy { $0 == node }, "replica of node \(node): pages on \(nodes)")
        }
    }

    @Test("a reader on each node's CPU reads the replica of its node")
    func localReaders() throws {
        let set = try Self.set()
        let buffer = try ReplicaWorkload.buffer(in: set)
        let topology = try NUMATopology.current()
        let seen = Mutex<[Int: (local: Int, inReplica: Bool)]>([:])
        runThreads(4) { cpu in
            guard ctest_pin_to_cpu(Int32(cpu)) == 0 else { return }
            let address = buffer.read { UInt(bitPattern: $0.baseAddress) }
            let node = buffer.localReplicaNode
            let replica = buffer.replicaAddresses(onNode: node)!
            let start = UInt(bitPattern: replica.baseAddress)
            seen.locked { $0[cpu] = (node, address >= start && address < start + UInt(replica.count)) }
        }
        let results = seen.locked { $0 }
        for cpu in 0..<4 {
            let expected = try #require(topology.node(ofCPU: cpu)).id
            let result = try #require(results[cpu], "CPU \(cpu) could not be pinned")
            #expect(result.local == expected && result.inReplica, "CPU \(cpu) (node \(expected)): read replica of node \(result.local)")
        }
    }

    @Test("updates from node 0 racing readers on nodes 1-3: no read sees words of two versions")
    func race() throws {
        let buffer = try ReplicaWorkload.buffer(in: try Self.set())
        let outcomes = ReplicaWorkload.race(buffer, updates: 300, writerCPU: 0, readerCPUs: [1, 2, 3])
        #expect(buffer.version == 300)
        for (index, outcome) in outcomes.enumerated() {
            #expect(outcome.mixed == 0, "reader on CPU \(index + 1): \(outcome.mixed) of \(outcome.reads) reads saw two versions")
            #expect(outcome.reads > 0 && outcome.versionsSeen.count > 1,
                    "reader on CPU \(index + 1) overlapped updates: \(outcome.reads) reads, \(outcome.versionsSeen.count) versions")
        }
    }
}
