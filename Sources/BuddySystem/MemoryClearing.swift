import BuddyCore
import Glibc

/// Clearing memory that changes hands (a superblock lent to another pool, a block freed in a
/// `zero=` pool) and the poison pattern of `poison=1` pools.
package enum MemoryClearing {
    /// The byte freed blocks of poisoned pools are filled with.
    package static let poisonByte: UInt8 = 0xA5

    /// Zeroes a range by the cheapest means for its pages: for base and transparent pages that are
    /// not locked, MADV_DONTNEED (the kernel hands back zero pages) and MADV_POPULATE_WRITE (they
    /// are faulted in again now, so nothing faults later); for hugetlb or locked pages (DONTNEED
    /// would free the hugepage, or fails on locked memory) a plain clear. Whatever a call refuses
    /// falls back to the clear, so the range is zero when this returns.
    package static func zero(_ base: UnsafeMutableRawPointer, _ byteCount: Int, pageSize: PageSize, locked: Bool) {
        if !locked, !pageSize.isHugetlb, case .success = MemoryCalls.advise(base, byteCount, .dontNeed) {
            switch PagePopulation.populate(base, byteCount: byteCount, pageSize: pageSize) {
            case .populated, .touched: return
            // The pages are zero already; touching faults them in as population would have.
            case .failed: MemoryCalls.touchPages(base, byteCount, pageSize: 4096)
            }
            return
        }
        memset(base, 0, byteCount)
    }

    /// Fills a range with the poison byte.
    package static func poison(_ base: UnsafeMutableRawPointer, _ byteCount: Int) {
        memset(base, Int32(poisonByte), byteCount)
    }

    /// The offset of the first byte that is not the poison byte, or nil when all are.
    package static func firstUnpoisoned(_ base: UnsafeRawPointer, _ byteCount: Int) -> Int? {
        let pattern = UInt64(poisonByte) &* 0x0101_0101_0101_0101
        let words = byteCount / 8
        let wordPointer = base.assumingMemoryBound(to: UInt64.self)
        for index in 0..<words where wordPointer[index] != pattern {
            let bytes = base + index * 8
            for offset in 0..<8 where bytes.load(fromByteOffset: offset, as: UInt8.self) != poisonByte { return index * 8 + offset }
        }
        for offset in (words * 8)..<byteCount where base.load(fromByteOffset: offset, as: UInt8.self) != poisonByte { return offset }
        return nil
    }
}
