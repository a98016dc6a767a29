import BuddyCore
import Synchronization

// Mutex sections announced to ThreadSanitizer, which cannot see Swift's futex-based Mutex.

extension Mutex where Value: ~Copyable {
    /// `withLock`, announced to ThreadSanitizer: Swift 6.3's Mutex on Linux parks on a futex
    /// TSan cannot see, so without the announcement every locked section looks like a race.
    /// Outside TSan the announcements are a never-taken branch.
    @inlinable @inline(__always)
    package borrowing func locked<Result: ~Copyable, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result {
        // The mutex's own address names it; a borrow of a `let` is no tracked access.
        let token = withUnsafePointer(to: self) { UnsafeMutableRawPointer(mutating: $0) }
        return try withLock { (value: inout sending Value) throws(E) -> sending Result in
            FastPathAccessors.tsanAcquire(token)
            defer { FastPathAccessors.tsanRelease(token) }
            return try body(&value)
        }
    }
}
