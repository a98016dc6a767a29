import BuddyCore
import Glibc

/// Faulting a range in at creation, so that nothing faults later.
package enum PagePopulation {
    package enum Outcome: Equatable {
        case populated
        /// The kernel predates MADV_POPULATE_WRITE (5.14): every page was written instead.
        case touched
        case failed(SystemError)
    }

    /// MADV_POPULATE_WRITE over the range; on a kernel without it (EINVAL), one write per page.
    /// Other failures (EFAULT when hugetlb pages run out, ENOMEM) are returned, not retried.
    package static func populate(_ base: UnsafeMutableRawPointer, byteCount: Int, pageSize: PageSize) -> Outcome {
        switch MemoryCalls.advise(base, byteCount, .populateWrite) {
        case .success:
            return .populated
        case .failure(let error) where error.errno == EINVAL:
            MemoryCalls.touchPages(base, byteCount, pageSize: pageSize.isHugetlb ? pageSize.bytes : 4096)
            return .touched
        case .failure(let error):
            return .failed(error)
        }
    }
}
