import BuddyCore
import BuddySystem

/// The arena and the tracker of a pool, in one metadata mapping sized by slot count: the pool's
/// own superblocks and the slots it may borrow into. Borrowing slots are reserved a few at a
/// time and the storage grows (doubling, up to the pool's limit) when a borrow needs more, so a
/// set of many pools with distinct priorities does not pay, in every pool, for every superblock
/// it might ever borrow.
struct SlotStorage {
    let arena: BuddyArena
    /// `arena` without reference counting, for calls on the pool's locked paths (PoolCore.withArena).
    let unretainedArena: Unmanaged<BuddyArena>
    let tracker: FragmentationTracker
    let buffer: MetadataBuffer

    /// Where the metadata goes and how it is made: the same for every size the storage takes.
    struct Placement {
        let geometry: BuddyGeometry
        let nodes: NodeSet
        let locked: Bool
        let label: String
    }

    init(slotCapacity: Int, placement: Placement) throws(SystemError) {
        let classes = Mobility.allCases.count
        let arenaBytes = BuddyArena.metadataByteCount(geometry: placement.geometry, slotCapacity: slotCapacity, classCount: classes)
        let trackerBytes = FragmentationTracker.byteCount(slotCapacity: slotCapacity)
        buffer = try MetadataBuffer(
            byteCount: arenaBytes + trackerBytes + 128, nodes: placement.nodes, locked: placement.locked, label: placement.label)
        var offset = 0
        let arenaMemory = buffer.slice(offset: &offset, byteCount: arenaBytes)
        arena = BuddyArena(
            geometry: placement.geometry, slotCapacity: slotCapacity, classCount: classes,
            metadata: UnsafeMutableRawBufferPointer(start: arenaMemory, count: arenaBytes))
        unretainedArena = Unmanaged.passUnretained(arena)
        tracker = FragmentationTracker(slotCapacity: slotCapacity, storage: buffer.slice(offset: &offset, byteCount: trackerBytes))
    }

    /// A larger storage holding the same state.
    func grown(to slotCapacity: Int, placement: Placement) throws(SystemError) -> SlotStorage {
        let larger = try SlotStorage(slotCapacity: slotCapacity, placement: placement)
        arena.copyState(into: larger.arena)
        tracker.copy(into: larger.tracker)
        return larger
    }

    /// Bytes of the arena and the tracker.
    var metadataBytes: Int { arena.metadataByteCount + FragmentationTracker.byteCount(slotCapacity: arena.slotCapacity) }
}
