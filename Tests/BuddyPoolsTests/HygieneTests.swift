import BuddyPools
import TestSupport
import Testing

/// What memory carries between owners: a superblock lent to another pool reads as zeros (or the
/// borrower's poison), never as what the lender wrote; `zero=` pools hand out and keep zeroed
/// memory; `poison=1` pools fill freed blocks and catch writes after free.
@Suite("Memory hygiene between pools and owners")
struct HygieneTests {
    static let superblock = 2 << 20

    /// The offset of the first byte of `block` that is not `value`, or nil.
    static func firstByte(in block: UnsafeRawPointer, count: Int, otherThan value: UInt8) -> Int? {
        let bytes = UnsafeRawBufferPointer(start: block, count: count)
        return bytes.firstIndex { $0 != value }
    }

    static func inRegions(_ pool: MemoryPool, _ block: UnsafeMutableRawPointer) -> Bool {
        pool.regions.contains { $0.addressRange.contains(UInt(bitPattern: block)) }
    }

    /// The lender writes every byte of its pool and frees it all; the borrower then takes all of
    /// it: every borrowed byte must read `expected`. Back home, the lender reads zeros too.
    static func checkLoans(page: String, borrowerOptions: String = "", expected: UInt8) throws {
        let set = try PoolSet(environment: ["BUDDYPOOLS": "hi:size=2M,priority=10,page=\(page)\(borrowerOptions);lo:size=8M,priority=1,page=\(page)"])
        let hi = try #require(set["hi"]), lo = try #require(set["lo"])
        let written = TestPools.fillWithSuperblocks(lo)
        #expect(written.count == 4)
        for block in written { block.initializeMemory(as: UInt8.self, repeating: 0x5A, count: superblock) }
        for block in written { lo.deallocate(block) }
        lo.drainCaches()

        let blocks = TestPools.fillWithSuperblocks(hi)
        let borrowed = blocks.filter { inRegions(lo, $0) }
        #expect(borrowed.count == 4, "hi borrowed all of lo (no min)")
        for block in borrowed {
            let offset = firstByte(in: block, count: superblock, otherThan: expected)
            #expect(offset == nil, "borrowed superblock at \(block) byte +\(offset ?? 0) holds what the lender wrote")
        }
        // The borrower writes too; the loans go home as they are freed and drained.
        for block in blocks { block.initializeMemory(as: UInt8.self, repeating: 0x77, count: superblock) }
        for block in blocks { hi.deallocate(block) }
        hi.drainCaches()
        #expect(lo.statistics.lentBytes == 0)
        let home = TestPools.fillWithSuperblocks(lo)
        #expect(home.count == 4)
        for block in home {
            let offset = firstByte(in: block, count: superblock, otherThan: 0)
            #expect(offset == nil, "returned superblock at \(block) byte +\(offset ?? 0) holds what the borrower wrote")
        }
        for block in home { lo.deallocate(block) }
        try hi.checkInvariants()
        try lo.checkInvariants()
    }

    @Test("a borrowed superblock reads as zeros, and back home as zeros again", arguments: ["4K", "thp"])
    func loansCarryNoData(page: String) throws {
        try Self.checkLoans(page: page, expected: 0)
    }

    @Test("hugetlb loans are cleared too (a memset: MADV_DONTNEED would free the hugepage)",
          .enabled(if: ResidentMemory.free2MHugepages >= 8, "needs 8 free 2 MiB hugepages: the reserved-hugepage pass of scripts/run-tests"))
    func hugetlbLoansCarryNoData() throws {
        try Self.checkLoans(page: "2M!", expected: 0)
    }

    @Test("a poisoned borrower sees its poison in borrowed superblocks, not the lender's data")
    func poisonedBorrower() throws {
        try Self.checkLoans(page: "4K", borrowerOptions: ",poison=1", expected: MemoryClearing.poisonByte)
    }

