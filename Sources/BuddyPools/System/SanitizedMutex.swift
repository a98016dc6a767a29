import CNuma
import Synchronization

extension Mutex where Value: ~Copyable {
    /// `withLock`, announced to ThreadSanitizer: Swift 6.3's Mutex on Linux parks on a futex
    /// TSan cannot see, so without the announcement every locked section looks like a race.
    /// Outside TSan the announcements are a never-taken branch.
    @inline(__always)
    package borrowing func locked<Result: ~Copyable, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result {
        // The mutex's own address names it; a borrow of a `let` is no tracked access.
        let token = withUnsafePointer(to: self) { UnsafeMutableRawPointer(mutating: $0) }
        return try withLock { (value: inout sending Value) throws(E) -> sending Result in
            cnuma_tsan_acquire(token)
            defer { cnuma_tsan_release(token) }
            return try body(&value)
        }
    }
}
