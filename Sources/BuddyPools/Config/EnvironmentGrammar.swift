/// The grammar of `BUDDYPOOLS`:
///
///     BUDDYPOOLS="hot:size=1G,nodes=0,page=2M,priority=10,locked=1;bulk:size=8G,nodes=1-3,policy=interleave"
///
/// Pools are separated by `;`, a pool is `<name>:<key>=<value>,...`. Every problem is a
/// `ConfigurationError` that names the variable, the pool, the token and what was expected.
enum EnvironmentGrammar {
    static let variable = "BUDDYPOOLS"

    /// Keys with what they accept, in the order the documentation lists them.
    static let keys: [(key: String, expects: String)] = [
        ("size", SizeParser.expectation),
        ("nodes", "a node list like 0-3,6 or 'all'"),
        ("policy", "bind, preferred or interleave"),
        ("page", "4K, thp, 2M or 1G, with a trailing ! for strict (no fallback)"),
        ("priority", "a whole number (higher borrows from lower)"),
        ("min", SizeParser.expectation),
        ("max", SizeParser.expectation),
        ("cpus", "a CPU list like 0-7,16"),
        ("locked", "0 or 1"),
        ("min-block", "a power of two from 64 to 1M, e.g. 4K"),
        ("max-order", "a whole number from 0 to 15 (inclusive)"),
        ("cache", "cpu, node, group<N> (e.g. group4) or off"),
        ("cache-order", "a whole number from 0 to max-order"),
        ("grouping", "0 or 1"),
        ("compaction", "0 or 1"),
        ("accounting", "0 or 1"),
    ]

    static var keyList: String { keys.map(\.key).joined(separator: ", ") }

