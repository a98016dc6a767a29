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
}
