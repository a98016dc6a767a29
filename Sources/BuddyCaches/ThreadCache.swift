import BuddyCore
import BuddySystem
import CBuddyFastPath
import Glibc
import Synchronization

/// One thread's magazines for one pool. Lives in its own mapped page(s); the owning thread
/// reaches it through its TLS root without any atomic read-modify-write.
///
/// Exclusion without atomics on the fast path (an asymmetric Dekker protocol): the owner
/// marks `inUse`, then reads `drainRequested`, with only compiler barriers in between. A
/// drainer (another thread emptying these magazines under memory pressure) holds `lock`,
/// sets `drainRequested`, runs membarrier(2), which orders the owner's accesses as a full
/// fence would, and waits for `inUse` to clear. From then on the owner sees the request and
/// takes `lock` for its own operations until the drainer is done.
///
/// The first four fields are what the C object fast path reads (`buddy_thread_cache` in
/// CBuddyFastPath): keep them first and in this order.
@usableFromInline
package struct ThreadCache: ~Copyable {
    /// The pool's token; a slot holding another token belongs to a pool that is gone. First, at
    /// offset 0: an unused slot points at `FastPathAccessors.noThreadCache`, whose token is 0.
    @usableFromInline package let token: UInt64
    @usableFromInline package let inUse: Atomic<UInt8>
    @usableFromInline package let drainRequested: Atomic<UInt8>
    /// The thread's slab heap for this pool (the object layer's), made on its first small
    /// allocation; reached and changed under the same protocol as the magazines.
    @usableFromInline package var objectHeap: UnsafeMutableRawPointer?
    /// Blocks the owner took from its magazines on the fast path, for statistics (written by the
    /// owner with a plain load and store, read by anyone: no read-modify-write on the fast path).
    @usableFromInline package let allocations: Atomic<Int>
    /// Runs of superblocks the owner took from and gave to the pool's run stash without the pool
    /// lock (the owner's plain loads and stores, as `allocations`).
    package let runsTaken: Atomic<Int>
    package let runsKept: Atomic<Int>
    /// The pool's caches epoch when the owner last took its slow path: older than the last idle
    /// pass means the thread has not needed its cache since, and it may be given back.
    package let lastSlowPath: Atomic<Int>
    /// The fork generation the owner ran in: in a fork child, a cache of an older generation
    /// belongs to a thread that does not exist there, whose `inUse` may have been left set by a
    /// fast-path operation the fork interrupted.
    package let forkGeneration: Int
    /// Held by drainers, and by the owner on its slow path.
    package let lock: Mutex<Void>
    package let magazines: UnsafeMutablePointer<Magazine>
    package let orderCount: Int
    package let cacheIndex: Int
    /// Bytes of the pool's cache budget this thread holds (its magazines' full size); changed
    /// under the pool caches' list lock, read by the owner without it (hence atomic).
    package let grantBytes: Atomic<Int>
    /// The mapping holding this structure, released when the cache is freed.
    let storage: Unmanaged<MetadataBuffer>
    /// Zeroed bytes in the cache's own mapping where the object layer builds that heap, so it
    /// goes away with the cache (also when the pool is gone first).
    package let objectHeapStorage: UnsafeMutableRawPointer
    /// Bytes reserved for the object heap.
    package static let objectHeapReserve = 2048

    init(token: UInt64, magazines: UnsafeMutablePointer<Magazine>, orderCount: Int, cacheIndex: Int, grantBytes: Int,
         epoch: Int, storage: Unmanaged<MetadataBuffer>, objectHeapStorage: UnsafeMutableRawPointer) {
        self.token = token
        inUse = Atomic(0)
        drainRequested = Atomic(0)
        objectHeap = nil
        allocations = Atomic(0)
        runsTaken = Atomic(0)
        runsKept = Atomic(0)
        lastSlowPath = Atomic(epoch)
        forkGeneration = ThreadCalls.forkGeneration
        lock = Mutex(())
        self.magazines = magazines
        self.orderCount = orderCount
        self.cacheIndex = cacheIndex
        self.grantBytes = Atomic(grantBytes)
        self.storage = storage
        self.objectHeapStorage = objectHeapStorage
    }

    /// The calling thread's cache at `cacheIndex` of its TLS root, if it belongs to the pool
    /// holding `token` (a slot with another token is left by a pool that is gone, or unused).
    @inlinable @inline(__always)
    package static func current(cacheIndex: Int, token: UInt64) -> UnsafeMutablePointer<ThreadCache>? {
        // Invariant: every slot of every root points at a header (an unused one at the empty header).
        let raw = FastPathAccessors.threadCacheRoot.load(
            fromByteOffset: cacheIndex &* MemoryLayout<UnsafeMutableRawPointer>.stride, as: UnsafeMutableRawPointer.self)
        let cache = raw.assumingMemoryBound(to: ThreadCache.self)
        return cache.pointee.token == token ? cache : nil
    }

    /// The C fast path's view of a cache (its first fields, `buddy_thread_cache`).
    @inlinable @inline(__always)
    package static func view(_ cache: UnsafeMutablePointer<ThreadCache>) -> UnsafeMutablePointer<buddy_thread_cache> {
        UnsafeMutableRawPointer(cache).assumingMemoryBound(to: buddy_thread_cache.self)
    }

    /// Where the magazines start, relative to the cache: right after the header, so the fast
    /// path computes their address instead of loading it.
    @inlinable
    package static var magazinesOffset: Int { (MemoryLayout<ThreadCache>.stride + 63) & ~63 }

    /// Bytes the magazines hold now.
    package var cachedBytes: Int {
        (0..<orderCount).reduce(0) { $0 + magazines[$1].held * magazines[$1].blockBytes }
    }

    /// Blocks the magazines hold now.
    package var cachedBlocks: Int { (0..<orderCount).reduce(0) { $0 + magazines[$1].held } }

    /// Allocates and initializes a cache (header, magazines, entries) in one mapping.
    static func make(
        token: UInt64, sizes: MagazineSizes, geometry: BuddyGeometry, cacheIndex: Int, grantBytes: Int, epoch: Int,
        locked: Bool, nodes: NodeSet
    ) -> UnsafeMutablePointer<ThreadCache>? {
        let orderCount = sizes.capacities.count
        let bytes = magazinesOffset + orderCount * MemoryLayout<Magazine>.stride
            + sizes.entryCount * MemoryLayout<CachedBlock>.stride + objectHeapReserve + 320
        guard let buffer = try? MetadataBuffer(byteCount: bytes, nodes: nodes, locked: locked, label: "thread cache") else {
            return nil
        }
        var offset = 0
        let header = buffer.slice(offset: &offset, byteCount: MemoryLayout<ThreadCache>.stride)
            .bindMemory(to: ThreadCache.self, capacity: 1)
        let magazines = buffer.slice(offset: &offset, byteCount: orderCount * MemoryLayout<Magazine>.stride)
            .bindMemory(to: Magazine.self, capacity: orderCount)
        // Invariant: the fast path finds the magazines at magazinesOffset from the header.
        assert(UnsafeMutableRawPointer(magazines) - UnsafeMutableRawPointer(header) == magazinesOffset)
        for order in 0..<orderCount {
            let entries = buffer.slice(offset: &offset, byteCount: max(1, sizes.capacities[order]) * MemoryLayout<CachedBlock>.stride)
                .bindMemory(to: CachedBlock.self, capacity: max(1, sizes.capacities[order]))
            (magazines + order).initialize(to: Magazine(
                capacity: sizes.capacities[order], blockBytes: geometry.blockSize(order: order), entries: entries))
        }
        let objectHeapStorage = buffer.slice(offset: &offset, byteCount: objectHeapReserve)
        header.initialize(to: ThreadCache(
            token: token, magazines: magazines, orderCount: orderCount, cacheIndex: cacheIndex, grantBytes: grantBytes,
            epoch: epoch, storage: Unmanaged.passRetained(buffer), objectHeapStorage: objectHeapStorage))
        return header
    }

    /// Frees a cache made by `make`; its magazines must be empty or their blocks abandoned.
    static func destroy(_ cache: UnsafeMutablePointer<ThreadCache>) {
        let storage = cache.pointee.storage
        cache.pointee.magazines.deinitialize(count: cache.pointee.orderCount)
        cache.deinitialize(count: 1)
        storage.release()
    }
}

