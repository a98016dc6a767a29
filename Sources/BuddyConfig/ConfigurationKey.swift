import BuddyCaches
import BuddyCore
import BuddySystem

/// One key of `BUDDYPOOLS`, whole: its name, what it accepts (the help text, and the
/// "expected" of its errors), and how its value parses and where it goes in the pool's
/// configuration, checked against the machine. Adding a key is adding a row to `all`.
struct ConfigurationKey: Sendable {
    /// What applying a value did.
    enum Outcome {
        case applied
        /// The value is not of the key's form: the error says what `expects` says.
        case malformed
        /// The value parses but cannot be used on this machine; the text says what would be.
        case refused(String)
    }

    let name: String
    let expects: String
    /// Lists (`nodes=0,2`) go on across commas: a bare number after the key's field continues it.
    let continuesAcrossCommas: Bool
    let apply: @Sendable (Substring, inout PoolConfiguration, NUMATopology) -> Outcome

    init(
        _ name: String, expects: String, continuesAcrossCommas: Bool = false,
        apply: @escaping @Sendable (Substring, inout PoolConfiguration, NUMATopology) -> Outcome
    ) {
        self.name = name
        self.expects = expects
        self.continuesAcrossCommas = continuesAcrossCommas
        self.apply = apply
    }

    /// Why a node list cannot hold a pool on this machine, or nil.
    static func refusal(of list: NodeSet, topology: NUMATopology) -> Outcome? {
        for id in list {
            guard let node = topology.node(id) else {
                return .refused("nodes that exist (this machine has nodes \(topology.nodeIDs)); node \(id) does not")
            }
            guard !node.isMemoryless else {
                return .refused("nodes with memory; node \(id) is memory-less (CPUs \(node.cpus) only), nodes with memory: \(topology.memoryNodes)")
            }
            guard topology.allowedNodes.contains(id) else {
                return .refused("nodes this process's cpuset allows (\(topology.allowedNodes)); node \(id) is not allowed")
            }
        }
        return nil
    }

    static func named(_ name: some StringProtocol) -> ConfigurationKey? { all.first { $0.name == name } }

    static var names: String { all.map(\.name).joined(separator: ", ") }

