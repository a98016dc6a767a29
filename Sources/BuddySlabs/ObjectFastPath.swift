import BuddyCore
import CBuddyFastPath
import Synchronization

/// The lock-free object paths of a pool's first region: an object from the calling thread's heap,
/// and the checked free of one, with no lookup, lock or reference count. The work is the C fast
/// path's (`buddy_object_allocate`, `buddy_object_free`), which the malloc library's entry
/// points call with the same `path`; this is its Swift face. Held by value in the pool.
@usableFromInline
package struct ObjectFastPath: @unchecked Sendable {
    // @unchecked: `path` is written once, at the pool's creation, and only read after; what it
    // points at (state bytes, owners, table addresses) is read atomically.
    /// The pool's constants for the C side, in the pool's metadata.
    @usableFromInline package let path: UnsafeMutablePointer<buddy_object_path>
    @usableFromInline package let regionBase: UInt
    /// The first region's size whether or not the inlined path may run (for `stateByte`).
    @usableFromInline package let spanBytes: UInt
    @usableFromInline package let states: UnsafeMutablePointer<Atomic<UInt8>>
    @usableFromInline package let minBlockShift: Int

    /// Bytes `storage` must have (64-byte aligned).
    package static let requiredBytes = (MemoryLayout<buddy_object_path>.stride + 63) & ~63

    /// Writes the pool's constants into `storage`. `enabled` false (the pool scrubs, counts sites,
    /// serves no objects or has no caches) leaves the C path's region empty: every free fails its
    /// first check.
    package init(
        storage: UnsafeMutableRawPointer, regionBase: UInt, regionBytes: UInt, states: UnsafeMutablePointer<Atomic<UInt8>>,
        owners: UnsafeMutablePointer<Atomic<UInt32>>, tables: SlabTables, geometry: BuddyGeometry, poolID: UInt32,
        cacheIndex: Int, token: UInt64, enabled: Bool
    ) {
        path = storage.bindMemory(to: buddy_object_path.self, capacity: 1)
        path.initialize(to: buddy_object_path(
            region_base: regionBase, region_bytes: enabled ? regionBytes : 0,
            states: UnsafeRawPointer(states).assumingMemoryBound(to: UInt8.self),
            owners: UnsafeRawPointer(owners).assumingMemoryBound(to: UInt32.self),
            tables: UnsafeRawPointer(tables.pointers).assumingMemoryBound(to: UInt.self),
            token: token, cache_index: cacheIndex, superblock_mask: UInt(geometry.superblockSize - 1), pool_id: poolID,
            min_block_shift: UInt8(geometry.minBlockShift), superblock_shift: UInt8(geometry.superblockShift),
            unit_shift: UInt8(tables.unitShift)))
        self.regionBase = regionBase
        spanBytes = regionBytes
        self.states = states
        minBlockShift = geometry.minBlockShift
    }

    /// The state byte of `address` when it lies in the first region: lets the slow paths tell
    /// a block from an object without a search.
    @inlinable @inline(__always)
    package func stateByte(at address: UInt) -> UInt8? {
        let offset = address &- regionBase
        guard offset < spanBytes else { return nil }
        return states[Int(truncatingIfNeeded: offset &>> UInt(truncatingIfNeeded: minBlockShift))].load(ordering: .relaxed)
    }

    /// An object of class `classIndex` from the calling thread's heap, or nil (the slow path).
    @inlinable @inline(__always)
    package func allocate(classIndex: Int) -> UnsafeMutableRawPointer? {
        buddy_object_allocate(path, classIndex)
    }

    /// What a lock-free free of an object did.
    @usableFromInline
    package enum Free {
        /// Not done: the checked slow path frees it or names what is wrong.
        case notDone
        case done
        /// Done, and the slab, not its class's current one, has no object in use.
        case slabEmptied(UnsafeMutablePointer<SlabDescriptor>)
    }

    /// Frees the object at `address`; `expectedBytes` is its class size for a sized free (0:
    /// unsized; a value no class has: the slow path reports the wrong size).
    @inlinable @inline(__always)
    package func free(_ address: UInt, expectedBytes: Int) -> Free {
        let location = buddy_object_locate(path, address)
        guard location.slab != nil else { return .notDone }
        return free(location, expectedBytes: expectedBytes)
    }

    /// `free` for a caller that loaded the address's state byte (`offset` bytes into the region).
    @inlinable @inline(__always)
    package func free(_ address: UInt, offset: UInt, state: UInt8) -> Free {
        let location = buddy_object_locate_state(path, address, offset, state)
        guard location.slab != nil else { return .notDone }
        return free(location, expectedBytes: 0)
    }

    @inlinable @inline(__always)
    func free(_ location: buddy_object_location, expectedBytes: Int) -> Free {
        let outcome = buddy_object_free_located(path, location, expectedBytes)
        switch outcome.result {
        case BUDDY_FREE_DONE: return .done
        case BUDDY_FREE_SLAB_EMPTIED:
            // Invariant: the C side names the slab it emptied.
            return .slabEmptied(UnsafeMutableRawPointer(outcome.emptied.unsafelyUnwrapped).assumingMemoryBound(to: SlabDescriptor.self))
        default: return .notDone
        }
    }
}
