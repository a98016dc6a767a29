import BuddyCore

/// One thread's slabs in one pool (or the pool's shared heap, for threads without a cache):
/// per class the slab it allocates from and the list of every slab it owns. Only its owner
/// touches it, or one who holds it exclusively (a drainer under the thread cache's protocol,
/// the shared heap's mutex holder). Its address is the owner id its slabs carry.
@usableFromInline
package struct SlabHeap: ~Copyable {
    /// The slab each class allocates from (nil: none yet, or the last one ran out).
    @usableFromInline package let current: UnsafeMutablePointer<UnsafeMutablePointer<SlabDescriptor>?>
    /// Every slab the heap owns, per class, in a list through the descriptors.
    package let owned: UnsafeMutablePointer<UnsafeMutablePointer<SlabDescriptor>?>
    /// Per class, one empty slab kept besides the current one (also in `owned`), so a class
    /// whose live objects hover around a slab's worth does not make and release a slab, under
    /// the pool lock, every few operations.
    package let spare: UnsafeMutablePointer<UnsafeMutablePointer<SlabDescriptor>?>

    private init(current: UnsafeMutablePointer<UnsafeMutablePointer<SlabDescriptor>?>,
                 owned: UnsafeMutablePointer<UnsafeMutablePointer<SlabDescriptor>?>,
                 spare: UnsafeMutablePointer<UnsafeMutablePointer<SlabDescriptor>?>) {
        self.current = current
        self.owned = owned
        self.spare = spare
    }

    /// Bytes a heap needs (its header and three pointers per class).
    package static let requiredBytes = 64 + 3 * SizeClasses.count * MemoryLayout<UnsafeMutablePointer<SlabDescriptor>?>.stride

    /// Builds a heap in `storage` (at least `requiredBytes`, 64-byte aligned, owned by the caller:
    /// a thread cache's mapping, or the pool's shared-heap buffer).
    package static func initialize(at storage: UnsafeMutableRawPointer) -> UnsafeMutablePointer<SlabHeap> {
        // Invariant: the header fits the 64 bytes before the tables.
        assert(MemoryLayout<SlabHeap>.stride <= 64, "SlabHeap header is \(MemoryLayout<SlabHeap>.stride) bytes")
        let pointerBytes = SizeClasses.count * MemoryLayout<UnsafeMutablePointer<SlabDescriptor>?>.stride
        let current = (storage + 64).bindMemory(to: UnsafeMutablePointer<SlabDescriptor>?.self, capacity: SizeClasses.count)
        let owned = (storage + 64 + pointerBytes).bindMemory(to: UnsafeMutablePointer<SlabDescriptor>?.self, capacity: SizeClasses.count)
        let spare = (storage + 64 + 2 * pointerBytes).bindMemory(to: UnsafeMutablePointer<SlabDescriptor>?.self, capacity: SizeClasses.count)
        current.initialize(repeating: nil, count: SizeClasses.count)
        owned.initialize(repeating: nil, count: SizeClasses.count)
        spare.initialize(repeating: nil, count: SizeClasses.count)
        let heap = storage.bindMemory(to: SlabHeap.self, capacity: 1)
        heap.initialize(to: SlabHeap(current: current, owned: owned, spare: spare))
        return heap
    }

    /// The id its slabs carry in `owner`.
    @inlinable @inline(__always)
    package static func id(_ heap: UnsafeMutablePointer<SlabHeap>) -> UInt { UInt(bitPattern: heap) }

    package func insert(_ slab: UnsafeMutablePointer<SlabDescriptor>) {
        let classIndex = slab.pointee.classIndex
        slab.pointee.setPrevious(nil)
        slab.pointee.setNext(owned[classIndex])
        owned[classIndex]?.pointee.setPrevious(slab)
        owned[classIndex] = slab
    }

    package func remove(_ slab: UnsafeMutablePointer<SlabDescriptor>) {
        let classIndex = slab.pointee.classIndex
        if let previous = slab.pointee.previous { previous.pointee.setNext(slab.pointee.next) } else { owned[classIndex] = slab.pointee.next }
        slab.pointee.next?.pointee.setPrevious(slab.pointee.previous)
        slab.pointee.setNext(nil)
        slab.pointee.setPrevious(nil)
        if current[classIndex] == slab { current[classIndex] = nil }
        if spare[classIndex] == slab { spare[classIndex] = nil }
    }

    /// Every slab the heap owns.
    package func forEachSlab(_ body: (UnsafeMutablePointer<SlabDescriptor>) -> Void) {
        for classIndex in 0..<SizeClasses.count {
            var slab = owned[classIndex]
            while let this = slab {
                slab = this.pointee.next
                body(this)
            }
        }
    }
}
