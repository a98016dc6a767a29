import BuddyPools
import Testing

@Suite("MemoryPool")
struct MemoryPoolTests {
    @Test("allocations are aligned, distinct, and all memory comes back")
    func roundTrip() throws {
        let pool = try TestPools.make(capacity: 16 << 20)
        var pointers: [UnsafeMutableRawPointer] = []
        for size in [1, 64, 4096, 5000, 65536, 1 << 20, 2 << 20] {
            let pointer = try pool.allocate(byteCount: size)
            // Up to 3840 bytes an object of its class (16-byte aligned by default), above it a block.
            let held = size <= SizeClasses.maxObjectBytes ? SizeClasses.classBytes(size: size, alignment: 16)! : max(size, 4096).nextPowerOfTwo
            #expect(Int(bitPattern: pointer) % (size <= SizeClasses.maxObjectBytes ? 16 : min(held, 2 << 20)) == 0)
            #expect(pool.allocatedSize(of: pointer) == held)
            #expect(pool.heldBytes(forByteCount: size) == held)
            pointer.initializeMemory(as: UInt8.self, repeating: 0xAB, count: size)
            pointers.append(pointer)
        }
        #expect(Set(pointers).count == pointers.count)
        try pool.checkInvariants()
        for pointer in pointers { pool.deallocate(pointer) }
        pool.drainCaches()
        try pool.checkInvariants()
        let stats = pool.statistics
        #expect(stats.freeBytes == stats.capacityBytes)
        #expect(stats.whollyFreeSuperblocks == 8)
        #expect(stats.usedBytes == 0)
    }

    @Test("exhaustion throws with the request and the pool's state, and the pool stays usable")
    func exhaustion() throws {
        let pool = try TestPools.make(capacity: 4 << 20)
        let first = try pool.allocate(byteCount: 2 << 20)
        let second = try pool.allocate(byteCount: 2 << 20)
        #expect(throws: PoolError.self) { try pool.allocate(byteCount: 4096) }
        do {
            _ = try pool.allocate(byteCount: 8192, alignment: 4096)
            Issue.record("allocation from a full pool succeeded")
        } catch {
            guard case .exhausted(let details) = error else {
                Issue.record("expected exhausted, got \(error)")
                return
            }
            #expect(details.pool == "test")
            #expect(details.requestedBytes == 8192)
            #expect(details.freeBytes == 0)
            #expect(details.managedBytes == 4 << 20)
            #expect(error.description.contains("exhausted"))
        }
        pool.deallocate(first)
        let again = try pool.allocate(byteCount: 4096)
        pool.deallocate(again)
        pool.deallocate(second)
        pool.drainCaches()
        #expect(pool.statistics.failureCount == 2)
        #expect(pool.statistics.freeBytes == 4 << 20)
        try pool.checkInvariants()
    }

    @Test("malformed requests are rejected without touching the pool")
    func invalidRequests() throws {
        let pool = try TestPools.make(capacity: 4 << 20)
        #expect(throws: PoolError.self) { try pool.allocate(byteCount: 0) }
        #expect(throws: PoolError.self) { try pool.allocate(byteCount: -5) }
        #expect(throws: PoolError.self) { try pool.allocate(byteCount: 64, alignment: 48) }
        #expect(throws: PoolError.self) { try pool.allocate(byteCount: 1 << 40) }
        #expect(pool.statistics.freeBytes == 4 << 20)
    }

    @Test("validate reports each kind of bad pointer without trapping")
    func validation() throws {
        let pool = try TestPools.make(capacity: 8 << 20)
        let other = try TestPools.make("other", capacity: 4 << 20)
        let block = try pool.allocate(byteCount: 16384)
        let foreignBlock = try other.allocate(byteCount: 4096)
        var local = 0
        #expect(pool.validate(block) == nil)
        #expect(pool.owns(block))
        #expect(pool.validate(block, byteCount: 16384) == nil)
        #expect(pool.validate(block, byteCount: 12000) == nil)
        #expect(pool.validate(block, byteCount: 4096) == .wrongSize(given: 4096, allocatedBytes: 16384))
        #expect(pool.validate(block + 4096) == .interior(blockStart: UInt(bitPattern: block), blockBytes: 16384))
        #expect(pool.validate(block + 100) == .interior(blockStart: UInt(bitPattern: block), blockBytes: 16384))
        #expect(pool.validate(foreignBlock) == .wrongPool(owner: "other"))
        #expect(withUnsafeMutablePointer(to: &local) { pool.validate($0) } == .foreign)
        pool.deallocate(block)
        #expect(pool.validate(block) == .doubleFree(blockBytes: 16384))
        other.deallocate(foreignBlock)
    }

    @Test("metadata stays within 0.05% of managed bytes at 4 KiB blocks")
    func metadataCost() throws {
        let pool = try TestPools.make(capacity: 256 << 20)
        let stats = pool.statistics
        #expect(stats.metadataFraction <= 0.0005, "metadata \(stats.metadataBytes) bytes for \(stats.capacityBytes)")
        #expect(stats.metadataBytes > (256 << 20) / 4096, "at least one state byte per block is counted")
    }

    @Test("runs above a superblock are contiguous and respect alignment and boundary")
    func contiguousRuns() throws {
        let pool = try TestPools.make(capacity: 64 << 20)
        let run = try pool.allocateContiguous(byteCount: 6 << 20, alignment: 8 << 20, boundary: 16 << 20)
        let start = UInt(bitPattern: run)
        #expect(start % (8 << 20) == 0)
        #expect(start / (16 << 20) == (start + (6 << 20) - 1) / (16 << 20))
        #expect(pool.allocatedSize(of: run) == 6 << 20)
        run.initializeMemory(as: UInt8.self, repeating: 7, count: 6 << 20)
        #expect(pool.validate(run + (4 << 20)) == .interior(blockStart: start, blockBytes: 6 << 20))
        #expect(pool.validate(run, byteCount: 8 << 20) == .wrongSize(given: 8 << 20, allocatedBytes: 6 << 20))
        pool.deallocate(run, byteCount: 6 << 20)
        try pool.checkInvariants()
        #expect(pool.statistics.freeBytes + pool.statistics.cachedBytes == 64 << 20)
    }
}

extension Int {
    var nextPowerOfTwo: Int { self <= 1 ? 1 : 1 << (Int.bitWidth - (self - 1).leadingZeroBitCount) }
}

