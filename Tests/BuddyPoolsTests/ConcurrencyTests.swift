import BuddyPools
import TestSupport
import Glibc
import Synchronization
import Testing

/// Many threads, cross-thread frees, random sizes, a drainer emptying everyone's caches while
/// they work. Run under ThreadSanitizer too: `swift test --sanitize=thread --filter Concurrency`.
@Suite("Concurrency stress")
struct ConcurrencyTests {
    struct Block: Sendable {
        let address: UInt
        let size: Int
        let tag: UInt64
    }

    /// Blocks one thread hands to another (Mutex is not copyable, so not an array element).
    final class Ring: Sendable {
        let blocks = Mutex<[Block]>([])
    }

    /// Depot sharding of the stress runs, as test arguments.
    enum Sharding: String, Sendable, CaseIterable {
        case perCPU, perGroupOf1, perGroupOf2, perNode
        var value: CacheConfiguration.Sharding {
            switch self {
            case .perCPU: .perCPU
            case .perGroupOf1: .perGroup(cpus: 1)
            case .perGroupOf2: .perGroup(cpus: 2)
            case .perNode: .perNode
            }
        }
    }

    @Test("threads allocate, hand blocks to each other and free them; nothing is lost, with every depot sharding",
          arguments: [(2, Sharding.perGroupOf1), (4, .perGroupOf2), (8, .perNode), (4, .perCPU)])
    func stress(threads: Int, sharding: Sharding) throws {
        try Self.stress(threads: threads, sharding: sharding.value)
    }

    static func stress(threads: Int, sharding: CacheConfiguration.Sharding) throws {
        let pool = try TestPools.make("stress", capacity: 128 << 20) { $0.cache.sharding = sharding }
        let exchange = Mutex<[Block]>([])
        let corrupted = Atomic<Int>(0)
        let failures = Atomic<Int>(0)
        let firstFailure = Mutex<String?>(nil)
        let running = Atomic<Int>(threads)
        let operationsPerThread = TestScale.operations(1_200_000) / threads
        runThreads(threads + 1) { index in
            if index == threads {
                // The drainer: empties other threads' magazines while they run (membarrier protocol).
                while running.load(ordering: .acquiring) > 0 {
                    pool.drainCaches()
                    _ = pool.statistics
                    usleep(2000)
                }
                return
            }
            var random = SplitMix64(seed: UInt64(index) &* 7919 &+ 1)
            var mine: [Block] = []
            for step in 0..<operationsPerThread {
                let choice = random.next() % 10
                if (choice < 5 && mine.count < 128) || mine.isEmpty {
                    let size = 16 << Int(random.next() % 15)  // 16 B ... 256 KiB
                    let mobility: Mobility = random.next() % 8 == 0 ? .movable : .unmovable
                    let pointer: UnsafeMutableRawPointer
                    do { pointer = try pool.allocate(byteCount: size, mobility: mobility) } catch {
                        failures.add(1, ordering: .relaxed)
                        firstFailure.locked { if $0 == nil { $0 = "\(error)" } }
                        continue
                    }
                    let tag = UInt64(index) << 48 | UInt64(step)
                    pointer.storeBytes(of: tag, as: UInt64.self)
                    let block = Block(address: UInt(bitPattern: pointer), size: size, tag: tag)
                    if choice == 0 { exchange.locked { $0.append(block) } } else { mine.append(block) }
                } else {
                    var block: Block?
                    if choice < 7 { block = exchange.locked { $0.popLast() } }
                    if block == nil { block = mine.swapRemoveRandom(&random) }
                    guard let block else { continue }
                    let pointer = UnsafeMutableRawPointer(bitPattern: block.address)!
                    if pointer.load(as: UInt64.self) != block.tag { corrupted.add(1, ordering: .relaxed) }
                    if random.next() & 1 == 0 { pool.deallocate(pointer, byteCount: block.size) } else { pool.deallocate(pointer) }
                }
            }
            for block in mine {
                let pointer = UnsafeMutableRawPointer(bitPattern: block.address)!
                if pointer.load(as: UInt64.self) != block.tag { corrupted.add(1, ordering: .relaxed) }
                pool.deallocate(pointer)
            }
            running.subtract(1, ordering: .releasing)
        }
        for block in exchange.locked({ $0 }) {
            let pointer = UnsafeMutableRawPointer(bitPattern: block.address)!
            #expect(pointer.load(as: UInt64.self) == block.tag)
            pool.deallocate(pointer)
        }
        #expect(corrupted.load(ordering: .relaxed) == 0, "a block was handed out twice or overlapped")
        // No allocation may fail: a thread holds at most 128 blocks of its own (sizes uniform in
        // log scale, 16 B ... 256 KiB, 35 KiB on average: about 4.5 MiB, 32 MiB at the very worst)
        // plus its share of the exchange, so 8 threads stay far below the 128 MiB pool.
        #expect(failures.load(ordering: .relaxed) == 0, "\(failures.load(ordering: .relaxed)) allocations failed, first: \(firstFailure.locked { $0 } ?? "none")")
        pool.drainCaches()
        try pool.checkInvariants()
        let stats = pool.statistics
        #expect(stats.freeBytes == 128 << 20, "every byte came back: \(stats.freeBytes)")
        #expect(stats.threadCaches <= 1, "only the test thread, which freed the leftovers, still has a cache")
        #expect(stats.allocationCount == stats.deallocationCount)
    }

