import BuddyCaches
import BuddyConfig
import BuddyCore
import BuddySystem
import Synchronization

// PoolSet: the process's named pools, built at once from BUDDYPOOLS or from configurations;
// lending groups, the plan `buddypools check` prints, the local pool of the calling thread.

/// What `check` reports for one pool: its settings and the page size it would get.
public struct PoolPlan: Sendable {
    public let configuration: PoolConfiguration
    /// Per region (one, or one per node for `bind` over several nodes): the page size after fallback.
    public let pageSizes: [PageSize]
    public let fallbacks: [PageSizeFallback]
    /// Superblocks the pool may borrow beyond its own, from lower-priority pools.
    public let borrowHeadroomBytes: Int
}

/// Totals over a pool set.
public struct PoolSetStatistics: Sendable, Codable, Equatable {
    public var pools: [PoolStatistics]
    public var capacityBytes: Int { pools.reduce(0) { $0 + $1.capacityBytes } }
    public var freeBytes: Int { pools.reduce(0) { $0 + $1.freeBytes } }
    public var usedBytes: Int { pools.reduce(0) { $0 + $1.usedBytes } }
    public var cachedBytes: Int { pools.reduce(0) { $0 + $1.cachedBytes } }
}

/// The process's named pools, built once at startup from `BUDDYPOOLS` (or given
/// configurations). Either every pool is created or none is. Higher-priority pools borrow
/// free superblocks from lower-priority ones (see docs/configuration.md).
public final class PoolSet: Sendable, Sequence {
    public let pools: [MemoryPool]
    public let topology: NUMATopology
    private let group: LendingGroup

    /// Builds pools from an environment dictionary (`BUDDYPOOLS`, `BUDDYPOOLS_<NAME>_SIZE`).
    public convenience init(environment: [String: String]) throws(ConfigurationError) {
        let topology = try Self.currentTopology()
        let configurations = try ConfigurationResolver.resolve(environment: environment, topology: topology)
        try self.init(configurations: configurations, topology: topology)
    }

    /// Builds pools from the environment with `adjust` applied to each configuration first (the
    /// C API's malloc heap keeps its pools across fork and lets their pages fault in).
    public convenience init(environment: [String: String], adjusting adjust: (inout PoolConfiguration) -> Void) throws(ConfigurationError) {
        let topology = try Self.currentTopology()
        var configurations = try ConfigurationResolver.resolve(environment: environment, topology: topology)
        for index in configurations.indices { adjust(&configurations[index]) }
        try self.init(configurations: configurations, topology: topology)
    }

    /// Builds pools from configurations made in code.
    public init(configurations: [PoolConfiguration], topology: NUMATopology? = nil) throws(ConfigurationError) {
        let machine: NUMATopology
        if let topology { machine = topology } else { machine = try Self.currentTopology() }
        var names: Set<String> = []
        for configuration in configurations where !names.insert(configuration.name).inserted {
            throw ConfigurationError(variable: EnvironmentGrammar.variable, pool: configuration.name, token: configuration.name,
                                     offset: nil, expected: "a pool name not used before in the set (duplicate pool name)")
        }
        var created: [MemoryPool] = []
        for configuration in configurations {
            do {
                let pool = try MemoryPool(
                    configuration: configuration, topology: machine,
                    borrowHeadroom: Self.borrowHeadroom(for: configuration, among: configurations))
                created.append(pool)
            } catch {
                // Pools created so far are released (and their memory unmapped) as `created` goes away.
                throw ConfigurationError(
                    variable: EnvironmentGrammar.variable, pool: configuration.name, token: configuration.name, offset: nil,
                    expected: "a pool the machine can supply: \(error)")
            }
        }
        pools = created
        self.topology = machine
        group = LendingGroup(pools: created)
        for pool in created { pool.lending.locked { $0.group = group } }
    }

    private static let shared = Mutex<PoolSet?>(nil)

