import BuddyCore
import Glibc

/// The system calls BuddyPools makes, by the name a `SystemError` gives and a test can make fail.
package enum SystemCall: String, Sendable, CaseIterable, CustomStringConvertible {
    case mmap, munmap, mprotect, mbind, madvise, mlock, munlock
    case movePages = "move_pages"
    case membarrier, getrlimit, getrusage, sysconf
    case schedGetaffinity = "sched_getaffinity"
    case numaNodeToCPUs = "numa_node_to_cpus"
    case numaGetMemsAllowed = "numa_get_mems_allowed"
    case numaNodeSize = "numa_node_size64"
    case numaDistance = "numa_distance"
    case pthreadAtfork = "pthread_atfork"

    package var description: String { rawValue }
}

/// The advice `madvise` is given (cnuma_advice in the shim).
package enum MemoryAdvice: Sendable, CustomStringConvertible {
    case hugepage, noHugepage, populateWrite, dontFork, doFork, dontNeed

    package var description: String {
        switch self {
        case .hugepage: "MADV_HUGEPAGE"
        case .noHugepage: "MADV_NOHUGEPAGE"
        case .populateWrite: "MADV_POPULATE_WRITE"
        case .dontFork: "MADV_DONTFORK"
        case .doFork: "MADV_DOFORK"
        case .dontNeed: "MADV_DONTNEED"
        }
    }
}

extension SystemError {
    /// A failed call as the door reports it: the kind follows from errno, the advice says what
    /// the errno means. Callers that know more (a node short of hugepages) say it instead.
    package static func call(_ call: SystemCall, _ detail: String, errno code: Int32) -> SystemError {
        let kind: Kind
        let advice: String
        switch code {
        case ENOMEM:
            kind = .insufficientMemory
            advice = "the kernel is out of memory (or address space, or vm.max_map_count) for this request"
        case EPERM, EACCES:
            kind = .permissionDenied
            advice = "the process lacks a privilege or a limit is reached (RLIMIT_MEMLOCK, CAP_IPC_LOCK, CAP_SYS_NICE)"
        case ENOSYS, EOPNOTSUPP:
            kind = .unsupported
            advice = "this kernel does not offer the call or the mode asked for"
        case EINVAL:
            kind = .invalidArgument
            advice = "the kernel rejected the arguments (a node outside the cpuset, a mode or advice it lacks)"
        default:
            kind = .failed
            advice = "the call failed"
        }
        return SystemError(kind, call: detail.isEmpty ? call.rawValue : "\(call.rawValue)(\(detail))", errno: code, advice: advice)
    }

    /// The same failure, described better by a caller that knows why the call was made.
    package func explained(as kind: Kind? = nil, call: String? = nil, advice: String) -> SystemError {
        SystemError(kind ?? self.kind, call: call ?? self.call, errno: errno, advice: advice)
    }
}
