import BuddyPools
import Glibc
import TestSupport
import Testing

/// `fit=exact`: a request between one minimum block and a superblock keeps only the minimum
/// blocks it needs, and the tail of its power-of-two block goes back to the buddy allocator.
@Suite("Exact sizes above a page (fit=exact)")
struct ExactFitTests {
    static func pool(_ name: String, capacity: Int, fit: PoolConfiguration.Fit = .exact, caches: Bool = true) throws -> MemoryPool {
        try TestPools.make(name, capacity: capacity, pageSize: .base) {
            $0.fit = fit
            $0.cache.enabled = caches
        }
    }

    /// Bytes the pool spends on live allocations: what they hold plus the metadata they added.
    static func spentBytes(_ pool: MemoryPool, metadataBefore: Int) -> Int {
        let statistics = pool.statistics
        return statistics.usedBytes + statistics.metadataBytes - metadataBefore
    }

    /// 800 log-uniform sizes from 4 KiB to 2 MiB, not rounded to pages, all kept live; returns
    /// the bytes asked for and the bytes spent.
    static func fillRandomly(_ pool: MemoryPool) throws -> (asked: Int, spent: Int) {
        let metadataBefore = pool.statistics.metadataBytes
        var random = SplitMix64(seed: 11)
        var asked = 0
        var blocks: [UnsafeMutableRawPointer] = []
        for _ in 0..<800 {
            let shift = 12.0 + 9.0 * Double(random.next() >> 11) / Double(1 << 53)
            let size = min(2 << 20, Int(exp2(shift)))
            blocks.append(try pool.allocate(byteCount: size))
            asked += size
        }
        let spent = spentBytes(pool, metadataBefore: metadataBefore)
        for block in blocks { pool.deallocate(block) }
        pool.drainCaches()
        #expect(pool.statistics.usedBytes == 0)
        #expect(pool.statistics.whollyFreeSuperblocks == pool.capacity / pool.geometry.superblockSize)
        return (asked, spent)
    }

    @Test("random sizes 4 KiB-2 MiB take at most 1.1 x the bytes asked for; whole buddy blocks take more")
    func randomSizesWasteLittle() throws {
        let exact = try Self.fillRandomly(try Self.pool("exact-sizes", capacity: 512 << 20))
        let ratio = Double(exact.spent) / Double(exact.asked)
        #expect(ratio <= 1.1, "asked \(exact.asked), took \(exact.spent) (\(ratio) x)")
        // The same requests as whole power-of-two blocks: the waste exact sizes take away.
        let buddy = try Self.fillRandomly(try Self.pool("buddy-sizes", capacity: 512 << 20, fit: .buddy))
        let buddyRatio = Double(buddy.spent) / Double(buddy.asked)
        #expect(buddy.asked == exact.asked)
        #expect(buddyRatio >= 1.25, "whole blocks took \(buddyRatio) x: the comparison above would show nothing")
    }

    @Test("the tail of a trimmed block serves other requests at once", arguments: [true, false])
    func tailIsReused(caches: Bool) throws {
        // One superblock: 1 MiB + 4 KiB would take all of it as a buddy block.
        for fit in [PoolConfiguration.Fit.exact, .buddy] {
            let pool = try Self.pool("tail-\(fit)", capacity: 2 << 20, fit: fit, caches: caches)
            let large = try pool.allocate(byteCount: (1 << 20) + 4096)
            let rest = pool.tryAllocate(byteCount: 512 << 10)
            if fit == .exact {
                let block = try rest.get()
                #expect(pool.allocatedSize(of: large) == (1 << 20) + 4096)
                #expect(pool.statistics.usedBytes == (1 << 20) + 4096 + (512 << 10))
                pool.deallocate(block)
            } else {
                guard case .failure(.exhausted) = rest else {
                    Issue.record("a 2 MiB buddy block left room for 512 KiB: \(rest)")
                    continue
                }
            }
            pool.deallocate(large, byteCount: (1 << 20) + 4096)
            pool.drainCaches()
            try pool.checkInvariants()
            #expect(pool.statistics.whollyFreeSuperblocks == 1, "\(fit): the pieces merged back into the superblock")
        }
    }

