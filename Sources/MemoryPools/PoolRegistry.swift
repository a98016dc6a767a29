import BuddyCaches
import BuddyConfig
import BuddyCore
import BuddySystem
import Synchronization

/// The process-wide list of pools: unique ids and names, and which pool's regions hold which
/// address range (so a bad free can name the pool a pointer really belongs to). Thread-cache
/// indices are the caches' own (`CacheIndexRegistry`).
enum PoolRegistry {
    private struct State: ~Copyable {
        var nextID: UInt32 = 1
        var names: [UInt32: String] = [:]
        var ranges: [(range: Range<UInt>, pool: UInt32)] = []
    }

    private static let state = Mutex(State())

    /// Bumped in a fork child: pools made before the fork are unusable there.
    static var forkGeneration: Int { ThreadCalls.forkGeneration }

    /// A new pool id (never reused) and its name; installs the fork handler on first use.
    static func register(name: String) throws(SystemError) -> UInt32 {
        try ThreadCalls.installForkHandler().get()
        return state.locked { state in
            let id = state.nextID
            state.nextID += 1
            state.names[id] = name
            return id
        }
    }

    static func addRange(_ range: Range<UInt>, pool: UInt32) {
        state.locked { $0.ranges.append((range, pool)) }
    }

    static func unregister(id: UInt32) {
        state.locked { state in state.ranges.removeAll { $0.pool == id } }
    }

    static func name(of id: UInt32) -> String? { state.locked { $0.names[id] } }

    /// Which pool's region holds the address (names the home pool of the region).
    static func regionOwner(of address: UInt) -> String? {
        state.locked { state in
            state.ranges.first { $0.range.contains(address) }.flatMap { state.names[$0.pool] }
        }
    }

    /// Address ranges registered now (tests check that a failed creation leaves none behind).
    package static var rangeCount: Int { state.locked { $0.ranges.count } }
}
