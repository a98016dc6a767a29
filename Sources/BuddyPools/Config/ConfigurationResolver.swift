/// Turns the environment into pool configurations checked against the machine: sizes,
/// node and CPU lists, limits. Either every pool is valid or an error names the first bad token.
enum ConfigurationResolver {
    static let overridePrefix = "BUDDYPOOLS_"
    static let overrideSuffix = "_SIZE"

    /// The override variable for a pool: name upper-cased, `-` becomes `_`.
    static func overrideVariable(for pool: String) -> String {
        overridePrefix + pool.uppercased().replacingDashes() + overrideSuffix
    }

    static func resolve(environment: [String: String], topology: NUMATopology) throws(ConfigurationError) -> [PoolConfiguration] {
        guard let text = environment[EnvironmentGrammar.variable] else {
            return try applyOverrides(defaultConfigurations(topology: topology), specifications: nil, environment: environment)
        }
        var specifications = try EnvironmentGrammar.parse(text)
        try applyOverrides(to: &specifications, environment: environment)
        var configurations: [PoolConfiguration] = []
        for specification in specifications {
            configurations.append(try configuration(for: specification, topology: topology))
        }
        return configurations
    }

    /// Without `BUDDYPOOLS`: one pool per node with memory, named `node<N>`, bound to it,
    /// 2 MiB pages (falling back as usual), sized 1/16 of the node's available memory, at most 1 GiB.
    static func defaultConfigurations(topology: NUMATopology) -> [PoolConfiguration] {
        let superblock = BuddyGeometry.standard.superblockSize
        return topology.memoryNodes.map { id in
            let available = topology.node(id)?.availableBytes ?? 0
            let size = max(superblock, min(1 << 30, available / 16) / superblock * superblock)
            var configuration = PoolConfiguration(name: "node\(id)", capacity: size)
            configuration.nodes = [id]
            return configuration
        }
    }

    private static func overrides(in environment: [String: String]) -> [(variable: String, value: String)] {
        environment.filter { $0.key.hasPrefix(overridePrefix) && $0.key.hasSuffix(overrideSuffix) && $0.key.count > overridePrefix.count + overrideSuffix.count }
            .map { ($0.key, $0.value) }
            .sorted { $0.variable < $1.variable }
    }

    private static func applyOverrides(to specifications: inout [PoolSpecification], environment: [String: String]) throws(ConfigurationError) {
        for (variable, value) in overrides(in: environment) {
            let matches = specifications.indices.filter { overrideVariable(for: specifications[$0].name) == variable }
            let poolPart = String(variable.dropFirst(overridePrefix.count).dropLast(overrideSuffix.count))
            guard let index = matches.first else {
                throw ConfigurationError(
                    variable: variable, pool: nil, token: poolPart, offset: nil,
                    expected: "the name of a pool in BUDDYPOOLS (pools: \(specifications.map(\.name).joined(separator: ", ")))")
            }
            guard matches.count == 1 else {
                throw ConfigurationError(
                    variable: variable, pool: nil, token: poolPart, offset: nil,
                    expected: "one pool, but it names \(matches.map { specifications[$0].name }.joined(separator: " and ")); rename one")
            }
            guard let bytes = SizeParser.parse(Substring(value)) else {
                throw ConfigurationError(variable: variable, pool: specifications[index].name, token: value, offset: 0, expected: SizeParser.expectation)
            }
            specifications[index].size = .init(value: bytes, token: value, offset: 0, variable: variable)
        }
    }

