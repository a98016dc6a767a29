import BuddyPools
import Testing

/// Code written against the names of the one-target BuddyPools still compiles: the names live
/// in the layer targets now, and the umbrella re-exports them, qualified or not.
@Suite("Public names through the umbrella")
struct PublicNamesTests {
    @Test("names qualified with the module resolve through the umbrella")
    func qualifiedNames() throws {
        let nodes: BuddyPools.NodeSet = [0]
        let cpus: BuddyPools.CPUSet = [0]
        var configuration = BuddyPools.PoolConfiguration(name: "names", capacity: 4 << 20)
        configuration.pageSize = BuddyPools.PageSize.base
        configuration.policy = BuddyPools.PlacementPolicy.bind
        configuration.cache = BuddyPools.CacheConfiguration()
        let geometry: BuddyPools.BuddyGeometry = .standard
        let state = BuddyPools.BlockState.free(order: 3)
        let mobility: BuddyPools.Mobility = .movable
        let types: [Any.Type] = [
            BuddyPools.MemoryPool.self, BuddyPools.PoolSet.self, BuddyPools.Region.self, BuddyPools.NUMATopology.self,
            BuddyPools.PoolError.self, BuddyPools.ConfigurationError.self, BuddyPools.SystemError.self,
            BuddyPools.PoolStatistics.self, BuddyPools.MovableHandle.self, BuddyPools.Diagnostics.self, BuddyPools.BuddyArena.self,
        ]
        #expect(nodes.count == 1 && cpus.count == 1)
        #expect(geometry.superblockSize == 2 << 20)
        #expect(state.kind == .free && mobility.rawValue == 1)
        #expect(types.count == 11)
        let pool = try BuddyPools.MemoryPool(configuration: configuration)
        #expect(pool.capacity == 4 << 20)
    }
}
