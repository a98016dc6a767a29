import BuddyCore
import CNuma
import Glibc

/// The scheduler, the process's threads and fork: current CPU, fault counts, membarrier(2),
/// the fork hook.
@usableFromInline
package enum ThreadCalls {
    /// The CPU the calling thread runs on (glibc reads it from rseq: about a nanosecond), or nil.
    @inline(__always)
    package static func currentCPU() -> Int? {
        let cpu = cnuma_current_cpu()
        return cpu >= 0 ? Int(cpu) : nil
    }

    /// Minor and major page faults of the calling thread (getrusage RUSAGE_THREAD).
    package static func pageFaults() -> Result<(minor: Int, major: Int), SystemError> {
        if let code = SystemCallFaults.injected(.getrusage) { return .failure(.call(.getrusage, "RUSAGE_THREAD", errno: code)) }
        var minor = 0, major = 0
        guard cnuma_thread_page_faults(&minor, &major) == 0 else { return .failure(.call(.getrusage, "RUSAGE_THREAD", errno: errno)) }
        return .success((minor, major))
    }

    /// Registers the process for expedited private membarrier (once per process is enough).
    package static func registerHeavyBarrier() -> Result<Void, SystemError> {
        if let code = SystemCallFaults.injected(.membarrier) {
            return .failure(.call(.membarrier, "MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED", errno: code))
        }
        guard cnuma_heavy_barrier_register() == 0 else {
            return .failure(.call(.membarrier, "MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED", errno: errno))
        }
        return .success(())
    }

    /// A full fence on every CPU that runs a thread of this process: the heavy side of the
    /// caches' asymmetric Dekker protocol.
    package static func heavyBarrier() -> Result<Void, SystemError> {
        if let code = SystemCallFaults.injected(.membarrier) { return .failure(.call(.membarrier, "MEMBARRIER_CMD_PRIVATE_EXPEDITED", errno: code)) }
        guard cnuma_heavy_barrier() == 0 else { return .failure(.call(.membarrier, "MEMBARRIER_CMD_PRIVATE_EXPEDITED", errno: errno)) }
        return .success(())
    }

    /// Installs the C fork handlers once: prepare waits until no thread is inside a locked
    /// section (`LockedSections`); the child bumps `forkGeneration` and serializes its sections.
    package static func installForkHandler() -> Result<Void, SystemError> {
        if let code = SystemCallFaults.injected(.pthreadAtfork) { return .failure(.call(.pthreadAtfork, "", errno: code)) }
        guard cnuma_install_fork_handler() == 0 else { return .failure(.call(.pthreadAtfork, "", errno: errno)) }
        return .success(())
    }

    /// Bumped in each fork child: pools made in an earlier generation are unusable there.
    @inlinable
    package static var forkGeneration: Int { Int(cnuma_fork_generation()) }
}

/// The few accessors the allocation fast path inlines: the thread's cache root (one TLS load)
/// and the fences of the caches' drain handshake. They make no system call.
@usableFromInline
package enum FastPathAccessors {
    /// Slots of a thread's cache root.
    package static var cacheIndexCount: Int { Int(CNUMA_CACHE_INDEX_COUNT) }

    /// The calling thread's cache root (initial-exec TLS: one mov from %fs). Never nil: the
    /// shared empty root until the thread makes a cache of its own.
    @inlinable @inline(__always)
    package static var threadCacheRoot: UnsafeMutableRawPointer {
        // Invariant: the C side initializes the root to the empty root and never stores NULL.
        cnuma_thread_cache().unsafelyUnwrapped
    }

    @inlinable @inline(__always)
    package static func setThreadCacheRoot(_ root: UnsafeMutableRawPointer) { cnuma_set_thread_cache(root) }
    /// Tells a malloc interposer (if one is installed) that the library's own work starts (true)
    /// or ends: its allocations in between must not re-enter the pools.
    package static func guardAllocator(entering: Bool) { cnuma_guard_allocator(entering ? 1 : 0) }

    /// The root a thread has before it makes a cache (read-only: every slot is `noThreadCache`).
    package static var emptyThreadCacheRoot: UnsafeMutableRawPointer { cnuma_empty_thread_cache_root().unsafelyUnwrapped }

    /// What an unused slot points at: a header of zeros, whose token 0 no pool has.
    package static var noThreadCache: UnsafeMutableRawPointer { cnuma_no_thread_cache().unsafelyUnwrapped }

    /// Orders memory accesses for the compiler only; with `ThreadCalls.heavyBarrier()` on the
    /// other side it orders like a full fence.
    @inlinable @inline(__always)
    package static func compilerBarrier() { cnuma_compiler_barrier() }

    /// Whether ThreadSanitizer's runtime is in the process (it cannot see membarrier).
    @inlinable @inline(__always)
    package static var underThreadSanitizer: Bool { cnuma_under_thread_sanitizer() != 0 }

    @inlinable @inline(__always)
    package static func tsanAcquire(_ address: UnsafeMutableRawPointer) { cnuma_tsan_acquire(address) }

    @inlinable @inline(__always)
    package static func tsanRelease(_ address: UnsafeMutableRawPointer) { cnuma_tsan_release(address) }
}
