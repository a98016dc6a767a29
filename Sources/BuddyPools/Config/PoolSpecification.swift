/// One pool as written in `BUDDYPOOLS`, before it is checked against the machine. Each field
/// keeps its offset in the variable, so later checks can point at the token.
struct PoolSpecification {
    struct Located<Value> {
        let value: Value
        let token: String
        let offset: Int
        /// The variable the token came from (a size override has its own).
        var variable = EnvironmentGrammar.variable
    }

    let name: String
    let nameOffset: Int
    var size: Located<Int>?
    var nodes: Located<NodeSelection>?
    var policy: Located<PlacementPolicy>?
    var page: Located<(PageSize, strict: Bool)>?
    var priority: Located<Int>?
    var minimum: Located<Int>?
    var maximum: Located<Int>?
    var cpus: Located<CPUSet>?
    var locked: Located<Bool>?
    var minBlock: Located<Int>?
    var maxOrder: Located<Int>?
    var cache: Located<CacheConfiguration.Sharding?>?
    var cacheOrder: Located<Int>?
    var grouping: Located<Bool>?
    var compaction: Located<Bool>?
    var accounting: Located<Bool>?
}

/// `nodes=`: an explicit list, or every node with memory in the cpuset.
enum NodeSelection {
    case all
    case list(NodeSet)
}
