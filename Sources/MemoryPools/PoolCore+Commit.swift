import BuddySystem

/// Own superblocks not yet committed, in pools whose regions commit on demand (the malloc
/// heap's, made with `populatedAtCreation = false`): reserved at creation and made readable and
/// writable when the arena first hands out memory from them. LD_PRELOAD puts a heap in every
/// process a program starts (a shell, a compiler driver); under strict overcommit
/// (`vm.overcommit_memory=2`) each would otherwise be charged the heap's whole size at start.
struct UncommittedSuperblocks {
    /// By own slot: true until the superblock is committed.
    private var flags: [Bool]
    /// Own superblocks still uncommitted; 0 for every other pool, whose paths then test one integer.
    private(set) var count: Int
    /// Whether a refusal was reported: once per pool, since every later request may meet it too.
    var failureReported = false

    /// Every own superblock of a region that commits on demand, unless `allCommitted`.
    init(own: OwnSuperblocks, allCommitted: Bool) {
        flags = allCommitted ? [] : own.regions.flatMap { [Bool](repeating: $0.region.commitsOnDemand, count: $0.superblockCount) }
        count = flags.lazy.filter { $0 }.count
    }

    func contains(slot: Int) -> Bool { slot >= 0 && slot < flags.count && flags[slot] }

    mutating func remove(slot: Int) {
        guard contains(slot: slot) else { return }
        flags[slot] = false
        count -= 1
    }
}

extension PoolCore {
    /// Commits the own superblocks among `slot ..< slot + count` the arena is handing out for the
    /// first time; false when the kernel refused (ENOMEM under strict overcommit or RLIMIT_DATA),
    /// and the caller then gives the memory back to the arena untouched. Borrowed superblocks
    /// were committed by their lender before it lent them.
    @inline(__always)
    mutating func commitOnFirstUse(slot: Int, count: Int) -> Bool {
        uncommitted.count == 0 || commitSlowly(slot: slot, count: count)
    }

    private mutating func commitSlowly(slot first: Int, count: Int) -> Bool {
        for slot in first..<(first + count) where uncommitted.contains(slot: slot) {
            let (region, superblock) = own.location(slot: slot)
            do throws(SystemError) {
                try region.region.commit(offset: superblock << region.geometry.superblockShift, byteCount: region.geometry.superblockSize)
            } catch {
                if !uncommitted.failureReported {
                    uncommitted.failureReported = true
                    Diagnostics.report(.warning, DiagnosticEvent(.lifecycle, .warning, subject: region.region.label,
                        message: "\(error); requests that need a new superblock fail until the kernel commits more", bytes: region.geometry.superblockSize))
                }
                return false
            }
            uncommitted.remove(slot: slot)
        }
        return true
    }
}
