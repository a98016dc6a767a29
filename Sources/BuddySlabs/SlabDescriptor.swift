import BuddyCore
import CBuddyFastPath
import Synchronization

/// One slab: a buddy block of the pool cut into objects of one class. Out of band (in its
/// superblock's `SlabTable`), so free objects are never written by the allocator: a write after
/// free cannot corrupt a free list, and no object page is touched by bookkeeping.
///
/// Two bitmaps, one bit per object, interleaved word by word (the owner's word w, then the remote
/// word w), so a free that checks both reads one cache line. The owner's bitmap: available to the
/// owner's allocations; only the owning heap (or whoever holds it exclusively: a drainer, an
/// adopter) writes it, with plain loads and stores. The remote bitmap: freed by another thread,
/// one atomic or each; the owner collects them in batches (an exchange per word). An object is
/// allocated when neither bit is set.
///
/// Fixed from the slab's creation (under the pool lock) until its release: `base`, the class,
/// the reciprocal; other threads read them only for objects they were handed, which orders them
/// after the creation.
///
/// 128 bytes: what a free and an allocation read (base, reciprocal, owner, bitmaps, sizes, counts,
/// class) is the first 64, one cache line; the list links follow. The C object fast path reads
/// and writes these fields through its view, `buddy_slab` (CBuddyFastPath): the stored
/// properties stay in its order, and a change to one is a change to both (the layout test checks
/// every field).
@usableFromInline
package struct SlabDescriptor: ~Copyable {
    /// The slab's first byte; 0 while the unit heads no slab.
    @usableFromInline package var base: UInt = 0
    /// ceil(2^40 / objectBytes): offset * reciprocal >> 40 is the object index for every offset
    /// inside a slab (offsets below 2^22, so the error stays below 1/objectBytes).
    @usableFromInline package var reciprocal: UInt64 = 0
    /// The heap that owns the slab (its address), or 0 for an orphan.
    @usableFromInline package let owner = Atomic<UInt>(0)
    /// The bitmaps: word w of the owner's at `bits[2w]`, of the remote one at `bits[2w + 1]`.
    @usableFromInline package let bits: UnsafeMutablePointer<Atomic<UInt64>>
    @usableFromInline package var objectBytesStorage: UInt32 = 0
    @usableFromInline package var objectCountStorage: UInt32 = 0
    // The owner's fields below change while statistics read the descriptor under the pool
    // lock: atomics with relaxed loads and stores (plain moves), so neither side mutates the
    // whole descriptor (an exclusive access ThreadSanitizer would report) and no RMW is needed.
    @usableFromInline package let freeCountStorage = Atomic<Int32>(0)
    @usableFromInline package let cursorStorage = Atomic<Int32>(0)
    @usableFromInline package var classIndexStorage: UInt16 = 0
    /// Bitmap words in use: ceil(objectCount / 64).
    @usableFromInline package var wordsStorage: UInt8 = 0
    /// The slab's buddy order (its bytes are minBlock << order).
    package var orderStorage: UInt8 = 0
    /// Set by a free into the slab that the owner has not looked at yet (a remote free, or the
    /// owner's free into a slab it had used up), so the owner's refill finds slabs with free
    /// objects without reading every bitmap of every full slab it owns.
    @usableFromInline package let freedHint = Atomic<UInt8>(0)
    /// Whether the slab is on its heap's list of full slabs (owner).
    private let onFullListStorage = Atomic<UInt8>(0)
    private let nextStorage = Atomic<UInt>(0)
    private let previousStorage = Atomic<UInt>(0)
    /// Up to 128 bytes, so every descriptor of a table starts a cache line.
    private let reserved: (UInt, UInt, UInt, UInt, UInt, UInt, UInt) = (0, 0, 0, 0, 0, 0, 0)

    @inlinable package var objectBytes: Int { Int(objectBytesStorage) }
    @inlinable package var objectCount: Int { Int(objectCountStorage) }
    @inlinable package var classIndex: Int { Int(classIndexStorage) }
    @inlinable package var words: Int { Int(wordsStorage) }
    package var order: Int { Int(orderStorage) }

    /// Word `word` of the owner's bitmap.
    @inlinable @inline(__always)
    package func freeBits(_ word: Int) -> UnsafeMutablePointer<Atomic<UInt64>> { bits + 2 &* word }
    /// Word `word` of the remote bitmap.
    @inlinable @inline(__always)
    package func remoteBits(_ word: Int) -> UnsafeMutablePointer<Atomic<UInt64>> { bits + (2 &* word &+ 1) }

    /// Objects in the owner's bitmap (owner).
    @inlinable package var freeCount: Int {
        @inline(__always) get { Int(freeCountStorage.load(ordering: .relaxed)) }
    }
    /// The first word that may hold a free bit (owner).
    @inlinable package var cursor: Int {
        @inline(__always) get { Int(cursorStorage.load(ordering: .relaxed)) }
    }

    // Setters as methods: `slab.pointee.x = v` would be an exclusive access to the whole
    // descriptor even with a nonmutating setter; a method call only reads `pointee`.
    @inlinable @inline(__always)
    package func setFreeCount(_ value: Int) { freeCountStorage.store(Int32(truncatingIfNeeded: value), ordering: .relaxed) }
    @inlinable @inline(__always)
    package func setCursor(_ value: Int) { cursorStorage.store(Int32(truncatingIfNeeded: value), ordering: .relaxed) }
    package func setNext(_ slab: UnsafeMutablePointer<SlabDescriptor>?) { nextStorage.store(UInt(bitPattern: slab), ordering: .relaxed) }
    package func setPrevious(_ slab: UnsafeMutablePointer<SlabDescriptor>?) { previousStorage.store(UInt(bitPattern: slab), ordering: .relaxed) }
    package var isOnFullList: Bool { onFullListStorage.load(ordering: .relaxed) != 0 }
    package func setOnFullList(_ value: Bool) { onFullListStorage.store(value ? 1 : 0, ordering: .relaxed) }

    /// Whether a free happened since the owner last collected (the owner; does not clear).
    package var hasFreedHint: Bool { freedHint.load(ordering: .relaxed) != 0 }

    /// The owning heap's list of slabs of this class (owner).
    package var next: UnsafeMutablePointer<SlabDescriptor>? { UnsafeMutablePointer(bitPattern: nextStorage.load(ordering: .relaxed)) }
    package var previous: UnsafeMutablePointer<SlabDescriptor>? { UnsafeMutablePointer(bitPattern: previousStorage.load(ordering: .relaxed)) }

    /// `bits`: `2 * wordsPerUnit` words of the table, the unit's interleaved bitmaps.
    package init(bits: UnsafeMutablePointer<Atomic<UInt64>>) {
        self.bits = bits
    }

    /// Bitmap words each unit's descriptor has (in each of its two bitmaps): enough for a unit
    /// of the smallest class.
    package static let wordsPerUnit = SizeClasses.maxObjectsPerSlab / 64

    /// Makes the unit a slab of `objectCount` objects of `objectBytes`, every one free, owned by `owner`.
    package mutating func start(base: UInt, order: Int, classIndex: Int, objectBytes: Int, objectCount: Int, owner: UInt) {
        // Invariant: the bitmaps have a bit for every object (SizeClasses.slabBytes bounds the count).
        assert(objectCount > 0 && objectCount <= Self.wordsPerUnit * 64, "\(objectCount) objects do not fit the bitmaps")
        self.base = base
        orderStorage = UInt8(truncatingIfNeeded: order)
        classIndexStorage = UInt16(truncatingIfNeeded: classIndex)
        objectBytesStorage = UInt32(truncatingIfNeeded: objectBytes)
        objectCountStorage = UInt32(truncatingIfNeeded: objectCount)
        reciprocal = ((1 << 40) + UInt64(objectBytes) - 1) / UInt64(objectBytes)
        wordsStorage = UInt8(truncatingIfNeeded: (objectCount + 63) / 64)
        for word in 0..<words {
            let bitsInWord = min(64, objectCount - word * 64)
            freeBits(word).pointee.store(bitsInWord == 64 ? ~0 : (1 << UInt64(bitsInWord)) - 1, ordering: .relaxed)
            remoteBits(word).pointee.store(0, ordering: .relaxed)
        }
        setFreeCount(objectCount)
        setCursor(0)
        setNext(nil)
        setPrevious(nil)
        setOnFullList(false)
        freedHint.store(0, ordering: .relaxed)
        self.owner.store(owner, ordering: .releasing)
    }

    /// The C fast path's view of a descriptor.
    @inlinable @inline(__always)
    package static func view(_ slab: UnsafeMutablePointer<SlabDescriptor>) -> UnsafeMutablePointer<buddy_slab> {
        UnsafeMutableRawPointer(slab).assumingMemoryBound(to: buddy_slab.self)
    }

    /// The object index of `address` in `slab`, or nil for an address inside an object (interior).
    @inlinable @inline(__always)
    package static func objectIndex(of address: UInt, in slab: UnsafeMutablePointer<SlabDescriptor>) -> Int? {
        let index = buddy_slab_index(view(slab), address)
        return index < 0 ? nil : index
    }

    /// Objects handed out and not freed (exact when no call is in flight).
    package var objectsInUse: Int {
        var available = 0
        for word in 0..<words {
            available += (freeBits(word).pointee.load(ordering: .relaxed) | remoteBits(word).pointee.load(ordering: .relaxed)).nonzeroBitCount
        }
        return objectCount - available
    }

    /// Moves the remotely freed objects into `freeBits` (the owner, or one holding it
    /// exclusively). Returns how many came.
    @discardableResult
    package func collectRemote() -> Int {
        var collected = 0
        // The hint is cleared first, by a sequentially consistent exchange before the loads: a
        // remote free whose bit this pass misses (its or comes after this pass's load of that
        // word) then finds the hint clear and sets it again, so the slab is looked at later
        // (buddy_slab_free_remote, CBuddyFastPath). With no hint to clear nothing can be lost: a missed free's hint
        // stays set.
        if freedHint.load(ordering: .relaxed) != 0 { _ = freedHint.exchange(0, ordering: .sequentiallyConsistent) }
        for word in 0..<words where remoteBits(word).pointee.load(ordering: .sequentiallyConsistent) != 0 {
            // Acquiring: the freeing thread's writes to the object happen before its reuse.
            let bits = remoteBits(word).pointee.exchange(0, ordering: .acquiring)
            freeBits(word).pointee.store(freeBits(word).pointee.load(ordering: .relaxed) | bits, ordering: .relaxed)
            collected += bits.nonzeroBitCount
            setCursor(min(cursor, word))
        }
        setFreeCount(freeCount + collected)
        return collected
    }

    /// Whether any object was freed remotely and not collected yet.
    package var hasRemoteFrees: Bool {
        (0..<words).contains { remoteBits($0).pointee.load(ordering: .relaxed) != 0 }
    }

    /// Whether every object is free (after `collectRemote`).
    package var isEmpty: Bool { freeCount == objectCount }
}
