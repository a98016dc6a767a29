import Synchronization

/// Collects strings from any thread.
final class EventLog: Sendable {
    private let storage = Mutex<[String]>([])

    func append(_ entry: String) { storage.locked { $0.append(entry) } }
    var entries: [String] { storage.locked { $0 } }
}
