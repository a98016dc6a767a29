import BuddyCaches
import BuddyConfig
import BuddyCore
import BuddySystem
import Synchronization

/// PoolCore's whole-superblock moves, each under the pool lock: lending own superblocks and
/// taking them back, attaching and returning borrowed ones, and releasing own superblocks to
/// the kernel for `shrink(to:)` and taking them back for `grow(to:)`. Two pools' cores are never
/// held at once: a loan is detached under the lender's lock and attached under the borrower's.
extension PoolCore {
    /// Own superblocks this pool holds now (lent and released ones are not held).
    var ownHeldCount: Int { arena.attachedSlotCount - borrowed.count }

    /// Own wholly free superblocks that can be lent without going below `minimumSuperblocks`,
    /// with their nodes.
    func lendableSuperblocks(minimumSuperblocks: Int) -> [(slot: Int, node: Int)] {
        let spare = ownHeldCount - minimumSuperblocks
        guard spare > 0 else { return [] }
        var result: [(Int, Int)] = []
        arena.forEachWhollyFreeSlot { slot in
            guard own.contains(slot: slot), result.count < spare else { return }
            // Where its pages will be: a heap region's superblock has none to sample yet.
            let (region, superblock) = own.location(slot: slot)
            result.append((slot, region.placementNode(ofSuperblock: superblock)))
        }
        return result
    }

    /// Detaches the named own slots for `borrower` where they are still free and the minimum holds.
    mutating func lend(slots: [Int], to borrower: UInt32, minimumSuperblocks: Int) -> [Loan] {
        var loans: [Loan] = []
        for slot in slots where own.contains(slot: slot) && lent[slot] == nil {
            // The borrower hands the memory out as it is: it must be committed here first.
            guard ownHeldCount - 1 >= minimumSuperblocks, commitOnFirstUse(slot: slot, count: 1), arena.detach(slot: slot) != nil else { continue }
            tracker.reset(slot: slot)
            let (region, superblock) = own.location(slot: slot)
            region.setOwner(superblock: superblock, 0)
            lent[slot] = borrower
            counters.superblocksLent += 1
            loans.append(Loan(region: region, superblock: superblock, lenderID: poolID))
        }
        return loans
    }

    /// Takes back an own superblock this pool lent (or one a borrower could not attach).
    /// Returns whether nothing is lent any more.
    mutating func acceptReturn(_ loan: Loan, pristine: Bool) -> Bool {
        let slot = own.slot(region: loan.region, superblock: loan.superblock)
        _ = arena.attach(
            base: loan.region.superblockBase(loan.superblock), stateTable: loan.region.stateTable(superblock: loan.superblock),
            superblockCount: 1, firstSlot: slot, pristine: pristine)
        lent[slot] = nil
        counters.superblocksRecalled += 1
        loan.region.setOwner(superblock: loan.superblock, poolID)
        checkAfterOperation(slot: slot)
        return lent.isEmpty
    }

    /// Attaches a borrowed superblock to a free borrowing slot, growing the slot storage when none
    /// is free (past the limit only for a loan whose lender is gone); false when it cannot.
    mutating func attachLoan(_ loan: Loan, beyondLimit: Bool = false, pristine: Bool) -> Bool {
        if freeBorrowingSlots == 0, !growSlots(by: 1, beyondLimit: beyondLimit) { return false }
        guard let slot = arena.attach(
            base: loan.region.superblockBase(loan.superblock), stateTable: loan.region.stateTable(superblock: loan.superblock),
            superblockCount: 1, searchFrom: own.count, pristine: pristine)
        else { return false }
        borrowed[slot] = loan
        counters.superblocksBorrowed += 1
        loan.region.setOwner(superblock: loan.superblock, poolID)
        checkAfterOperation(slot: slot)
        return true
    }

    /// Borrowing slots left: reserved slots not holding a loan now.
    var freeBorrowingSlots: Int { arena.slotCapacity - own.count - borrowed.count }

    /// Borrowing slots the storage may still grow by.
    var borrowingSlotsLeft: Int { max(0, slotLimit - own.count - borrowed.count) }

    /// Makes room for `count` more loans: the storage doubles (at least), up to the limit. The
    /// metadata mapping is made under the pool lock; a locked pool reserved every slot it may
    /// borrow into at creation, so this never maps on its path.
    mutating func growSlots(by count: Int, beyondLimit: Bool = false) -> Bool {
        let needed = own.count + borrowed.count + count
        guard needed > arena.slotCapacity else { return true }
        let limit = beyondLimit ? max(slotLimit, needed) : slotLimit
        guard needed <= limit else { return false }
        let target = min(limit, max(needed, arena.slotCapacity * 2))
        do throws(SystemError) {
            slots = try slots.grown(to: target, placement: placement)
            return true
        } catch {
            Diagnostics.report(.warning, DiagnosticEvent(.lending, .warning, subject: placement.label,
                message: "could not grow the borrowing slots to \(target): \(error)"))
            return false
        }
    }

    /// Detaches a wholly free borrowed superblock and queues it for return.
    mutating func detachLoan(slot: Int) {
        guard let loan = borrowed[slot], arena.detach(slot: slot) != nil else { return }
        borrowed[slot] = nil
        tracker.reset(slot: slot)
        loan.region.setOwner(superblock: loan.superblock, 0)
        pendingReturns.append(loan)
        counters.superblocksReturned += 1
    }

    /// A freed borrowed superblock goes home when its lender wants it or another one is free here.
    mutating func returnIfUnneeded(slot: Int) {
        guard let loan = borrowed[slot] else { return }
        guard LoanBoard.isRecalling(loan.lenderID) || arena.whollyFreeSlotCount > 1 else { return }
        detachLoan(slot: slot)
    }

    /// Detaches every wholly free superblock borrowed from `lender` and hands over the loans
    /// queued for it.
    mutating func giveBack(to lender: UInt32) -> [Loan] {
        for (slot, loan) in borrowed where loan.lenderID == lender && arena.isWhollyFree(slot: slot) {
            detachLoan(slot: slot)
        }
        var mine: [Loan] = []
        pendingReturns.removeAll { loan in
            guard loan.lenderID == lender else { return false }
            mine.append(loan)
            return true
        }
        return mine
    }

    /// The loans detached so far, to deliver after the lock is released.
    mutating func takePendingReturns() -> [Loan] {
        guard !pendingReturns.isEmpty else { return [] }
        defer { pendingReturns.removeAll(keepingCapacity: true) }
        return pendingReturns
    }

    /// Detaches a wholly free own superblock for `shrink(to:)`; its pages are the caller's to give
    /// back. Nil when the slot is not free.
    mutating func detachForRelease(slot: Int) -> (region: ManagedRegion, superblock: Int)? {
        guard own.contains(slot: slot), arena.detach(slot: slot) != nil else { return nil }
        tracker.reset(slot: slot)
        released.insert(slot)
        return own.location(slot: slot)
    }

    /// Attaches a released own superblock again: after `grow(to:)` repopulated it (`pristine`:
    /// the kernel's zero pages), or when giving its pages back failed and it keeps them.
    mutating func reattachReleased(slot: Int, pristine: Bool) {
        guard released.remove(slot) != nil else { return }
        let (region, superblock) = own.location(slot: slot)
        _ = arena.attach(base: region.superblockBase(superblock), stateTable: region.stateTable(superblock: superblock),
                         superblockCount: 1, firstSlot: slot, pristine: pristine)
        checkAfterOperation(slot: slot)
    }
}
