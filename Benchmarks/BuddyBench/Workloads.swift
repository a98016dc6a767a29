import CBenchSupport
import Histogram

/// The measured loops, generic over the allocator so each is specialized and inlined.
enum Workloads {
    /// Steady state of `live` blocks of one size: free one, allocate one in its place.
    /// One operation is one free plus one allocation (a pair). Memory is not touched.
    /// `alignment` 0 asks with the allocator's default alignment (malloc, `allocate(byteCount:)`).
    static func fixedSize<A: BenchAllocator>(_ allocator: A, size: Int, alignment: Int, live: Int, duration: Double) -> LoopMeasurement? {
        @inline(__always) func get() -> UnsafeMutableRawPointer? {
            alignment == 0 ? allocator.allocate(size) : allocator.allocate(size, alignment: alignment)
        }
        let slots = UnsafeMutablePointer<UnsafeMutableRawPointer>.allocate(capacity: live)
        defer { slots.deallocate() }
        for index in 0..<live {
            guard let pointer = get() else { return nil }
            slots[index] = pointer
        }
        defer { for index in 0..<live { allocator.deallocate(slots[index], size: size) } }
        // Warm up: caches reach their steady state before the clock starts.
        for index in 0..<(live * 8) {
            let slot = index & (live - 1)
            allocator.deallocate(slots[slot], size: size)
            guard let pointer = get() else { return nil }
            slots[slot] = pointer
        }
        let budget = UInt64(duration * 1e9)
        let watch = Stopwatch()
        var operations = 0
        repeat {
            for index in 0..<1024 {
                let slot = index & (live - 1)
                allocator.deallocate(slots[slot], size: size)
                guard let pointer = get() else { return nil }
                cbench_escape(pointer)
                slots[slot] = pointer
            }
            operations += 1024
        } while watch.elapsedNanoseconds < budget
        return LoopMeasurement(operations: operations, nanoseconds: watch.elapsedNanoseconds, faults: watch.faults)
    }

