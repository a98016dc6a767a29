import BuddyCore
import Synchronization

/// Freed runs of own superblocks (and whole own superblocks) kept for reuse, reached with or
/// without the pool lock: a fixed table of entries of one atomic word each, `(slot + 1) << 32 |
/// count` (0: empty), and the bytes they hold against a budget. A kept run stays allocated in
/// the arena, its head's state byte `cached`; reclaim sees it as allocated unmovable memory, as it
/// sees blocks in thread caches, and `drain` gives every run back to the buddy allocator (under
/// pressure, on `drainCaches()`, before any reclaim).
///
/// Why without the lock: a 16 MiB pair (free one, allocate one) took the pool lock twice and cost
/// about 1,000 instructions, most of them the lock, the checked free's classification and the
/// search of a table under the lock (fixed-16M in buddypools-bench: 1.54x tcmalloc, which keeps
/// such spans in a lock-free cache).
///
/// Ordering: a keeper changes the head's state byte from allocated to `cached` (a compare and
/// exchange, so two frees of one run cannot both pass) before it publishes the entry with a
/// releasing compare and exchange; a taker claims the entry with an acquiring one and only then
/// marks the head allocated. So the taker's store comes after the keeper's, and a run is in the
/// table at most once.
final class RunStash: @unchecked Sendable {
    // @unchecked: every field is immutable or atomic.
    /// Entries the table holds; their storage is fixed, so keeping a run allocates nothing (a
    /// realtime thread frees runs too).
    static let entries = 16

    private let words: UnsafeMutablePointer<Atomic<UInt64>>
    /// Per own slot, the superblock count of the run it heads (0: none, or a single superblock);
    /// set when a run is made and cleared when it is freed, under the pool lock, and read without
    /// it by the free of a run the caller owns (so the entry does not change under it).
    private let runLengths: UnsafeMutablePointer<Atomic<UInt32>>
    /// Per own slot, its superblock's address and its head's state byte, so a take finds both
    /// without searching the regions (fixed while the pool lives).
    private let bases: UnsafeMutablePointer<UInt>
    private let heads: UnsafeMutablePointer<UnsafeMutablePointer<Atomic<UInt8>>>
    private let ownSlots: Int
    /// The state bytes of a kept head (cached, order maxOrder) and of a taken one (allocated
    /// unmovable, raised or not).
    let cachedState: UInt8
    let allocatedState: UInt8, raisedState: UInt8
    /// Bytes the kept runs may hold at most (half the pool's cache budget).
    let budget: Int
    let superblockShift: Int
    private let heldBytes = Atomic<Int>(0)
    /// Runs taken and kept without the pool lock by threads without a cache of the pool (those
    /// with one count in it, with no atomic read-modify-write), for the pool's counts.
    let takesUnlocked = Atomic<Int>(0)
    let keepsUnlocked = Atomic<Int>(0)

    /// `own`: the pool's own superblocks, in slot order.
    init(own: OwnSuperblocks, budget: Int, geometry: BuddyGeometry) {
        words = .allocate(capacity: Self.entries)
        for index in 0..<Self.entries { (words + index).initialize(to: Atomic(0)) }
        ownSlots = own.count
        runLengths = .allocate(capacity: max(1, ownSlots))
        for index in 0..<max(1, ownSlots) { (runLengths + index).initialize(to: Atomic(0)) }
        bases = .allocate(capacity: max(1, ownSlots))
        heads = .allocate(capacity: max(1, ownSlots))
        var slot = 0
        for region in own.regions {
            for superblock in 0..<region.superblockCount {
                bases[slot] = region.superblockBase(superblock)
                heads[slot] = region.states + (superblock << (geometry.superblockShift - geometry.minBlockShift))
                slot += 1
            }
        }
        self.budget = budget
        superblockShift = geometry.superblockShift
        cachedState = BlockState.cached(order: geometry.maxOrder).rawValue
        allocatedState = BlockState.allocated(order: geometry.maxOrder, mobilityClass: Mobility.unmovable.rawValue).rawValue
        raisedState = BlockState.allocated(order: geometry.maxOrder, mobilityClass: Mobility.unmovable.rawValue, alignmentRaised: true).rawValue
    }

    deinit {
        words.deinitialize(count: Self.entries)
        words.deallocate()
        runLengths.deinitialize(count: max(1, ownSlots))
        runLengths.deallocate()
        bases.deallocate()
        heads.deallocate()
    }

    /// An own slot's superblock address and head state byte.
    @inline(__always)
    func base(slot: Int) -> UInt { bases[slot] }
    @inline(__always)
    func head(slot: Int) -> UnsafeMutablePointer<Atomic<UInt8>> { heads[slot] }