    private static func applyOverrides(
        _ configurations: [PoolConfiguration], specifications: [PoolSpecification]?, environment: [String: String]
    ) throws(ConfigurationError) -> [PoolConfiguration] {
        var result = configurations
        for (variable, value) in overrides(in: environment) {
            guard let index = result.firstIndex(where: { overrideVariable(for: $0.name) == variable }) else {
                throw ConfigurationError(
                    variable: variable, pool: nil, token: String(variable.dropFirst(overridePrefix.count).dropLast(overrideSuffix.count)), offset: nil,
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

    private static func configuration(for specification: PoolSpecification, topology: NUMATopology) throws(ConfigurationError) -> PoolConfiguration {
        let name = specification.name
        func fail<V>(_ field: PoolSpecification.Located<V>, _ expected: String) -> ConfigurationError {
            ConfigurationError(variable: field.variable, pool: name, token: field.token, offset: field.offset, expected: expected)
        }
        // Invariant: parse() refuses a pool without size.
        let size = specification.size!
        var configuration = PoolConfiguration(name: name, capacity: size.value)
        if let minBlock = specification.minBlock { configuration.minBlock = minBlock.value }
        if let maxOrder = specification.maxOrder { configuration.maxOrder = maxOrder.value }
        let geometry: BuddyGeometry
        do {
            geometry = try BuddyGeometry(minBlockSize: configuration.minBlock, maxOrder: configuration.maxOrder)
        } catch {
            if let minBlock = specification.minBlock, !BuddyGeometry.minBlockSizeRange.contains(minBlock.value) || minBlock.value & (minBlock.value - 1) != 0 {
                throw fail(minBlock, "a power of two from 64 to 1M, e.g. 4K")
            }
            throw fail(specification.maxOrder ?? specification.minBlock!, "min-block << max-order of at most 1G (\(error.message))")
        }
        guard size.value > 0, size.value % geometry.superblockSize == 0 else {
            throw fail(size, "a positive multiple of the \(formatBytes(geometry.superblockSize)) superblock, e.g. \(max(1, size.value / geometry.superblockSize) * geometry.superblockSize / (1 << 20))M")
        }
        if let minimum = specification.minimum {
            guard minimum.value <= size.value else { throw fail(minimum, "min at most the size \(formatBytes(size.value)) (min > size)") }
            configuration.minimumBytes = minimum.value
        }
        if let maximum = specification.maximum {
            guard maximum.value >= size.value else { throw fail(maximum, "max at least the size \(formatBytes(size.value)) (size > max)") }
            guard maximum.value % geometry.superblockSize == 0 else { throw fail(maximum, "a multiple of the \(formatBytes(geometry.superblockSize)) superblock") }
            configuration.maximumBytes = maximum.value
        }
        if let nodes = specification.nodes {
            switch nodes.value {
            case .all:
                guard !topology.memoryNodes.isEmpty else { throw fail(nodes, "a machine with a node that has memory in this cpuset") }
                configuration.nodes = topology.memoryNodes
            case .list(let list):
                for id in list {
                    guard let node = topology.node(id) else {
                        throw fail(nodes, "nodes that exist (this machine has nodes \(topology.nodeIDs)); node \(id) does not")
                    }
                    guard !node.isMemoryless else {
                        throw fail(nodes, "nodes with memory; node \(id) is memory-less (CPUs \(node.cpus) only), nodes with memory: \(topology.memoryNodes)")
                    }
                    guard topology.allowedNodes.contains(id) else {
                        throw fail(nodes, "nodes this process's cpuset allows (\(topology.allowedNodes)); node \(id) is not allowed")
                    }
                }
                configuration.nodes = list
            }
        } else {
            configuration.nodes = topology.memoryNodes
        }
        if let policy = specification.policy { configuration.policy = policy.value }
        if let page = specification.page {
            configuration.pageSize = page.value.0
            configuration.strictPageSize = page.value.strict
        }
        if let priority = specification.priority { configuration.priority = priority.value }
        if let cpus = specification.cpus {
            let existing = topology.nodes.reduce(CPUSet()) { $0.union($1.cpus) }
            let missing = cpus.value.subtracting(existing)
            guard missing.isEmpty else { throw fail(cpus, "CPUs that exist (this machine has CPUs \(existing)); CPU \(missing) does not") }
            let forbidden = cpus.value.subtracting(topology.allowedCPUs)
            guard forbidden.isEmpty else { throw fail(cpus, "CPUs this process may run on (\(topology.allowedCPUs)); CPU \(forbidden) is not allowed") }
            configuration.cpus = cpus.value
        }
        if let locked = specification.locked { configuration.locked = locked.value }
        if let cache = specification.cache {
            if let sharding = cache.value { configuration.cache.sharding = sharding } else { configuration.cache.enabled = false }
        }
        if let cacheOrder = specification.cacheOrder {
            guard cacheOrder.value <= geometry.maxOrder else { throw fail(cacheOrder, "a cache order from 0 to max-order \(geometry.maxOrder)") }
            configuration.cache.maxOrder = cacheOrder.value
        }
        if let grouping = specification.grouping { configuration.mobilityGrouping = grouping.value }
        if let compaction = specification.compaction { configuration.compaction = compaction.value }
        if let accounting = specification.accounting { configuration.allocationAccounting = accounting.value }
        return configuration
    }
}

extension String {
    func replacingDashes() -> String { String(map { $0 == "-" ? "_" : $0 }) }
}
