import BuddyPools
import BuddySystem
import Glibc
import Synchronization
import TestSupport
import Testing

/// The error paths of the one door to the OS, run rather than imagined: a named call is made to
/// fail with a chosen errno on the test's thread (`SystemCallFaults`), and the pool creation or
/// operation must fail with a `SystemError` naming the call and the errno, leave nothing mapped
/// half-way, and leave the process able to go on.
@Suite("System call failures")
struct SystemCallFailureTests {
    static func configuration(_ name: String, pageSize: PageSize = .base, locked: Bool = false) -> PoolConfiguration {
        var configuration = PoolConfiguration(name: name, capacity: 8 << 20)
        configuration.pageSize = pageSize
        configuration.locked = locked
        return configuration
    }

    /// Creates a pool with `call` failing; returns the SystemError and what the door left mapped.
    static func failedCreation(
        _ call: SystemCall, errno code: Int32, advice: MemoryAdvice? = nil, configuration: PoolConfiguration
    ) -> (SystemError?, SystemCallFaults.Outcome) {
        let (result, outcome) = SystemCallFaults.failing(call, advice: advice, errno: code) {
            Result { () throws(PoolError) -> MemoryPool in try MemoryPool(configuration: configuration) }
        }
        guard case .failure(.system(let error)) = result else {
            Issue.record("pool creation with \(call) failing gave \(result), not a SystemError")
            return (nil, outcome)
        }
        return (error, outcome)
    }

    /// The process goes on: the same pool can be made and used once the call works again.
    static func poolStillWorks(_ configuration: PoolConfiguration) throws {
        let pool = try MemoryPool(configuration: configuration)
        let block = try pool.allocate(byteCount: 64 << 10)
        block.storeBytes(of: 42, as: Int.self)
        pool.deallocate(block)
        try pool.checkInvariants()
    }

    @Test("mmap ENOMEM: creation fails naming mmap and ENOMEM, nothing stays mapped")
    func mmapFails() throws {
        let configuration = Self.configuration("mmap-enomem")
        let (error, outcome) = Self.failedCreation(.mmap, errno: ENOMEM, configuration: configuration)
        #expect(error?.call.hasPrefix("mmap") == true, "\(String(describing: error))")
        #expect(error?.errno == ENOMEM)
        #expect(error?.kind == .insufficientMemory)
        #expect(outcome.fired >= 1)
        #expect(outcome.netMappedBytes == 0, "mapped and not unmapped: \(outcome.netMappedBytes) bytes")
        try Self.poolStillWorks(configuration)
    }

    @Test("mbind EINVAL: creation fails naming mbind and EINVAL as a placement error, nothing stays mapped")
    func mbindFails() throws {
        var configuration = Self.configuration("mbind-einval")
        configuration.nodes = [0]
        let (error, outcome) = Self.failedCreation(.mbind, errno: EINVAL, configuration: configuration)
        #expect(error?.call.hasPrefix("mbind") == true, "\(String(describing: error))")
        #expect(error?.errno == EINVAL)
        #expect(error?.kind == .invalidPlacement)
        #expect(outcome.fired >= 1)
        #expect(outcome.netMappedBytes == 0)
        try Self.poolStillWorks(configuration)
    }

    @Test("mlock EPERM: a locked pool fails naming mlock and EPERM, nothing stays mapped")
    func mlockFails() throws {
        let configuration = Self.configuration("mlock-eperm", locked: true)
        let (error, outcome) = Self.failedCreation(.mlock, errno: EPERM, configuration: configuration)
        #expect(error?.call.hasPrefix("mlock") == true, "\(String(describing: error))")
        #expect(error?.errno == EPERM)
        #expect(error?.kind == .permissionDenied)
        #expect(error?.advice.contains("RLIMIT_MEMLOCK") == true)
        #expect(outcome.netMappedBytes == 0)
        try Self.poolStillWorks(configuration)
    }

    @Test("madvise(MADV_DONTFORK) EINVAL: creation fails naming madvise, nothing stays mapped")
    func dontForkFails() throws {
        let configuration = Self.configuration("madvise-einval")
        let (error, outcome) = Self.failedCreation(.madvise, errno: EINVAL, advice: .dontFork, configuration: configuration)
        #expect(error?.call.hasPrefix("madvise(MADV_DONTFORK") == true, "\(String(describing: error))")
        #expect(error?.errno == EINVAL)
        #expect(outcome.netMappedBytes == 0)
        try Self.poolStillWorks(configuration)
    }

    @Test("madvise(MADV_DONTNEED) EINVAL: shrink reports it, counts nothing as released and keeps the superblock")
    func shrinkFails() throws {
        let pool = try MemoryPool(configuration: Self.configuration("shrink-einval"))
        let (report, outcome) = SystemCallFaults.failing(.madvise, advice: .dontNeed, errno: EINVAL) { pool.shrink(to: 4 << 20) }
        #expect(outcome.fired == 1, "the shrink stops at the first failure")
        #expect(report.systemError?.call.hasPrefix("madvise(MADV_DONTNEED") == true, "\(report)")
        #expect(report.systemError?.errno == EINVAL)
        #expect(report.releasedBytes == 0)
        #expect(report.managedBytesAfter == 8 << 20)
        let stats = pool.statistics
        #expect(stats.managedBytes == 8 << 20 && stats.releasedBytes == 0 && stats.freeBytes == 8 << 20)
        try pool.checkInvariants()
        // Without the failure the same shrink gives the memory back.
        let retried = pool.shrink(to: 4 << 20)
        #expect(retried.systemError == nil && retried.releasedBytes == 4 << 20)
    }