    /// Bytes the kept runs hold now.
    var bytes: Int { heldBytes.load(ordering: .relaxed) }

    /// The superblock count of the run (or superblock) an own slot heads, at least 1.
    @inline(__always)
    func runLength(slot: Int) -> Int {
        // Invariant: callers pass own slots.
        assert(slot >= 0 && slot < ownSlots, "slot \(slot) is not an own slot")
        return max(1, Int(runLengths[slot].load(ordering: .relaxed)))
    }

    /// Records a run made at an own slot (pool lock held).
    func noteRun(slot: Int, count: Int) {
        guard slot >= 0, slot < ownSlots else { return }
        runLengths[slot].store(UInt32(truncatingIfNeeded: count), ordering: .relaxed)
    }

    /// Keeps the run of `count` superblocks at own `slot`, whose head's state byte is `state`
    /// and holds `allocated`: marks it cached and publishes it. False (nothing changed) when the
    /// budget or the table is full, or the state byte no longer holds `allocated` (another free
    /// got there first: the caller's checked path names it).
    func keep(slot: Int, count: Int, state: UnsafeMutablePointer<Atomic<UInt8>>, allocated: UInt8) -> Bool {
        let bytes = count &<< superblockShift
        guard budget > 0, heldBytes.wrappingAdd(bytes, ordering: .relaxed).newValue <= budget else {
            heldBytes.wrappingSubtract(bytes, ordering: .relaxed)
            return false
        }
        guard state.pointee.compareExchange(expected: allocated, desired: cachedState, ordering: .relaxed).exchanged else {
            heldBytes.wrappingSubtract(bytes, ordering: .relaxed)
            return false
        }
        let entry = UInt64(truncatingIfNeeded: slot &+ 1) &<< 32 | UInt64(truncatingIfNeeded: count)
        for index in 0..<Self.entries where words[index].load(ordering: .relaxed) == 0 {
            if words[index].compareExchange(expected: 0, desired: entry, ordering: .releasing).exchanged { return true }
        }
        // No room: the run goes back to being the caller's, to free through the lock.
        state.pointee.store(allocated, ordering: .relaxed)
        heldBytes.wrappingSubtract(bytes, ordering: .relaxed)
        return false
    }

    /// A kept run of `count` superblocks that starts on `alignment` and does not cross a
    /// multiple of `boundary` (0: none), taken out of the table and its head marked allocated
    /// (`raised`: with the raised flag, which run heads carry); its slot, or nil when none is kept.
    func take(count: Int, alignment: Int, boundary: Int, raised: Bool) -> Int? {
        guard heldBytes.load(ordering: .relaxed) > 0 else { return nil }
        let mask = UInt(truncatingIfNeeded: max(alignment, 1)) &- 1, bytes = count &<< superblockShift
        for index in 0..<Self.entries {
            let entry = words[index].load(ordering: .relaxed)
            guard entry != 0, Int(truncatingIfNeeded: entry & 0xFFFF_FFFF) == count else { continue }
            let slot = Int(truncatingIfNeeded: entry &>> 32) &- 1
            let base = bases[slot]
            guard base & mask == 0, boundary == 0 || base / UInt(boundary) == (base + UInt(bytes) - 1) / UInt(boundary),
                  words[index].compareExchange(expected: entry, desired: 0, ordering: .acquiring).exchanged
            else { continue }
            heldBytes.wrappingSubtract(bytes, ordering: .relaxed)
            // After the claim: the keeper's store of `cached` happened before it.
            heads[slot].pointee.store(raised ? raisedState : allocatedState, ordering: .relaxed)
            return slot
        }
        return nil
    }

    /// Empties the table, calling `body` with each run's slot and count (to free it, pool lock
    /// held); returns the bytes given back. A run kept while this runs may stay: it is found next time.
    @discardableResult
    func drain(_ body: (_ slot: Int, _ count: Int) -> Void) -> Int {
        var freed = 0
        for index in 0..<Self.entries where words[index].load(ordering: .relaxed) != 0 {
            let entry = words[index].exchange(0, ordering: .acquiring)
            guard entry != 0 else { continue }
            let count = Int(truncatingIfNeeded: entry & 0xFFFF_FFFF)
            heldBytes.wrappingSubtract(count &<< superblockShift, ordering: .relaxed)
            freed += count &<< superblockShift
            body(Int(truncatingIfNeeded: entry &>> 32) &- 1, count)
        }
        return freed
    }
}