    /// The process-wide set, built from the environment on the first call and returned by
    /// every later one (the environment is read once).
    public static func fromEnvironment() throws(ConfigurationError) -> PoolSet {
        if let existing = shared.locked({ $0 }) { return existing }
        let made = try PoolSet(environment: ProcessEnvironment.current())
        return shared.locked { current in
            if let current { return current }
            current = made
            return made
        }
    }

    /// What the environment would create, with page sizes after fallback, without creating it.
    public static func plan(environment: [String: String], topology: NUMATopology? = nil) throws(ConfigurationError) -> [PoolPlan] {
        let machine: NUMATopology
        if let topology { machine = topology } else { machine = try currentTopology() }
        let configurations = try ConfigurationResolver.resolve(environment: environment, topology: machine)
        var remaining = machine
        var plans: [PoolPlan] = []
        for configuration in configurations {
            let geometry = try! configuration.geometry()  // Invariant: the resolver built the geometry already.
            let nodes = configuration.nodes.isEmpty ? machine.memoryNodes : configuration.nodes
            var sizes: [PageSize] = []
            var steps: [PageSizeFallback] = []
            for (regionNodes, bytes) in MemoryPool.regionPlan(configuration: configuration, nodes: nodes, geometry: geometry) {
                do throws(SystemError) {
                    let (size, fallbacks) = try Region.predictPageSize(
                        byteCount: bytes, nodes: regionNodes, policy: configuration.policy, pageSize: configuration.pageSize,
                        strictPageSize: configuration.strictPageSize, topology: remaining,
                        alignment: geometry.superblockSize, weights: configuration.weights)
                    sizes.append(size)
                    steps += fallbacks
                    remaining = remaining.consuming(byteCount: bytes, pageSize: size, nodes: regionNodes)
                } catch {
                    throw ConfigurationError(
                        variable: EnvironmentGrammar.variable, pool: configuration.name, token: configuration.name, offset: nil,
                        expected: "a pool the machine can supply: \(error)")
                }
            }
            plans.append(PoolPlan(
                configuration: configuration, pageSizes: sizes, fallbacks: steps,
                borrowHeadroomBytes: borrowHeadroom(for: configuration, among: configurations) << geometry.superblockShift))
        }
        return plans
    }

    /// Superblocks a pool may borrow: what lower-priority pools of the same geometry own, capped by its `max`.
    static func borrowHeadroom(for configuration: PoolConfiguration, among all: [PoolConfiguration]) -> Int {
        guard let geometry = try? configuration.geometry() else { return 0 }
        let lendable = all.filter {
            $0.priority < configuration.priority && $0.lendsSuperblocks && (try? $0.geometry()) == geometry
                && $0.pageSize == configuration.pageSize && configuration.locked == $0.locked
        }.reduce(0) { $0 + ($1.capacity >> geometry.superblockShift) }
        guard let maximum = configuration.maximumBytes else { return lendable }
        return Swift.min(lendable, (maximum - configuration.capacity) >> geometry.superblockShift)
    }

    private static func currentTopology() throws(ConfigurationError) -> NUMATopology {
        do {
            return try NUMATopology.current()
        } catch {
            throw ConfigurationError(variable: EnvironmentGrammar.variable, pool: nil, token: "", offset: nil,
                                     expected: "a readable NUMA topology: \(error)")
        }
    }

    public subscript(name: String) -> MemoryPool? { pools.first { $0.name == name } }

    public func makeIterator() -> IndexingIterator<[MemoryPool]> { pools.makeIterator() }

    /// The first pool whose memory is on `node`.
    public func pool(forNode node: Int) -> MemoryPool? { pools.first { $0.nodes.contains(node) } }

    /// The pool on the node of the CPU the caller runs on, or the first pool.
    public var localPool: MemoryPool? {
        if let cpu = ThreadCalls.currentCPU(), let node = topology.node(ofCPU: cpu)?.id, let pool = pool(forNode: node) { return pool }
        return pools.first
    }

    public var statistics: PoolSetStatistics { PoolSetStatistics(pools: pools.map(\.statistics)) }
}
