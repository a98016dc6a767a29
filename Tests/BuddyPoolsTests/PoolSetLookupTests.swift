import BuddyPools
import Testing

/// `PoolSet.pool(holding:)`, which the C API's free and `buddypools_pool_of` rely on.
@Suite("Which pool of a set holds an address")
struct PoolSetLookupTests {
    @Test("own blocks, objects and borrowed superblocks name the pool that holds them; other memory none")
    func poolHolding() throws {
        let set = try PoolSet(environment: ["BUDDYPOOLS": "hi:size=4M,priority=10,max=16M,page=4K;lo:size=16M,priority=1,page=4K"])
        let hi = try #require(set["hi"]), lo = try #require(set["lo"])
        let object = try hi.allocate(byteCount: 40)
        let block = try lo.allocate(byteCount: 64 << 10)
        #expect(set.pool(holding: object) === hi)
        #expect(set.pool(holding: block) === lo)
        // Past its own 4 MiB, hi borrows lo's superblocks: memory in lo's region, held by hi.
        let runs = try (0..<4).map { _ in try hi.allocate(byteCount: 2 << 20) }
        #expect(hi.statistics.borrowedBytes > 0, "hi borrowed nothing")
        for run in runs { #expect(set.pool(holding: run) === hi, "a borrowed superblock is named by its borrower") }
        var local = 0
        withUnsafePointer(to: &local) { #expect(set.pool(holding: $0) == nil) }
        for run in runs { hi.deallocate(run) }
        hi.deallocate(object)
        lo.deallocate(block)
    }
}
