import BuddyCaches
import BuddyConfig
import BuddyCore
import BuddySystem
import Synchronization

// Movable handles: allocations compaction may move, resolved (and pinned) through the handle.

extension MemoryPool {
    /// A movable block behind a handle: compaction may move it (never while it is pinned).
    public func allocateMovable(
        byteCount: Int, alignment: Int = 16, file: StaticString = #fileID, line: UInt = #line
    ) throws(PoolError) -> MovableHandle {
        let pointer = try allocate(byteCount: byteCount, alignment: alignment, mobility: .movable, file: file, line: line)
        let address = UInt(bitPattern: pointer)
        guard let handle = core.locked({ _ in handles.register(address: address) }) else {
            deallocate(pointer)
            throw .invalidRequest(InvalidRequest(pool: name, byteCount: byteCount, alignment: alignment, reason: .largerThanPool))
        }
        return handle
    }

    /// Runs `body` with the block's address; the block cannot move until `body` returns.
    /// A handle that was freed stops the process with a message (it would read freed memory).
    public func withPinnedAddress<Result, E: Error>(
        of handle: MovableHandle, _ body: (UnsafeMutableRawPointer) throws(E) -> Result
    ) throws(E) -> Result {
        guard let entry = handles.pin(handle) else {
            fatalError("BuddyPools: pool '\(name)': \(handle) is not live (freed, or from another pool)")
        }
        defer { handles.unpin(entry) }
        // Invariant: a pinned live handle's address is a block start in mapped pool memory.
        return try body(UnsafeMutableRawPointer(bitPattern: entry.pointee.address.load(ordering: .acquiring))!)
    }

    /// The block's address now; it stays valid until the next compaction (pin it to be sure).
    public func currentAddress(of handle: MovableHandle) -> UnsafeMutableRawPointer? {
        guard let entry = handles.entry(handle.index) else { return nil }
        let state = entry.pointee.state.load(ordering: .acquiring)
        guard HandleTable.generation(of: state) == handle.generation & 0xFF_FFFF else { return nil }
        return UnsafeMutableRawPointer(bitPattern: entry.pointee.address.load(ordering: .acquiring))
    }

    /// Frees a handle's block. Freeing a stale handle, or one that is pinned, stops the process.
    public func deallocate(_ handle: MovableHandle) {
        let address = core.locked { core -> UInt? in
            guard let entry = handles.entry(handle.index) else { return nil }
            let state = entry.pointee.state.load(ordering: .acquiring)
            guard HandleTable.generation(of: state) == handle.generation & 0xFF_FFFF else { return nil }
            guard HandleTable.pins(of: state) == 0 else {
                fatalError("BuddyPools: pool '\(name)': \(handle) freed while pinned by withPinnedAddress")
            }
            let address = entry.pointee.address.load(ordering: .acquiring)
            handles.unregister(handle, address: address)
            return address
        }
        guard let address else {
            fatalError("BuddyPools: pool '\(name)': deallocate(\(handle)): double free or foreign handle")
        }
        deallocate(UnsafeMutableRawPointer(bitPattern: address)!)
    }
}