    @Test("objects below a page freed by threads that did not allocate them (one atomic into the owner's slab); used is 0 at the end",
          arguments: [(2, true), (4, true), (8, true), (4, false)])
    func crossThreadObjects(threads: Int, caches: Bool) throws {
        let pool = try TestPools.make("objects-xthread", capacity: 128 << 20, pageSize: .base) { $0.cache.enabled = caches }
        // One ring per thread: thread i hands objects to thread i+1, which frees them.
        let rings = (0..<threads).map { _ in Ring() }
        let corrupted = Atomic<Int>(0)
        let failures = Atomic<Int>(0)
        let firstFailure = Mutex<String?>(nil)
        let operationsPerThread = TestScale.operations(400_000) / threads
        runThreads(threads) { index in
            var random = SplitMix64(seed: UInt64(index) &* 104_729 &+ 3)
            var mine: [Block] = []
            let next = rings[(index + 1) % threads], own = rings[index]
            for step in 0..<operationsPerThread {
                let choice = random.next() % 8
                if (choice < 4 && mine.count < 512) || mine.isEmpty {
                    let size = Int(random.next() % 3840) + 1
                    let pointer: UnsafeMutableRawPointer
                    do { pointer = try pool.allocate(byteCount: size, alignment: 8) } catch {
                        failures.add(1, ordering: .relaxed)
                        firstFailure.locked { if $0 == nil { $0 = "\(error)" } }
                        continue
                    }
                    let tag = UInt64(index) << 48 | UInt64(step)
                    pointer.storeBytes(of: tag, as: UInt64.self)
                    let block = Block(address: UInt(bitPattern: pointer), size: size, tag: tag)
                    // Half of what a thread allocates another thread frees.
                    // A ring holds at most 256: threads run unevenly on 2 CPUs, and a consumer
                    // that is not scheduled must not let its ring grow without bound.
                    if choice >= 2 || !next.blocks.locked({ ring in
                        guard ring.count < 256 else { return false }
                        ring.append(block)
                        return true
                    }) {
                        mine.append(block)
                    }
                } else {
                    let block = choice < 6 ? own.blocks.locked { $0.popLast() } ?? mine.swapRemoveRandom(&random) : mine.swapRemoveRandom(&random)
                    guard let block else { continue }
                    let pointer = UnsafeMutableRawPointer(bitPattern: block.address)!
                    if pointer.load(as: UInt64.self) != block.tag { corrupted.add(1, ordering: .relaxed) }
                    if random.next() & 1 == 0 { pool.deallocate(pointer, byteCount: block.size) } else { pool.deallocate(pointer) }
                }
            }
            for block in mine { pool.deallocate(UnsafeMutableRawPointer(bitPattern: block.address)!) }
        }
        for ring in rings {
            for block in ring.blocks.locked({ $0 }) {
                let pointer = UnsafeMutableRawPointer(bitPattern: block.address)!
                #expect(pointer.load(as: UInt64.self) == block.tag)
                pool.deallocate(pointer)
            }
        }
        #expect(corrupted.load(ordering: .relaxed) == 0, "an object was handed out twice or overlapped")
        // Live objects: at most 512 of a thread's own and 256 in its ring, each at most 3,840 B:
        // 8 threads hold at most 23.6 MiB live, and the pool is 128 MiB. Empty slabs are drained
        // under pressure; only slabs kept nearly empty by scattered live objects could fill the
        // rest, so no allocation may fail.
        #expect(failures.load(ordering: .relaxed) == 0, "\(failures.load(ordering: .relaxed)) allocations failed, first: \(firstFailure.locked { $0 } ?? "none")")
        pool.drainCaches()
        try pool.checkInvariants()
        let stats = pool.statistics
        #expect(stats.usedBytes == 0, "used after every object was freed: \(stats.usedBytes)")
        #expect(stats.slabs.isEmpty, "slabs left: \(stats.slabs)")
        #expect(stats.freeBytes == 128 << 20)
    }
}

extension Array {
    mutating func swapRemoveRandom(_ random: inout SplitMix64) -> Element? {
        guard !isEmpty else { return nil }
        let index = Int(random.next() % UInt64(count))
        swapAt(index, count - 1)
        return removeLast()
    }
}