    @Test("move_pages EPERM: placement is reported unknown with the call and errno; the pool works")
    func movePagesFails() throws {
        let configuration = Self.configuration("move-pages-eperm")
        let (result, outcome) = SystemCallFaults.failing(.movePages, errno: EPERM) {
            Result { () throws(PoolError) -> (MemoryPool, PlacementReport) in
                let pool = try MemoryPool(configuration: configuration)
                return (pool, pool.regions[0].verifyPlacement())
            }
        }
        let (pool, report) = try result.get()
        #expect(outcome.fired >= 2, "the superblock sampling at creation and verifyPlacement both asked")
        #expect(report.queryError?.call.hasPrefix("move_pages") == true, "\(report)")
        #expect(report.queryError?.errno == EPERM)
        #expect(report.description.contains("EPERM"))
        #expect(pool.statistics.freeBlocksByNode.keys.sorted() == ["-1"], "superblock nodes are unknown, not guessed")
        let block = try pool.allocate(byteCount: 4096)
        pool.deallocate(block)
        // Once the call works, placement is known again.
        #expect(pool.regions[0].verifyPlacement().queryError == nil)
    }

    @Test("membarrier ENOSYS: other threads' caches are left alone and the exhaustion says why")
    func membarrierFails() throws {
        var configuration = Self.configuration("membarrier-enosys")
        configuration.capacity = 4 << 20
        let pool = try MemoryPool(configuration: configuration)
        let holding = Atomic<Int>(0)
        let release = Atomic<Int>(0)
        // Another thread leaves cached 4 KiB blocks in the first superblock and waits.
        let worker = TestThread {
            var blocks: [UnsafeMutableRawPointer] = []
            for _ in 0..<8 { if let block = try? pool.allocate(byteCount: 4096) { blocks.append(block) } }
            for block in blocks { pool.deallocate(block) }
            holding.store(blocks.count, ordering: .releasing)
            while release.load(ordering: .acquiring) == 0 { usleep(1000) }
        }
        while holding.load(ordering: .acquiring) == 0 { usleep(1000) }
        #expect(holding.load(ordering: .relaxed) == 8)
        #expect(pool.statistics.cachedBytes >= 4096, "the worker's frees sit in its cache")
        let whole = try pool.allocate(byteCount: 2 << 20)
        let (result, outcome) = SystemCallFaults.failing(.membarrier, errno: ENOSYS) {
            pool.tryAllocate(byteCount: 2 << 20)
        }
        #expect(outcome.fired >= 1)
        guard case .failure(.exhausted(let details)) = result else {
            Issue.record("expected exhaustion with the worker's cache untouched, got \(result)")
            return
        }
        #expect(details.drainFailure?.call.hasPrefix("membarrier") == true, "\(details)")
        #expect(details.drainFailure?.errno == ENOSYS)
        #expect(details.description.contains("ENOSYS"))
        release.store(1, ordering: .releasing)
        worker.join()
        // The worker's exit handed its blocks back: the second superblock is whole again.
        let second = try pool.allocate(byteCount: 2 << 20)
        pool.deallocate(second)
        pool.deallocate(whole)
        pool.drainCaches()
        #expect(pool.statistics.freeBytes == 4 << 20)
        try pool.checkInvariants()
    }

    @Test("the ledger can fail: a live pool's mappings show, and go when it is released")
    func ledgerCounts() throws {
        let (whileAlive, outcome) = SystemCallFaults.failing(.munlock, errno: EPERM) { () -> Int in
            var pool = try? MemoryPool(configuration: Self.configuration("ledger"))
            #expect(pool != nil)
            let mapped = SystemCallFaults.netMappedBytesSoFar
            pool = nil
            return mapped
        }
        #expect(whileAlive >= 8 << 20, "the pool's region and metadata are mapped: \(whileAlive)")
        #expect(outcome.netMappedBytes == 0, "released with the pool")
    }

    @Test("an injected failure is the injecting thread's own: other threads' calls succeed")
    func injectionIsPerThread() throws {
        let configuration = Self.configuration("injection-scope")
        let (made, outcome) = SystemCallFaults.failing(.mmap, errno: ENOMEM) {
            let other = Mutex<Result<MemoryPool, PoolError>?>(nil)
            TestThread { other.withLock { $0 = Result { () throws(PoolError) -> MemoryPool in try MemoryPool(configuration: configuration) } } }.join()
            return other.withLock { $0 }
        }
        #expect(outcome.fired == 0)
        guard case .success = made else {
            Issue.record("another thread's pool creation failed: \(String(describing: made))")
            return
        }
    }
}
