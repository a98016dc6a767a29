import BuddyPools

/// Pools for tests: small, base or transparent pages unless a test asks for hugepages.
enum TestPools {
    static func make(
        _ name: String = "test", capacity: Int = 64 << 20, pageSize: PageSize = .transparent,
        configure: (inout PoolConfiguration) -> Void = { _ in }
    ) throws -> MemoryPool {
        var configuration = PoolConfiguration(name: name, capacity: capacity)
        configuration.pageSize = pageSize
        configure(&configuration)
        return try MemoryPool(configuration: configuration)
    }

    /// Makes a configuration one of the malloc heap's (as ProcessHeap.heapConfiguration does):
    /// kept across fork, not populated at creation (so committed a superblock at a time), its
    /// unpopulated pages not sampled for placement.
    static func asHeapPool(_ configuration: inout PoolConfiguration) {
        configuration.keptAcrossFork = true
        configuration.populatedAtCreation = false
        configuration.placementCheck = .off
    }

    /// Allocates 2 MiB blocks (one superblock each) until the pool says exhausted.
    static func fillWithSuperblocks(_ pool: MemoryPool) -> [UnsafeMutableRawPointer] {
        var blocks: [UnsafeMutableRawPointer] = []
        while let block = try? pool.allocate(byteCount: 2 << 20) { blocks.append(block) }
        return blocks
    }
}
