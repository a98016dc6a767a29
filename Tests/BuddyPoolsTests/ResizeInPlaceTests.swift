import BuddyPools
import Testing

/// `resizeInPlace`: a block grows into the free buddies above it, with the statistics and every
/// invariant kept; anything that cannot grow answers false and is left as it was.
@Suite("Growth in place")
struct ResizeInPlaceTests {
    /// Caches off, so the arena alone decides where blocks go: a fresh pool's first block starts
    /// a superblock, with every buddy above it free.
    static func pool(_ name: String, caches: Bool = false) throws -> MemoryPool {
        var configuration = PoolConfiguration(name: name, capacity: 8 << 20)
        configuration.pageSize = .base
        configuration.cache.enabled = caches
        return try MemoryPool(configuration: configuration)
    }

    @Test("a block grows into its free buddies, keeps its data and is counted at its new size")
    func grows() throws {
        let pool = try Self.pool("grow-buddies")
        let block = try pool.allocate(byteCount: 8 << 10)
        block.initializeMemory(as: UInt8.self, repeating: 0x3C, count: 8 << 10)
        #expect(pool.resizeInPlace(block, byteCount: 8 << 10), "a block holds its own size")
        #expect(pool.resizeInPlace(block, byteCount: 100 << 10), "the buddies of 8, 16, 32 and 64 KiB above it are free")
        #expect(pool.allocatedSize(of: block) == 128 << 10)
        #expect(pool.statistics.usedBytes == 128 << 10)
        #expect(UnsafeRawBufferPointer(start: block, count: 8 << 10).allSatisfy { $0 == 0x3C }, "the data stayed")
        block.initializeMemory(as: UInt8.self, repeating: 0x5A, count: 128 << 10)
        try pool.checkInvariants()

        // A block taken from above it stops the next growth; nothing changes then.
        let neighbour = try pool.allocate(byteCount: 128 << 10)
        #expect(UInt(bitPattern: neighbour) == UInt(bitPattern: block) + (128 << 10), "the arena hands out the buddy above")
        #expect(!pool.resizeInPlace(block, byteCount: 200 << 10))
        #expect(pool.allocatedSize(of: block) == 128 << 10)
        #expect(pool.statistics.usedBytes == 256 << 10)
        try pool.checkInvariants()

        // The grown block frees at its new size, sized or not, and every superblock ends whole.
        pool.deallocate(neighbour)
        pool.deallocate(block, byteCount: 100 << 10)
        #expect(pool.statistics.usedBytes == 0)
        #expect(pool.statistics.freeBytes == 8 << 20)
        try pool.checkInvariants()
    }

    @Test("what cannot grow answers false and is left as it was")
    func refusals() throws {
        let pool = try Self.pool("grow-refusals")
        let left = try pool.allocate(byteCount: 8 << 10)
        let right = try pool.allocate(byteCount: 8 << 10)
        #expect(UInt(bitPattern: right) == UInt(bitPattern: left) + (8 << 10))
        // The upper buddy of a pair: its block of the next order starts below it.
        #expect(!pool.resizeInPlace(right, byteCount: 16 << 10))
        let object = try pool.allocate(byteCount: 24)
        #expect(!pool.resizeInPlace(object, byteCount: 48), "an object")
        let run = try pool.allocate(byteCount: 4 << 20)
        #expect(!pool.resizeInPlace(run, byteCount: 6 << 20), "a run of superblocks")
        #expect(!pool.resizeInPlace(left, byteCount: 2 << 20), "a superblock's size")
        #expect(!pool.resizeInPlace(left, byteCount: 0) && !pool.resizeInPlace(left, byteCount: -5), "no size")
        #expect(!pool.resizeInPlace(left + 4096, byteCount: 16 << 10), "an interior pointer")
        let movable = try pool.allocate(byteCount: 8 << 10, mobility: .movable)
        #expect(!pool.resizeInPlace(movable, byteCount: 16 << 10), "a movable block: its handle knows its size")
        #expect(pool.allocatedSize(of: movable) == 8 << 10)
        pool.deallocate(movable)
        var local = 0
        #expect(!withUnsafeMutablePointer(to: &local) { pool.resizeInPlace(UnsafeMutableRawPointer($0), byteCount: 64) }, "a foreign pointer")
        #expect(pool.allocatedSize(of: left) == 8 << 10 && pool.allocatedSize(of: right) == 8 << 10)
        #expect(pool.allocatedSize(of: run) == 4 << 20)
        for pointer in [left, right, object, run] { pool.deallocate(pointer) }
        try pool.checkInvariants()
    }

    @Test("with caches on, blocks of orders the caches do not hold grow in place too")
    func cachedPool() throws {
        var configuration = PoolConfiguration(name: "grow-cached", capacity: 64 << 20)
        configuration.pageSize = .base
        configuration.cache.maxOrder = 4  // 64 KiB and below through the magazines
        let pool = try MemoryPool(configuration: configuration)
        let block = try pool.allocate(byteCount: 300 << 10)
        #expect(pool.resizeInPlace(block, byteCount: 700 << 10))
        #expect(pool.allocatedSize(of: block) == 1 << 20)
        pool.deallocate(block)
        try pool.checkInvariants()
    }
}
