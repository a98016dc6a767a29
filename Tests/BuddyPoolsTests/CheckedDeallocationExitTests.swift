import BuddyPools
import Testing

/// Each bad free stops the process with a message that names the pool and the problem.
/// These run in child processes (exit tests), in release builds too.
@Suite("Checked deallocation (exit tests)")
struct CheckedDeallocationExitTests {
    static func stderrText(_ result: ExitTest.Result?) -> String {
        String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
    }

    @Test("double free traps with a message")
    func doubleFree() async throws {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            var configuration = PoolConfiguration(name: "victim", capacity: 4 << 20)
            configuration.pageSize = .base
            let pool = try! MemoryPool(configuration: configuration)
            let block = try! pool.allocate(byteCount: 4096)
            pool.deallocate(block)
            pool.deallocate(block)
        }
        let text = Self.stderrText(result)
        #expect(text.contains("pool 'victim'"), "\(text)")
        #expect(text.contains("double free"), "\(text)")
        #expect(text.contains("deallocate(0x"), "\(text)")
    }

    @Test("double free of a large (uncached) block traps")
    func doubleFreeLarge() async throws {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            var configuration = PoolConfiguration(name: "victim", capacity: 8 << 20)
            configuration.pageSize = .base
            configuration.cache.enabled = false
            let pool = try! MemoryPool(configuration: configuration)
            let block = try! pool.allocate(byteCount: 1 << 20, mobility: .movable)
            pool.deallocate(block)
            pool.deallocate(block)
        }
        #expect(Self.stderrText(result).contains("double free"))
    }

    @Test("interior pointer traps")
    func interior() async throws {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            var configuration = PoolConfiguration(name: "victim", capacity: 4 << 20)
            configuration.pageSize = .base
            let pool = try! MemoryPool(configuration: configuration)
            let block = try! pool.allocate(byteCount: 65536)
            pool.deallocate(block + 8192)
        }
        let text = Self.stderrText(result)
        #expect(text.contains("interior pointer"), "\(text)")
        #expect(text.contains("pool 'victim'"), "\(text)")
    }

    @Test("foreign pointer traps")
    func foreign() async throws {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            var configuration = PoolConfiguration(name: "victim", capacity: 4 << 20)
            configuration.pageSize = .base
            let pool = try! MemoryPool(configuration: configuration)
            let outside = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
            pool.deallocate(outside)
        }
        #expect(Self.stderrText(result).contains("foreign pointer"))
    }

    @Test("pointer from another pool traps and names the owner")
    func wrongPool() async throws {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            var configuration = PoolConfiguration(name: "victim", capacity: 4 << 20)
            configuration.pageSize = .base
            let pool = try! MemoryPool(configuration: configuration)
            configuration.name = "owner"
            let owner = try! MemoryPool(configuration: configuration)
            let block = try! owner.allocate(byteCount: 4096)
            pool.deallocate(block)
        }
        let text = Self.stderrText(result)
        #expect(text.contains("wrong pool"), "\(text)")
        #expect(text.contains("'owner'"), "\(text)")
    }

    @Test("sized free with the wrong size traps")
    func wrongSize() async throws {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            var configuration = PoolConfiguration(name: "victim", capacity: 4 << 20)
            configuration.pageSize = .base
            let pool = try! MemoryPool(configuration: configuration)
            let block = try! pool.allocate(byteCount: 16384)
            pool.deallocate(block, byteCount: 4096)
        }
        #expect(Self.stderrText(result).contains("wrong size"))
    }

    @Test("a correct program exits cleanly (the harness can tell success from failure)")
    func control() async throws {
        await #expect(processExitsWith: .success) {
            var configuration = PoolConfiguration(name: "victim", capacity: 4 << 20)
            configuration.pageSize = .base
            let pool = try! MemoryPool(configuration: configuration)
            let block = try! pool.allocate(byteCount: 16384)
            pool.deallocate(block, byteCount: 16384)
        }
    }
}
