import BuddyCore
import BuddySystem
import CBuddyFastPath
import Synchronization

/// Where empty slabs go back to: the pool behind the object layer (which also makes slabs,
/// outside any heap, since making one may run the pool's pressure steps).
package protocol SlabBackend: AnyObject, Sendable {
    /// An empty slab's block back to the buddy allocator. Takes the pool lock; allocates nothing.
    func releaseSlab(_ slab: UnsafeMutablePointer<SlabDescriptor>)
}

/// One class as this pool serves it.
package struct SlabClass: Sendable {
    package let objectBytes: Int
    /// The slab's buddy order and bytes.
    package let order: Int
    package let slabBytes: Int
    package let objectCount: Int
}

/// What a free of an object found.
@usableFromInline
package enum ObjectFree: Equatable, Sendable {
    case freed
    /// The slab has no object in use any more (a slow-path decision: keep it or release it).
    case slabEmpty
    case doubleFree
}

/// The object layer of one pool: its classes, the slabs no thread owns (orphans, left by
/// threads that exited), and a shared heap for threads without a cache of their own.
/// Lock order: a thread cache's lock, then `shared` or `orphans`, then the pool.
@usableFromInline
package final class PoolSlabs: @unchecked Sendable {
    // @unchecked: the class table is immutable; orphans and the shared heap behind mutexes.
    package let classes: [SlabClass?]
    private let orphans = Mutex<OrphanLists>(OrphanLists())
    private let shared: Mutex<SharedHeap>

    struct OrphanLists: @unchecked Sendable {
        // @unchecked: descriptors of orphan slabs, touched only under this mutex.
        var slabs: [[UnsafeMutablePointer<SlabDescriptor>]] = Array(repeating: [], count: SizeClasses.count)
    }

    struct SharedHeap: @unchecked Sendable {
        // @unchecked: the heap is only reached under its mutex.
        let heap: UnsafeMutablePointer<SlabHeap>
    }

    /// `sharedHeapStorage`: `SlabHeap.requiredBytes` of the pool's metadata (zeroed, 64-byte
    /// aligned) for the shared heap.
    package init(geometry: BuddyGeometry, sharedHeapStorage: UnsafeMutableRawPointer) {
        classes = SizeClasses.sizes.map { bytes -> SlabClass? in
            guard let slabBytes = SizeClasses.slabBytes(classBytes: bytes, limit: min(geometry.superblockSize, 1 << 18)),
                  slabBytes >= geometry.minBlockSize,
                  let (order, _) = geometry.order(byteCount: slabBytes, alignment: 1)
            else { return nil }
            return SlabClass(objectBytes: bytes, order: order, slabBytes: slabBytes, objectCount: min(slabBytes / bytes, SizeClasses.maxObjectsPerSlab))
        }
        shared = Mutex(SharedHeap(heap: SlabHeap.initialize(at: sharedHeapStorage)))
    }

    // MARK: Allocation

    /// An object of class `classIndex` from `heap` (the caller holds it exclusively): from the
    /// current slab, else after collecting remote frees, another owned slab, or an orphan. Nil:
    /// the heap needs a new slab (`install`).
    package func allocate(classIndex: Int, heap: UnsafeMutablePointer<SlabHeap>, backend: some SlabBackend) -> UInt? {
        if let address = Self.take(classIndex: classIndex, heap: heap) { return address }
        guard refill(classIndex: classIndex, heap: heap) else { return nil }
        return Self.take(classIndex: classIndex, heap: heap)
    }

    /// A new slab the heap's owner made, as the class's current slab.
    package func install(_ slab: UnsafeMutablePointer<SlabDescriptor>, heap: UnsafeMutablePointer<SlabHeap>) {
        heap.pointee.insert(slab)
        heap.pointee.current[slab.pointee.classIndex] = slab
    }

    /// The next free object of the heap's current slab (`buddy_slab_take`, the C fast path's).
    @inlinable @inline(__always)
    package static func take(classIndex: Int, heap: UnsafeMutablePointer<SlabHeap>) -> UInt? {
        guard let slab = heap.pointee.current[classIndex] else { return nil }
        let address = buddy_slab_take(SlabDescriptor.view(slab))
        return address == 0 ? nil : address
    }

    /// Full slabs a refill looks at, at most (then it makes a new slab): a refill costs the
    /// same with ten or ten thousand full slabs. The full list turns round, so a slab with a
    /// freed object is reached within (full slabs / 16) refills.
    static let fullSlabsPerRefill = 16

    /// Finds the heap a slab with a free object for `classIndex`: the current slab's collected
    /// frees, the spare, the list of slabs not known to be full (used-up ones move to the full
    /// list on the way, once per time they fill), up to `fullSlabsPerRefill` full slabs with a
    /// freed hint, then orphans. Never reads the bitmaps of a full slab no free touched.
    private func refill(classIndex: Int, heap: UnsafeMutablePointer<SlabHeap>) -> Bool {
        if let current = heap.pointee.current[classIndex] {
            if current.pointee.hasFreedHint { current.pointee.collectRemote() }
            if current.pointee.freeCount > 0 { return true }
        }
        if let spare = heap.pointee.spare[classIndex] {
            // Invariant: a spare is an empty slab of the heap, not its current one.
            assert(spare.pointee.isEmpty && spare != heap.pointee.current[classIndex], "the spare slab is in use")
            heap.pointee.spare[classIndex] = nil
            heap.pointee.makeCurrent(spare)
            return true
        }
        var slab = heap.pointee.owned[classIndex]
        while let candidate = slab {
            slab = candidate.pointee.next
            if candidate.pointee.hasFreedHint { candidate.pointee.collectRemote() }
            if candidate.pointee.freeCount > 0 {
                heap.pointee.current[classIndex] = candidate
                return true
            }
            heap.pointee.moveToFull(candidate)
        }
        for _ in 0..<Self.fullSlabsPerRefill {
            guard let candidate = heap.pointee.full[classIndex] else { break }
            if candidate.pointee.hasFreedHint {
                candidate.pointee.collectRemote()
                if candidate.pointee.freeCount > 0 {
                    heap.pointee.makeCurrent(candidate)
                    return true
                }
            }
            // Still full: to the end of the round. A list of one is its own end.
            guard heap.pointee.turnFullList(classIndex: classIndex) else { break }
        }
        let id = SlabHeap.id(heap)
        while let orphan = orphans.locked({ $0.slabs[classIndex].popLast() }) {
            orphan.pointee.owner.store(id, ordering: .releasing)
            orphan.pointee.collectRemote()
            heap.pointee.insert(orphan)
            if orphan.pointee.freeCount > 0 {
                heap.pointee.current[classIndex] = orphan
                return true
            }
        }
        return false
    }

    // MARK: Frees

    /// Frees object `index` of `slab` for a caller whose heap id is `heapID` (0: none): the owner
    /// sets its free bit; anyone else sets the remote bit with one atomic or (`buddy_slab_free`).
    @inlinable @inline(__always)
    package static func free(_ slab: UnsafeMutablePointer<SlabDescriptor>, index: Int, heapID: UInt) -> ObjectFree {
        switch buddy_slab_free(SlabDescriptor.view(slab), UInt(truncatingIfNeeded: index), heapID) {
        case BUDDY_FREE_DONE: .freed
        case BUDDY_FREE_SLAB_EMPTIED: .slabEmpty
        default: .doubleFree
        }
    }

    /// After a local free emptied `slab`: keep it if it is the class's current slab (or the
    /// class has none: it becomes current) or as the class's spare, else give it back. At most
    /// two empty slabs per class stay with a heap: the current one and the spare.
    package func emptied(_ slab: UnsafeMutablePointer<SlabDescriptor>, heap: UnsafeMutablePointer<SlabHeap>, backend: some SlabBackend) {
        let classIndex = slab.pointee.classIndex
        if heap.pointee.current[classIndex] == slab || heap.pointee.spare[classIndex] == slab { return }
        if let current = heap.pointee.current[classIndex], current.pointee.freeCount > 0 {
            if heap.pointee.spare[classIndex] == nil {
                heap.pointee.spare[classIndex] = slab
                return
            }
            heap.pointee.remove(slab)
            backend.releaseSlab(slab)
            return
        }
        heap.pointee.makeCurrent(slab)
    }

    // MARK: Draining

    /// Collects every owned slab's remote frees and gives back the empty ones; with `retiring`
    /// the others become orphans for any thread to adopt. Caller holds the heap exclusively.
    /// Returns the bytes given back.
    @discardableResult
    package func drain(heap: UnsafeMutablePointer<SlabHeap>, retiring: Bool, backend: some SlabBackend) -> Int {
        var freed = 0
        var leaving: [UnsafeMutablePointer<SlabDescriptor>] = []
        heap.pointee.forEachSlab { slab in
            slab.pointee.collectRemote()
            if slab.pointee.isEmpty {
                heap.pointee.remove(slab)
                freed += classes[slab.pointee.classIndex]?.slabBytes ?? 0
                backend.releaseSlab(slab)
            } else if retiring {
                heap.pointee.remove(slab)
                slab.pointee.owner.store(0, ordering: .releasing)
                leaving.append(slab)
            }
        }
        if !leaving.isEmpty {
            orphans.locked { lists in for slab in leaving { lists.slabs[slab.pointee.classIndex].append(slab) } }
        }
        return freed
    }

    /// Drains the shared heap and the orphans (their remote frees collected, the empty ones given
    /// back). Returns the bytes given back.
    @discardableResult
    package func drainShared(backend: some SlabBackend) -> Int {
        var freed = shared.locked { drain(heap: $0.heap, retiring: false, backend: backend) }
        freed += orphans.locked { lists -> Int in
            var bytes = 0
            for classIndex in 0..<SizeClasses.count {
                lists.slabs[classIndex].removeAll { slab in
                    slab.pointee.collectRemote()
                    guard slab.pointee.isEmpty else { return false }
                    bytes += classes[classIndex]?.slabBytes ?? 0
                    backend.releaseSlab(slab)
                    return true
                }
            }
            return bytes
        }
        return freed
    }

    /// The heap id of the shared heap (its slabs' owner).
    package var sharedHeapID: UInt { shared.locked { SlabHeap.id($0.heap) } }

    /// Runs `body` with the shared heap held.
    package func withSharedHeap<R: Sendable>(_ body: (UnsafeMutablePointer<SlabHeap>) -> R) -> R {
        shared.locked { body($0.heap) }
    }

}
