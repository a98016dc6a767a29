import BuddyPools
import TestSupport
import BuddySystem
import CTestSupport
import Glibc

/// The realtime test's loop and the thread it runs on. Everything it touches is allocated and
/// touched before the measured part: the live array, the stack (the warm-up runs the same
/// function), the pool's thread cache and every code path.
enum RealtimeWorkload {
    struct Outcome {
        var operations = 0
        var minorFaults = -1
        var majorFaults = -1
        var failures = 0
        var corrupted = 0
        var exhaustionSeen = false
        /// malloc-family calls made by the worker thread during the measured loop.
        var mallocCalls = -1
    }

    final class Job: @unchecked Sendable {
        // @unchecked: written by the worker thread, read by the parent after pthread_join.
        let pool: MemoryPool
        let strict: Bool
        let operations: Int
        var outcome = Outcome()
        init(pool: MemoryPool, strict: Bool, operations: Int) {
            self.pool = pool
            self.strict = strict
            self.operations = operations
        }
    }

    /// Runs the job on a new pthread and returns its outcome.
    static func run(pool: MemoryPool, strict: Bool, operations: Int) -> Outcome {
        let job = Job(pool: pool, strict: strict, operations: operations)
        var thread = pthread_t()
        let context = Unmanaged.passRetained(job).toOpaque()
        pthread_create(&thread, nil, { raw in
            let job = Unmanaged<Job>.fromOpaque(raw!).takeUnretainedValue()
            RealtimeWorkload.work(job)
            if job.strict { ctest_exit_thread(0) }
            return nil
        }, context)
        pthread_join(thread, nil)
        Unmanaged<Job>.fromOpaque(context).release()
        return job.outcome
    }

    static func work(_ job: Job) {
        let pool = job.pool
        let slots = 512
        let live = UnsafeMutablePointer<(UnsafeMutableRawPointer?, Int)>.allocate(capacity: slots)
        live.initialize(repeating: (nil, 0), count: slots)
        pool.prepareCurrentThread()
        var random = SplitMix64(seed: 99)
        // Warm-up: the same loop, so every path, every stack page and every metadata page is touched.
        var outcome = Outcome()
        loop(pool, live, slots, job.operations / 5, &random, &outcome)
        exhaust(pool, &outcome)
        // A failed getrusage shows as a fault count no test accepts.
        let before = (try? ThreadCalls.pageFaults().get()) ?? (minor: Int.min / 2, major: Int.min / 2)
        let mallocBefore = ctest_thread_allocation_count()
        if job.strict, ctest_enter_seccomp_strict() != 0 {
            job.outcome.failures = -1
            return
        }
        outcome = Outcome()
        loop(pool, live, slots, job.operations, &random, &outcome)
        exhaust(pool, &outcome)
        outcome.mallocCalls = ctest_thread_allocation_count() - mallocBefore
        if !job.strict {
            let after = (try? ThreadCalls.pageFaults().get()) ?? (minor: Int.min / 2, major: Int.min / 2)
            outcome.minorFaults = after.minor - before.minor
            outcome.majorFaults = after.major - before.major
        }
        // Freeing everything is part of the promise too (and still inside strict mode).
        for index in 0..<slots where live[index].0 != nil {
            pool.deallocate(live[index].0!, byteCount: live[index].1)
        }
        job.outcome = outcome
    }

    /// Mixed operations: cached sizes, uncached sizes, movable blocks (the locked path) and
    /// runs of superblocks; sized and unsized frees; a pattern checked on every free.
    static func loop(
        _ pool: MemoryPool, _ live: UnsafeMutablePointer<(UnsafeMutableRawPointer?, Int)>, _ slots: Int, _ count: Int,
        _ random: inout SplitMix64, _ outcome: inout Outcome
    ) {
        for _ in 0..<count {
            let slot = Int(random.next() % UInt64(slots))
            if let (pointer, size) = live[slot] as (UnsafeMutableRawPointer?, Int)?, let pointer {
                if pointer.load(as: UInt64.self) != UInt64(size) { outcome.corrupted += 1 }
                if random.next() & 1 == 0 { pool.deallocate(pointer, byteCount: size) } else { pool.deallocate(pointer) }
                live[slot] = (nil, 0)
            } else {
                let pick = random.next() % 100
                let size: Int = pick < 85 ? 64 << Int(random.next() % 12) : pick < 99 ? (256 << 10) << Int(random.next() % 3) : (3 << 20)
                let mobility: Mobility = pick % 10 == 0 ? .movable : .unmovable
                do {
                    let pointer = try pool.allocate(byteCount: size, mobility: mobility)
                    pointer.storeBytes(of: UInt64(size), as: UInt64.self)
                    live[slot] = (pointer, size)
                } catch {
                    outcome.failures += 1
                }
            }
            outcome.operations += 1
        }
    }

    /// A request the pool cannot meet: the error path must not allocate or call the kernel.
    /// `tryAllocate` returns the error, so no willThrow hook (Swift Testing installs one that
    /// captures a backtrace) runs on this thread.
    static func exhaust(_ pool: MemoryPool, _ outcome: inout Outcome) {
        switch pool.tryAllocate(byteCount: pool.capacity) {
        case .success(let pointer): pool.deallocate(pointer)
        case .failure(let error): if case .exhausted = error { outcome.exhaustionSeen = true }
        }
    }
}

extension RealtimeWorkload {
    final class Closure: @unchecked Sendable {
        // @unchecked: run by the one worker thread; `completed` is read after pthread_join.
        let body: () -> Void
        var completed = false
        init(_ body: @escaping () -> Void) { self.body = body }
    }

    /// Runs `body` on a new thread in seccomp strict mode; false when the kernel killed the
    /// thread (strict mode kills only the offending thread, so the process goes on).
    static func runStrict(_ body: @escaping () -> Void) -> Bool {
        var thread = pthread_t()
        let closure = Closure(body)
        let context = Unmanaged.passRetained(closure).toOpaque()
        pthread_create(&thread, nil, { raw in
            let closure = Unmanaged<Closure>.fromOpaque(raw!).takeUnretainedValue()
            guard ctest_enter_seccomp_strict() == 0 else { ctest_exit_thread(1) }
            closure.body()
            closure.completed = true
            ctest_exit_thread(0)
        }, context)
        pthread_join(thread, nil)
        return closure.completed
    }
}
