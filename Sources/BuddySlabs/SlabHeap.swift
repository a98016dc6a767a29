import BuddyCore

/// One thread's slabs in one pool (or the pool's shared heap, for threads without a cache):
/// per class the slab it allocates from and the list of every slab it owns. Only its owner
/// touches it, or one who holds it exclusively (a drainer under the thread cache's protocol,
/// the shared heap's mutex holder). Its address is the owner id its slabs carry.
///
/// The C object fast path (CBuddyFastPath) finds the tables at fixed offsets from the heap:
/// `current`, `owned`, `spare` and `full` in that order from byte 64, one pointer per class
/// each. When the current slab is used up it makes the spare, or one of the first slabs of the
/// owned list or of the full ring with a free object, current (where it is: so a current slab
/// may sit on the full ring), and it keeps an emptied slab as the spare, as `PoolSlabs.refill`
/// and `PoolSlabs.emptied` would.
@usableFromInline
package struct SlabHeap: ~Copyable {
    /// The slab each class allocates from (nil: none yet, or the last one ran out); on `owned`,
    /// or on `full` when the C fast path took it from there.
    @usableFromInline package let current: UnsafeMutablePointer<UnsafeMutablePointer<SlabDescriptor>?>
    /// Every slab the heap owns, per class, in a list through the descriptors.
    package let owned: UnsafeMutablePointer<UnsafeMutablePointer<SlabDescriptor>?>
    /// Per class, one empty slab kept besides the current one (also in `owned`), so a class
    /// whose live objects hover around a slab's worth does not make and release a slab, under
    /// the pool lock, every few operations.
    package let spare: UnsafeMutablePointer<UnsafeMutablePointer<SlabDescriptor>?>
    /// Per class, the slabs found used up, in a ring through the descriptors (the head is the
    /// next a refill looks at; a refill turns the ring past the ones still full). Slabs move
    /// here from `owned` when a refill finds them full, and back when it finds a free in them.
    package let full: UnsafeMutablePointer<UnsafeMutablePointer<SlabDescriptor>?>

    private init(current: UnsafeMutablePointer<UnsafeMutablePointer<SlabDescriptor>?>,
                 owned: UnsafeMutablePointer<UnsafeMutablePointer<SlabDescriptor>?>,
                 spare: UnsafeMutablePointer<UnsafeMutablePointer<SlabDescriptor>?>,
                 full: UnsafeMutablePointer<UnsafeMutablePointer<SlabDescriptor>?>) {
        self.current = current
        self.owned = owned
        self.spare = spare
        self.full = full
    }

    /// Bytes a heap needs (its header and four pointers per class).
    package static let requiredBytes = 64 + 4 * SizeClasses.count * MemoryLayout<UnsafeMutablePointer<SlabDescriptor>?>.stride

    /// Builds a heap in `storage` (at least `requiredBytes`, 64-byte aligned, owned by the caller:
    /// a thread cache's mapping, or the pool's shared-heap buffer).
    package static func initialize(at storage: UnsafeMutableRawPointer) -> UnsafeMutablePointer<SlabHeap> {
        // Invariant: the header fits the 64 bytes before the tables.
        assert(MemoryLayout<SlabHeap>.stride <= 64, "SlabHeap header is \(MemoryLayout<SlabHeap>.stride) bytes")
        let pointerBytes = SizeClasses.count * MemoryLayout<UnsafeMutablePointer<SlabDescriptor>?>.stride
        let current = (storage + 64).bindMemory(to: UnsafeMutablePointer<SlabDescriptor>?.self, capacity: SizeClasses.count)
        let owned = (storage + 64 + pointerBytes).bindMemory(to: UnsafeMutablePointer<SlabDescriptor>?.self, capacity: SizeClasses.count)
        let spare = (storage + 64 + 2 * pointerBytes).bindMemory(to: UnsafeMutablePointer<SlabDescriptor>?.self, capacity: SizeClasses.count)
        let full = (storage + 64 + 3 * pointerBytes).bindMemory(to: UnsafeMutablePointer<SlabDescriptor>?.self, capacity: SizeClasses.count)
        current.initialize(repeating: nil, count: SizeClasses.count)
        owned.initialize(repeating: nil, count: SizeClasses.count)
        spare.initialize(repeating: nil, count: SizeClasses.count)
        full.initialize(repeating: nil, count: SizeClasses.count)
        let heap = storage.bindMemory(to: SlabHeap.self, capacity: 1)
        heap.initialize(to: SlabHeap(current: current, owned: owned, spare: spare, full: full))
        return heap
    }

    /// The id its slabs carry in `owner`.
    @inlinable @inline(__always)
    package static func id(_ heap: UnsafeMutablePointer<SlabHeap>) -> UInt { UInt(bitPattern: heap) }

    /// Adds a slab the heap now owns to its class's `owned` list.
    package func insert(_ slab: UnsafeMutablePointer<SlabDescriptor>) {
        let classIndex = slab.pointee.classIndex
        slab.pointee.setOnFullList(false)
        slab.pointee.setPrevious(nil)
        slab.pointee.setNext(owned[classIndex])
        owned[classIndex]?.pointee.setPrevious(slab)
        owned[classIndex] = slab
    }

    /// Takes a slab off whichever list holds it; it stays the heap's (`current`, `spare` untouched).
    private func unlink(_ slab: UnsafeMutablePointer<SlabDescriptor>) {
        let classIndex = slab.pointee.classIndex
        if slab.pointee.isOnFullList {
            // Invariant: a slab on the full ring has both neighbours (itself when alone).
            let next = slab.pointee.next.unsafelyUnwrapped, previous = slab.pointee.previous.unsafelyUnwrapped
            assert(next.pointee.previous == slab && previous.pointee.next == slab, "the full ring is broken")
            if next == slab {
                full[classIndex] = nil
            } else {
                previous.pointee.setNext(next)
                next.pointee.setPrevious(previous)
                if full[classIndex] == slab { full[classIndex] = next }
            }
            slab.pointee.setOnFullList(false)
        } else {
            if let previous = slab.pointee.previous { previous.pointee.setNext(slab.pointee.next) } else { owned[classIndex] = slab.pointee.next }
            slab.pointee.next?.pointee.setPrevious(slab.pointee.previous)
        }
        slab.pointee.setNext(nil)
        slab.pointee.setPrevious(nil)
    }

    /// The heap gives the slab up (it is released or orphaned).
    package func remove(_ slab: UnsafeMutablePointer<SlabDescriptor>) {
        let classIndex = slab.pointee.classIndex
        unlink(slab)
        if current[classIndex] == slab { current[classIndex] = nil }
        if spare[classIndex] == slab { spare[classIndex] = nil }
    }

    /// A slab of `owned` found used up goes to the end of its class's full ring.
    package func moveToFull(_ slab: UnsafeMutablePointer<SlabDescriptor>) {
        let classIndex = slab.pointee.classIndex
        unlink(slab)
        slab.pointee.setOnFullList(true)
        if let head = full[classIndex] {
            let last = head.pointee.previous.unsafelyUnwrapped
            slab.pointee.setNext(head)
            slab.pointee.setPrevious(last)
            last.pointee.setNext(slab)
            head.pointee.setPrevious(slab)
        } else {
            slab.pointee.setNext(slab)
            slab.pointee.setPrevious(slab)
            full[classIndex] = slab
        }
    }

    /// Turns the class's full ring one slab on (its head, still full, becomes its last). False
    /// when the ring has fewer than two slabs.
    package func turnFullList(classIndex: Int) -> Bool {
        guard let head = full[classIndex], let next = head.pointee.next, next != head else { return false }
        full[classIndex] = next
        return true
    }

    /// Makes `slab` its class's current slab, back on `owned` if it was on the full ring.
    package func makeCurrent(_ slab: UnsafeMutablePointer<SlabDescriptor>) {
        if slab.pointee.isOnFullList {
            unlink(slab)
            insert(slab)
        }
        current[slab.pointee.classIndex] = slab
    }

    /// Every slab the heap owns (the full rings first go back onto `owned`, so `body` may
    /// remove the slab it is given).
    package func forEachSlab(_ body: (UnsafeMutablePointer<SlabDescriptor>) -> Void) {
        for classIndex in 0..<SizeClasses.count {
            while let slab = full[classIndex] {
                unlink(slab)
                insert(slab)
            }
            var slab = owned[classIndex]
            while let this = slab {
                slab = this.pointee.next
                body(this)
            }
        }
    }
}
