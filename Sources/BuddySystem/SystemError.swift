import BuddyCore
#if canImport(Glibc)
import Glibc
#endif

/// A failed request to the operating system, with the call that failed, its errno and a
/// sentence that tells the user what to change (a sysctl, a node, a limit).
public struct SystemError: Error, Sendable, Equatable, Codable, CustomStringConvertible {
    /// What went wrong, for callers that branch on it.
    public enum Kind: String, Sendable, Equatable, Codable {
        /// Not enough hugepages of the requested size on the requested nodes.
        case hugepagesUnavailable
        /// The nodes do not have the free memory the request needs.
        case insufficientMemory
        /// The node set cannot hold memory: unknown, not allowed by the cpuset, or memory-less.
        case invalidPlacement
        /// A limit or a missing privilege (RLIMIT_MEMLOCK, CAP_IPC_LOCK).
        case permissionDenied
        /// The kernel or the machine lacks a feature the request needs.
        case unsupported
        /// The arguments cannot describe a region (zero size, bad alignment).
        case invalidArgument
        /// Any other failure of the named call.
        case failed
    }

    public let kind: Kind
    /// The call that failed, e.g. `mbind(MPOL_BIND, nodes 1)`, or the check that refused the request.
    public let call: String
    /// errno of the failed call; 0 when a check refused the request before any call was made.
    public let errno: Int32
    /// What the user can do about it.
    public let advice: String

    public init(_ kind: Kind, call: String, errno: Int32 = 0, advice: String) {
        self.kind = kind
        self.call = call
        self.errno = errno
        self.advice = advice
    }

    /// The symbolic errno name and its text, e.g. `EFAULT (Bad address)`.
    public var errnoDescription: String {
        guard errno != 0 else { return "refused before the call" }
        return "\(Self.errnoName(errno)) (\(String(cString: strerror(errno))))"
    }

    public var description: String {
        "\(call): \(errnoDescription): \(advice)"
    }

    static func errnoName(_ code: Int32) -> String {
        switch code {
        case EPERM: "EPERM"
        case ENOENT: "ENOENT"
        case EINTR: "EINTR"
        case EIO: "EIO"
        case ENOMEM: "ENOMEM"
        case EACCES: "EACCES"
        case EFAULT: "EFAULT"
        case EBUSY: "EBUSY"
        case EEXIST: "EEXIST"
        case ENODEV: "ENODEV"
        case EINVAL: "EINVAL"
        case ENOSPC: "ENOSPC"
        case ENOSYS: "ENOSYS"
        case EAGAIN: "EAGAIN"
        case EHWPOISON: "EHWPOISON"
        default: "errno \(code)"
        }
    }
}

