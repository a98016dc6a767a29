import BuddyPools
import TestSupport
import Glibc
import Foundation
import Testing

/// The realtime promise of locked pools: after creation, allocate and deallocate take no page
/// fault and make no system call. Serialized: page faults are counted per thread, but the
/// machine is quieter when nothing else runs.
@Suite("Realtime locked pools", .serialized)
struct RealtimeTests {
    static func lockedPool() throws -> MemoryPool {
        var configuration = PoolConfiguration(name: "realtime", capacity: 128 << 20)
        configuration.locked = true
        configuration.pageSize = .huge2M
        return try MemoryPool(configuration: configuration)
    }

    @Test("a million mixed operations take zero minor and major page faults")
    func zeroFaults() throws {
        let pool = try Self.lockedPool()
        let outcome = RealtimeWorkload.run(pool: pool, strict: false, operations: TestScale.operations(1_000_000))
        #expect(outcome.operations == TestScale.operations(1_000_000))
        // On base pages the kernel's compaction may migrate mlock'd pages unless
        // vm.compact_unevictable_allowed is 0 (scripts/run-tests sets it; docs/architecture.md).
        let unevictable = (try? String(contentsOfFile: "/proc/sys/vm/compact_unevictable_allowed", encoding: .utf8)) ?? "?"
        #expect(outcome.minorFaults == 0, "minor faults in the loop: \(outcome.minorFaults) (compact_unevictable_allowed=\(unevictable.trimmingCharacters(in: .whitespacesAndNewlines)))")
        #expect(outcome.majorFaults == 0)
        #expect(outcome.corrupted == 0)
        #expect(outcome.failures == 0, "the pool never ran dry in this loop")
        #expect(outcome.exhaustionSeen)
        #if !DEBUG
        // Release builds only: unoptimized Swift malloc's a coroutine frame for every for-in over an array.
        #expect(outcome.mallocCalls == 0, "allocation and its errors call malloc \(outcome.mallocCalls) times")
        #endif
        pool.drainCaches()
        try pool.checkInvariants()
        #expect(pool.statistics.freeBytes == pool.capacity)
    }

    @Test("a million mixed operations make zero system calls (seccomp strict mode kills the process otherwise)")
    func zeroSystemCalls() async throws {
        let result = await #expect(processExitsWith: .success, observing: [\.standardOutputContent]) {
            let pool = try! RealtimeTests.lockedPool()
            let outcome = RealtimeWorkload.run(pool: pool, strict: true, operations: 1_000_000)
            // Reaching here means the worker thread made no forbidden system call.
            guard outcome.operations == 1_000_000, outcome.corrupted == 0, outcome.failures == 0, outcome.exhaustionSeen
            else {
                print("outcome: \(outcome)")
                exit(1)
            }
        }
        let output = String(decoding: result?.standardOutputContent ?? [], as: UTF8.self)
        #expect(!output.contains("outcome"), "\(output)")
    }

    @Test("the seccomp harness can fail: a system call in strict mode kills the thread")
    func harnessCanFail() async throws {
        // In a child process: a thread killed in the middle of a call may die holding locks.
        await #expect(processExitsWith: .success) {
            guard RealtimeWorkload.runStrict({}) else { exit(1) }
            // Creating a pool needs mmap: strict mode must kill the thread before it completes.
            guard !RealtimeWorkload.runStrict({ _ = try? TestPools.make("forbidden", capacity: 4 << 20) }) else { exit(2) }
        }
    }
}