/// The per-thread table of caches, indexed by a pool's cache index, reached through one
/// initial-exec TLS pointer.
enum ThreadCacheRoot {
    typealias Slot = UnsafeMutableRawPointer

    /// The calling thread's own root, made on first use (a slow path: it allocates).
    static func currentOrCreate() -> UnsafeMutablePointer<Slot> {
        let current = FastPathAccessors.threadCacheRoot
        if current != FastPathAccessors.emptyThreadCacheRoot { return current.assumingMemoryBound(to: Slot.self) }
        let count = FastPathAccessors.cacheIndexCount
        let root = UnsafeMutablePointer<Slot>.allocate(capacity: count)
        root.initialize(repeating: FastPathAccessors.noThreadCache, count: count)
        FastPathAccessors.setThreadCacheRoot(UnsafeMutableRawPointer(root))
        // The destructor runs at thread exit with the value set here.
        pthread_setspecific(exitKey.key, UnsafeRawPointer(root))
        return root
    }

    /// Owns the pthread key whose destructor hands a thread's caches back to their pools.
    private final class ExitKey: Sendable {
        let key: pthread_key_t

        init() {
            var key = pthread_key_t()
            pthread_key_create(&key) { value in
                guard let value else { return }
                ThreadCacheRoot.threadExited(root: value.assumingMemoryBound(to: Slot.self))
            }
            self.key = key
        }
    }

    private static let exitKey = ExitKey()

    /// Returns every cached block to its pool (if the pool still exists) and frees the caches.
    static func threadExited(root: UnsafeMutablePointer<Slot>) {
        // Under a malloc interposer this runs outside any malloc call, holding pool locks while
        // it allocates: those allocations must go around the pools.
        FastPathAccessors.guardAllocator(entering: true)
        defer { FastPathAccessors.guardAllocator(entering: false) }
        let none = FastPathAccessors.noThreadCache
        for index in 0..<FastPathAccessors.cacheIndexCount where root[index] != none {
            let cache = root[index].assumingMemoryBound(to: ThreadCache.self)
            root[index] = none
            if let (caches, backend) = CacheIndexRegistry.holder(index: index, token: cache.pointee.token) {
                caches.retire(cache, backend: backend)
            } else {
                ThreadCache.destroy(cache)
            }
        }
        if FastPathAccessors.threadCacheRoot == UnsafeMutableRawPointer(root) {
            FastPathAccessors.setThreadCacheRoot(FastPathAccessors.emptyThreadCacheRoot)
        }
        root.deallocate()
    }
}
