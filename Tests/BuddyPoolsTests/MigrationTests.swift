import BuddyPools
import BuddySystem
import Glibc
import TestSupport
import Testing

/// Migration on this one-node machine: every path but a real move (FourNodeGuestTests moves
/// pools between nodes): the same node, refused nodes, a kernel refusal forced on mbind, subsets.
@Suite("Pool migration")
struct MigrationTests {
    static func filledPool(_ name: String, locked: Bool = false) throws -> (MemoryPool, [(UnsafeMutableRawPointer, Int)]) {
        var configuration = PoolConfiguration(name: name, capacity: 16 << 20)
        configuration.pageSize = .base
        configuration.locked = locked
        let pool = try MemoryPool(configuration: configuration)
        var blocks: [(UnsafeMutableRawPointer, Int)] = []
        for (index, size) in [24, 4096, 65536, 1 << 20, 2 << 20, 3840].enumerated() {
            let block = try pool.allocate(byteCount: size)
            for offset in stride(from: 0, to: size, by: 8) {
                (block + offset).storeBytes(of: UInt64(index &* 1_000_003 &+ offset), as: UInt64.self)
            }
            blocks.append((block, size))
        }
        return (pool, blocks)
    }

    static func intact(_ blocks: [(UnsafeMutableRawPointer, Int)]) -> Bool {
        blocks.enumerated().allSatisfy { index, block in
            stride(from: 0, to: block.1, by: 8).allSatisfy { (block.0 + $0).load(as: UInt64.self) == UInt64(index &* 1_000_003 &+ $0) }
        }
    }

    @Test("migrating to the pool's own node keeps every byte at every address and binds the pool there")
    func sameNode() throws {
        let (pool, blocks) = try Self.filledPool("migrate-same")
        let report = try pool.migrate(to: [0])
        #expect(report.superblocksMoved == 8 && report.bytesMoved == 16 << 20 && report.superblocksLeftInPlace == 0, "\(report)")
        #expect(report.superblocksByNode == [0: 8], "\(report)")
        #expect(report.fractionOnTarget == 1, "\(report)")
        #expect(Self.intact(blocks))
        #expect(pool.nodes == [0] && pool.policy == .bind && pool.regions[0].nodes == [0])
        #expect(pool.verifyPlacement().allSatisfy { $0.fractionOnIntendedNodes == 1 })
        for (block, _) in blocks { pool.deallocate(block) }
        let again = try pool.allocate(byteCount: 4 << 20)
        pool.deallocate(again)
        pool.drainCaches()
        try pool.checkInvariants()
        #expect(pool.statistics.freeBytes == pool.capacity)
    }

    @Test("a locked pool stays locked through a migration")
    func lockedStaysLocked() throws {
        let (pool, blocks) = try Self.filledPool("migrate-locked", locked: true)
        let range = pool.regions[0].addressRange
        #expect(ResidentMemory.lockedBytes(in: range) >= 16 << 20)
        _ = try pool.migrate(to: [0])
        #expect(ResidentMemory.lockedBytes(in: range) >= 16 << 20, "smaps Locked after the migration")
        #expect(Self.intact(blocks))
        for (block, _) in blocks { pool.deallocate(block) }
    }

    @Test("nodes that do not exist are refused before anything moves, naming the node", arguments: [[7], [0, 9]] as [NodeSet])
    func refusedNodes(nodes: NodeSet) throws {
        let (pool, blocks) = try Self.filledPool("migrate-refused")
        do {
            _ = try pool.migrate(to: nodes)
            Issue.record("migration to \(nodes) succeeded")
        } catch {
            guard case .system(let system) = error else { Issue.record("\(error)"); return }
            #expect(system.kind == .invalidPlacement && system.call.contains("migrate pool 'migrate-refused'"), "\(system)")
            #expect(system.advice.contains("does not exist"), "\(system)")
        }
        #expect(pool.nodes == [0] && Self.intact(blocks))
        #expect(throws: PoolError.self) { _ = try pool.migrate(to: []) }
        for (block, _) in blocks { pool.deallocate(block) }
    }

    @Test("a kernel refusal part-way moves back what moved, says so, and leaves the pool usable where it was")
    func kernelRefusal() throws {
        let (pool, blocks) = try Self.filledPool("migrate-eio")
        let (result, outcome) = SystemCallFaults.failing(.mbind, errno: EIO, times: 1) {
            Result { () throws(PoolError) -> MigrationReport in try pool.migrate(to: [0]) }
        }
        #expect(outcome.fired == 1)
        guard case .failure(.system(let error)) = result else {
            Issue.record("the migration with mbind failing gave \(result)")
            return
        }
        #expect(error.kind == .insufficientMemory && error.errno == EIO, "\(error)")
        #expect(error.advice.contains("moved back") && error.advice.contains("stays usable"), "\(error)")
        #expect(Self.intact(blocks))
        let block = try pool.allocate(byteCount: 1 << 20)
        pool.deallocate(block)
        for (block, _) in blocks { pool.deallocate(block) }
        try pool.checkInvariants()
    }

    @Test("a subset moves only the superblocks that hold the given blocks; others' blocks stay counted as left")
    func subset() throws {
        let (pool, blocks) = try Self.filledPool("migrate-subset")
        let big = blocks.first { $0.1 == 2 << 20 }!.0
        let elsewhere = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        defer { elsewhere.deallocate() }
        let report = try pool.migrate(superblocksOf: [UnsafeRawPointer(big), UnsafeRawPointer(big + 4096), UnsafeRawPointer(elsewhere)], to: [0])
        #expect(report.superblocksMoved == 1 && report.bytesMoved == 2 << 20, "\(report)")
        #expect(report.superblocksLeftInPlace == 1, "the address in no pool region: \(report)")
        #expect(Self.intact(blocks))
        for (block, _) in blocks { pool.deallocate(block) }
    }
}
