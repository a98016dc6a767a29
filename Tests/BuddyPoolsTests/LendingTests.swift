import BuddyPools
import Testing

@Suite("Lending superblocks by priority")
struct LendingTests {
    @Test("a higher-priority pool borrows up to its max; the lender keeps its min; loans come back")
    func borrowAndReturn() throws {
        let set = try PoolSet(environment: ["BUDDYPOOLS": "hi:size=4M,priority=10,max=16M,page=4K;lo:size=16M,priority=1,min=4M,page=4K"])
        let hi = try #require(set["hi"]), lo = try #require(set["lo"])
        let blocks = TestPools.fillWithSuperblocks(hi)
        #expect(blocks.count == 8, "4 MiB own + 12 MiB borrowed = its 16 MiB max")
        var stats = hi.statistics
        #expect(stats.borrowedBytes == 12 << 20)
        #expect(stats.borrowedFrom == ["lo": 6])
        #expect(stats.managedBytes == 16 << 20)
        let lender = lo.statistics
        #expect(lender.lentBytes == 12 << 20 && lender.lentTo == ["hi": 6])
        #expect(lender.managedBytes == 4 << 20, "the lender keeps its min")
        // Borrowed memory is really usable.
        for block in blocks { block.initializeMemory(as: UInt8.self, repeating: 0x5A, count: 2 << 20) }
        try hi.checkInvariants()
        try lo.checkInvariants()

        for block in blocks { hi.deallocate(block) }
        hi.drainCaches()
        stats = hi.statistics
        #expect(stats.borrowedBytes == 0, "free borrowed superblocks went home: \(stats.borrowedFrom)")
        #expect(lo.statistics.lentBytes == 0)
        #expect(lo.statistics.managedBytes == 16 << 20)
        try hi.checkInvariants()
        try lo.checkInvariants()
    }

    @Test("a lender that runs short recalls free loans before it fails")
    func recall() throws {
        let set = try PoolSet(environment: ["BUDDYPOOLS": "hi:size=4M,priority=10,page=4K;lo:size=8M,priority=1,page=4K"])
        let hi = try #require(set["hi"]), lo = try #require(set["lo"])
        let blocks = TestPools.fillWithSuperblocks(hi)
        #expect(blocks.count == 6, "hi took all of lo (no min)")
        let borrowed = blocks.filter { block in lo.regions.contains { $0.addressRange.contains(UInt(bitPattern: block)) } }
        #expect(borrowed.count == 4)
        // hi frees the borrowed blocks but keeps its own two busy, so it has no reason to give them back yet.
        for block in borrowed { hi.deallocate(block) }
        // lo now needs its memory: it must get loans back instead of failing.
        let mine = TestPools.fillWithSuperblocks(lo)
        #expect(mine.count == 4, "lo got all four free loans back from hi")
        #expect(lo.statistics.managedBytes == 8 << 20)
        #expect(hi.statistics.borrowedBytes == 0)
        for block in mine { lo.deallocate(block) }
        for block in blocks where !borrowed.contains(block) { hi.deallocate(block) }
        hi.drainCaches()
        lo.drainCaches()
        try hi.checkInvariants()
        try lo.checkInvariants()
        #expect(hi.statistics.freeBytes + lo.statistics.freeBytes == 12 << 20)
    }

    @Test("equal priorities never take from each other")
    func equalPriorities() throws {
        let set = try PoolSet(environment: ["BUDDYPOOLS": "a:size=4M,priority=3,page=4K;b:size=8M,priority=3,page=4K"])
        let a = try #require(set["a"])
        #expect(TestPools.fillWithSuperblocks(a).count == 2)
        #expect(a.statistics.borrowedBytes == 0)
        #expect(set["b"]!.statistics.lentBytes == 0)
    }

    @Test("borrowed blocks freed through the lender are wrong-pool frees")
    func wrongPoolAcrossLoans() throws {
        let set = try PoolSet(environment: ["BUDDYPOOLS": "hi:size=2M,priority=10,page=4K;lo:size=4M,priority=1,page=4K"])
        let hi = try #require(set["hi"]), lo = try #require(set["lo"])
        let blocks = TestPools.fillWithSuperblocks(hi)
        let borrowed = try #require(blocks.first { block in lo.regions.contains { $0.addressRange.contains(UInt(bitPattern: block)) } })
        #expect(lo.validate(borrowed) == .wrongPool(owner: "hi (a superblock this pool lent)"))
        #expect(hi.validate(borrowed) == nil)
        for block in blocks { hi.deallocate(block) }
    }
}
