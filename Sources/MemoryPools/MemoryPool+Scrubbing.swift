import BuddyConfig
import BuddyCore
import BuddySystem
import Glibc

// Scrubbing: what pools with `zero=` or `poison=1` do to memory as it is freed and handed out,
// and how every pool clears a superblock that arrives from another pool (a borrower never
// reads what the lender wrote). Pools without these options never reach the first two: their
// inlined paths do not call out here at all.

extension MemoryPool {
    /// A freed block, before anyone can get it again: poisoned, or zeroed for `zero=free`.
    func scrubFreed(_ address: UInt, byteCount: Int) {
        // Invariant: a checked block of a mapped region does not start at address 0.
        let pointer = UnsafeMutableRawPointer(bitPattern: address).unsafelyUnwrapped
        if configuration.poison {
            MemoryClearing.poison(pointer, byteCount)
        } else if configuration.zeroing == .onFree {
            memset(pointer, 0, byteCount)
        }
    }

    /// A block about to be handed out: in a poisoned pool its pattern checked (every free byte of
    /// such a pool holds the pattern: regions are filled as they are made, grown or lent, and
    /// blocks as they are freed or moved away from); then zeroed for `zero=alloc`, unless
    /// `knownZero` (from a superblock the kernel's zero pages fill and no free has touched).
    func prepareHandedOut(_ pointer: UnsafeMutableRawPointer, byteCount: Int, knownZero: Bool) {
        if configuration.poison {
            if let offset = MemoryClearing.firstUnpoisoned(pointer, byteCount) { useAfterFree(pointer, byteCount: byteCount, offset: offset) }
            if configuration.zeroing == .onAllocation { memset(pointer, 0, byteCount) }
            return
        }
        if configuration.zeroing == .onAllocation, !knownZero { memset(pointer, 0, byteCount) }
    }

    /// Stops the process: a freed block was written, so someone still uses memory the pool reused.
    func useAfterFree(_ pointer: UnsafeMutableRawPointer, byteCount: Int, offset: Int) -> Never {
        let value = pointer.load(fromByteOffset: offset, as: UInt8.self)
        fatalError("BuddyPools: pool '\(name)': use after free: the \(formatBytes(byteCount)) block at 0x\(String(UInt(bitPattern: pointer), radix: 16)) "
            + "was written after it was freed: byte +\(offset) is 0x\(String(value, radix: 16)), not the poison 0x\(String(MemoryClearing.poisonByte, radix: 16))")
    }

    /// The bytes a request is handed: its buddy block, its run, or (`trims`: an `allocate` of a
    /// `fit=exact` pool) the minimum blocks an exact-size allocation keeps.
    func blockBytes(forRequest byteCount: Int, alignment: Int, mobility: Mobility, trims: Bool) -> Int {
        guard let (order, _) = geometry.order(byteCount: byteCount, alignment: alignment) else {
            return geometry.superblockCount(byteCount: byteCount) << geometry.superblockShift
        }
        if trims, let blocks = trimmedBlocks(byteCount: byteCount, order: order, mobility: mobility) { return blocks << geometry.minBlockShift }
        return geometry.blockSize(order: order)
    }

    /// Clears a superblock that comes from another pool, by this pool's option: poisoned for a
    /// poisoned pool, else zeroed (MADV_DONTNEED and repopulation for base and transparent pages,
    /// a clear for hugetlb and locked ones). Returns whether it is now known to be zero. Runs
    /// while the superblock belongs to neither pool, outside both locks.
    func clearArriving(region: ManagedRegion, superblock: Int) -> Bool {
        // Invariant: a superblock of a mapped region does not start at address 0.
        let pointer = UnsafeMutableRawPointer(bitPattern: region.superblockBase(superblock)).unsafelyUnwrapped
        if configuration.poison {
            MemoryClearing.poison(pointer, geometry.superblockSize)
            return false
        }
        MemoryClearing.zero(pointer, geometry.superblockSize, pageSize: region.region.pageSize, locked: region.region.isLocked)
        return true
    }
}
