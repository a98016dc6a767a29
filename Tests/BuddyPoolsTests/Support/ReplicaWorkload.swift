import BuddyPools
import CTestSupport
import Synchronization
import TestSupport

/// A replicated buffer whose every word holds the version that wrote it, and the concurrent
/// check that no read sees two versions: shared by the host test and the four-node guest test.
enum ReplicaWorkload {
    static let words = 8192  // 64 KiB: an update takes long enough for reads to overlap it

    static func buffer(in set: PoolSet) throws -> ReplicatedBuffer {
        try ReplicatedBuffer(byteCount: words * 8, in: set) { bytes in
            for index in 0..<words { bytes.storeBytes(of: 0 as UInt64, toByteOffset: index * 8, as: UInt64.self) }
        }
    }

    struct Outcome {
        var reads = 0
        var mixed = 0
        var versionsSeen = Set<UInt64>()
    }

    /// One writer (on `writerCPU`, when given) publishes `updates` versions; a reader on each of
    /// `readerCPUs` (or `readers` unpinned) reads until the writer is done and counts reads that
    /// saw words of two versions.
    static func race(_ buffer: ReplicatedBuffer, updates: Int, writerCPU: Int?, readerCPUs: [Int?]) -> [Outcome] {
        let done = Atomic<Bool>(false)
        let outcomes = Mutex<[Outcome]>(Array(repeating: Outcome(), count: readerCPUs.count))
        runThreads(readerCPUs.count + 1) { thread in
            if thread == 0 {
                if let writerCPU { _ = ctest_pin_to_cpu(Int32(writerCPU)) }
                for version in 1...UInt64(updates) {
                    buffer.update { bytes in
                        for index in 0..<words { bytes.storeBytes(of: version, toByteOffset: index * 8, as: UInt64.self) }
                    }
                }
                done.store(true, ordering: .releasing)
                return
            }
            if let cpu = readerCPUs[thread - 1] { _ = ctest_pin_to_cpu(Int32(cpu)) }
            var outcome = Outcome()
            repeat {
                let (first, same) = buffer.read { bytes in
                    let first = bytes.load(fromByteOffset: 0, as: UInt64.self)
                    var same = true
                    for index in 1..<words where bytes.load(fromByteOffset: index * 8, as: UInt64.self) != first { same = false }
                    return (first, same)
                }
                outcome.reads += 1
                if !same { outcome.mixed += 1 }
                outcome.versionsSeen.insert(first)
            } while !done.load(ordering: .acquiring)
            let finished = outcome
            outcomes.locked { $0[thread - 1] = finished }
        }
        return outcomes.locked { $0 }
    }
}