    @Test("zero=alloc hands out zeroed memory from every path: thread cache, buddy blocks, runs", arguments: [4096, 65536, 2 << 20, 6 << 20])
    func zeroOnAllocation(size: Int) throws {
        let pool = try TestPools.make("zero-alloc", capacity: 32 << 20) { $0.zeroing = .onAllocation }
        for round in 0..<3 {
            var blocks: [UnsafeMutableRawPointer] = []
            for _ in 0..<4 {
                let block = try pool.allocate(byteCount: size)
                let offset = Self.firstByte(in: block, count: size, otherThan: 0)
                #expect(offset == nil, "round \(round): \(size)-byte block at \(block) byte +\(offset ?? 0) is not zero")
                block.initializeMemory(as: UInt8.self, repeating: 0xFF, count: size)
                blocks.append(block)
            }
            for block in blocks { pool.deallocate(block) }
        }
        try pool.checkInvariants()
    }

    @Test("zero=free clears a block as it is freed, before anyone can get it again", arguments: [4096, 65536, 4 << 20])
    func zeroOnFree(size: Int) throws {
        let pool = try TestPools.make("zero-free", capacity: 16 << 20) { $0.zeroing = .onFree }
        let block = try pool.allocate(byteCount: size)
        block.initializeMemory(as: UInt8.self, repeating: 0xEE, count: size)
        pool.deallocate(block)
        // The pool's memory stays mapped: reading the freed block is what a use after free would see.
        #expect(Self.firstByte(in: block, count: size, otherThan: 0) == nil)
        let again = try pool.allocate(byteCount: size)
        #expect(Self.firstByte(in: again, count: size, otherThan: 0) == nil)
        pool.deallocate(again)
    }

    @Test("poison=1 fills freed blocks with the pattern and hands out blocks that still hold it", arguments: [4096, 65536, 4 << 20])
    func poisonFillsFreedBlocks(size: Int) throws {
        let pool = try TestPools.make("poison", capacity: 16 << 20) { $0.poison = true }
        var blocks: [UnsafeMutableRawPointer] = []
        for _ in 0..<3 {
            let block = try pool.allocate(byteCount: size)
            #expect(Self.firstByte(in: block, count: size, otherThan: MemoryClearing.poisonByte) == nil, "handed out with the pattern")
            block.initializeMemory(as: UInt8.self, repeating: 0x11, count: size)
            blocks.append(block)
        }
        for block in blocks {
            pool.deallocate(block)
            #expect(Self.firstByte(in: block, count: size, otherThan: MemoryClearing.poisonByte) == nil, "freed block poisoned")
        }
        // Reuse through every path: no false report of a write after free.
        for _ in 0..<32 { pool.deallocate(try pool.allocate(byteCount: size)) }
        // Compaction moves a movable block: what stays behind is poisoned like any free.
        let handle = try pool.allocateMovable(byteCount: 4096)
        pool.compact(superblocks: 2)
        pool.deallocate(handle)
        for _ in 0..<8 { pool.deallocate(try pool.allocate(byteCount: 4096)) }
        try pool.checkInvariants()
    }

    @Test("a poisoned pool grown back after a shrink holds the pattern in its new superblocks")
    func poisonAfterGrow() throws {
        let pool = try TestPools.make("poison-grow", capacity: 8 << 20, pageSize: .base) { $0.poison = true }
        #expect(pool.shrink(to: 2 << 20).releasedBytes == 6 << 20)
        #expect(try pool.grow(to: 8 << 20) == 6 << 20)
        let blocks = TestPools.fillWithSuperblocks(pool)
        #expect(blocks.count == 4, "every superblock handed out without a false use-after-free report")
        for block in blocks { pool.deallocate(block) }
    }

    @Test("a write after free in a poisoned pool stops the process at reuse, naming the pool, the block and the byte")
    func useAfterFreeDetected() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            var configuration = PoolConfiguration(name: "poisoned", capacity: 8 << 20)
            configuration.pageSize = .base
            configuration.poison = true
            let pool = try! MemoryPool(configuration: configuration)
            let block = try! pool.allocate(byteCount: 4096)
            pool.deallocate(block)
            block.storeBytes(of: 0x42, toByteOffset: 100, as: UInt8.self)
            // The thread cache hands the same block back: its pattern is checked first.
            _ = try! pool.allocate(byteCount: 4096)
        }
        let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(text.contains("pool 'poisoned'"), "\(text)")
        #expect(text.contains("use after free"), "\(text)")
        #expect(text.contains("byte +100 is 0x42"), "\(text)")
    }
}