    /// Parses the whole value into pool specifications (syntax and value types only).
    static func parse(_ text: String) throws(ConfigurationError) -> [PoolSpecification] {
        func fail(_ pool: String?, _ token: some StringProtocol, _ offset: Int, _ expected: String) -> ConfigurationError {
            ConfigurationError(variable: variable, pool: pool, token: String(token), offset: offset, expected: expected)
        }
        guard !text.isEmpty else {
            throw fail(nil, "", 0, "at least one pool, written <name>:size=<size>[,<key>=<value>...]")
        }
        var specifications: [PoolSpecification] = []
        var seen: Set<String> = []
        var offset = 0
        for part in text.split(separator: ";", omittingEmptySubsequences: false) {
            defer { offset += part.count + 1 }
            guard !part.isEmpty else {
                throw fail(nil, part, offset, "a pool definition between ';' separators (remove the empty part)")
            }
            guard let colon = part.firstIndex(of: ":") else {
                throw fail(nil, part, offset, "<name>:<key>=<value>,... (a ':' after the pool name)")
            }
            let name = String(part[..<colon])
            guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_" || $0 == "-") }) else {
                throw fail(nil, name, offset, "a pool name of letters, digits, '_' and '-'")
            }
            guard seen.insert(name).inserted else {
                throw fail(name, name, offset, "a pool name not used before in the set (duplicate pool name)")
            }
            var specification = PoolSpecification(name: name, nameOffset: offset)
            let body = part[part.index(after: colon)...]
            guard !body.isEmpty else { throw fail(name, part, offset, "at least size=<size> after '\(name):'") }
            var seenKeys: Set<Substring> = []
            for (field, fieldOffset) in fields(of: body, at: offset + name.count + 1) {
                guard !field.isEmpty else { throw fail(name, field, fieldOffset, "<key>=<value> between ',' separators (remove the empty part)") }
                guard let equals = field.firstIndex(of: "=") else {
                    throw fail(name, field, fieldOffset, "<key>=<value> with a key from: \(keyList)")
                }
                let key = field[..<equals]
                let value = field[field.index(after: equals)...]
                guard seenKeys.insert(key).inserted else {
                    throw fail(name, field, fieldOffset, "each key once per pool ('\(key)' repeats)")
                }
                guard let expects = keys.first(where: { $0.key == key })?.expects else {
                    throw fail(name, key, fieldOffset, "a key from: \(keyList)")
                }
                let valueOffset = fieldOffset + key.count + 1
                guard !value.isEmpty else { throw fail(name, field, fieldOffset, expects) }
                let bad = fail(name, field, valueOffset, expects)
                try assign(String(key), value: value, token: String(field), offset: valueOffset, to: &specification, bad: bad)
            }
            guard specification.size != nil else {
                throw fail(name, part, offset, "a size=<size> key (size is required)")
            }
            specifications.append(specification)
        }
        return specifications
    }

    /// Keys whose values are numactl-style lists, which may go on across commas.
    static let listKeys = ["nodes", "cpus"]

    /// Splits a pool's body at ',' into fields with their offsets. A list keeps going across
    /// commas: in `nodes=0,2,cpus=0-3,8` the bare `2` and `8` continue the list before them.
    private static func fields(of body: Substring, at start: Int) -> [(text: Substring, offset: Int)] {
        var result: [(text: Substring, offset: Int)] = []
        var offset = start
        for piece in body.split(separator: ",", omittingEmptySubsequences: false) {
            defer { offset += piece.count + 1 }
            if let last = result.last, listKeys.contains(where: { last.text.hasPrefix($0 + "=") }),
               !piece.isEmpty, piece.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == "-") }) {
                // Pieces share the body's indices: widen the previous field over the comma.
                result[result.count - 1].text = body[last.text.startIndex..<piece.endIndex]
                continue
            }
            result.append((piece, offset))
        }
        return result
    }

    private static func assign(
        _ key: String, value: Substring, token: String, offset: Int, to specification: inout PoolSpecification, bad: ConfigurationError
    ) throws(ConfigurationError) {
        func located<V>(_ value: V) -> PoolSpecification.Located<V> { .init(value: value, token: token, offset: offset) }
        func size() throws(ConfigurationError) -> Int {
            guard let bytes = SizeParser.parse(value) else { throw bad }
            return bytes
        }
        func flag() throws(ConfigurationError) -> Bool {
            switch value {
            case "0": return false
            case "1": return true
            default: throw bad
            }
        }
        func integer(_ range: ClosedRange<Int>) throws(ConfigurationError) -> Int {
            guard let number = Int(value), range.contains(number),
                  value.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == "-" || $0 == "+") })
            else { throw bad }
            return number
        }
        switch key {
        case "size": specification.size = located(try size())
        case "min": specification.minimum = located(try size())
        case "max": specification.maximum = located(try size())
        case "min-block": specification.minBlock = located(try size())
        case "nodes":
            if value == "all" {
                specification.nodes = located(.all)
            } else {
                do { specification.nodes = located(.list(try NodeSet(parsing: String(value)))) } catch { throw bad }
            }
        case "cpus":
            do { specification.cpus = located(try CPUSet(parsing: String(value))) } catch { throw bad }
        case "policy":
            guard let policy = PlacementPolicy(rawValue: String(value)) else { throw bad }
            specification.policy = located(policy)
        case "page":
            let strict = value.hasSuffix("!")
            guard let size = PageSize(configurationToken: String(strict ? value.dropLast() : value)) else { throw bad }
            specification.page = located((size, strict))
        case "priority": specification.priority = located(try integer(-1_000_000...1_000_000))
        case "max-order": specification.maxOrder = located(try integer(BuddyGeometry.maxOrderRange))
        case "cache-order": specification.cacheOrder = located(try integer(0...15))
        case "locked": specification.locked = located(try flag())
        case "grouping": specification.grouping = located(try flag())
        case "compaction": specification.compaction = located(try flag())
        case "accounting": specification.accounting = located(try flag())
        case "cache":
            switch value {
            case "cpu": specification.cache = located(.perCPU)
            case "node": specification.cache = located(.perNode)
            case "off": specification.cache = located(nil)
            default:
                guard value.hasPrefix("group"), let cpus = Int(value.dropFirst(5)), cpus >= 1, cpus <= 4096 else { throw bad }
                specification.cache = located(.perGroup(cpus: cpus))
            }
        default:
            throw bad
        }
    }
}
