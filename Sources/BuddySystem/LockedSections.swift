import BuddyCore
import CNuma
import Synchronization

// Every locked section of the pools: announced to ThreadSanitizer, which cannot see Swift's
// futex-based Mutex, and counted for fork, which must not copy a lock another thread holds.

extension Mutex where Value: ~Copyable {
    /// `withLock`, as a locked section of the pools:
    /// - counted in (`LockedSections`), so a fork waits until no thread is inside one and a fork
    ///   child never inherits a held lock or a parked waiter (CNuma/fork.c);
    /// - announced to ThreadSanitizer: Swift 6.3's Mutex on Linux parks on a futex TSan cannot
    ///   see, so without the announcement every locked section looks like a race. Outside TSan
    ///   the announcements are a never-taken branch.
    @inlinable @inline(__always)
    package borrowing func locked<Result: ~Copyable, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result {
        // The mutex's own address names it; a borrow of a `let` is no tracked access.
        let token = withUnsafePointer(to: self) { UnsafeMutableRawPointer(mutating: $0) }
        LockedSections.enter()
        defer { LockedSections.leave() }
        return try withLock { (value: inout sending Value) throws(E) -> sending Result in
            FastPathAccessors.tsanAcquire(token)
            defer { FastPathAccessors.tsanRelease(token) }
            return try body(&value)
        }
    }
}

/// The count of threads inside the pools' locked sections, kept for fork's sake (CNuma/fork.c):
/// the atfork prepare handler closes a gate and waits until the count is zero, so the child
/// starts with every lock free; in the child, sections are serialized on one glibc mutex, because
/// Swift's Mutex identifies its owner by a thread id it caches per thread, and the forking
/// thread's cached id is its parent's: contended, such a Mutex traps in the kernel's
/// priority-inheritance futex ("Unknown error occurred while attempting to acquire a Mutex").
/// Nested sections cost one thread-local increment; the outermost one, two atomic operations on
/// a per-thread stripe.
@usableFromInline
package enum LockedSections {
    @inlinable @inline(__always)
    package static func enter() { cnuma_section_enter() }

    @inlinable @inline(__always)
    package static func leave() {
        // Invariant: every leave follows its enter on the same thread (`locked` pairs them).
        assert(cnuma_section_depth_now() > 0, "a locked section left more often than entered")
        cnuma_section_leave()
    }
}
