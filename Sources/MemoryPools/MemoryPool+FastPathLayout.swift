import BuddyCaches
import BuddyCore
import BuddySlabs
import CBuddyFastPath
import Synchronization

// The C object fast path (CBuddyFastPath) reads Swift's structures through views of its own:
// `buddy_thread_cache` for ThreadCache's first fields, `buddy_slab` for SlabDescriptor, fixed
// offsets for SlabHeap's tables (current, owned, spare, full), and constants of BlockState and SizeClasses.
// Swift lays out stored properties in declaration order, so the views hold as long as both sides
// are edited together; this check is how a test (run in release builds, as the library ships)
// finds out when they are not.

extension MemoryPool {
    /// What the C views get wrong about this build's Swift layouts, checked through both
    /// languages on the calling thread's cache and a slab of this pool (empty: they agree).
    /// Allocates and frees one 24-byte object; the pool must serve objects through its caches.
    package func fastPathLayoutProblems() -> [String] {
        var problems: [String] = []
        func expect(_ condition: Bool, _ what: @autoclosure () -> String) {
            if !condition { problems.append(what()) }
        }
        expect(Int(BUDDY_SLAB_TAG) == Int(BlockState.Tag.slab.rawValue) && Int(BUDDY_SLAB_TAG) + 1 == Int(BlockState.Tag.slabInterior.rawValue),
               "BUDDY_SLAB_TAG \(BUDDY_SLAB_TAG) is not BlockState.Tag.slab (slabInterior one more)")
        expect(Int(BUDDY_MAX_OBJECT_BYTES) == SizeClasses.maxObjectBytes, "BUDDY_MAX_OBJECT_BYTES is not SizeClasses.maxObjectBytes")
        expect(Int(BUDDY_CLASS_COUNT) == SizeClasses.count, "BUDDY_CLASS_COUNT is not SizeClasses.count")
        expect(MemoryLayout<buddy_slab>.size == MemoryLayout<SlabDescriptor>.size,
               "buddy_slab is \(MemoryLayout<buddy_slab>.size) bytes, SlabDescriptor \(MemoryLayout<SlabDescriptor>.size)")
        for size in 1...SizeClasses.maxObjectBytes {
            let swift = SizeClasses.index(size: size, alignment: 16)
            let c = buddy_malloc_class_index(size)
            if swift != c { problems.append("malloc class of \(size) bytes: Swift \(swift.map(String.init) ?? "none"), C \(c)") }
        }
        guard objectsInline, let caches, let pointer = try? allocate(byteCount: 24) else {
            problems.append("pool \(name) does not serve objects through thread caches")
            return problems
        }
        defer { deallocate(pointer) }
        let address = UInt(bitPattern: pointer)

        // The thread cache: token, the handshake bytes, the object heap.
        guard let cache = caches.currentThreadCache(), let heap = cache.pointee.objectHeap else {
            problems.append("no thread cache or object heap after an allocation")
            return problems
        }
        let view = ThreadCache.view(cache)
        expect(buddy_current_cache(cacheFastPath.cacheIndex, cacheFastPath.token) == view, "buddy_current_cache finds another cache")
        expect(view.pointee.token == cache.pointee.token, "buddy_thread_cache.token")
        expect(view.pointee.object_heap == heap, "buddy_thread_cache.object_heap")
        expect(buddy_cache_enter(view) == 1 && cache.pointee.inUse.load(ordering: .relaxed) == 1, "buddy_thread_cache.in_use (enter)")
        buddy_cache_leave(view)
        expect(cache.pointee.inUse.load(ordering: .relaxed) == 0, "buddy_thread_cache.in_use (leave)")
        cache.pointee.drainRequested.store(1, ordering: .relaxed)
        expect(view.pointee.drain_requested == 1 && buddy_cache_enter(view) == 0, "buddy_thread_cache.drain_requested")
        cache.pointee.drainRequested.store(0, ordering: .relaxed)

        // The slab: every field, and the heap's table of current slabs.
        guard case .object(let slab, let index) = objectLookup(address) else {
            problems.append("the object at 0x\(String(address, radix: 16)) is not found in a slab")
            return problems
        }
        let s = SlabDescriptor.view(slab)
        expect(MemoryLayout<SlabDescriptor>.stride == 128, "SlabDescriptor is \(MemoryLayout<SlabDescriptor>.stride) bytes, not 128")
        expect(s.pointee.base == slab.pointee.base, "buddy_slab.base")
        expect(s.pointee.reciprocal == slab.pointee.reciprocal, "buddy_slab.reciprocal")
        expect(s.pointee.owner == slab.pointee.owner.load(ordering: .relaxed), "buddy_slab.owner")
        expect(UnsafeMutableRawPointer(s.pointee.bits) == UnsafeMutableRawPointer(slab.pointee.bits), "buddy_slab.bits")
        expect(Int(s.pointee.object_bytes) == slab.pointee.objectBytes, "buddy_slab.object_bytes")
        expect(Int(s.pointee.object_count) == slab.pointee.objectCount, "buddy_slab.object_count")
        expect(Int(s.pointee.free_count) == slab.pointee.freeCount, "buddy_slab.free_count")
        expect(Int(s.pointee.cursor) == slab.pointee.cursor, "buddy_slab.cursor")
        expect(Int(s.pointee.class_index) == slab.pointee.classIndex, "buddy_slab.class_index")
        expect(Int(s.pointee.words) == slab.pointee.words, "buddy_slab.words")
        expect(Int(s.pointee.order) == slab.pointee.order, "buddy_slab.order")
        expect((s.pointee.freed_hint != 0) == slab.pointee.hasFreedHint, "buddy_slab.freed_hint")
        expect((s.pointee.on_full_list != 0) == slab.pointee.isOnFullList, "buddy_slab.on_full_list")
        expect(s.pointee.next == UInt(bitPattern: slab.pointee.next), "buddy_slab.next")
        expect(s.pointee.previous == UInt(bitPattern: slab.pointee.previous), "buddy_slab.previous")
        // The list fields with values other than zero, set through Swift and read through C, then put back.
        let (next, previous, onFullList, hint) = (slab.pointee.next, slab.pointee.previous, slab.pointee.isOnFullList,
                                                  slab.pointee.freedHint.load(ordering: .relaxed))
        slab.pointee.setNext(slab)
        slab.pointee.setPrevious(slab + 1)
        slab.pointee.setOnFullList(!onFullList)
        slab.pointee.freedHint.store(hint == 0 ? 1 : 0, ordering: .relaxed)
        expect(s.pointee.next == UInt(bitPattern: slab) && s.pointee.previous == UInt(bitPattern: slab + 1), "buddy_slab.next, previous (set)")
        expect((s.pointee.on_full_list != 0) != onFullList && (s.pointee.freed_hint == 0) != (hint == 0), "buddy_slab.on_full_list, freed_hint (set)")
        slab.pointee.setNext(next)
        slab.pointee.setPrevious(previous)
        slab.pointee.setOnFullList(onFullList)
        slab.pointee.freedHint.store(hint, ordering: .relaxed)
        // The bitmaps: the object's bit, clear in both (it is allocated), is where C looks.
        let word = index >> 6, bit = UInt64(1) << UInt64(index & 63)
        expect(s.pointee.bits[2 * word] == slab.pointee.freeBits(word).pointee.load(ordering: .relaxed)
               && s.pointee.bits[2 * word + 1] == slab.pointee.remoteBits(word).pointee.load(ordering: .relaxed)
               && s.pointee.bits[2 * word] & bit == 0, "buddy_slab.bits: the interleaved words")
        let slabHeap = heap.assumingMemoryBound(to: SlabHeap.self)
        expect(buddy_heap_current(heap)[slab.pointee.classIndex] == UnsafeMutableRawPointer(slabHeap.pointee.current[slab.pointee.classIndex]).map { $0.assumingMemoryBound(to: buddy_slab.self) },
               "BUDDY_HEAP_CURRENT_OFFSET: SlabHeap.current")
        expect(UnsafeMutableRawPointer(buddy_heap_owned(heap)) == UnsafeMutableRawPointer(slabHeap.pointee.owned), "buddy_heap_owned: SlabHeap.owned")
        expect(UnsafeMutableRawPointer(buddy_heap_spare(heap)) == UnsafeMutableRawPointer(slabHeap.pointee.spare), "buddy_heap_spare: SlabHeap.spare")
        expect(UnsafeMutableRawPointer(buddy_heap_full(heap)) == UnsafeMutableRawPointer(slabHeap.pointee.full), "buddy_heap_full: SlabHeap.full")

        // The region and the lookup: the C side finds the slab and index the Swift side found.
        let location = buddy_object_locate(objectFastPath.path, address)
        expect(location.slab == s && location.index == UInt(index), "buddy_object_locate: slab or index differs from objectLookup")
        return problems
    }
}
