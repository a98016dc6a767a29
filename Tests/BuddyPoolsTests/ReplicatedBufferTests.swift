import BuddyPools
import TestSupport
import Testing

/// Replicated buffers on this one-node machine: one replica, reads and updates, the errors, and
/// updates racing reads (FourNodeReplicaTests puts a replica on each of four nodes).
@Suite("Replicated buffers")
struct ReplicatedBufferTests {
    static func set() throws -> PoolSet { try PoolSet(environment: ["BUDDYPOOLS": "node0:size=8M,nodes=0,page=4K"]) }

    @Test("one replica per single-node pool, filled by the initializer, read locally and updated")
    func basics() throws {
        let set = try Self.set()
        let buffer = try ReplicatedBuffer(byteCount: 1000, in: set) { bytes in
            for index in 0..<1000 { bytes[index] = UInt8(index % 251) }
        }
        #expect(buffer.nodes == [0] && buffer.localReplicaNode == 0 && buffer.version == 0)
        #expect(buffer.read { bytes in bytes.count == 1000 && bytes.indices.allSatisfy { bytes[$0] == UInt8($0 % 251) } })
        buffer.update { bytes in bytes[7] = 99 }
        #expect(buffer.version == 1)
        #expect(buffer.read(onNode: 0) { $0[7] == 99 && $0[8] == 8 }, "the update kept the rest")
        buffer.update { bytes in bytes[8] = 100 }
        #expect(buffer.read { $0[7] == 99 && $0[8] == 100 }, "the second update started from the first")
        let replica = try #require(buffer.replicaAddresses(onNode: 0))
        #expect(set.pool(holding: replica.baseAddress!)?.name == "node0", "the replica is a block of the node's pool")
    }

    @Test("bad sizes and nodes without a pool are typed errors, and nothing stays allocated")
    func errors() throws {
        let set = try Self.set()
        let pool = try #require(set["node0"])
        for size in [0, -5, Int.max, Int.max - 10] {
            #expect(throws: PoolError.self, "\(size)") { _ = try ReplicatedBuffer(byteCount: size, in: set) { _ in } }
        }
        do {
            _ = try ReplicatedBuffer(byteCount: 64, nodes: [0, 5], in: set) { _ in }
            Issue.record("a replica on node 5 without a pool")
        } catch {
            #expect("\(error)".contains("no pool of the set is on node 5"), "\(error)")
        }
        #expect(throws: PoolError.self) { _ = try ReplicatedBuffer(byteCount: 16 << 20, in: set) { _ in } }
        pool.drainCaches()
        #expect(pool.statistics.freeBytes == pool.capacity, "the replica made before the refusal was freed")
    }

    @Test("updates racing reads: no read sees words of two versions")
    func raceHere() throws {
        let buffer = try ReplicaWorkload.buffer(in: try Self.set())
        let updates = TestScale.operations(20_000)
        let outcomes = ReplicaWorkload.race(buffer, updates: updates, writerCPU: nil, readerCPUs: [nil])
        #expect(buffer.version == UInt64(updates))
        for outcome in outcomes {
            #expect(outcome.mixed == 0, "\(outcome.mixed) of \(outcome.reads) reads saw two versions")
            #expect(outcome.reads > 0)
        }
        #expect(buffer.read { $0.load(as: UInt64.self) } == UInt64(updates))
    }
}
