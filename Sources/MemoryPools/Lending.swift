import BuddyCaches
import BuddyConfig
import BuddyCore
import BuddySystem
import Synchronization

// Lending: the policy of which superblocks move between the pools of a set and when (priority,
// min and max, node distance, compatible memory); the moves themselves are PoolCore's.

/// The pools of one `PoolSet` that may lend each other superblocks.
final class LendingGroup: Sendable {
    let pools: [MemoryPool]

    init(pools: [MemoryPool]) { self.pools = pools }

    func pool(id: UInt32) -> MemoryPool? { pools.first { $0.id == id } }
}

/// Which lenders want their superblocks back; a leaf lock, taken under a pool lock.
enum LoanBoard {
    private static let recalling = Mutex<Set<UInt32>>([])

    static func isRecalling(_ lender: UInt32) -> Bool { recalling.locked { $0.contains(lender) } }
    static func setRecalling(_ lender: UInt32, _ on: Bool) {
        recalling.locked { if on { $0.insert(lender) } else { $0.remove(lender) } }
    }
}

/// A free superblock a lender could give: which one, on which node, how far from the borrower.
struct LoanOffer {
    let lender: MemoryPool
    let slot: Int
    let node: Int
    let distance: Int
}

extension MemoryPool {
    var lendingGroup: LendingGroup? { lending.locked { $0.group } }

    /// Whether superblocks of `lender` may serve this pool: a lender that lends (a locked pool
    /// only with `lend=1`), of lower priority, same geometry and page size, and locked memory
    /// only between locked pools both ways: a locked borrower takes only populated, locked
    /// superblocks, and an unlocked pool never holds a realtime pool's memory (its recall would
    /// wait on an unlocked pool's frees and drains).
    func canBorrow(from lender: MemoryPool) -> Bool {
        lender !== self && lender.configuration.lendsSuperblocks && lender.priority < priority && lender.geometry == geometry
            && lender.regions.first?.pageSize == regions.first?.pageSize
            && configuration.locked == lender.configuration.locked
    }

    /// Distance from this pool's nodes to `node` (10 is local); a large number when unknown.
    func distance(to node: Int) -> Int {
        nodes.compactMap { topology.distance(from: $0, to: node) }.min() ?? 255
    }

    /// Borrows up to `superblocks` free superblocks from lower-priority pools, nearest node
    /// first, never above this pool's `max` nor below a lender's `min`. Returns how many.
    func borrow(superblocks wanted: Int) -> Int {
        // Slots first: a pool that may not borrow at all (no lender in its set) returns here
        // without touching the group, allocation-free on a realtime thread.
        let (owned, freeSlots) = core.locked { core in (core.arena.attachedSlotCount, core.borrowingSlotsLeft) }
        var budget = min(wanted, freeSlots)
        if let maximum = configuration.maximumBytes { budget = min(budget, (maximum >> geometry.superblockShift) - owned) }
        guard budget > 0, let group = lendingGroup else { return 0 }
        var offers = loanOffers(from: group)
        if offers.count < budget {
            // Lenders that may compact empty their cheapest superblocks for a higher priority.
            for lender in group.pools where canBorrow(from: lender) && lender.configuration.compaction && !lender.configuration.locked {
                lender.compact(superblocks: budget - offers.count)
            }
            offers = loanOffers(from: group)
        }
        offers.sort { ($0.distance, $0.lender.priority, $0.slot) < ($1.distance, $1.lender.priority, $1.slot) }
        var taken = 0
        var byLender: [ObjectIdentifier: (MemoryPool, [Int])] = [:]
        for offer in offers.prefix(budget) {
            byLender[ObjectIdentifier(offer.lender), default: (offer.lender, [])].1.append(offer.slot)
        }
        for (lender, slots) in byLender.values {
            let loans = lender.lend(slots: slots, to: self)
            // Cleared while it belongs to neither pool: the borrower never reads the lender's data.
            let cleared = loans.map { clearArriving(region: $0.region, superblock: $0.superblock) }
            let rejected = core.locked { core in zip(loans, cleared).filter { !core.attachLoan($0.0, pristine: $0.1) }.map(\.0) }
            for loan in rejected { lender.acceptReturn(loan) }
            taken += loans.count - rejected.count
            if loans.count > rejected.count {
                Diagnostics.report(.info, DiagnosticEvent(.lending, .info, subject: "pool \(name)",
                    message: "borrowed \(loans.count - rejected.count) superblocks from pool '\(lender.name)'",
                    bytes: (loans.count - rejected.count) << geometry.superblockShift))
            }
        }
        return taken
    }

