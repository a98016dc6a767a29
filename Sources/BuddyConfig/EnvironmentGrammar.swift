import BuddyCore
import BuddySystem
/// The grammar of `BUDDYPOOLS`:
///
///     BUDDYPOOLS="hot:size=1G,nodes=0,page=2M,priority=10,locked=1;bulk:size=8G,nodes=1-3,policy=interleave"
///
/// Pools are separated by `;`, a pool is `<name>:<key>=<value>,...`. This is the syntax only:
/// each pool's fields with their offsets; what a key accepts is its row in `ConfigurationKey`.
/// Every problem is a `ConfigurationError` that names the variable, the pool, the token and
/// what was expected.
package enum EnvironmentGrammar {
    package static let variable = "BUDDYPOOLS"

    /// One `<key>=<value>` of a pool, where it stands in the variable.
    struct Field {
        let key: Substring
        let value: Substring
        /// The whole `<key>=<value>` text.
        let token: Substring
        let offset: Int
        var valueOffset: Int { offset + key.count + 1 }
    }

    /// One pool's part of the variable.
    struct PoolText {
        let name: String
        let offset: Int
        let fields: [Field]
    }

    static func fail(_ pool: String?, _ token: some StringProtocol, _ offset: Int, _ expected: String) -> ConfigurationError {
        ConfigurationError(variable: variable, pool: pool, token: String(token), offset: offset, expected: expected)
    }

    /// Splits the value into pools and fields, refusing what no key could mean: empty parts,
    /// bad names, duplicate pools or keys, unknown keys, empty values, a pool without size.
    static func parse(_ text: String) throws(ConfigurationError) -> [PoolText] {
        guard !text.isEmpty else {
            throw fail(nil, "", 0, "at least one pool, written <name>:size=<size>[,<key>=<value>...]")
        }
        var pools: [PoolText] = []
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
            let body = part[part.index(after: colon)...]
            guard !body.isEmpty else { throw fail(name, part, offset, "at least size=<size> after '\(name):'") }
            var fields: [Field] = []
            var seenKeys: Set<Substring> = []
            for (text, fieldOffset) in pieces(of: body, at: offset + name.count + 1) {
                guard !text.isEmpty else { throw fail(name, text, fieldOffset, "<key>=<value> between ',' separators (remove the empty part)") }
                guard let equals = text.firstIndex(of: "=") else {
                    throw fail(name, text, fieldOffset, "<key>=<value> with a key from: \(ConfigurationKey.names)")
                }
                let key = text[..<equals]
                guard seenKeys.insert(key).inserted else {
                    throw fail(name, text, fieldOffset, "each key once per pool ('\(key)' repeats)")
                }
                guard let row = ConfigurationKey.named(key) else { throw fail(name, key, fieldOffset, "a key from: \(ConfigurationKey.names)") }
                let value = text[text.index(after: equals)...]
                guard !value.isEmpty else { throw fail(name, text, fieldOffset, row.expects) }
                fields.append(Field(key: key, value: value, token: text, offset: fieldOffset))
            }
            guard seenKeys.contains("size") else {
                throw fail(name, part, offset, "a size=<size> key (size is required)")
            }
            pools.append(PoolText(name: name, offset: offset, fields: fields))
        }
        return pools
    }

    /// Splits a pool's body at ',' into fields with their offsets. A list keeps going across
    /// commas: in `nodes=0,2,cpus=0-3,8` the bare `2` and `8` continue the list before them.
    private static func pieces(of body: Substring, at start: Int) -> [(text: Substring, offset: Int)] {
        var result: [(text: Substring, offset: Int)] = []
        var offset = start
        for piece in body.split(separator: ",", omittingEmptySubsequences: false) {
            defer { offset += piece.count + 1 }
            if let last = result.last, let equals = last.text.firstIndex(of: "="),
               ConfigurationKey.named(last.text[..<equals])?.continuesAcrossCommas == true,
               !piece.isEmpty, piece.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == "-" || $0 == ":") }) {
                // Pieces share the body's indices: widen the previous field over the comma.
                result[result.count - 1].text = body[last.text.startIndex..<piece.endIndex]
                continue
            }
            result.append((piece, offset))
        }
        return result
    }
}
