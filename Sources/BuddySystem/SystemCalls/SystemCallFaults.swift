import BuddyCore
import Glibc
import Synchronization

/// The door's test seam: a test makes a named call fail with a chosen errno on its own thread,
/// and learns what the door mapped and unmapped meanwhile, so an error path is run, not imagined.
///
/// Costs one relaxed atomic load per system call while no test has armed it (and nothing on the
/// allocation fast path, which makes no system call).
package enum SystemCallFaults {
    /// What happened on the injecting thread while `failing` ran.
    package struct Outcome: Sendable, Equatable {
        /// Times the injected failure was returned.
        package var fired = 0
        /// Bytes the door mapped minus bytes it unmapped on this thread: 0 when the code under
        /// test left no mapping behind.
        package var netMappedBytes = 0
    }

    private struct Scope {
        let call: SystemCall
        let advice: MemoryAdvice?
        let errno: Int32
        var remaining: Int
        var outcome = Outcome()
        /// move_pages in query mode reports every page on this node instead (errno unused).
        var reportedNode: Int32?
    }

    /// Scopes by thread (pthread_self); a test's body runs synchronously on one thread.
    private static let scopes = Mutex<[UInt: Scope]>([:])
    private static let armed = Atomic<Int>(0)

    /// Runs `body` with the next `times` calls of `call` (and `advice`, for madvise) made on this
    /// thread failing with `errno`, as the kernel would fail them: nothing is done, -1 and errno.
    package static func failing<R>(
        _ call: SystemCall, advice: MemoryAdvice? = nil, errno code: Int32, times: Int = .max, _ body: () -> R
    ) -> (R, Outcome) {
        let thread = UInt(pthread_self())
        scopes.locked { $0[thread] = Scope(call: call, advice: advice, errno: code, remaining: times) }
        armed.add(1, ordering: .relaxed)
        let result = body()
        armed.subtract(1, ordering: .relaxed)
        let outcome = scopes.locked { $0.removeValue(forKey: thread)?.outcome ?? Outcome() }
        return (result, outcome)
    }

    /// What the calling thread's scope has mapped so far (0 outside a scope).
    package static var netMappedBytesSoFar: Int {
        scopes.locked { $0[UInt(pthread_self())]?.outcome.netMappedBytes ?? 0 }
    }

    /// Runs `body` with move_pages queries made on this thread reporting every page on `node`:
    /// a pool's placement check sees its memory somewhere it was not bound to.
    package static func reportingNode<R>(_ node: Int32, _ body: () -> R) -> (R, Outcome) {
        let thread = UInt(pthread_self())
        scopes.locked { $0[thread] = Scope(call: .movePages, advice: nil, errno: 0, remaining: .max, reportedNode: node) }
        armed.add(1, ordering: .relaxed)
        let result = body()
        armed.subtract(1, ordering: .relaxed)
        let outcome = scopes.locked { $0.removeValue(forKey: thread)?.outcome ?? Outcome() }
        return (result, outcome)
    }

    /// The node an armed test wants move_pages queries on this thread to report, or nil.
    @inline(__always)
    static func reportedNode() -> Int32? {
        guard armed.load(ordering: .relaxed) != 0 else { return nil }
        let thread = UInt(pthread_self())
        return scopes.locked { scopes -> Int32? in
            guard var scope = scopes[thread], let node = scope.reportedNode else { return nil }
            scope.outcome.fired += 1
            scopes[thread] = scope
            return node
        }
    }

    /// The errno an armed test wants `call` to fail with on this thread, or nil.
    @inline(__always)
    static func injected(_ call: SystemCall, advice: MemoryAdvice? = nil) -> Int32? {
        guard armed.load(ordering: .relaxed) != 0 else { return nil }
        return injectedSlowly(call, advice: advice)
    }

    @inline(never)
    private static func injectedSlowly(_ call: SystemCall, advice: MemoryAdvice?) -> Int32? {
        let thread = UInt(pthread_self())
        return scopes.locked { scopes -> Int32? in
            guard var scope = scopes[thread], scope.reportedNode == nil, scope.call == call, scope.remaining > 0,
                  scope.advice == nil || scope.advice == advice
            else { return nil }
            scope.remaining -= 1
            scope.outcome.fired += 1
            scopes[thread] = scope
            return scope.errno
        }
    }

    /// Records bytes the door mapped (positive) or unmapped (negative) for an armed thread.
    @inline(__always)
    static func noteMapping(_ bytes: Int) {
        guard armed.load(ordering: .relaxed) != 0 else { return }
        let thread = UInt(pthread_self())
        scopes.locked { $0[thread]?.outcome.netMappedBytes += bytes }
    }
}
