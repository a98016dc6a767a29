import BuddyPools
import TestSupport
import CTestSupport
import Glibc
import Testing

@Suite("Thread caches: exit, teardown, fork")
struct ThreadCacheLifecycleTests {
    @Test("a thread's cached blocks go back to the pool when the thread exits")
    func threadExit() throws {
        let pool = try TestPools.make(capacity: 32 << 20)
        runThreads(1) { _ in
            var blocks: [UnsafeMutableRawPointer] = []
            for size in [4096, 8192, 65536] { for _ in 0..<40 { blocks.append(try! pool.allocate(byteCount: size)) } }
            for block in blocks { pool.deallocate(block) }
            // The freed blocks now sit in this thread's magazines (and its depot).
            precondition(pool.statistics.threadCaches == 1)
        }
        let stats = pool.statistics
        #expect(stats.threadCaches == 0, "the exiting thread's cache was retired")
        #expect(stats.freeBytes + stats.cachedBytes == 32 << 20, "no block was lost")
        pool.drainCaches()
        #expect(pool.statistics.freeBytes == 32 << 20)
        try pool.checkInvariants()
    }

    @Test("a pool torn down while a thread's cache holds its blocks, then a new pool on the same thread")
    func teardownWithCachedBlocks() throws {
        let survivor = EventLog()
        runThreads(1) { _ in
            do {
                var first: MemoryPool? = try TestPools.make("short-lived", capacity: 8 << 20)
                let block = try first!.allocate(byteCount: 4096)
                first!.deallocate(block)  // cached in this thread's magazine
                first = nil                 // the pool and its memory go away
                let second = try TestPools.make("second", capacity: 8 << 20)
                for _ in 0..<100 {
                    let block = try second.allocate(byteCount: 4096)
                    block.storeBytes(of: 42, as: Int.self)
                    second.deallocate(block)
                }
                survivor.append("ok \(second.statistics.threadCaches)")
            } catch {
                survivor.append("error \(error)")
            }
        }
        #expect(survivor.entries == ["ok 1"])
    }

    @Test("in a fork child the parent's pools refuse to allocate and ignore frees, touching no lock")
    func forkChild() async throws {
        // The fork is made by an exit test's process, never by the test process itself: a fork
        // write-protects every private page of the forking process for copy-on-write, so the
        // realtime suite's zero-fault loop, running alongside, would take a fault on each page
        // it writes next (measured: 1-10 minor faults whenever the two ran together).
        await #expect(processExitsWith: .success) {
            guard let pool = try? TestPools.make("parent", capacity: 8 << 20),
                  let block = try? pool.allocate(byteCount: 4096),
                  let large = try? pool.allocate(byteCount: 1 << 20, mobility: .movable)
            else { exit(10) }
            let child = ctest_fork()
            if child == 0 {
                // The child may only do what takes no lock another thread might have held at
                // fork time: exactly what the pool does here.
                var status: Int32 = 0
                if case .failure(.unavailableAfterFork(let name)) = pool.tryAllocate(byteCount: 4096), name == "parent" {} else { status |= 1 }
                if case .failure(.unavailableAfterFork) = pool.tryAllocate(byteCount: 1 << 20, mobility: .movable) {} else { status |= 2 }
                pool.deallocate(block)   // ignored: the memory is not mapped here (MADV_DONTFORK)
                pool.deallocate(large)
                ctest_exit_process(status)
            }
            guard ctest_wait(child) == 0 else { exit(11) }
            // The parent is unaffected.
            block.storeBytes(of: 1, as: Int.self)
            pool.deallocate(block)
            pool.deallocate(large)
            pool.drainCaches()
            exit(pool.statistics.freeBytes == 8 << 20 ? 0 : 12)
        }
    }
}

@Suite("PoolBuffer")
struct PoolBufferTests {
    @Test("a buffer frees itself, and release hands the memory over")
    func ownership() throws {
        let pool = try TestPools.make(capacity: 8 << 20)
        do {
            let buffer = try PoolBuffer<Double>(pool: pool, count: 1000, repeating: 1.5)
            buffer[999] = 2.5
            #expect(buffer[0] == 1.5 && buffer[999] == 2.5)
            let sum = buffer.withUnsafeMutableBufferPointer { $0.reduce(0, +) }
            #expect(sum == 1.5 * 999 + 2.5)
            #expect(pool.owns(buffer.baseAddress))
        }
        pool.drainCaches()
        #expect(pool.statistics.freeBytes == 8 << 20, "the buffer freed itself at the end of its scope")

        let kept = try PoolBuffer<Int>(pool: pool, count: 16, repeating: 3)
        let pointer = kept.release()
        #expect(pool.owns(pointer))
        pointer.deinitialize(count: 16)
        pool.deallocate(pointer)

        let early = try PoolBuffer<UInt8>(pool: pool, count: 4096, repeating: 0)
        let address = UnsafeRawPointer(early.baseAddress)
        early.deallocate()
        #expect(!pool.owns(address))
    }

    @Test("typed allocation is aligned for the type and rejects overflowing counts")
    func typedAllocation() throws {
        struct Wide { var a: SIMD16<Float> }
        let pool = try TestPools.make(capacity: 8 << 20)
        let wide = try pool.allocate(Wide.self, count: 3)
        #expect(Int(bitPattern: wide) % MemoryLayout<Wide>.alignment == 0)
        pool.deallocate(wide)
        #expect(throws: PoolError.self) { try pool.allocate(UInt64.self, count: Int.max / 4) }
        #expect(throws: PoolError.self) { try pool.allocate(UInt64.self, count: 0) }
    }
}
