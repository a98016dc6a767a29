import BuddyCaches
import BuddyConfig
import BuddyCore
import BuddySystem
import Synchronization

/// Per-superblock live bytes by mobility and live allocation count, kept current at O(1)
/// per allocation and free (under the pool lock). Blocks held by caches count as live
/// unmovable bytes until the caches give them back.
struct FragmentationTracker {
    let slotCapacity: Int
    private let liveBytes: UnsafeMutablePointer<Int>
    private let liveCounts: UnsafeMutablePointer<Int>

    static func byteCount(slotCapacity: Int) -> Int {
        slotCapacity * (Mobility.allCases.count + 1) * MemoryLayout<Int>.stride
    }

    /// Lays the tracker over zeroed storage of `byteCount(slotCapacity:)` bytes.
    init(slotCapacity: Int, storage: UnsafeMutableRawPointer) {
        self.slotCapacity = slotCapacity
        let mobilities = Mobility.allCases.count
        liveBytes = storage.bindMemory(to: Int.self, capacity: slotCapacity * (mobilities + 1))
        liveCounts = liveBytes + slotCapacity * mobilities
    }

    @inline(__always)
    func add(slot: Int, bytes: Int, mobility: Mobility) {
        liveBytes[slot &* 3 &+ mobility.rawValue] &+= bytes
        liveCounts[slot] &+= 1
    }

    @inline(__always)
    func remove(slot: Int, bytes: Int, mobility: Mobility) {
        liveBytes[slot &* 3 &+ mobility.rawValue] &-= bytes
        liveCounts[slot] &-= 1
    }

    /// An allocation that grew in place: more bytes, the same count.
    func grow(slot: Int, bytes: Int, mobility: Mobility) {
        liveBytes[slot &* 3 &+ mobility.rawValue] &+= bytes
    }

    func bytes(slot: Int, mobility: Mobility) -> Int { liveBytes[slot * 3 + mobility.rawValue] }
    func allocationCount(slot: Int) -> Int { liveCounts[slot] }
    func totalBytes(slot: Int) -> Int { liveBytes[slot * 3] + liveBytes[slot * 3 + 1] + liveBytes[slot * 3 + 2] }

    /// Copies every slot's counters into `larger` (at least as many slots), for a growing pool.
    func copy(into larger: FragmentationTracker) {
        let mobilities = Mobility.allCases.count
        (larger.liveBytes).update(from: liveBytes, count: slotCapacity * mobilities)
        (larger.liveCounts).update(from: liveCounts, count: slotCapacity)
    }

    /// Clears a slot's counters (when a superblock leaves the pool wholly free).
    func reset(slot: Int) {
        for mobility in 0..<3 { liveBytes[slot * 3 + mobility] = 0 }
        liveCounts[slot] = 0
    }
}
