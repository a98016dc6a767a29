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
                    guard let pointer = try? pool.allocate(byteCount: size, mobility: mobility) else {
                        failures.add(1, ordering: .relaxed)
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
        #expect(failures.load(ordering: .relaxed) == 0, "\(failures.load(ordering: .relaxed)) allocations failed")
        pool.drainCaches()
        try pool.checkInvariants()
        let stats = pool.statistics
        #expect(stats.freeBytes == 128 << 20, "every byte came back: \(stats.freeBytes)")
        #expect(stats.threadCaches <= 1, "only the test thread, which freed the leftovers, still has a cache")
        #expect(stats.allocationCount == stats.deallocationCount)
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
