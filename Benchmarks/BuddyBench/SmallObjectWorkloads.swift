import CBenchSupport
import Synchronization

/// Objects below a page, as programs use them: random sizes, a first byte written, and a
/// producer/consumer pair where one thread frees what another allocated.
extension Workloads {
    /// Sizes of the small scenarios: uniform in 16 B ... 1 KiB.
    @inline(__always) static func smallSize(_ random: inout WorkloadRandom) -> Int {
        16 &+ Int(truncatingIfNeeded: random.next() % 1009)
    }

    /// `live` objects of random sizes; each operation frees a random one and allocates one of a
    /// new random size in its place, writing its first byte (a pair, as in fixed-*).
    static func smallObjects<A: BenchAllocator>(_ allocator: A, live: Int, duration: Double, seed: UInt64) -> LoopMeasurement? {
        var random = WorkloadRandom(seed: seed)
        let pointers = UnsafeMutablePointer<UnsafeMutableRawPointer>.allocate(capacity: live)
        let sizes = UnsafeMutablePointer<Int>.allocate(capacity: live)
        defer { pointers.deallocate(); sizes.deallocate() }
        var placed = 0
        while placed < live {
            let size = smallSize(&random)
            guard let pointer = allocator.allocate(size) else { break }
            pointers[placed] = pointer
            sizes[placed] = size
            placed += 1
        }
        defer { for index in 0..<placed { allocator.deallocate(pointers[index], size: sizes[index]) } }
        guard placed == live else { return nil }
        @inline(__always) func replace(_ random: inout WorkloadRandom) -> Bool {
            let slot = Int(truncatingIfNeeded: random.next() & UInt64(live - 1))
            allocator.deallocate(pointers[slot], size: sizes[slot])
            let size = smallSize(&random)
            guard let pointer = allocator.allocate(size) else {
                // Keep the slot valid for the final frees: a failure ends the run.
                pointers[slot] = allocator.allocate(16) ?? pointers[slot]
                sizes[slot] = 16
                return false
            }
            cbench_touch(pointer)
            pointers[slot] = pointer
            sizes[slot] = size
            return true
        }
        for _ in 0..<(live * 8) where !replace(&random) { return nil }
        let budget = UInt64(duration * 1e9)
        let watch = Stopwatch()
        var operations = 0
        repeat {
            for _ in 0..<1024 where !replace(&random) { return nil }
            operations += 1024
        } while watch.elapsedNanoseconds < budget
        return LoopMeasurement(operations: operations, nanoseconds: watch.elapsedNanoseconds, faults: watch.faults)
    }

    /// The producer's side of small-xthread: allocates objects, writes their first byte and
    /// puts them into the ring until the consumer says stop. Returns the objects produced.
    static func produce<A: BenchAllocator>(_ allocator: A, into ring: ObjectRing, seed: UInt64) -> Int {
        var random = WorkloadRandom(seed: seed)
        var produced = 0
        defer { ring.producerFinished.store(true, ordering: .releasing) }
        while !ring.isStopped {
            let size = smallSize(&random)
            guard let pointer = allocator.allocate(size) else {
                ring.stop(failed: true)
                break
            }
            cbench_touch(pointer)
            while !ring.push(pointer, size: size) {
                if ring.isStopped {
                    allocator.deallocate(pointer, size: size)
                    return produced
                }
            }
            produced += 1
        }
        return produced
    }

    /// The consumer's side: frees objects from the ring for `duration`, then stops the producer
    /// and frees what is left. One operation is one object allocated by one thread and freed by
    /// the other; the clock is the consumer's.
    static func consume<A: BenchAllocator>(_ allocator: A, from ring: ObjectRing, duration: Double) -> LoopMeasurement? {
        // Warm-up: the producer's slabs and the consumer's remote frees reach a steady state.
        for _ in 0..<(ObjectRing.capacity * 8) {
            guard let (pointer, size) = ring.popWaiting() else { return nil }
            allocator.deallocate(pointer, size: size)
        }
        let budget = UInt64(duration * 1e9)
        let watch = Stopwatch()
        var operations = 0
        repeat {
            for _ in 0..<1024 {
                guard let (pointer, size) = ring.popWaiting() else { return nil }
                allocator.deallocate(pointer, size: size)
            }
            operations += 1024
        } while watch.elapsedNanoseconds < budget
        let measurement = LoopMeasurement(operations: operations, nanoseconds: watch.elapsedNanoseconds, faults: watch.faults)
        ring.stop(failed: false)
        // The producer may push one more object after the stop: drain once it has returned.
        while !ring.producerFinished.load(ordering: .acquiring) {}
        while let (pointer, size) = ring.pop() { allocator.deallocate(pointer, size: size) }
        return measurement
    }
}

/// A single-producer, single-consumer ring of objects (address and size), lock-free.
final class ObjectRing: @unchecked Sendable {
    // @unchecked: the slots are atomics, written by the producer before it publishes `tail`
    // and read by the consumer after it sees it.
    static let capacity = 1024
    private let addresses: UnsafeMutablePointer<Atomic<UInt>>
    private let sizes: UnsafeMutablePointer<Atomic<Int>>
    /// Written by the producer only.
    private let tail = Atomic<Int>(0)
    /// Written by the consumer only.
    private let head = Atomic<Int>(0)
    private let state = Atomic<Int>(0)  // 0 running, 1 stopped, 2 failed
    /// Set by the producer as it returns.
    let producerFinished = Atomic<Bool>(false)

    init() {
        addresses = .allocate(capacity: Self.capacity)
        sizes = .allocate(capacity: Self.capacity)
        for index in 0..<Self.capacity {
            (addresses + index).initialize(to: Atomic(0))
            (sizes + index).initialize(to: Atomic(0))
        }
    }

    deinit {
        addresses.deinitialize(count: Self.capacity)
        sizes.deinitialize(count: Self.capacity)
        addresses.deallocate()
        sizes.deallocate()
    }

    var isStopped: Bool { state.load(ordering: .acquiring) != 0 }
    var failed: Bool { state.load(ordering: .acquiring) == 2 }
    func stop(failed: Bool) { state.store(failed ? 2 : 1, ordering: .releasing) }

    /// False when the ring is full.
    @inline(__always) func push(_ pointer: UnsafeMutableRawPointer, size: Int) -> Bool {
        let tail = self.tail.load(ordering: .relaxed)
        guard tail &- head.load(ordering: .acquiring) < Self.capacity else { return false }
        let slot = tail & (Self.capacity - 1)
        addresses[slot].store(UInt(bitPattern: pointer), ordering: .relaxed)
        sizes[slot].store(size, ordering: .relaxed)
        self.tail.store(tail &+ 1, ordering: .releasing)
        return true
    }

    /// Nil when the ring is empty.
    @inline(__always) func pop() -> (UnsafeMutableRawPointer, Int)? {
        let head = self.head.load(ordering: .relaxed)
        guard tail.load(ordering: .acquiring) != head else { return nil }
        let slot = head & (Self.capacity - 1)
        let pointer = UnsafeMutableRawPointer(bitPattern: addresses[slot].load(ordering: .relaxed))
        let size = sizes[slot].load(ordering: .relaxed)
        self.head.store(head &+ 1, ordering: .releasing)
        return pointer.map { ($0, size) }
    }

    /// Waits for an object; nil when the producer failed.
    @inline(__always) func popWaiting() -> (UnsafeMutableRawPointer, Int)? {
        while true {
            if let object = pop() { return object }
            if failed { return nil }
        }
    }
}
