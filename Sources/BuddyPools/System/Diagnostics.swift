import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Something worth telling the operator: a page-size fallback, a loan, a reclaim.
/// Reported off the fast path only; the core has no logging dependency, so an adapter
/// (BuddyPoolsMetrics) or the default stderr printer receives them.
public struct DiagnosticEvent: Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, Codable {
        case pageSizeFallback, placement, lending, reclaim, compaction, shrinker, cacheDrain, fork
    }

    public enum Severity: Int, Sendable, Comparable, Codable {
        case debug, info, warning

        public static func < (a: Severity, b: Severity) -> Bool { a.rawValue < b.rawValue }
    }

    public let kind: Kind
    public let severity: Severity
    /// The pool or region the event is about.
    public let subject: String
    public let message: String
    /// Bytes involved, when the event moves or refuses memory.
    public let bytes: Int?

    public init(_ kind: Kind, _ severity: Severity, subject: String, message: String, bytes: Int? = nil) {
        self.kind = kind
        self.severity = severity
        self.subject = subject
        self.message = message
        self.bytes = bytes
    }

    public var description: String { "buddypools: \(subject): \(message)" }
}

/// Where diagnostic events go. By default warnings are printed to stderr; the environment
/// variable `BUDDYPOOLS_DIAGNOSTICS` picks `quiet`, `warning` (the default), `info` or `debug`.
public enum Diagnostics {
    public typealias Handler = @Sendable (DiagnosticEvent) -> Void

    private static let handler = Mutex<Handler?>(Diagnostics.standardErrorHandler(minimum: levelFromEnvironment()))

    /// Replaces the handler; nil drops every event.
    public static func setHandler(_ newHandler: Handler?) {
        handler.withLock { $0 = newHandler }
    }

    /// A handler that prints events at or above `minimum` to stderr.
    public static func standardErrorHandler(minimum: DiagnosticEvent.Severity?) -> Handler? {
        guard let minimum else { return nil }
        return { event in
            guard event.severity >= minimum else { return }
            let line = event.description + "\n"
            _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
        }
    }

    static func report(_ event: DiagnosticEvent) {
        let current = handler.withLock { $0 }
        current?(event)
    }

    private static func levelFromEnvironment() -> DiagnosticEvent.Severity? {
        guard let raw = getenv("BUDDYPOOLS_DIAGNOSTICS") else { return .warning }
        switch String(cString: raw).lowercased() {
        case "quiet", "off", "none": return nil
        case "debug": return .debug
        case "info": return .info
        default: return .warning
        }
    }
}
