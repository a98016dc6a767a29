import CNuma
import Glibc

/// Faulting a range in at creation, so that nothing faults later.
enum PagePopulation {
    enum Outcome: Equatable {
        case populated
        /// The kernel predates MADV_POPULATE_WRITE (5.14): every page was written instead.
        case touched
        case failed(errno: Int32)
    }

    /// MADV_POPULATE_WRITE over the range; on a kernel without it (EINVAL), one write per page.
    /// Other failures (EFAULT when hugetlb pages run out, ENOMEM) are returned, not retried.
    static func populate(_ base: UnsafeMutableRawPointer, byteCount: Int, pageSize: PageSize) -> Outcome {
        guard cnuma_advise(base, byteCount, CNUMA_ADVISE_POPULATE_WRITE) != 0 else { return .populated }
        let code = currentErrno()
        guard code == EINVAL else { return .failed(errno: code) }
        cnuma_touch_pages(base, byteCount, pageSize.isHugetlb ? pageSize.bytes : 4096)
        return .touched
    }
}
