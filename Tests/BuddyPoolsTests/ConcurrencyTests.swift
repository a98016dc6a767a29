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

    @Test("threads allocate, hand blocks to each other and free them; nothing is lost", arguments: [2, 4, 8])
    func stress(threads: Int) throws {
        let pool = try TestPools.make("stress", capacity: 128 << 20) { $0.cache.sharding = .perGroup(cpus: 1) }
        let exchange = Mutex<[Block]>([])
        let corrupted = Atomic<Int>(0)
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
                if choice < 5 || mine.isEmpty {
                    let size = 16 << Int(random.next() % 15)  // 16 B ... 256 KiB
                    let mobility: Mobility = random.next() % 8 == 0 ? .movable : .unmovable
                    guard let pointer = try? pool.allocate(byteCount: size, mobility: mobility) else { continue }
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
