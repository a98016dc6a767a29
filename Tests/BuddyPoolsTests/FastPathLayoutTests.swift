import BuddyPools
import MemoryPools
import Testing

/// The C object fast path (CBuddyFastPath) reads Swift's structures through C views of them; in
/// the build under test (release in CI, as the library ships) every field must agree.
@Suite("C fast path layout")
struct FastPathLayoutTests {
    @Test("the C fast path sees Swift's layouts: thread cache, slab descriptor, slab heap, constants, class index")
    func layoutsAgree() throws {
        var configuration = PoolConfiguration(name: "layout", capacity: 64 << 20)
        configuration.pageSize = .transparent
        let pool = try MemoryPool(configuration: configuration)
        #expect(pool.fastPathLayoutProblems() == [])
    }
}