    /// Free superblocks of every lender this pool may borrow from, on nodes its policy allows.
    private func loanOffers(from group: LendingGroup) -> [LoanOffer] {
        var offers: [LoanOffer] = []
        for lender in group.pools where canBorrow(from: lender) {
            offers += lender.lendableSuperblocks().compactMap { slot, node in
                if policy.restrictsToNodes, !nodes.contains(node) { return nil }
                return LoanOffer(lender: lender, slot: slot, node: node, distance: distance(to: node))
            }
        }
        return offers
    }

    /// Superblocks this pool keeps whatever borrowers want (`min`).
    var minimumSuperblocks: Int { (configuration.minimumBytes + geometry.superblockSize - 1) >> geometry.superblockShift }

    /// Own wholly free superblocks this pool could lend without going below `min`, with their nodes.
    func lendableSuperblocks() -> [(slot: Int, node: Int)] {
        core.locked { core in core.lendableSuperblocks(minimumSuperblocks: minimumSuperblocks) }
    }

    /// Detaches the named own slots for `borrower` where they are still free and `min` holds.
    func lend(slots: [Int], to borrower: MemoryPool) -> [Loan] {
        core.locked { core in core.lend(slots: slots, to: borrower.id, minimumSuperblocks: minimumSuperblocks) }
    }

    /// Takes back a superblock this pool lent (or one a borrower could not attach).
    func acceptReturn(_ loan: Loan) {
        let pristine = clearArriving(region: loan.region, superblock: loan.superblock)
        let nothingLent = core.locked { core in core.acceptReturn(loan, pristine: pristine) }
        if nothingLent { LoanBoard.setRecalling(id, false) }
    }

    /// Hands superblocks freed in this pool back to their lenders (outside this pool's lock).
    func deliverReturns(_ loans: [Loan]) {
        guard !loans.isEmpty else { return }
        let group = lendingGroup
        for loan in loans {
            if let lender = group?.pool(id: loan.lenderID) {
                lender.acceptReturn(loan)
            } else {
                // The lender is gone (its set was torn down): keep the superblock, slots or not.
                let kept = core.locked { core in core.attachLoan(loan, beyondLimit: true, pristine: false) }
                if !kept {
                    Diagnostics.report(.warning, DiagnosticEvent(.lending, .warning, subject: "pool \(name)",
                        message: "a superblock whose lender is gone could not be kept (no metadata for a slot)", bytes: geometry.superblockSize))
                }
            }
        }
    }

    /// Asks borrowers for this pool's free superblocks back: those wholly free in a borrower's
    /// arena come back now; when none is, an unlocked borrower's caches are drained first. A
    /// locked borrower (the only kind a locked pool lends to) is never drained from another
    /// pool's thread: the flag stays raised and its loans go home as its own threads free and
    /// drain them. Returns how many came back now.
    func recallLoans() -> Int {
        let borrowers = Set(core.locked { $0.lent.values })
        guard !borrowers.isEmpty, let group = lendingGroup else { return 0 }
        LoanBoard.setRecalling(id, true)
        var returned = 0
        for borrowerID in borrowers {
            guard let borrower = group.pool(id: borrowerID) else { continue }
            var loans = borrower.giveBack(to: id)
            if loans.isEmpty, borrower.caches != nil, !borrower.configuration.locked {
                borrower.drainCaches()
                loans = borrower.giveBack(to: id)
            }
            for loan in loans { acceptReturn(loan) }
            returned += loans.count
        }
        if returned > 0 {
            Diagnostics.report(.info, DiagnosticEvent(.lending, .info, subject: "pool \(name)", message: "recalled \(returned) lent superblocks",
                bytes: returned << geometry.superblockShift))
        }
        return returned
    }

    /// Detaches every wholly free superblock borrowed from `lender`.
    func giveBack(to lender: UInt32) -> [Loan] {
        core.locked { core in core.giveBack(to: lender) }
    }
}
