import BuddyPools
import Foundation
import TestSupport
import Testing

/// `shrink(to:)` and `grow(to:)` against what the kernel says is resident (smaps, read by the
/// test itself). Base and transparent pages go back to the system: Rss falls by what was
/// released. Hugetlb pages go back to the hugepage pool: the mapping's hugetlb bytes fall and
/// the system's free_hugepages count rises by as many pages; `grow` takes them again.
@Suite("Shrink and grow against resident memory", .serialized)
struct ShrinkResidencyTests {
    static let superblock = 2 << 20
    static let capacity = 16 << 20

    /// Resident bytes of the pool's regions.
    static func resident(_ pool: MemoryPool) -> Int {
        pool.regions.reduce(0) { $0 + ResidentMemory.bytes(in: $1.addressRange.lowerBound..<$1.addressRange.upperBound) }
    }

    /// Writes every byte of the pool (so every page is resident), frees it all, shrinks to 4 MiB
    /// and grows back: resident memory follows, within what the kernel may keep of a partly
    /// covered transparent hugepage (none here: superblocks are 2 MiB aligned).
    static func check(pageSize: PageSize, strict: Bool) throws -> (before: Int, shrunk: Int, grown: Int) {
        let pool = try TestPools.make("shrink-rss-\(pageSize)", capacity: capacity, pageSize: pageSize) { $0.strictPageSize = strict }
        var blocks: [UnsafeMutableRawPointer] = []
        while let block = try? pool.allocate(byteCount: superblock) { blocks.append(block) }
        #expect(blocks.count == capacity / superblock)
        for block in blocks { block.initializeMemory(as: UInt8.self, repeating: 0x3C, count: superblock) }
        for block in blocks { pool.deallocate(block) }
        let before = resident(pool)
        let report = pool.shrink(to: 4 << 20)
        #expect(report.releasedBytes == capacity - (4 << 20), "\(report)")
        #expect(report.systemError == nil)
        let shrunk = resident(pool)
        #expect(try pool.grow(to: capacity) == capacity - (4 << 20))
        let grown = resident(pool)
        try pool.checkInvariants()
        return (before, shrunk, grown)
    }

    @Test("base and transparent pages: Rss falls by the released bytes and comes back with grow", arguments: [PageSize.base, .transparent])
    func pageable(pageSize: PageSize) throws {
        let (before, shrunk, grown) = try Self.check(pageSize: pageSize, strict: false)
        #expect(before == Self.capacity, "every page was written: Rss \(before)")
        #expect(shrunk == 4 << 20, "12 MiB released: Rss \(shrunk)")
        #expect(grown == Self.capacity, "grow populates again: Rss \(grown)")
    }

    @Test("hugetlb pages leave the mapping on shrink and come back with grow",
          .enabled(if: ResidentMemory.free2MHugepages >= 16, "needs 16 free 2 MiB hugepages: the reserved-hugepage pass of scripts/run-tests"))
    func hugetlbMapping() throws {
        let (before, shrunk, grown) = try Self.check(pageSize: .huge2M, strict: true)
        #expect(before == Self.capacity && shrunk == 4 << 20 && grown == Self.capacity, "hugetlb bytes \(before) \(shrunk) \(grown)")
    }

    /// free_hugepages is one count for the whole system, so this runs only where nothing else
    /// allocates hugepages at the same time: scripts/run-tests runs this suite alone with
    /// BUDDYPOOLS_RUN_ALONE=1 after the parallel hugepage pass.
    @Test("hugetlb pages go back to the hugepage pool: free_hugepages rises by the released pages",
          .enabled(if: ResidentMemory.free2MHugepages >= 16 && ProcessInfo.processInfo.environment["BUDDYPOOLS_RUN_ALONE"] == "1",
                   "run alone with 16 free 2 MiB hugepages by scripts/run-tests (free_hugepages is system-wide)"))
    func hugetlbSystemPool() throws {
        let freeBefore = ResidentMemory.free2MHugepages
        let pool = try TestPools.make("shrink-hugetlb", capacity: Self.capacity, pageSize: .huge2M) { $0.strictPageSize = true }
        #expect(ResidentMemory.free2MHugepages == freeBefore - 8, "the pool faulted in its 8 hugepages")
        let report = pool.shrink(to: 4 << 20)
        #expect(report.releasedBytes == 12 << 20, "\(report)")
        #expect(ResidentMemory.free2MHugepages == freeBefore - 2, "6 hugepages went back to the system's pool")
        #expect(try pool.grow(to: Self.capacity) == 12 << 20)
        #expect(ResidentMemory.free2MHugepages == freeBefore - 8, "grow took them again")
        let blocks = (0..<8).compactMap { _ in try? pool.allocate(byteCount: Self.superblock) }
        #expect(blocks.count == 8)
        for block in blocks { pool.deallocate(block) }
    }
}
