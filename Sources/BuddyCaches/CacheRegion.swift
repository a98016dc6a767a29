import BuddyCore
import BuddySystem
import Synchronization

/// A pool region as the caches see it: where it is, and its state bytes and owner words, so a
/// free on the fast path checks a block without a lookup or a lock.
package struct CacheRegion {
    package let base: UInt
    package let byteCount: UInt
    package let states: UnsafeMutablePointer<Atomic<UInt8>>
    package let owners: UnsafeMutablePointer<Atomic<UInt32>>

    package init(base: UInt, byteCount: UInt, states: UnsafeMutablePointer<Atomic<UInt8>>, owners: UnsafeMutablePointer<Atomic<UInt32>>) {
        self.base = base
        self.byteCount = byteCount
        self.states = states
        self.owners = owners
    }
}

/// Where cached blocks come from and go back to: the pool behind the caches.
package protocol CacheBackend: AnyObject, Sendable {
    /// Allocates up to `count` blocks of `order` as cached blocks into `into`; returns how many.
    func refillCache(order: Int, into: UnsafeMutablePointer<CachedBlock>, count: Int) -> Int
    /// Frees `count` cached blocks of `order` back to the buddy allocator.
    func releaseCached(order: Int, from: UnsafeMutablePointer<CachedBlock>, count: Int)
    /// Empties a thread's object heap (`ThreadCache.objectHeap`): its empty slabs go back to the
    /// buddy allocator; with `retiring` (the thread exits) the rest are handed to the pool and the
    /// heap is freed. Caller holds the cache exclusively. Returns the bytes freed. Allocates
    /// nothing unless retiring (draining runs on the exhaustion path).
    func drainObjectHeap(_ heap: UnsafeMutableRawPointer, retiring: Bool) -> Int
}
