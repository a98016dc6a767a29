import BuddyPools
import Glibc
import Synchronization
import TestSupport
import Testing

/// What a pool keeps for itself: caches bounded in bytes whatever the number of threads,
/// statistics exact once nothing is in flight, metadata that does not grow with the number of
/// pools a set holds.
@Suite("Footprint: bounded caches, exact statistics, metadata")
struct FootprintTests {
    @Test("statistics are exact at quiescence: used is 0 once one thread has freed everything")
    func exactStatistics() throws {
        let pool = try TestPools.make("exact", capacity: 64 << 20)
        var blocks: [UnsafeMutableRawPointer] = []
        for _ in 0..<200 { blocks.append(try pool.allocate(byteCount: 64 << 10)) }
        var stats = pool.statistics
        #expect(stats.usedBytes == 200 * (64 << 10))
        #expect(stats.allocationCount == 200)
        for block in blocks { pool.deallocate(block) }
        stats = pool.statistics
        #expect(stats.usedBytes == 0, "nothing is allocated, \(stats.usedBytes) bytes said used")
        #expect(stats.freeBytes + stats.cachedBytes == stats.managedBytes)
        #expect(stats.allocationCount == 200 && stats.deallocationCount == 200, "\(stats.allocationCount) / \(stats.deallocationCount)")
    }

    @Test("statistics are exact after cross-thread frees: blocks one thread allocated, another freed")
    func exactAcrossThreads() throws {
        let pool = try TestPools.make("exact-threads", capacity: 64 << 20)
        let handoff = Mutex<[UInt]>([])
        TestThread {
            var addresses: [UInt] = []
            for size in [4096, 8192, 65536, 4096, 131072] {
                for _ in 0..<50 { if let block = try? pool.allocate(byteCount: size) { addresses.append(UInt(bitPattern: block)) } }
            }
            handoff.withLock { $0 = addresses }
        }.join()
        let addresses = handoff.withLock { $0 }
        #expect(addresses.count == 250)
        TestThread {
            for address in addresses { pool.deallocate(UnsafeMutableRawPointer(bitPattern: address)!) }
        }.join()
        let stats = pool.statistics
        #expect(stats.usedBytes == 0)
        #expect(stats.allocationCount == 250 && stats.deallocationCount == 250, "\(stats.allocationCount) / \(stats.deallocationCount)")
    }

    @Test("after one thread frees everything it allocated, at most 1/32 of the pool stays cached")
    func oneThreadBound() throws {
        let pool = try TestPools.make("bound-one", capacity: 64 << 20)
        var random = SplitMix64(seed: 5)
        var blocks: [UnsafeMutableRawPointer] = []
        // Sizes 4 KiB ... 1 MiB until the pool is full: the caches see every order they hold.
        while let block = try? pool.allocate(byteCount: 4096 << Int(random.next() % 9)) { blocks.append(block) }
        let full = pool.statistics
        #expect(full.usedBytes >= full.capacityBytes * 9 / 10, "the pool filled to \(full.usedBytes) of \(full.capacityBytes) bytes")
        for block in blocks { pool.deallocate(block) }
        let stats = pool.statistics
        #expect(stats.cachedBytes <= stats.capacityBytes / 32, "\(stats.cachedBytes) bytes cached")
        #expect(stats.cacheBudgetBytes == stats.capacityBytes / 32)
        #expect(stats.usedBytes == 0)
    }

    @Test("64 threads that allocated and freed a few blocks and wait hold at most 1/32 of a 1 GiB pool")
    func idleThreadsBound() throws {
        let pool = try TestPools.make("bound-idle", capacity: 1 << 30)
        let done = Atomic<Int>(0)
        let release = Atomic<Int>(0)
        let threads = (0..<64).map { _ in
            TestThread {
                var blocks: [UnsafeMutableRawPointer] = []
                for _ in 0..<4 { if let block = try? pool.allocate(byteCount: 2 << 20) { blocks.append(block) } }
                for _ in 0..<16 { if let block = try? pool.allocate(byteCount: 64 << 10) { blocks.append(block) } }
                for block in blocks { pool.deallocate(block) }
                done.add(1, ordering: .releasing)
                while release.load(ordering: .acquiring) == 0 { usleep(1000) }
            }
        }
        while done.load(ordering: .acquiring) < 64 { usleep(1000) }
        let stats = pool.statistics
        #expect(stats.threadCaches <= 64)
        #expect(stats.cachedBytes <= (1 << 30) / 32, "64 idle threads hold \(stats.cachedBytes) bytes")
        #expect(stats.cacheGrantedBytes <= stats.cacheBudgetBytes)
        #expect(stats.cachedBytesByThread.reduce(0, +) <= stats.cachedBytes)
        #expect(stats.usedBytes == 0)
        release.store(1, ordering: .releasing)
        for thread in threads { thread.join() }
        #expect(pool.statistics.threadCaches == 0)
    }

    @Test("releaseIdleCaches takes back the cache of a thread that has not needed it since the last call")
    func idleCachesGoBack() throws {
        let pool = try TestPools.make("idle-release", capacity: 64 << 20)
        let cached = Atomic<Int>(0)
        let release = Atomic<Int>(0)
        let worker = TestThread {
            var blocks: [UnsafeMutableRawPointer] = []
            for _ in 0..<16 { if let block = try? pool.allocate(byteCount: 4096) { blocks.append(block) } }
            for block in blocks { pool.deallocate(block) }
            cached.store(1, ordering: .releasing)
            while release.load(ordering: .acquiring) == 0 { usleep(1000) }
        }
        while cached.load(ordering: .acquiring) == 0 { usleep(1000) }
        #expect(pool.statistics.cachedBytes > 0, "the worker's frees sit in its cache")
        // The first call starts a period; the worker does nothing during it, so the second takes its cache.
        pool.releaseIdleCaches()
        let given = pool.releaseIdleCaches()
        #expect(given > 0)
        let stats = pool.statistics
        #expect(stats.cachedBytesByThread.allSatisfy { $0 == 0 }, "\(stats.cachedBytesByThread)")
        release.store(1, ordering: .releasing)
        worker.join()
        try pool.checkInvariants()
    }

    @Test("a set of 64 pools with distinct priorities spends at most 0.05% of its memory on metadata")
    func metadataOfManyPools() throws {
        let configurations = (0..<64).map { index -> PoolConfiguration in
            var configuration = PoolConfiguration(name: "many\(index)", capacity: 64 << 20)
            configuration.pageSize = .transparent
            configuration.priority = index
            return configuration
        }
        let set = try PoolSet(configurations: configurations)
        let stats = set.statistics
        let metadata = stats.pools.reduce(0) { $0 + $1.metadataBytes }
        #expect(Double(metadata) / Double(stats.capacityBytes) <= 0.0005, "metadata \(metadata) bytes for \(stats.capacityBytes)")
        // The top pool can still borrow everything below it: the slots grow as it does.
        let top = try #require(set["many63"])
        var blocks: [UnsafeMutableRawPointer] = []
        for _ in 0..<96 { blocks.append(try top.allocate(byteCount: 2 << 20)) }
        #expect(top.statistics.borrowedBytes == 128 << 20, "64 MiB own, 128 MiB borrowed")
        for block in blocks { top.deallocate(block) }
        try top.checkInvariants()
    }
}
