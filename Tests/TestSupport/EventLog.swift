import Synchronization

/// Collects strings from any thread.
package final class EventLog: Sendable {
    private let storage = Mutex<[String]>([])

    package init() {}
    package func append(_ entry: String) { storage.withLock { $0.append(entry) } }
    package var entries: [String] { storage.withLock { $0 } }
}
