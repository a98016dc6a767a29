// A realtime loop on a locked pool: memory populated and mlock'd at creation, the thread
// prepared once, then every allocation and free timed into a histogram, with page faults
// counted around the loop. Exits 1 if the loop took a page fault.
//
//   .build/release/realtime-loop [iterations]
import BuddyPools
import Glibc
import Histogram

@main
struct RealtimeLoop {
    static func main() throws {
        let iterations = CommandLine.arguments.dropFirst().first.flatMap { Int($0) } ?? 1_000_000
        var configuration = PoolConfiguration(name: "realtime", capacity: 64 << 20)
        configuration.locked = true
        configuration.pageSize = .huge2M
        let pool = try MemoryPool(configuration: configuration)

        // Before the loop: this thread's cache, every code path, the histogram and the live array.
        pool.prepareCurrentThread()
        var histogram = Histogram<UInt64>(highestTrackableValue: 10_000_000_000, numberOfSignificantValueDigits: .three)
        var workload = Workload(pool: pool)
        for _ in 0..<100_000 { workload.step() }
        for _ in 0..<1000 { histogram.record(1) }
        histogram.reset()

        // The measured loop, once untimed for faults: it touches exactly what the timed one will.
        for _ in 0..<1000 {
            let start = now()
            workload.step()
            histogram.record(now() - start)
        }
        histogram.reset()
        let faultsBefore = faults()
        for _ in 0..<iterations {
            let start = now()
            workload.step()
            histogram.record(now() - start)
        }
        let loopFaults = faults() - faultsBefore
        workload.freeAll()

        print("realtime-loop: \(iterations) operations on a locked pool (\(pool.regions[0].pageSize))")
        print("  latency ns: p50 \(histogram.valueAtPercentile(50)), p99 \(histogram.valueAtPercentile(99)), p99.9 \(histogram.valueAtPercentile(99.9)), max \(histogram.max) (each includes ~25 ns of clock reads)")
        print("  page faults in the loop: \(loopFaults)")
        exit(loopFaults == 0 ? 0 : 1)
    }

    static func now() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
    }

    /// Page faults of this thread (RUSAGE_THREAD, 1 on Linux; Glibc's Swift module lacks the name).
    static func faults() -> Int {
        var usage = rusage()
        getrusage(1, &usage)
        return usage.ru_minflt + usage.ru_majflt
    }
}

/// Random allocations of 64 B ... 32 KiB into 256 slots: a free where a slot is full, an
/// allocation (written to) where it is empty.
struct Workload {
    let pool: MemoryPool
    var live = [UnsafeMutableRawPointer?](repeating: nil, count: 256)
    var state: UInt64 = 0x2545_F491

    init(pool: MemoryPool) { self.pool = pool }

    mutating func next() -> UInt64 {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return state
    }

    mutating func step() {
        let slot = Int(next() & 255)
        if let block = live[slot] {
            pool.deallocate(block)
            live[slot] = nil
        } else {
            let block = try? pool.allocate(byteCount: 64 << Int(next() % 10))
            block?.storeBytes(of: 1, as: UInt8.self)
            live[slot] = block
        }
    }

    mutating func freeAll() {
        for block in live { if let block { pool.deallocate(block) } }
        live = []
    }
}
