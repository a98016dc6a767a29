import BuddyCore
import BuddySystem

/// Turns the environment into pool configurations checked against the machine: each field
/// through its key's row, then the checks that join keys (a size that is a whole number of
/// superblocks of that pool's geometry, min below size, max above it). Either every pool is
/// valid or an error names the first bad token.
package enum ConfigurationResolver {
    static let overridePrefix = "BUDDYPOOLS_"
    static let overrideSuffix = "_SIZE"

    /// Where a value came from, so a check made later can point at it.
    private struct Source {
        let variable: String
        let token: String
        let offset: Int
    }

    /// The override variable for a pool: name upper-cased, `-` becomes `_`.
    package static func overrideVariable(for pool: String) -> String {
        overridePrefix + pool.uppercased().replacingDashes() + overrideSuffix
    }

    package static func resolve(environment: [String: String], topology: NUMATopology) throws(ConfigurationError) -> [PoolConfiguration] {
        guard let text = environment[EnvironmentGrammar.variable] else {
            return try applyOverrides(defaultConfigurations(topology: topology), environment: environment)
        }
        let pools = try EnvironmentGrammar.parse(text)
        let sizeOverrides = try overrides(for: pools.map(\.name), environment: environment)
        var configurations: [PoolConfiguration] = []
        for pool in pools {
            configurations.append(try configuration(for: pool, sizeOverride: sizeOverrides[pool.name], topology: topology))
        }
        return configurations
    }

    /// Without `BUDDYPOOLS`: one pool per node with memory, named `node<N>`, bound to it,
    /// 2 MiB pages (falling back as usual), sized 1/16 of the node's available memory, at most 1 GiB.
    package static func defaultConfigurations(topology: NUMATopology) -> [PoolConfiguration] {
        let superblock = BuddyGeometry.standard.superblockSize
        return topology.memoryNodes.map { id in
            let available = topology.node(id)?.availableBytes ?? 0
            let size = max(superblock, min(1 << 30, available / 16) / superblock * superblock)
            var configuration = PoolConfiguration(name: "node\(id)", capacity: size)
            configuration.nodes = [id]
            return configuration
        }
    }

    private static func configuration(
        for pool: EnvironmentGrammar.PoolText, sizeOverride: Source?, topology: NUMATopology
    ) throws(ConfigurationError) -> PoolConfiguration {
        var configuration = PoolConfiguration(name: pool.name, capacity: 0)
        var sources: [String: Source] = [:]
        func fail(_ key: String, _ expected: String) -> ConfigurationError {
            // A key not written names the pool itself (a default that clashes with another key).
            let source = sources[key] ?? Source(variable: EnvironmentGrammar.variable, token: pool.name, offset: pool.offset)
            return ConfigurationError(variable: source.variable, pool: pool.name, token: source.token, offset: source.offset, expected: expected)
        }
        for field in pool.fields {
            // Invariant: the grammar let through only fields whose key has a row.
            guard let row = ConfigurationKey.named(field.key) else {
                assertionFailure("field \(field.token) has no key row")
                continue
            }
            sources[row.name] = Source(variable: EnvironmentGrammar.variable, token: String(field.token), offset: field.valueOffset)
            switch row.apply(field.value, &configuration, topology) {
            case .applied: break
            case .malformed: throw fail(row.name, row.expects)
            case .refused(let expected): throw fail(row.name, expected)
            }
        }
        if let sizeOverride {
            sources["size"] = sizeOverride
            guard let bytes = SizeParser.parse(Substring(sizeOverride.token)) else { throw fail("size", SizeParser.expectation) }
            configuration.capacity = bytes
        }
        if let device = configuration.nearDevice, case .success(let deviceNode) = topology.node(nearDevice: device) {
            if sources["weights"] != nil { throw fail("weights", "either near=\(device) or weights, not both") }
            if sources["nodes"] != nil, configuration.nodes != [deviceNode] {
                throw fail("nodes", "node \(deviceNode), the node of \(device) (near=), or no nodes key")
            }
            configuration.nodes = [deviceNode]
        }
        if let weights = configuration.weights {
            // weights=... makes the pool weighted; any other policy with them is a contradiction.
            if sources["policy"] != nil, configuration.policy != .weighted {
                throw fail("policy", "policy=weighted with weights (or no policy: weights imply it)")
            }
            configuration.policy = .weighted
            if sources["nodes"] != nil, configuration.nodes != weights.nodes {
                throw fail("nodes", "the nodes the weights name (\(weights.nodes)), or no nodes key: the weights place the pool")
            }
            configuration.nodes = weights.nodes
        } else if configuration.policy == .weighted {
            throw fail("policy", "weights=<node:weight,...> with policy=weighted, e.g. weights=0:3,1:1")
        }
        if sources["nodes"] == nil && configuration.weights == nil && configuration.nearDevice == nil { configuration.nodes = topology.memoryNodes }

        let geometry: BuddyGeometry
        do {
            geometry = try BuddyGeometry(minBlockSize: configuration.minBlock, maxOrder: configuration.maxOrder)
        } catch {
            throw fail(sources["max-order"] != nil ? "max-order" : "min-block", "min-block << max-order of at most 1G (\(error.message))")
        }
        let size = configuration.capacity
        guard size > 0, size % geometry.superblockSize == 0 else {
            let suggestion = max(1, size / geometry.superblockSize) * geometry.superblockSize / (1 << 20)
            throw fail("size", "a positive multiple of the \(formatBytes(geometry.superblockSize)) superblock, e.g. \(suggestion)M")
        }
        if sources["min"] != nil, configuration.minimumBytes > size {
            throw fail("min", "min at most the size \(formatBytes(size)) (min > size)")
        }
        if sources["max"] != nil, let maximum = configuration.maximumBytes {
            guard maximum >= size else { throw fail("max", "max at least the size \(formatBytes(size)) (size > max)") }
            guard maximum % geometry.superblockSize == 0 else { throw fail("max", "a multiple of the \(formatBytes(geometry.superblockSize)) superblock") }
        }
        if let order = configuration.cache.maxOrder, order > geometry.maxOrder {
            throw fail("cache-order", "a cache order from 0 to max-order \(geometry.maxOrder)")
        }
        return configuration
    }

    /// `BUDDYPOOLS_<NAME>_SIZE` variables in the environment, sorted so errors are repeatable.
    private static func overrideVariables(in environment: [String: String]) -> [(variable: String, value: String)] {
        environment.filter { $0.key.hasPrefix(overridePrefix) && $0.key.hasSuffix(overrideSuffix) && $0.key.count > overridePrefix.count + overrideSuffix.count }
            .map { ($0.key, $0.value) }
            .sorted { $0.variable < $1.variable }
    }

    private static func poolPart(of variable: String) -> String {
        String(variable.dropFirst(overridePrefix.count).dropLast(overrideSuffix.count))
    }

    /// Size overrides by pool name; a variable naming no pool, or two, is an error.
    private static func overrides(for names: [String], environment: [String: String]) throws(ConfigurationError) -> [String: Source] {
        var result: [String: Source] = [:]
        for (variable, value) in overrideVariables(in: environment) {
            let matches = names.filter { overrideVariable(for: $0) == variable }
            guard let name = matches.first else {
                throw ConfigurationError(
                    variable: variable, pool: nil, token: poolPart(of: variable), offset: nil,
                    expected: "the name of a pool in BUDDYPOOLS (pools: \(names.joined(separator: ", ")))")
            }
            guard matches.count == 1 else {
                throw ConfigurationError(
                    variable: variable, pool: nil, token: poolPart(of: variable), offset: nil,
                    expected: "one pool, but it names \(matches.joined(separator: " and ")); rename one")
            }
            result[name] = Source(variable: variable, token: value, offset: 0)
        }
        return result
    }

    private static func applyOverrides(_ configurations: [PoolConfiguration], environment: [String: String]) throws(ConfigurationError) -> [PoolConfiguration] {
        var result = configurations
        for (variable, value) in overrideVariables(in: environment) {
            guard let index = result.firstIndex(where: { overrideVariable(for: $0.name) == variable }) else {
                throw ConfigurationError(
                    variable: variable, pool: nil, token: poolPart(of: variable), offset: nil,
                    expected: "the name of a default pool (\(result.map(\.name).joined(separator: ", "))) since BUDDYPOOLS is not set")
            }
            guard let bytes = SizeParser.parse(Substring(value)), bytes > 0, bytes % BuddyGeometry.standard.superblockSize == 0 else {
                throw ConfigurationError(variable: variable, pool: result[index].name, token: value, offset: 0,
                                         expected: "a positive multiple of the 2 MiB superblock, e.g. 512M")
            }
            result[index].capacity = bytes
        }
        return result
    }
}

extension String {
    func replacingDashes() -> String { String(map { $0 == "-" ? "_" : $0 }) }
}
