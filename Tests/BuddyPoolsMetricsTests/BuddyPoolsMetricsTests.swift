import BuddyPools
import BuddyPoolsMetrics
import InMemoryLogging
import Logging
import MetricsTestKit
import Testing

@Suite("swift-metrics and swift-log adapters")
struct BuddyPoolsMetricsTests {
    func pool(_ name: String) throws -> MemoryPool {
        var configuration = PoolConfiguration(name: name, capacity: 8 << 20)
        configuration.pageSize = .base
        return try MemoryPool(configuration: configuration)
    }

    @Test("gauges follow the pool and counters add only what happened since the last update")
    func metrics() throws {
        let pool = try pool("metered")
        let factory = TestMetrics()
        let metrics = PoolMetrics(pools: [pool], factory: factory)
        let block = try pool.allocate(byteCount: 1 << 20, mobility: .movable)
        metrics.update()
        let dimensions = [("pool", "metered")]
        #expect(try factory.expectGauge("buddypools_capacity_bytes", dimensions).lastValue == Double(8 << 20))
        #expect(try factory.expectGauge("buddypools_committed_bytes", dimensions).lastValue == Double(8 << 20), "populated at creation: all of it")
        #expect(try factory.expectGauge("buddypools_used_bytes", dimensions).lastValue == Double(1 << 20))
        #expect(factory.counterTotal(label: "buddypools_allocations_total", dimensions: dimensions) == 1)
        pool.deallocate(block)
        pool.drainCaches()
        let whole = try pool.allocate(byteCount: 8 << 20)
        #expect(throws: PoolError.self) { try pool.allocate(byteCount: 4096) }
        pool.deallocate(whole)
        pool.drainCaches()
        metrics.update()
        metrics.update()
        #expect(factory.counterTotal(label: "buddypools_allocations_total", dimensions: dimensions) == 2, "no double counting")
        #expect(factory.counterTotal(label: "buddypools_deallocations_total", dimensions: dimensions) == 2)
        #expect(factory.counterTotal(label: "buddypools_failures_total", dimensions: dimensions) == 1)
        #expect(try factory.expectGauge("buddypools_free_bytes", dimensions).lastValue == Double(8 << 20))
    }

    @Test("diagnostics become log records with their kind, subject and bytes")
    func logging() throws {
        let handler = InMemoryLogHandler()
        let logger = Logger(label: "buddypools") { _ in handler }
        let subscription = PoolLogging.bootstrap(logger, silenceStandardError: false)
        defer { subscription.cancel() }
        var configuration = PoolConfiguration(name: "logged-\(UInt32.random(in: 0...UInt32.max))", capacity: 4 << 20)
        configuration.pageSize = .huge1G
        _ = try MemoryPool(configuration: configuration)
        let entry = try #require(handler.entries.first { $0.metadata["subject"] == "pool \(configuration.name)" && $0.metadata["kind"] == "pageSizeFallback" })
        #expect(entry.level == .warning)
        #expect(entry.metadata["bytes"] == "\(4 << 20)")
        #expect("\(entry.message)".contains("falling back"))
    }
}
