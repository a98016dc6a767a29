import BuddyCore
import BuddySystem
/// A `BUDDYPOOLS` setting that cannot be used, with the variable, the pool, the offending
/// token and what was expected, e.g.
/// `BUDDYPOOLS: pool 'hot': 'size=1Q' at offset 4: expected a size like 512M, 2G or 1T`.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The environment variable, e.g. `BUDDYPOOLS` or `BUDDYPOOLS_HOT_SIZE`.
    public let variable: String
    /// The pool the token belongs to, when one could be named.
    public let pool: String?
    /// The text that is wrong.
    public let token: String
    /// Character offset of the token in the variable's value, when known.
    public let offset: Int?
    /// What would have been accepted there.
    public let expected: String

    public init(variable: String, pool: String?, token: String, offset: Int?, expected: String) {
        self.variable = variable
        self.pool = pool
        self.token = token
        self.offset = offset
        self.expected = expected
    }

    public var description: String {
        var text = variable + ": "
        if let pool { text += "pool '\(pool)': " }
        text += "'\(token)'"
        if let offset { text += " at offset \(offset)" }
        return text + ": expected \(expected)"
    }
}
