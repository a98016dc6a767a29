import BuddyPools
import BuddySystem
import Glibc
import TestSupport
import Testing

/// Pools made as a process's malloc heap is (`populatedAtCreation = false`): their regions stay
/// reservations, and a superblock is committed (made readable and writable) when the arena first
/// hands out memory from it. Checked against the kernel's own view, /proc/self/maps.
@Suite("Superblocks committed on first use")
struct CommitOnDemandTests {
    static func heapConfiguration(_ name: String, capacity: Int = 64 << 20) -> PoolConfiguration {
        var configuration = PoolConfiguration(name: name, capacity: capacity)
        configuration.pageSize = .transparent
        TestPools.asHeapPool(&configuration)
        return configuration
    }

    static func writableBytes(_ pool: MemoryPool) -> Int {
        pool.regions.reduce(0) { $0 + ResidentMemory.writableBytes(in: $1.addressRange) }
    }

    @Test("a heap pool starts with nothing committed and commits each superblock it hands memory out of, once")
    func commitsAsUsed() throws {
        let pool = try MemoryPool(configuration: Self.heapConfiguration("commit-as-used"))
        let superblock = pool.geometry.superblockSize
        #expect(pool.regions.allSatisfy { $0.commitsOnDemand })
        #expect(Self.writableBytes(pool) == 0, "a fresh heap pool has committed memory")
        #expect(pool.statistics.committedBytes == 0)

        // One small block, one object: one superblock (or two, if the object's slab came from another).
        let page = try pool.allocate(byteCount: 4096)
        let object = try pool.allocate(byteCount: 24)
        page.storeBytes(of: 1, as: UInt64.self)
        object.storeBytes(of: 2, as: UInt64.self)
        let afterSmall = Self.writableBytes(pool)
        #expect(afterSmall >= superblock && afterSmall <= 2 * superblock, "\(afterSmall) bytes committed for a page and an object")

        // A run of three superblocks commits three more, every byte of them writable.
        let run = try pool.allocate(byteCount: 3 * superblock)
        run.initializeMemory(as: UInt8.self, repeating: 0xA5, count: 3 * superblock)
        let afterRun = Self.writableBytes(pool)
        #expect(afterRun == afterSmall + 3 * superblock)
        #expect(pool.statistics.committedBytes == afterRun, "the statistics say what the kernel's maps say")

        // Freed and asked for again: the same superblocks serve, nothing more is committed.
        pool.deallocate(run)
        pool.deallocate(page)
        pool.deallocate(object)
        let again = try pool.allocate(byteCount: 3 * superblock)
        again.storeBytes(of: 3, as: UInt64.self)
        #expect(Self.writableBytes(pool) == afterRun)
        pool.deallocate(again)
        try pool.checkInvariants()
    }

    @Test("a lender commits a superblock before it lends it, and the borrower's writes land in committed memory")
    func lendingCommits() throws {
        // Two heap pools, as the malloc heap makes them: the lender has never used its superblocks.
        let set = try PoolSet(environment: ["BUDDYPOOLS": "hi:size=4M,priority=10,max=12M,page=4K;lo:size=16M,priority=1,page=4K"],
                              adjusting: TestPools.asHeapPool)
        let hi = try #require(set["hi"]), lo = try #require(set["lo"])
        #expect(Self.writableBytes(lo) == 0)
        let blocks = TestPools.fillWithSuperblocks(hi)
        #expect(blocks.count == 6, "4 MiB own + 8 MiB borrowed = its 12 MiB max")
        // Every byte of every block, borrowed ones included, is writable: an uncommitted loan would fault here.
        for block in blocks { block.initializeMemory(as: UInt8.self, repeating: 0x77, count: 2 << 20) }
        #expect(Self.writableBytes(lo) == 8 << 20, "the lender committed exactly the four superblocks it lent")
        for block in blocks { hi.deallocate(block) }
        hi.drainCaches()
        #expect(lo.statistics.lentBytes == 0)
        try hi.checkInvariants()
        try lo.checkInvariants()
    }

    @Test("a pool populated at creation is committed whole, as before")
    func populatedPoolsAreCommitted() throws {
        var configuration = PoolConfiguration(name: "commit-populated", capacity: 8 << 20)
        configuration.pageSize = .transparent
        let pool = try MemoryPool(configuration: configuration)
        #expect(pool.regions.allSatisfy { !$0.commitsOnDemand })
        #expect(Self.writableBytes(pool) == 8 << 20)
        #expect(pool.statistics.committedBytes == 8 << 20)
    }

    @Test("a refused commit fails the request with exhaustion, hands nothing out, and the pool goes on once the kernel commits again")
    func refusedCommit() throws {
        let pool = try MemoryPool(configuration: Self.heapConfiguration("commit-refused", capacity: 16 << 20))
        let superblock = pool.geometry.superblockSize
        let first = try pool.allocate(byteCount: superblock)
        let (refused, outcome) = SystemCallFaults.failing(.mprotect, errno: ENOMEM) {
            Result { () throws(PoolError) -> UnsafeMutableRawPointer in try pool.allocate(byteCount: superblock) }
        }
        guard case .failure(.exhausted(let exhaustion)) = refused else {
            Issue.record("a request for a new superblock with mprotect refused gave \(refused), not exhaustion")
            return
        }
        #expect(outcome.fired >= 1)
        #expect(exhaustion.pool == "commit-refused")
        // Nothing was handed out or lost: only the first superblock is committed and in use.
        #expect(Self.writableBytes(pool) == superblock)
        #expect(pool.statistics.usedBytes == superblock)
        try pool.checkInvariants()

        let second = try pool.allocate(byteCount: superblock)
        second.initializeMemory(as: UInt8.self, repeating: 7, count: superblock)
        #expect(Self.writableBytes(pool) == 2 * superblock)
        pool.deallocate(second)
        pool.deallocate(first)
        try pool.checkInvariants()
    }
}
