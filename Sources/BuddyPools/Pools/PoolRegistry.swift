import CNuma
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The process-wide list of pools: unique ids, thread-cache indices, and which pool owns
/// which address range (so a bad free can name the pool a pointer really belongs to).
enum PoolRegistry {
    /// Pools that can have thread caches at once; more pools still work, through the lock.
    static let cacheIndexCount = 256

    private final class WeakPool: @unchecked Sendable {
        // @unchecked: only read and written under the registry mutex.
        weak var pool: MemoryPool?
        init(_ pool: MemoryPool) { self.pool = pool }
    }

    private struct State: ~Copyable {
        var nextID: UInt32 = 1
        var cacheSlots = [WeakPool?](repeating: nil, count: PoolRegistry.cacheIndexCount)
        var cacheTokens = [UInt64](repeating: 0, count: PoolRegistry.cacheIndexCount)
        var names: [UInt32: String] = [:]
        var ranges: [(range: Range<UInt>, pool: UInt32)] = []
    }

    private static let state = Mutex(State())

    /// Bumped in a fork child: pools made before the fork are unusable there.
    static var forkGeneration: Int { Int(cnuma_fork_generation()) }

    /// A new pool id (never reused) and its name.
    static func register(name: String) -> UInt32 {
        cnuma_install_fork_handler()
        return state.locked { state in
            let id = state.nextID
            state.nextID += 1
            state.names[id] = name
            return id
        }
    }

    /// Reserves a thread-cache index for a pool under construction, or nil when all are taken.
    /// A slot is free when its token is 0: no pool holds it and no reservation is pending.
    static func reserveCacheIndex(token: UInt64) -> Int? {
        state.locked { state in
            guard let index = state.cacheTokens.firstIndex(of: 0) else { return nil }
            state.cacheSlots[index] = nil
            state.cacheTokens[index] = token
            return index
        }
    }

    /// Publishes the finished pool under its reserved index.
    static func bindCacheIndex(_ index: Int, to pool: MemoryPool) {
        state.locked { $0.cacheSlots[index] = WeakPool(pool) }
    }

    /// The live pool holding a cache index with this token (used when a thread exits).
    static func pool(cacheIndex: Int, token: UInt64) -> MemoryPool? {
        state.locked { state in
            guard state.cacheTokens[cacheIndex] == token else { return nil }
            return state.cacheSlots[cacheIndex]?.pool
        }
    }

    static func addRange(_ range: Range<UInt>, pool: UInt32) {
        state.locked { $0.ranges.append((range, pool)) }
    }

    static func unregister(id: UInt32, cacheIndex: Int?) {
        state.locked { state in
            state.ranges.removeAll { $0.pool == id }
            if let cacheIndex {
                state.cacheSlots[cacheIndex] = nil
                state.cacheTokens[cacheIndex] = 0
            }
        }
    }

    static func name(of id: UInt32) -> String? { state.locked { $0.names[id] } }

    /// Which pool's region holds the address (names the home pool of the region).
    static func regionOwner(of address: UInt) -> String? {
        state.locked { state in
            state.ranges.first { $0.range.contains(address) }.flatMap { state.names[$0.pool] }
        }
    }
}
