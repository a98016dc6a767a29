import BuddyCore
import BuddySystem
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One thread's magazines for one pool. Lives in its own mapped page(s); the owning thread
/// reaches it through its TLS root without any atomic read-modify-write.
///
/// Exclusion without atomics on the fast path (an asymmetric Dekker protocol): the owner
/// marks `inUse`, then reads `drainRequested`, with only compiler barriers in between. A
/// drainer (another thread emptying these magazines under memory pressure) holds `lock`,
/// sets `drainRequested`, runs membarrier(2), which orders the owner's accesses as a full
/// fence would, and waits for `inUse` to clear. From then on the owner sees the request and
/// takes `lock` for its own operations until the drainer is done.
@usableFromInline
package struct ThreadCache: ~Copyable {
    /// The pool's token; a slot holding another token belongs to a pool that is gone.
    @usableFromInline package let token: UInt64
    @usableFromInline package let inUse: Atomic<UInt8>
    @usableFromInline package let drainRequested: Atomic<UInt8>
    /// Held by drainers, and by the owner on its slow path.
    let lock: Mutex<Void>
    let magazines: UnsafeMutablePointer<Magazine>
    let orderCount: Int
    let cacheIndex: Int
    /// The mapping holding this structure, released when the cache is freed.
    let storage: Unmanaged<MetadataBuffer>
    /// Owner-side tallies not yet added to the pool's counters (folded on each slow path).
    @usableFromInline package var pendingCachedBytes = 0
    @usableFromInline package var pendingAllocations = 0
    @usableFromInline package var pendingFrees = 0

    init(token: UInt64, magazines: UnsafeMutablePointer<Magazine>, orderCount: Int, cacheIndex: Int, storage: Unmanaged<MetadataBuffer>) {
        self.token = token
        inUse = Atomic(0)
        drainRequested = Atomic(0)
        lock = Mutex(())
        self.magazines = magazines
        self.orderCount = orderCount
        self.cacheIndex = cacheIndex
        self.storage = storage
    }

    /// Where the magazines start, relative to the cache: right after the header, so the fast
    /// path computes their address instead of loading it.
    /// The calling thread's cache at `cacheIndex` of its TLS root, if it belongs to the pool
    /// holding `token` (a slot with another token is left by a pool that is gone).
    @inlinable @inline(__always)
    package static func current(cacheIndex: Int, token: UInt64) -> UnsafeMutablePointer<ThreadCache>? {
        guard let root = FastPathAccessors.threadCacheRoot,
              let raw = root.load(fromByteOffset: cacheIndex &* MemoryLayout<UnsafeMutableRawPointer?>.stride, as: UnsafeMutableRawPointer?.self)
        else { return nil }
        let cache = raw.assumingMemoryBound(to: ThreadCache.self)
        return cache.pointee.token == token ? cache : nil
    }

    @inlinable
    package static var magazinesOffset: Int { (MemoryLayout<ThreadCache>.stride + 63) & ~63 }

    /// Allocates and initializes a cache (header, magazines, entries) in one mapping.
    static func make(
        token: UInt64, sizes: MagazineSizes, geometry: BuddyGeometry, cacheIndex: Int, locked: Bool, nodes: NodeSet
    ) -> UnsafeMutablePointer<ThreadCache>? {
        let orderCount = sizes.capacities.count
        let bytes = MemoryLayout<ThreadCache>.stride + orderCount * MemoryLayout<Magazine>.stride
            + sizes.entryCount * MemoryLayout<CachedBlock>.stride + 256
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
            let entries = buffer.slice(offset: &offset, byteCount: sizes.capacities[order] * MemoryLayout<CachedBlock>.stride)
                .bindMemory(to: CachedBlock.self, capacity: sizes.capacities[order])
            (magazines + order).initialize(to: Magazine(
                count: 0, capacity: sizes.capacities[order], batch: sizes.batches[order],
                blockBytes: geometry.blockSize(order: order), entries: entries))
        }
        header.initialize(to: ThreadCache(
            token: token, magazines: magazines, orderCount: orderCount, cacheIndex: cacheIndex,
            storage: Unmanaged.passRetained(buffer)))
        return header
    }

    /// Frees a cache made by `make`; its magazines must be empty or their blocks abandoned.
    static func destroy(_ cache: UnsafeMutablePointer<ThreadCache>) {
        let storage = cache.pointee.storage
        cache.deinitialize(count: 1)
        storage.release()
    }
}

/// The per-thread table of caches, indexed by a pool's cache index, reached through one
/// initial-exec TLS pointer.
enum ThreadCacheRoot {
    typealias Slot = UnsafeMutableRawPointer?

    /// The calling thread's root, created on first use (a slow path: it allocates).
    static func currentOrCreate() -> UnsafeMutablePointer<Slot> {
        if let root = FastPathAccessors.threadCacheRoot { return root.assumingMemoryBound(to: Slot.self) }
        let root = UnsafeMutablePointer<Slot>.allocate(capacity: CacheIndexRegistry.indexCount)
        root.initialize(repeating: nil, count: CacheIndexRegistry.indexCount)
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
        for index in 0..<CacheIndexRegistry.indexCount {
            guard let raw = root[index] else { continue }
            let cache = raw.assumingMemoryBound(to: ThreadCache.self)
            root[index] = nil
            if let (caches, backend) = CacheIndexRegistry.holder(index: index, token: cache.pointee.token) {
                caches.retire(cache, backend: backend)
            } else {
                ThreadCache.destroy(cache)
            }
        }
        if FastPathAccessors.threadCacheRoot == UnsafeMutableRawPointer(root) { FastPathAccessors.setThreadCacheRoot(nil) }
        root.deallocate()
    }
}
