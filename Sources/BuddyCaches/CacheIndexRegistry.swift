import BuddyCore
import BuddySystem
import Synchronization

/// The process-wide table of cache indices: each pool with caches holds one index of every
/// thread's cache root, and a token that tells its caches from those of an earlier holder.
/// A thread that exits asks it which caches still have a live pool behind them.
package enum CacheIndexRegistry {
    /// Pools that can have thread caches at once; more pools still work, through the lock.
    package static let indexCount = 256

    private final class Holder: @unchecked Sendable {
        // @unchecked: only read and written under the registry mutex.
        /// Weak, so a thread exiting after its pool is gone finds nothing. One weak reference
        /// only: an object with a weak reference counts retains through a side table (about 50
        /// instructions each), and the caches are retained on every slow path.
        weak var backend: (any CacheBackend)?
        /// Owned by the backend, so alive whenever the backend is.
        unowned(unsafe) let caches: PoolCaches
        init(caches: PoolCaches, backend: any CacheBackend) {
            self.caches = caches
            self.backend = backend
        }
    }

    private struct State: ~Copyable {
        var holders = [Holder?](repeating: nil, count: CacheIndexRegistry.indexCount)
        /// 0: the index is free (no pool holds it and no reservation is pending).
        var tokens = [UInt64](repeating: 0, count: CacheIndexRegistry.indexCount)
    }

    private static let state = Mutex(State())

    /// Reserves an index for a pool under construction, or nil when all are taken.
    package static func reserve(token: UInt64) -> Int? {
        state.locked { state in
            guard let index = state.tokens.firstIndex(of: 0) else { return nil }
            state.holders[index] = nil
            state.tokens[index] = token
            return index
        }
    }

    /// Publishes the finished pool's caches and backend under their reserved index.
    package static func bind(_ index: Int, caches: PoolCaches, backend: any CacheBackend) {
        state.locked { $0.holders[index] = Holder(caches: caches, backend: backend) }
    }

    /// Frees an index when its pool goes away (or its creation failed).
    package static func release(_ index: Int) {
        state.locked { state in
            state.holders[index] = nil
            state.tokens[index] = 0
        }
    }

    /// The live caches and backend holding `index` with `token` (a thread exit asks).
    static func holder(index: Int, token: UInt64) -> (PoolCaches, any CacheBackend)? {
        state.locked { state -> (PoolCaches, any CacheBackend)? in
            guard state.tokens[index] == token, let holder = state.holders[index], let backend = holder.backend else { return nil }
            // Invariant: the backend owns the caches, and it is alive (retained just above).
            return (holder.caches, backend)
        }
    }
}
