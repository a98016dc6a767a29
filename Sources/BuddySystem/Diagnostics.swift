import BuddyCore
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Something worth telling the operator: a page-size fallback, a loan, a reclaim.
/// Reported off the fast path only; the core has no logging dependency, so an adapter
/// (BuddyPoolsMetrics) or the default stderr printer receives them.
public struct DiagnosticEvent: Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, Codable {
        case pageSizeFallback, placement, lending, reclaim, compaction, shrinker, cacheDrain, fork, lifecycle
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

/// Where diagnostic events go: to every subscriber, and to stderr at or above
/// `standardErrorLevel`. The environment variable `BUDDYPOOLS_DIAGNOSTICS` sets that level at
/// startup: `quiet`, `warning` (the default), `info` or `debug`.
public enum Diagnostics {
    public typealias Handler = @Sendable (DiagnosticEvent) -> Void

    /// A registration returned by `subscribe`; `cancel()` stops delivery.
    public struct Subscription: Sendable, Hashable {
        let id: Int

        public func cancel() {
            Diagnostics.state.locked { state in
                state.handlers[id] = nil
                Diagnostics.updateListening(state)
            }
        }
    }

    private struct State {
        var handlers: [Int: Handler] = [:]
        var nextID = 0
        var standardErrorLevel: DiagnosticEvent.Severity? = Diagnostics.levelFromEnvironment()
    }

    private static let state = Mutex(State())
    /// The lowest severity anyone listens to (Int.max: nobody), so reports nobody wants cost
    /// one atomic load and build no text.
    private static let listeningFrom = Atomic<Int>(levelFromEnvironment()?.rawValue ?? Int.max)

    /// Events at or above this level are printed to stderr; nil prints nothing.
    public static var standardErrorLevel: DiagnosticEvent.Severity? {
        get { state.locked { $0.standardErrorLevel } }
        set {
            state.locked { state in
                state.standardErrorLevel = newValue
                updateListening(state)
            }
        }
    }

    /// Delivers every event to `handler` (on the thread that reports it) until cancelled.
    @discardableResult
    public static func subscribe(_ handler: @escaping Handler) -> Subscription {
        state.locked { state in
            state.nextID += 1
            state.handlers[state.nextID] = handler
            updateListening(state)
            return Subscription(id: state.nextID)
        }
    }

    private static func updateListening(_ state: borrowing State) {
        let level = state.handlers.isEmpty ? state.standardErrorLevel?.rawValue ?? Int.max : DiagnosticEvent.Severity.debug.rawValue
        listeningFrom.store(level, ordering: .relaxed)
    }

    /// Whether an event of `severity` would reach anyone.
    package static func wants(_ severity: DiagnosticEvent.Severity) -> Bool {
        severity.rawValue >= listeningFrom.load(ordering: .relaxed)
    }

    /// Reports an event; the event is only built when somebody listens at its severity.
    package static func report(_ severity: DiagnosticEvent.Severity, _ event: @autoclosure () -> DiagnosticEvent) {
        guard wants(severity) else { return }
        let built = event()
        let (handlers, level) = state.locked { (Array($0.handlers.values), $0.standardErrorLevel) }
        if let level, built.severity >= level {
            let line = built.description + "\n"
            _ = line.withCString { Glibc.write(2, $0, strlen($0)) }
        }
        for handler in handlers { handler(built) }
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
