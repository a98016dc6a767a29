import BuddyPools
import TestSupport
import Foundation
import Testing

@Suite("Observability")
struct ObservabilityTests {
    @Test("statistics: buddyinfo per node adds up, text and JSON snapshots carry the same figures")
    func snapshots() throws {
        let pool = try TestPools.make("observed", capacity: 16 << 20)
        let blocks = try (0..<10).map { _ in try pool.allocate(byteCount: 16384, mobility: .movable) }
        let stats = pool.statistics
        let summed = stats.freeBlocksByNode.values.reduce([Int](repeating: 0, count: stats.maxOrder + 1)) { zip($0, $1).map(+) }
        #expect(summed == stats.freeBlocksByOrder)
        #expect(stats.superblocksByMobility["movable"] == 1)
        #expect(stats.fragmentation.count == stats.maxOrder + 1)
        let text = stats.text
        #expect(text.contains("pool 'observed'") && text.contains("buddyinfo") && text.contains("pagetypeinfo") && text.contains("movable 1"))
        let json = try JSONEncoder().encode(stats)
        let decoded = try JSONDecoder().decode(PoolStatistics.self, from: json)
        #expect(decoded == stats)
        for block in blocks { pool.deallocate(block) }
    }

    @Test("allocation accounting names the sites that hold memory, and forgets what is freed")
    func accounting() throws {
        let pool = try TestPools.make("accounted", capacity: 16 << 20) { $0.allocationAccounting = true }
        var big: [UnsafeMutableRawPointer] = []
        for _ in 0..<3 { big.append(try pool.allocate(byteCount: 1 << 20)) }
        let small = try pool.allocate(byteCount: 4096)
        let handle = try pool.allocateMovable(byteCount: 65536)
        let top = pool.topAllocationSites(5)
        #expect(top.count == 3)
        #expect(top[0].liveBytes == 3 << 20 && top[0].liveBlocks == 3 && top[0].site.contains("ObservabilityTests.swift"))
        #expect(top.contains { $0.liveBytes == 65536 } && top.contains { $0.liveBytes == 4096 })
        #expect(pool.allocationReport(top: 2).contains("top 2 allocation sites"))
        for block in big { pool.deallocate(block) }
        pool.deallocate(small)
        #expect(pool.topAllocationSites().map(\.liveBytes) == [65536], "freed sites drop out; the handle remains")
        pool.compact(superblocks: 1)
        pool.deallocate(handle)
        #expect(pool.topAllocationSites().isEmpty)
        #expect(try TestPools.make("quiet", capacity: 4 << 20).allocationReport().contains("accounting is off"))
    }

    @Test("diagnostics reach subscribers: a page-size fallback is reported with its reason")
    func diagnostics() throws {
        let tag = "fallback-\(UInt32.random(in: 0...UInt32.max))"
        let log = EventLog()
        let subscription = Diagnostics.subscribe { event in
            if event.kind == .pageSizeFallback, event.subject.contains(tag) { log.append(event.message) }
        }
        defer { subscription.cancel() }
        // 1 GiB pages are never reserved for the tests: the request falls back and says why.
        let pool = try TestPools.make(tag, capacity: 4 << 20, pageSize: .huge1G)
        #expect(pool.regions[0].fallbacks.first?.from == .huge1G)
        #expect(log.entries.first?.contains("1 GiB hugepages unavailable") == true, "\(log.entries)")
    }
}
