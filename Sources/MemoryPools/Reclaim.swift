import BuddyCaches
import BuddyConfig
import BuddyCore
import BuddySystem
import Synchronization

/// One move the pool asks of a relocation handler: copy `byteCount` bytes from `source` to
/// `destination` and update every reference, then return true (false: leave the block where it is).
public struct Relocation: Sendable {
    public let source: UInt
    public let destination: UInt
    public let byteCount: Int

    public var sourcePointer: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: source)! }
    public var destinationPointer: UnsafeMutableRawPointer { UnsafeMutableRawPointer(bitPattern: destination)! }
}

public typealias RelocationHandler = @Sendable (Relocation) -> Bool

/// What a shrinker is asked for: bytes of reclaimable allocations to free, preferably inside
/// the address ranges the pool wants emptied (cheapest superblocks first).
public struct ShrinkRequest: Sendable {
    public let pool: String
    public let bytesWanted: Int
    public let preferredRanges: [Range<UInt>]
}

/// A registered shrinker; pass it to `unregisterShrinker(_:)`.
public struct ShrinkerRegistration: Sendable, Hashable {
    let id: Int
}

/// The shrinkers of a pool, called in registration order.
struct ShrinkerList {
    var nextID = 0
    var entries: [(id: Int, shrink: @Sendable (ShrinkRequest) -> Int)] = []
}

/// A superblock and what reclaiming it would cost.
public struct SuperblockCandidate: Sendable, Equatable, Codable {
    public let slot: Int
    public let baseAddress: UInt
    /// -1 when unknown.
    public let node: Int
    public let freeBytes: Int
    public let unmovableBytes: Int
    public let movableBytes: Int
    public let reclaimableBytes: Int
    public let allocationCount: Int
    /// The superblock is part of a run of superblocks (one allocation): never reclaimed piecemeal.
    public let inRun: Bool
    /// Bytes that would have to move or be dropped: 0 for a free superblock.
    public var cost: Int { movableBytes + reclaimableBytes }
    /// Whether reclaim may empty it at all: no unmovable byte, not part of a run.
    public var isReclaimable: Bool { unmovableBytes == 0 && !inRun }
    /// Whether compaction alone can empty it (reclaimable bytes need a shrinker).
    public var isCompactable: Bool { isReclaimable && reclaimableBytes == 0 }
    /// The order of reclaim: cheapest first, then fewest allocations, then lowest slot.
    static func cheaperFirst(_ a: SuperblockCandidate, _ b: SuperblockCandidate) -> Bool {
        (a.cost, a.allocationCount, a.slot) < (b.cost, b.allocationCount, b.slot)
    }
}

/// What one compaction did.
public struct CompactionReport: Sendable, Equatable, Codable {
    public var superblocksFreed = 0
    public var blocksMoved = 0
    public var bytesMoved = 0
    /// Blocks left in place: pinned, refused by the relocation handler, or without a way to move them.
    public var blocksSkipped = 0
}

/// What `shrink(to:)` did.
public struct ShrinkReport: Sendable, Equatable, Codable {
    /// Own superblocks whose memory went back to the kernel.
    public var releasedBytes = 0
    /// Borrowed superblocks given back to their lenders.
    public var returnedBytes = 0
    public var compaction = CompactionReport()
    public var shrinkerBytes = 0
    public var managedBytesAfter = 0
    /// Wholly free superblocks kept because their page is larger than a superblock: a 1 GiB
    /// hugetlb page holds 512 superblocks and the kernel takes it back only whole (an madvise
    /// of part of it fails or, aligned, would drop the whole page with the live data beside it).
    public var keptForPageSizeBytes = 0
    /// The system call that stopped the shrink (munlock or madvise failed): the superblock it was
    /// for stays managed, and `releasedBytes` counts only what the kernel really took back.
    public var systemError: SystemError?
}
