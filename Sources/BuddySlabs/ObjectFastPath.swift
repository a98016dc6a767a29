import BuddyCore
import Synchronization

/// The lock-free part of an object free in the pool's first region: from an address to its
/// slab descriptor and object index with no lookup, lock or reference count. Held by value in
/// the pool. `regionBytes` is 0 when objects must take the out-of-line path (the pool scrubs or
/// counts sites, or serves no objects), so the first check fails.
@usableFromInline
package struct ObjectFastPath: @unchecked Sendable {
    // @unchecked: the pointers reach state bytes, owners and table addresses, all atomics.
    @usableFromInline package let regionBase: UInt
    @usableFromInline package let regionBytes: UInt
    /// The first region's size whether or not the inlined path may run (for `stateByte`).
    @usableFromInline package let spanBytes: UInt
    @usableFromInline package let states: UnsafeMutablePointer<Atomic<UInt8>>
    @usableFromInline package let owners: UnsafeMutablePointer<Atomic<UInt32>>
    @usableFromInline package let tables: UnsafeMutablePointer<Atomic<UInt>>
    @usableFromInline package let minBlockShift: Int
    @usableFromInline package let superblockShift: Int
    @usableFromInline package let unitShift: Int
    @usableFromInline package let poolID: UInt32

    package init(
        regionBase: UInt, regionBytes: UInt, states: UnsafeMutablePointer<Atomic<UInt8>>, owners: UnsafeMutablePointer<Atomic<UInt32>>,
        tables: SlabTables, geometry: BuddyGeometry, poolID: UInt32, enabled: Bool
    ) {
        self.regionBase = regionBase
        self.regionBytes = enabled ? regionBytes : 0
        spanBytes = regionBytes
        self.states = states
        self.owners = owners
        self.tables = tables.pointers
        minBlockShift = geometry.minBlockShift
        superblockShift = geometry.superblockShift
        unitShift = tables.unitShift
        self.poolID = poolID
    }

    /// The state byte of `address` when it lies in the first region: lets the slow paths tell
    /// a block from an object without a search.
    @inlinable @inline(__always)
    package func stateByte(at address: UInt) -> UInt8? {
        let offset = address &- regionBase
        guard offset < spanBytes else { return nil }
        return states[Int(truncatingIfNeeded: offset &>> UInt(truncatingIfNeeded: minBlockShift))].load(ordering: .relaxed)
    }

    /// The slab and object index of `address`, when it is an object start in a slab of a
    /// superblock this pool owns in its first region; nil sends the caller to the slow path
    /// (which also names every bad free).
    @inlinable @inline(__always)
    package func object(at address: UInt) -> (UnsafeMutablePointer<SlabDescriptor>, Int)? {
        let offset = address &- regionBase
        guard offset < regionBytes else { return nil }
        let value = states[Int(truncatingIfNeeded: offset &>> UInt(truncatingIfNeeded: minBlockShift))].load(ordering: .relaxed)
        let tag = value &>> 4
        guard tag == BlockState.Tag.slab.rawValue || tag == BlockState.Tag.slabInterior.rawValue else { return nil }
        let superblock = Int(truncatingIfNeeded: offset &>> UInt(truncatingIfNeeded: superblockShift))
        guard owners[superblock].load(ordering: .relaxed) == poolID,
              let table = UnsafeMutablePointer<SlabDescriptor>(bitPattern: tables[superblock].load(ordering: .acquiring))
        else { return nil }
        // The slab is aligned to its size: masking the offset finds its head.
        let slabMask = (UInt(1) &<< UInt(truncatingIfNeeded: minBlockShift &+ Int(value & 0x0F))) &- 1
        let headOffset = offset & ~slabMask
        let superblockMask = (UInt(1) &<< UInt(truncatingIfNeeded: superblockShift)) &- 1
        let slab = table + Int(truncatingIfNeeded: (headOffset & superblockMask) &>> UInt(truncatingIfNeeded: unitShift))
        guard slab.pointee.base == regionBase &+ headOffset, let index = slab.pointee.objectIndex(of: address) else { return nil }
        return (slab, index)
    }
}