    /// Every key, in the order the documentation lists them.
    static let all: [ConfigurationKey] = [
        ConfigurationKey("size", expects: SizeParser.expectation) { value, configuration, _ in
            guard let bytes = SizeParser.parse(value) else { return .malformed }
            configuration.capacity = bytes
            return .applied
        },
        ConfigurationKey("nodes", expects: "a node list like 0-3,6 or 'all'", continuesAcrossCommas: true) { value, configuration, topology in
            if value == "all" {
                guard !topology.memoryNodes.isEmpty else { return .refused("a machine with a node that has memory in this cpuset") }
                configuration.nodes = topology.memoryNodes
                return .applied
            }
            guard let list = try? NodeSet(parsing: String(value)) else { return .malformed }
            if let refusal = refusal(of: list, topology: topology) { return refusal }
            configuration.nodes = list
            return .applied
        },
        ConfigurationKey("policy", expects: PlacementPolicy.allCases.map(\.rawValue).joinedAsChoices) { value, configuration, _ in
            guard let policy = PlacementPolicy(rawValue: String(value)) else { return .malformed }
            configuration.policy = policy
            return .applied
        },
        ConfigurationKey("near", expects: "a PCI address like 0000:3b:00.0 or a network interface like eth0 whose NUMA node sysfs gives") {
            value, configuration, topology in
            switch topology.node(nearDevice: String(value)) {
            case .failure(let error):
                return .refused("a device with a NUMA node (\(error))")
            case .success(let node):
                if let refusal = refusal(of: [node], topology: topology) { return refusal }
                // The resolver sets the nodes once every key is read (a nodes key must agree).
                configuration.nearDevice = String(value)
                return .applied
            }
        },
        ConfigurationKey("weights", expects: "node:weight pairs like 0:3,1:1 (weights 1 to \(NodeWeights.maximumWeight))",
                         continuesAcrossCommas: true) { value, configuration, topology in
            let weights: NodeWeights
            do {
                weights = try NodeWeights(parsing: String(value))
            } catch {
                return .refused("node:weight pairs like 0:3,1:1; \(error)")
            }
            if let refusal = refusal(of: weights.nodes, topology: topology) { return refusal }
            configuration.weights = weights
            return .applied
        },
        ConfigurationKey("page", expects: "\(PageSize.configurationTokens), with a trailing ! for strict (no fallback)") { value, configuration, _ in
            let strict = value.hasSuffix("!")
            guard let size = PageSize(configurationToken: String(strict ? value.dropLast() : value)) else { return .malformed }
            configuration.pageSize = size
            configuration.strictPageSize = strict
            return .applied
        },
        ConfigurationKey("priority", expects: "a whole number (higher borrows from lower)") { value, configuration, _ in
            guard let priority = integer(value, in: -1_000_000...1_000_000) else { return .malformed }
            configuration.priority = priority
            return .applied
        },
        ConfigurationKey("min", expects: SizeParser.expectation) { value, configuration, _ in
            guard let bytes = SizeParser.parse(value) else { return .malformed }
            configuration.minimumBytes = bytes
            return .applied
        },
        ConfigurationKey("max", expects: SizeParser.expectation) { value, configuration, _ in
            guard let bytes = SizeParser.parse(value) else { return .malformed }
            configuration.maximumBytes = bytes
            return .applied
        },
        ConfigurationKey("cpus", expects: "a CPU list like 0-7,16", continuesAcrossCommas: true) { value, configuration, topology in
            guard let cpus = try? CPUSet(parsing: String(value)) else { return .malformed }
            let existing = topology.nodes.reduce(CPUSet()) { $0.union($1.cpus) }
            let missing = cpus.subtracting(existing)
            guard missing.isEmpty else { return .refused("CPUs that exist (this machine has CPUs \(existing)); CPU \(missing) does not") }
            let forbidden = cpus.subtracting(topology.allowedCPUs)
            guard forbidden.isEmpty else { return .refused("CPUs this process may run on (\(topology.allowedCPUs)); CPU \(forbidden) is not allowed") }
            configuration.cpus = cpus
            return .applied
        },
        ConfigurationKey("locked", expects: "0 or 1") { value, configuration, _ in
            guard let flag = flag(value) else { return .malformed }
            configuration.locked = flag
            return .applied
        },
        ConfigurationKey("min-block", expects: "a power of two from 64 to 1M, e.g. 4K") { value, configuration, _ in
            guard let bytes = SizeParser.parse(value), BuddyGeometry.minBlockSizeRange.contains(bytes), bytes & (bytes - 1) == 0 else {
                return .malformed
            }
            configuration.minBlock = bytes
            return .applied
        },
        ConfigurationKey("max-order", expects: "a whole number from 0 to 15 (inclusive)") { value, configuration, _ in
            guard let order = integer(value, in: BuddyGeometry.maxOrderRange) else { return .malformed }
            configuration.maxOrder = order
            return .applied
        },
        ConfigurationKey("cache", expects: "cpu, node, group<N> (e.g. group4) or off") { value, configuration, _ in
            switch value {
            case "cpu": configuration.cache.sharding = .perCPU
            case "node": configuration.cache.sharding = .perNode
            case "off": configuration.cache.enabled = false
            default:
                guard value.hasPrefix("group"), let cpus = integer(value.dropFirst(5), in: 1...4096) else { return .malformed }
                configuration.cache.sharding = .perGroup(cpus: cpus)
            }
            return .applied
        },
        ConfigurationKey("cache-order", expects: "a whole number from 0 to max-order") { value, configuration, _ in
            guard let order = integer(value, in: 0...15) else { return .malformed }
            configuration.cache.maxOrder = order
            return .applied
        },
        ConfigurationKey("cache-bytes", expects: "the bytes all the pool's caches may hold, a size like 32M (default: 1/32 of the pool)") { value, configuration, _ in
            guard let bytes = SizeParser.parse(value) else { return .malformed }
            configuration.cache.totalBytes = bytes
            return .applied
        },
        ConfigurationKey("thread-cache-bytes", expects: "the bytes one thread's cache may hold, a size like 1M") { value, configuration, _ in
            guard let bytes = SizeParser.parse(value) else { return .malformed }
            configuration.cache.threadBytes = bytes
            return .applied
        },
        ConfigurationKey("zero", expects: "none, free or alloc") { value, configuration, _ in
            guard let zeroing = PoolConfiguration.Zeroing(rawValue: String(value)) else { return .malformed }
            configuration.zeroing = zeroing
            return .applied
        },
        ConfigurationKey("fit", expects: "buddy or exact") { value, configuration, _ in
            guard let fit = PoolConfiguration.Fit(rawValue: String(value)) else { return .malformed }
            configuration.fit = fit
            return .applied
        },
        ConfigurationKey("poison", expects: "0 or 1") { value, configuration, _ in
            guard let flag = flag(value) else { return .malformed }
            configuration.poison = flag
            return .applied
        },
        ConfigurationKey("lend", expects: "0 or 1 (a locked pool lends only with lend=1)") { value, configuration, _ in
            guard let flag = flag(value) else { return .malformed }
            configuration.lends = flag
            return .applied
        },
        ConfigurationKey("placement", expects: "off, check or strict") { value, configuration, _ in
            guard let check = PoolConfiguration.PlacementCheck(rawValue: String(value)) else { return .malformed }
            configuration.placementCheck = check
            return .applied
        },
        ConfigurationKey("grouping", expects: "0 or 1") { value, configuration, _ in
            guard let flag = flag(value) else { return .malformed }
            configuration.mobilityGrouping = flag
            return .applied
        },
        ConfigurationKey("compaction", expects: "0 or 1") { value, configuration, _ in
            guard let flag = flag(value) else { return .malformed }
            configuration.compaction = flag
            return .applied
        },
        ConfigurationKey("accounting", expects: "0 or 1") { value, configuration, _ in
            guard let flag = flag(value) else { return .malformed }
            configuration.allocationAccounting = flag
            return .applied
        },
    ]

    private static func flag(_ value: Substring) -> Bool? {
        switch value {
        case "0": false
        case "1": true
        default: nil
        }
    }

    /// A decimal integer in `range`, digits and one leading sign only.
    private static func integer(_ value: Substring, in range: ClosedRange<Int>) -> Int? {
        guard value.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == "-" || $0 == "+") }), let number = Int(value),
              range.contains(number)
        else { return nil }
        return number
    }
}

extension [String] {
    /// `a, b or c`.
    var joinedAsChoices: String {
        count <= 1 ? joined() : dropLast().joined(separator: ", ") + " or " + last!
    }
}
