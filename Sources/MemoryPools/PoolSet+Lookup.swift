/// Which pool of a set holds an address, for callers that get bare pointers back (the C API).
extension PoolSet {
    /// The pool of this set that holds `pointer` now: the owner of its superblock (its own, or
    /// one it borrowed from another pool of the set); nil when no pool's region contains it.
    public func pool(holding pointer: UnsafeRawPointer) -> MemoryPool? {
        let address = UInt(bitPattern: pointer)
        for pool in pools {
            for region in pool.managedRegions where region.contains(address) {
                let owner = region.owner(superblock: Int(address - region.base) >> pool.geometry.superblockShift)
                return pools.first { $0.id == owner }
            }
        }
        return nil
    }
}
