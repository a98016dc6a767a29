import BuddyPools
import MemoryPools
import Synchronization
import TestSupport
import Testing

/// Freed runs of superblocks and whole superblocks kept for reuse without the pool lock (the
/// pool's run stash): reuse, the budget, draining, double frees, and threads racing on it.
@Suite("Run stash")
struct RunStashTests {
    /// A pool whose run budget is `runBudget` bytes (half the cache budget).
    static func pool(_ name: String, capacity: Int = 64 << 20, runBudget: Int) throws -> MemoryPool {
        try TestPools.make(name, capacity: capacity) { $0.cache.totalBytes = 2 * runBudget }
    }

    @Test("a freed run and a freed superblock come back to the next request of their size, and drainCaches gives them back")
    func reuse() throws {
        let pool = try Self.pool("reuse", runBudget: 16 << 20)
        let superblock = pool.geometry.superblockSize
        let run = try pool.allocate(byteCount: 4 * superblock, alignment: 4096)
        let single = try pool.allocate(byteCount: superblock)
        pool.deallocate(run)
        pool.deallocate(single)
        #expect(pool.statistics.cachedBytes >= 5 * superblock, "both kept: \(pool.statistics.cachedBytes) bytes cached")
        #expect(pool.validate(run) == .doubleFree(blockBytes: 4 * superblock), "a kept run is not live")
        // The same addresses come back: nothing was searched or split.
        let again = try pool.allocate(byteCount: 4 * superblock, alignment: 4096)
        let singleAgain = try pool.allocate(byteCount: superblock)
        #expect(again == run && singleAgain == single)
        // The 4 MiB run went through the stash without the lock both ways (the 2 MiB block may
        // sit in the thread's magazine instead, when the thread budget caches its order).
        #expect(pool.unlockedRunOperations.kept >= 1 && pool.unlockedRunOperations.taken >= 1, "\(pool.unlockedRunOperations)")
        #expect(pool.allocatedSize(of: again) == 4 * superblock && pool.allocatedSize(of: singleAgain) == superblock)
        try pool.checkInvariants()
        pool.deallocate(again, byteCount: 4 * superblock)
        pool.deallocate(singleAgain)
        pool.drainCaches()
        let statistics = pool.statistics
        #expect(statistics.usedBytes == 0 && statistics.cachedBytes == 0)
        #expect(statistics.freeBytes == statistics.managedBytes, "every superblock whole after the drain")
        try pool.checkInvariants()
    }

    @Test("the budget bounds what is kept: a run that does not fit goes back to the buddy allocator")
    func budget() throws {
        let pool = try Self.pool("budget", runBudget: 4 << 20)
        let superblock = pool.geometry.superblockSize
        let first = try pool.allocate(byteCount: 2 * superblock, alignment: 4096)
        let second = try pool.allocate(byteCount: 2 * superblock, alignment: 4096)
        pool.deallocate(first)
        pool.deallocate(second)
        // 4 MiB of budget holds one 4 MiB run; the other is free memory again.
        #expect(pool.statistics.cachedBytes == 2 * superblock)
        #expect(pool.statistics.freeBytes == pool.statistics.managedBytes - 2 * superblock)
        try pool.checkInvariants()
        // A pool with no cache budget keeps nothing.
        let none = try TestPools.make("no-runs") { $0.cache.enabled = false }
        let block = try none.allocate(byteCount: superblock)
        none.deallocate(block)
        #expect(none.statistics.cachedBytes == 0 && none.statistics.freeBytes == none.statistics.managedBytes)
    }

    @Test("a run kept by one thread is taken by another; threads racing on the stash never get one run twice and lose none")
    func racing() throws {
        let pool = try Self.pool("racing", capacity: 128 << 20, runBudget: 32 << 20)
        let superblock = pool.geometry.superblockSize
        let threads = 4
        let rounds = TestScale.operations(20_000)
        let overlaps = Atomic<Int>(0), failures = Atomic<Int>(0)
        runThreads(threads) { index in
            var random = SplitMix64(seed: UInt64(index) &+ 7)
            var held: [(UnsafeMutableRawPointer, Int, UInt64)] = []
            for round in 0..<rounds {
                if held.count < 3, random.next() % 3 != 0 {
                    // 1, 2 or 4 superblocks; a stamp in the first and last word of each.
                    let count = 1 << Int(random.next() % 3)
                    guard let block = try? pool.allocate(byteCount: count * superblock, alignment: 4096) else {
                        failures.wrappingAdd(1, ordering: .relaxed)
                        continue
                    }
                    let stamp = UInt64(index) << 32 | UInt64(round)
                    block.storeBytes(of: stamp, as: UInt64.self)
                    block.storeBytes(of: stamp, toByteOffset: count * superblock - 8, as: UInt64.self)
                    held.append((block, count, stamp))
                } else if !held.isEmpty {
                    let (block, count, stamp) = held.removeLast()
                    // Another thread writing the same run would have changed a stamp.
                    if block.load(as: UInt64.self) != stamp || block.load(fromByteOffset: count * superblock - 8, as: UInt64.self) != stamp {
                        overlaps.wrappingAdd(1, ordering: .relaxed)
                    }
                    pool.deallocate(block)
                }
            }
            for (block, _, _) in held { pool.deallocate(block) }
        }
        #expect(overlaps.load(ordering: .relaxed) == 0, "a run was handed to two threads at once")
        // The race ran on the stash: most frees kept their run there and most requests took one.
        let operations = pool.unlockedRunOperations
        #expect(operations.kept > rounds && operations.taken > rounds, "\(operations) in \(threads) x \(rounds) rounds")
        // 4 threads x 3 runs of at most 4 superblocks is 48 of the pool's 64 superblocks: no
        // request can fail (the stash's 32 MiB is drained under pressure).
        #expect(failures.load(ordering: .relaxed) == 0)
        try pool.checkInvariants()
        pool.drainCaches()
        #expect(pool.statistics.usedBytes == 0 && pool.statistics.freeBytes == pool.statistics.managedBytes)
        try pool.checkInvariants()
    }

    @Test("a double free of a kept run or superblock stops the process naming the pool and the address",
          arguments: [1, 4])
    func doubleFree(superblocks: Int) async throws {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { [superblocks] in
            let pool = try! Self.pool("victim", runBudget: 16 << 20)
            let block = try! pool.allocate(byteCount: superblocks * pool.geometry.superblockSize, alignment: 4096)
            pool.deallocate(block)
            pool.deallocate(block)
        }
        let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(text.contains("pool 'victim'") && text.contains("deallocate(0x") && text.contains("double free"), "\(text)")
    }
}
