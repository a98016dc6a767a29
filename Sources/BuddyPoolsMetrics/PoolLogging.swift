import BuddyPools
import Logging

/// Sends BuddyPools diagnostics (page-size fallbacks, lending, reclaim, compaction, cache
/// drains) to a swift-log `Logger`. Events are reported off the allocation fast path, so
/// logging never slows an allocation that did not need one of those steps.
public enum PoolLogging {
    /// Subscribes `logger` to every diagnostic event; cancel the subscription to stop.
    /// - Parameter silenceStandardError: also stop the default stderr printer.
    @discardableResult
    public static func bootstrap(_ logger: Logger, silenceStandardError: Bool = true) -> Diagnostics.Subscription {
        if silenceStandardError { Diagnostics.standardErrorLevel = nil }
        return Diagnostics.subscribe { event in
            var metadata: Logger.Metadata = ["kind": "\(event.kind.rawValue)", "subject": "\(event.subject)"]
            if let bytes = event.bytes { metadata["bytes"] = "\(bytes)" }
            logger.log(level: level(event.severity), "\(event.message)", metadata: metadata)
        }
    }

    static func level(_ severity: DiagnosticEvent.Severity) -> Logger.Level {
        switch severity {
        case .debug: .debug
        case .info: .info
        case .warning: .warning
        }
    }
}
