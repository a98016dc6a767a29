import BuddyPools
import Testing

/// Realtime pools are closed by default: a locked pool lends only with `lend=1`, never below its
/// `min`, and only to locked pools (whose recall never runs another pool's drains on its
/// thread); an unlocked pool never holds locked memory, and a locked pool never borrows
/// unlocked (unpopulated, pageable) memory.
@Suite("Lending rules of locked pools", .serialized)
struct LockedLendingTests {
    static let superblock = 2 << 20

    /// How many superblocks `hi` (2 MiB own) gets from `lo` (8 MiB) with these options.
    static func borrowed(hi: String, lo: String) throws -> Int {
        let set = try PoolSet(environment: ["BUDDYPOOLS": "hi:size=2M,priority=10,page=4K\(hi);lo:size=8M,priority=1,page=4K\(lo)"])
        let hiPool = try #require(set["hi"]), loPool = try #require(set["lo"])
        let blocks = TestPools.fillWithSuperblocks(hiPool)
        let stats = hiPool.statistics
        #expect(stats.borrowedBytes == (blocks.count - 1) * superblock)
        for block in blocks { hiPool.deallocate(block) }
        hiPool.drainCaches()
        try hiPool.checkInvariants()
        try loPool.checkInvariants()
        return stats.borrowedBytes / superblock
    }

    @Test("who may borrow from whom", arguments: [
        // (borrower options, lender options, superblocks borrowed)
        ("", ",locked=1", 0),                       // a locked pool does not lend by default...
        (",locked=1", ",locked=1", 0),              // ...not even to a locked pool
        ("", ",locked=1,lend=1", 0),                // an unlocked pool never borrows locked memory
        (",locked=1", ",locked=1,lend=1", 4),       // lend=1 opens it to locked pools
        (",locked=1", ",locked=1,lend=1,min=4M", 2),// never below its min
        (",locked=1", "", 0),                       // a locked pool never borrows unlocked memory
        ("", "", 4),                                // unlocked pools lend by default
        ("", ",lend=0", 0),                         // unless they say lend=0
    ])
    func rules(borrower: String, lender: String, expected: Int) throws {
        #expect(try Self.borrowed(hi: borrower, lo: lender) == expected, "hi\(borrower) from lo\(lender)")
    }

    @Test("a locked lender's recall takes back what its borrower holds free, and never drains the borrower's caches from its thread")
    func lockedRecall() throws {
        let set = try PoolSet(environment: ["BUDDYPOOLS": "hi:size=2M,priority=10,page=4K,locked=1;lo:size=8M,priority=1,page=4K,locked=1,lend=1"])
        let hi = try #require(set["hi"]), lo = try #require(set["lo"])
        // hi takes everything as 4 KiB blocks: its own superblock first, then all four of lo's.
        var small: [UnsafeMutableRawPointer] = []
        while let block = try? hi.allocate(byteCount: 4096) { small.append(block) }
        #expect(small.count == 5 * 512)
        #expect(hi.statistics.borrowedBytes == 8 << 20)
        // One block stays live in the last borrowed superblock; hi's thread cache keeps some of
        // its own blocks (blocks of borrowed superblocks are never cached: they are outside the
        // fast path's own regions).
        let kept = small.removeLast()
        for block in small { hi.deallocate(block) }
        let cached = hi.statistics.cachedBytes
        #expect(cached > 0, "hi's cache keeps some of its own blocks")
        // lo needs its memory: it gets back what hi holds wholly free, and drains nothing of hi's.
        let mine = TestPools.fillWithSuperblocks(lo)
        #expect(mine.count == 3, "the three wholly free loans came back")
        #expect(lo.statistics.lentBytes == Self.superblock, "the superblock with a live block stays lent")
        #expect(hi.statistics.cachedBytes == cached, "hi's cache is untouched by lo's recall")
        // hi frees its last block: with the recall flag raised, that loan goes home at once.
        hi.deallocate(kept)
        #expect(lo.statistics.lentBytes == 0)
        let rest = TestPools.fillWithSuperblocks(lo)
        #expect(rest.count == 1)
        for block in mine + rest { lo.deallocate(block) }
        lo.drainCaches()
        try hi.checkInvariants()
        try lo.checkInvariants()
        #expect(hi.statistics.usedBytes == 0 && lo.statistics.usedBytes == 0)
    }
}