    @Test("allocatedSize, validate and sized frees see the kept pages, not the block they were cut from")
    func queries() throws {
        let pool = try Self.pool("exact-queries", capacity: 8 << 20)
        // 20 KiB: a 16 KiB piece and a 4 KiB piece of a 32 KiB block.
        let block = try pool.allocate(byteCount: 20 << 10)
        #expect(pool.allocatedSize(of: block) == 20 << 10)
        #expect(pool.heldBytes(forByteCount: 20 << 10) == 20 << 10, "the pool's own answer for the request")
        #expect(pool.validate(block) == nil)
        #expect(pool.validate(block, byteCount: (16 << 10) + 1) == nil, "any size needing the same five pages")
        #expect(pool.validate(block, byteCount: 16 << 10) == .wrongSize(given: 16 << 10, allocatedBytes: 20 << 10))
        #expect(pool.validate(block, byteCount: (20 << 10) + 1) == .wrongSize(given: (20 << 10) + 1, allocatedBytes: 20 << 10))
        let start = UInt(bitPattern: block)
        #expect(pool.validate(block + (16 << 10)) == .interior(blockStart: start, blockBytes: 20 << 10), "the second piece")
        #expect(pool.validate(block + (18 << 10)) == .interior(blockStart: start, blockBytes: 20 << 10), "inside the first piece")
        #expect(pool.validate(block + 100) == .interior(blockStart: start, blockBytes: 20 << 10))
        #expect(pool.allocatedSize(of: block + (16 << 10)) == nil)
        // A raised alignment: 8 KiB aligned to 64 KiB keeps two pages of a 64 KiB block.
        let aligned = try pool.allocate(byteCount: 8 << 10, alignment: 64 << 10)
        #expect(UInt(bitPattern: aligned) % (64 << 10) == 0)
        #expect(pool.allocatedSize(of: aligned) == 8 << 10)
        // Powers of two are whole blocks, as in any pool (and cached).
        let whole = try pool.allocate(byteCount: 64 << 10)
        #expect(pool.allocatedSize(of: whole) == 64 << 10)
        // Movable requests keep whole blocks: compaction moves blocks, not pieces.
        let movable = try pool.allocate(byteCount: 20 << 10, mobility: .movable)
        #expect(pool.allocatedSize(of: movable) == 32 << 10)
        pool.deallocate(block, byteCount: 20 << 10)
        pool.deallocate(aligned)
        pool.deallocate(whole, byteCount: 64 << 10)
        pool.deallocate(movable)
        pool.drainCaches()
        try pool.checkInvariants()
        #expect(pool.statistics.usedBytes == 0)
    }

    /// One live allocation of the model.
    struct Live {
        let address: UInt
        let size: Int
        let stamp: UInt64
    }

    @Test("random requests of 16 B-3 MiB, aligned 1 B-64 KiB, in a fit=exact pool: no overlap, alignment met, data intact, invariants hold, every superblock whole at the end",
          arguments: [(true, UInt64(51)), (false, UInt64(52))])
    func model(caches: Bool, seed: UInt64) throws {
        let pool = try Self.pool("exact-model", capacity: 128 << 20, caches: caches)
        var random = SplitMix64(seed: seed)
        var live: [Live] = []
        let operations = TestScale.operations(20_000)
        for step in 0..<operations {
            if live.count > 200 || (!live.isEmpty && random.next() % 2 == 0) {
                let victim = live.remove(at: Int(random.next() % UInt64(live.count)))
                let pointer = UnsafeMutableRawPointer(bitPattern: victim.address)!
                #expect(pointer.load(as: UInt64.self) == victim.stamp, "first word of \(victim.size) B at step \(step)")
                #expect(pointer.loadUnaligned(fromByteOffset: victim.size - 8, as: UInt64.self) == victim.stamp, "last word of \(victim.size) B at step \(step)")
                if random.next() % 2 == 0 { pool.deallocate(pointer, byteCount: victim.size) } else { pool.deallocate(pointer) }
            } else {
                let pick = random.next() % 10
                let size = pick < 2 ? Int(random.next() % 4081) + 16
                    : pick < 9 ? Int(random.next() % UInt64(2 << 20)) + 4097
                    : Int(random.next() % UInt64(1 << 20)) + (2 << 20)
                let alignment = 1 << Int(random.next() % 17)
                guard case .success(let pointer) = pool.tryAllocate(byteCount: size, alignment: alignment) else { continue }
                let address = UInt(bitPattern: pointer)
                #expect(address % UInt(alignment) == 0, "\(size) B aligned \(alignment)")
                let held = try #require(pool.allocatedSize(of: pointer))
                #expect(held >= size)
                #expect(held == pool.heldBytes(forByteCount: size, alignment: alignment), "\(size) B aligned \(alignment)")
                if size > 4096, size <= 2 << 20 {
                    // Less than a page lost, whatever the alignment raised the block to.
                    #expect(held - size < 4096, "\(size) B aligned \(alignment) holds \(held)")
                }
                let end = address + UInt(size)
                for other in live where address < other.address + UInt(other.size) && other.address < end {
                    Issue.record("\(size) B at 0x\(String(address, radix: 16)) overlaps \(other.size) B at 0x\(String(other.address, radix: 16))")
                }
                let stamp = random.next()
                pointer.storeBytes(of: stamp, as: UInt64.self)
                pointer.storeBytes(of: stamp, toByteOffset: size - 8, as: UInt64.self)
                live.append(Live(address: address, size: size, stamp: stamp))
            }
            if step % 97 == 0 { try pool.checkInvariants() }
        }
        for victim in live { pool.deallocate(UnsafeMutableRawPointer(bitPattern: victim.address)!) }
        pool.drainCaches()
        try pool.checkInvariants()
        #expect(pool.statistics.usedBytes == 0)
        #expect(pool.statistics.whollyFreeSuperblocks == pool.capacity / pool.geometry.superblockSize)
    }
}