    /// Page-granular mixed sizes: `live` blocks of log-uniform sizes in 4 KiB...4 MiB, a random
    /// one replaced each operation (free, draw a size, allocate, touch first and last byte).
    /// With `tails`, a second pass reads the clock around every operation into a histogram.
    static func mixed<A: BenchAllocator>(
        _ allocator: A, live: Int, duration: Double, seed: UInt64, tails: Bool
    ) -> (LoopMeasurement, LatencySummary?)? {
        var random = WorkloadRandom(seed: seed)
        let pointers = UnsafeMutablePointer<UnsafeMutableRawPointer>.allocate(capacity: live)
        let sizes = UnsafeMutablePointer<Int>.allocate(capacity: live)
        defer { pointers.deallocate(); sizes.deallocate() }
        /// Draws a size, allocates it into `slot` and touches its first and last byte; on failure
        /// the slot is marked empty (size 0).
        @inline(__always) func place(_ slot: Int, _ random: inout WorkloadRandom) -> Bool {
            let size = random.logUniformSize(lowShift: 12, highShift: 22)
            guard let pointer = allocator.allocate(size) else {
                sizes[slot] = 0
                return false
            }
            cbench_touch(pointer)
            cbench_touch(pointer + size - 1)
            pointers[slot] = pointer
            sizes[slot] = size
            return true
        }
        var placed = 0
        while placed < live, place(placed, &random) { placed += 1 }
        defer { for index in 0..<placed where sizes[index] > 0 { allocator.deallocate(pointers[index], size: sizes[index]) } }
        guard placed == live else { return nil }

        @inline(__always) func replace(_ random: inout WorkloadRandom) -> Bool {
            let slot = Int(random.next() & UInt64(live - 1))
            allocator.deallocate(pointers[slot], size: sizes[slot])
            return place(slot, &random)
        }

        for _ in 0..<(live * 4) where !replace(&random) { return nil }
        let budget = UInt64(duration * 1e9)
        let watch = Stopwatch()
        var operations = 0
        repeat {
            for _ in 0..<256 where !replace(&random) { return nil }
            operations += 256
        } while watch.elapsedNanoseconds < budget
        let throughput = LoopMeasurement(operations: operations, nanoseconds: watch.elapsedNanoseconds, faults: watch.faults)
        guard tails else { return (throughput, nil) }

        var histogram = Histogram<UInt64>(highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
        // The tail pass runs under SCHED_FIFO when allowed, so other processes of this machine
        // do not preempt it; what remains is the allocator (and the hypervisor).
        let realtime = cbench_set_fifo_priority(10) == 0
        defer { if realtime { _ = cbench_set_fifo_priority(0) } }
        let tailWatch = Stopwatch()
        repeat {
            for _ in 0..<256 {
                let start = cbench_now_ns()
                guard replace(&random) else { return nil }
                histogram.record(cbench_now_ns() - start)
            }
        } while tailWatch.elapsedNanoseconds < budget
        return (throughput, LatencySummary(histogram))
    }

    /// GUPS-style random read-modify-write of 8-byte words over a table (a power of two of words).
    static func randomUpdates(table: UnsafeMutablePointer<UInt64>, words: Int, duration: Double, seed: UInt64) -> LoopMeasurement {
        var random = WorkloadRandom(seed: seed)
        let mask = UInt64(words - 1)
        let budget = UInt64(duration * 1e9)
        let watch = Stopwatch()
        var operations = 0
        repeat {
            for _ in 0..<4096 {
                let value = random.next()
                table[Int(value & mask)] ^= value
            }
            operations += 4096
        } while watch.elapsedNanoseconds < budget
        return LoopMeasurement(operations: operations, nanoseconds: watch.elapsedNanoseconds, faults: watch.faults)
    }

    /// Sequential read bandwidth in bytes per nanosecond (GB/s).
    static func readBandwidth(_ buffer: UnsafeMutableRawPointer, bytes: Int, duration: Double) -> Double {
        let words = buffer.bindMemory(to: UInt64.self, capacity: bytes / 8)
        let count = bytes / 8
        let budget = UInt64(duration * 1e9)
        let watch = Stopwatch()
        var total: UInt64 = 0
        var passes = 0
        repeat {
            var sum0: UInt64 = 0, sum1: UInt64 = 0, sum2: UInt64 = 0, sum3: UInt64 = 0
            var index = 0
            while index < count {
                sum0 &+= words[index]; sum1 &+= words[index + 1]; sum2 &+= words[index + 2]; sum3 &+= words[index + 3]
                index += 4
            }
            total &+= sum0 &+ sum1 &+ sum2 &+ sum3
            passes += 1
        } while watch.elapsedNanoseconds < budget
        cbench_escape(UnsafeMutableRawPointer(bitPattern: UInt(truncatingIfNeeded: total | 1)))
        return Double(passes * bytes) / Double(watch.elapsedNanoseconds)
    }

    /// Dependent-load latency: a random cycle through the cache lines of the buffer, in ns per load.
    static func chaseLatency(_ buffer: UnsafeMutableRawPointer, bytes: Int, duration: Double, seed: UInt64) -> Double {
        let lines = bytes / 64
        var order = Array(0..<lines)
        var random = WorkloadRandom(seed: seed)
        for index in stride(from: lines - 1, to: 0, by: -1) {
            order.swapAt(index, Int(random.next() % UInt64(index + 1)))
        }
        for index in 0..<lines {
            let next = order[(index + 1) % lines]
            (buffer + order[index] * 64).storeBytes(of: buffer + next * 64, as: UnsafeMutableRawPointer.self)
        }
        var cursor = buffer + order[0] * 64
        let budget = UInt64(duration * 1e9)
        let watch = Stopwatch()
        var hops = 0
        repeat {
            for _ in 0..<1024 { cursor = cursor.load(as: UnsafeMutableRawPointer.self) }
            hops += 1024
        } while watch.elapsedNanoseconds < budget
        cbench_escape(cursor)
        return Double(watch.elapsedNanoseconds) / Double(hops)
    }
}
