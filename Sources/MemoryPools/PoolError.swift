import BuddyCaches
import BuddyConfig
import BuddyCore
import BuddySystem
import Synchronization

/// Why a pool could not be created or could not satisfy a request.
///
/// The allocation path throws it typed (`throws(PoolError)`), so no existential box is
/// allocated; `exhausted` and `invalidRequest` carry numbers and the pool's name (a retain,
/// not an allocation), and build their text only when printed.
public enum PoolError: Error, Sendable, Equatable, CustomStringConvertible {
    /// No block of the requested size is free after draining caches (and, for pools that
    /// may, after borrowing, returning loans and reclaiming).
    case exhausted(Exhaustion)
    /// The request itself is malformed.
    case invalidRequest(InvalidRequest)
    /// The configuration cannot describe a pool.
    case invalidConfiguration(pool: String, reason: String)
    /// The operating system refused the pool's memory.
    case system(SystemError)
    /// The process is a fork child: the parent's pools are not mapped here.
    case unavailableAfterFork(pool: String)

    public var description: String {
        switch self {
        case .exhausted(let details): details.description
        case .invalidRequest(let details): details.description
        case .invalidConfiguration(let pool, let reason): "pool '\(pool)': invalid configuration: \(reason)"
        case .system(let error): error.description
        case .unavailableAfterFork(let pool):
            "pool '\(pool)': unavailable in a forked child (pool memory is not inherited across fork; create pools after fork or exec)"
        }
    }
}

/// The request that could not be met and the pool's state at that moment.
public struct Exhaustion: Sendable, Equatable, CustomStringConvertible {
    public let pool: String
    public let requestedBytes: Int
    public let alignment: Int
    public let mobility: Mobility
    /// Bytes the pool manages now (own superblocks minus lent plus borrowed).
    public let managedBytes: Int
    public let freeBytes: Int
    /// The largest free block, which bounds what one request can get.
    public let largestFreeBlockBytes: Int
    /// Bytes held in caches that could not be drained (other threads' magazines of a pool that
    /// may not wait for them).
    public let cachedBytes: Int
    /// errno of the membarrier(2) that failed, so other threads' caches were not drained; 0 if
    /// none failed. Kept as a number, not a `SystemError`: the result of every allocation carries
    /// room for an `Exhaustion`, and the success path pays for its size.
    let drainFailureErrno: Int32

    /// Why other threads' caches could not be drained (membarrier failed), or nil.
    public var drainFailure: SystemError? {
        drainFailureErrno == 0 ? nil : .call(.membarrier, "MEMBARRIER_CMD_PRIVATE_EXPEDITED", errno: drainFailureErrno)
    }

    public var description: String {
        "pool '\(pool)' exhausted: \(formatBytes(requestedBytes)) (alignment \(alignment), \(mobility)) requested; "
            + "\(formatBytes(freeBytes)) free of \(formatBytes(managedBytes)), largest free block \(formatBytes(largestFreeBlockBytes)), "
            + "\(formatBytes(cachedBytes)) in caches"
            + (drainFailure.map { "; other threads' caches not drained: \($0)" } ?? "")
    }
}

/// A malformed allocation request.
public struct InvalidRequest: Sendable, Equatable, CustomStringConvertible {
    public enum Reason: Sendable, Equatable {
        case zeroOrNegativeSize
        case alignmentNotPowerOfTwo
        /// Larger than the pool could ever hold in one piece.
        case largerThanPool
        /// Typed allocation whose byte count overflows Int.
        case countOverflow
        /// No address of the pool's regions has the alignment asked for (above a superblock)
        /// with room for the request after it.
        case alignmentUnsatisfiable
    }

    public let pool: String
    public let byteCount: Int
    public let alignment: Int
    public let reason: Reason

    public var description: String {
        switch reason {
        case .zeroOrNegativeSize: "pool '\(pool)': byteCount must be positive, got \(byteCount)"
        case .alignmentNotPowerOfTwo: "pool '\(pool)': alignment must be a power of two, got \(alignment)"
        case .largerThanPool: "pool '\(pool)': \(formatBytes(byteCount)) exceeds what the pool can ever hold in one piece"
        case .countOverflow: "pool '\(pool)': element count times stride overflows"
        case .alignmentUnsatisfiable:
            "pool '\(pool)': no address of the pool is aligned to \(alignment) with room for \(formatBytes(byteCount)) after it"
        }
    }
}
