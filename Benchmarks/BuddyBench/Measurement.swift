import BuddyPools
import CBenchSupport
import Glibc
import Histogram

/// Wall time and page faults of the calling thread around a measured region.
struct Stopwatch {
    let startNanoseconds: UInt64
    let startMinor: Int
    let startMajor: Int

    init() {
        let faults = Self.threadFaults()
        startMinor = faults.minor
        startMajor = faults.major
        startNanoseconds = cbench_now_ns()
    }

    /// The calling thread's faults; a failed getrusage shows as a huge count, not as zero.
    private static func threadFaults() -> (minor: Int, major: Int) {
        (try? ThreadCalls.pageFaults().get()) ?? (minor: Int.min / 2, major: 0)
    }

    var elapsedNanoseconds: UInt64 { cbench_now_ns() - startNanoseconds }

    /// Minor plus major faults since start.
    var faults: Int {
        let now = Self.threadFaults()
        return now.minor - startMinor + now.major - startMajor
    }
}

/// What one measured loop did.
struct LoopMeasurement {
    var operations: Int
    var nanoseconds: UInt64
    var faults: Int

    var nanosecondsPerOperation: Double { Double(nanoseconds) / Double(max(1, operations)) }
    var faultsPerOperation: Double { Double(faults) / Double(max(1, operations)) }
}

/// Percentiles of per-operation latency, from an HdrHistogram.
struct LatencySummary: Codable {
    var p50: Double
    var p99: Double
    var p999: Double
    var max: Double
    var count: Int

    init(_ histogram: Histogram<UInt64>) {
        p50 = Double(histogram.valueAtPercentile(50))
        p99 = Double(histogram.valueAtPercentile(99))
        p999 = Double(histogram.valueAtPercentile(99.9))
        max = Double(histogram.max)
        count = Int(histogram.totalCount)
    }
}

/// A fast generator for workloads (xorshift64*): the loops draw from it every iteration.
struct WorkloadRandom {
    private var state: UInt64

    init(seed: UInt64) { state = seed | 1 }

    @inline(__always) mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }

    /// Uniform in [0, 1).
    @inline(__always) mutating func unit() -> Double { Double(next() >> 11) * 0x1p-53 }

    /// Log-uniform size between 2^lowShift and 2^highShift bytes.
    @inline(__always) mutating func logUniformSize(lowShift: Double, highShift: Double) -> Int {
        Int(exp2(lowShift + (highShift - lowShift) * unit()))
    }
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    guard !sorted.isEmpty else { return .nan }
    return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

/// Runs `body` on `count` threads that start together; returns when all are done.
func runOnThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    final class Context: @unchecked Sendable {
        // @unchecked: written before the threads start, read-only after.
        let body: @Sendable (Int) -> Void
        let index: Int
        let barrier: UnsafeMutablePointer<pthread_barrier_t>
        init(body: @escaping @Sendable (Int) -> Void, index: Int, barrier: UnsafeMutablePointer<pthread_barrier_t>) {
            self.body = body
            self.index = index
            self.barrier = barrier
        }
    }
    let barrier = UnsafeMutablePointer<pthread_barrier_t>.allocate(capacity: 1)
    pthread_barrier_init(barrier, nil, UInt32(count))
    var threads: [pthread_t] = []
    for index in 0..<count {
        let context = Unmanaged.passRetained(Context(body: body, index: index, barrier: barrier)).toOpaque()
        var thread = pthread_t()
        pthread_create(&thread, nil, { raw in
            let context = Unmanaged<Context>.fromOpaque(raw!).takeRetainedValue()
            pthread_barrier_wait(context.barrier)
            context.body(context.index)
            return nil
        }, context)
        threads.append(thread)
    }
    for thread in threads { pthread_join(thread, nil) }
    pthread_barrier_destroy(barrier)
    barrier.deallocate()
}
