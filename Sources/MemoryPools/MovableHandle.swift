import BuddyCaches
import BuddyConfig
import BuddyCore
import BuddySystem
import Glibc
import Synchronization

/// A movable allocation whose address the pool may change during compaction. Resolve it
/// with `withPinnedAddress(of:_:)` (the block cannot move while pinned) or read a snapshot
/// with `currentAddress(of:)` (valid until the next compaction).
public struct MovableHandle: Hashable, Sendable, CustomStringConvertible {
    let index: UInt32
    let generation: UInt32

    public var description: String { "handle #\(index).\(generation)" }
}

/// The pool's handles: a two-level table (chunks of entries published through an atomic
/// directory), so resolving a handle takes no lock. Each entry holds the block's address and
/// one state word: pin count (bits 0-31), moving flag (bit 32), generation (bits 40-63).
final class HandleTable: @unchecked Sendable {
    // @unchecked: entries are reached through atomics; the bookkeeping below is only used under
    // the pool lock.
    struct Entry: ~Copyable {
        let address: Atomic<UInt>
        let state: Atomic<UInt64>
    }

    static let chunkShift = 10
    static let chunkSize = 1 << chunkShift
    static let maxChunks = 1 << 14
    static let movingBit: UInt64 = 1 << 32
    static let generationShift: UInt64 = 40

    private let directory: UnsafeMutablePointer<Atomic<UInt>>
    // Pool-lock bookkeeping.
    var freeIndices: [UInt32] = []
    var nextIndex: UInt32 = 0
    /// Which handle owns a block, by block address.
    var handleAtAddress: [UInt: UInt32] = [:]

    init() {
        directory = .allocate(capacity: Self.maxChunks)
        for index in 0..<Self.maxChunks { (directory + index).initialize(to: Atomic(0)) }
    }

    deinit {
        for index in 0..<Self.maxChunks {
            let raw = directory[index].load(ordering: .relaxed)
            guard raw != 0, let chunk = UnsafeMutablePointer<Entry>(bitPattern: raw) else { continue }
            chunk.deinitialize(count: Self.chunkSize)
            chunk.deallocate()
        }
        directory.deinitialize(count: Self.maxChunks)
        directory.deallocate()
    }

    /// The entry of `index`, or nil when its chunk was never made. Lock-free.
    func entry(_ index: UInt32) -> UnsafeMutablePointer<Entry>? {
        let chunkIndex = Int(index) >> Self.chunkShift
        guard chunkIndex < Self.maxChunks,
              let chunk = UnsafeMutablePointer<Entry>(bitPattern: directory[chunkIndex].load(ordering: .acquiring))
        else { return nil }
        return chunk + (Int(index) & (Self.chunkSize - 1))
    }

    /// A fresh handle for `address` (pool lock held); nil when the table is full.
    func register(address: UInt) -> MovableHandle? {
        let index: UInt32
        if let reused = freeIndices.popLast() {
            index = reused
        } else {
            guard Int(nextIndex) < Self.maxChunks * Self.chunkSize else { return nil }
            index = nextIndex
            nextIndex += 1
            let chunkIndex = Int(index) >> Self.chunkShift
            if directory[chunkIndex].load(ordering: .relaxed) == 0 {
                let chunk = UnsafeMutablePointer<Entry>.allocate(capacity: Self.chunkSize)
                for offset in 0..<Self.chunkSize { (chunk + offset).initialize(to: Entry(address: Atomic(0), state: Atomic(0))) }
                directory[chunkIndex].store(UInt(bitPattern: chunk), ordering: .releasing)
            }
        }
        let entry = self.entry(index)!
        let generation = UInt32(truncatingIfNeeded: entry.pointee.state.load(ordering: .relaxed) >> Self.generationShift)
        entry.pointee.address.store(address, ordering: .releasing)
        handleAtAddress[address] = index
        return MovableHandle(index: index, generation: generation)
    }

    /// Ends a handle (pool lock held): bumps the generation so stale copies are detected.
    func unregister(_ handle: MovableHandle, address: UInt) {
        let entry = self.entry(handle.index)!
        let nextGeneration = UInt64((handle.generation &+ 1) & 0xFF_FFFF)
        entry.pointee.state.store(nextGeneration << Self.generationShift, ordering: .releasing)
        entry.pointee.address.store(0, ordering: .relaxed)
        handleAtAddress[address] = nil
        freeIndices.append(handle.index)
    }

    static func generation(of state: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: state >> generationShift) }

    /// The live handle at `index` (pool lock held), for naming it in a report.
    func handle(index: UInt32) -> MovableHandle? {
        guard let entry = entry(index) else { return nil }
        return MovableHandle(index: index, generation: Self.generation(of: entry.pointee.state.load(ordering: .acquiring)))
    }
    static func pins(of state: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: state) }

    /// Pins the entry (waits while it is being moved); false when the handle is stale.
    func pin(_ handle: MovableHandle) -> UnsafeMutablePointer<Entry>? {
        guard let entry = entry(handle.index) else { return nil }
        while true {
            let state = entry.pointee.state.load(ordering: .acquiring)
            guard Self.generation(of: state) == handle.generation & 0xFF_FFFF else { return nil }
            if state & Self.movingBit != 0 {
                sched_yield()
                continue
            }
            if entry.pointee.state.compareExchange(expected: state, desired: state + 1, ordering: .acquiringAndReleasing).exchanged {
                return entry
            }
        }
    }

    func unpin(_ entry: UnsafeMutablePointer<Entry>) {
        entry.pointee.state.wrappingSubtract(1, ordering: .releasing)
    }

    /// Starts moving an unpinned entry (pool lock held); false when somebody holds a pin.
    func beginMove(_ index: UInt32) -> UInt64? {
        guard let entry = entry(index) else { return nil }
        let state = entry.pointee.state.load(ordering: .acquiring)
        guard Self.pins(of: state) == 0, state & Self.movingBit == 0,
              entry.pointee.state.compareExchange(expected: state, desired: state | Self.movingBit, ordering: .acquiringAndReleasing).exchanged
        else { return nil }
        return state
    }

    /// Publishes the new address and ends the move.
    func finishMove(_ index: UInt32, from old: UInt, to new: UInt, state: UInt64) {
        let entry = self.entry(index)!
        entry.pointee.address.store(new, ordering: .releasing)
        handleAtAddress[old] = nil
        handleAtAddress[new] = index
        entry.pointee.state.store(state, ordering: .releasing)
    }
}
