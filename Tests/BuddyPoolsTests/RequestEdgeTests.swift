import BuddyPools
import TestSupport
import Testing

/// Every request answered: a block with the alignment asked for, or a typed error that says
/// why, never a trap; the pool goes on with nothing lost. Edges of sizes and alignments alone
/// and combined, the requests issue 12 saw trap, and random requests.
@Suite("Every request answered")
struct RequestEdgeTests {
    static let superblock = 2 << 20

    /// Sizes and alignments at every edge: 0, 1, the minimum block and the superblock with their
    /// neighbours, every power of two up to 2^62, Int.max and its neighbours, negatives.
    static let edges: [Int] = {
        var values: Set<Int> = [0, 1, 2, 3, 4095, 4096, 4097, superblock - 1, superblock, superblock + 1,
                                Int.max, Int.max - 1, Int.max - 4095, Int.min, Int.min + 1, -1, -4096]
        for shift in 0...62 { values.insert(1 << shift) }
        return values.sorted()
    }()

    /// Whether some region of the pool holds an address aligned to `alignment` with `bytes` after it.
    static func fits(_ pool: MemoryPool, alignment: Int, bytes: Int) -> Bool {
        pool.regions.contains { region in
            let mask = UInt(alignment) - 1
            let (raised, overflow) = region.addressRange.lowerBound.addingReportingOverflow(mask)
            guard !overflow else { return false }
            let start = raised & ~mask
            return start < region.addressRange.upperBound && region.addressRange.upperBound - start >= UInt(bytes)
        }
    }

    /// What a fresh 64 MiB pool must answer for one request, checked; frees what it got.
    static func check(_ pool: MemoryPool, byteCount: Int, alignment: Int) {
        let result = pool.tryAllocate(byteCount: byteCount, alignment: alignment)
        let powerOfTwo = alignment > 0 && alignment & (alignment - 1) == 0
        switch result {
        case .success(let pointer):
            #expect(byteCount > 0 && powerOfTwo, "size \(byteCount) alignment \(alignment) was served")
            #expect(Int(bitPattern: pointer) & (max(alignment, 1) - 1) == 0, "size \(byteCount): not aligned to \(alignment)")
            #expect(pool.validate(pointer) == nil)
            pool.deallocate(pointer)
        case .failure(.invalidRequest(let details)):
            switch details.reason {
            case .zeroOrNegativeSize: #expect(byteCount <= 0)
            case .alignmentNotPowerOfTwo: #expect(byteCount > 0 && !powerOfTwo)
            case .largerThanPool: #expect(byteCount > pool.capacity, "size \(byteCount) alignment \(alignment): \(details)")
            case .alignmentUnsatisfiable:
                let bytes = max(superblock, (byteCount + superblock - 1) / superblock * superblock)
                #expect(alignment > superblock && !fits(pool, alignment: alignment, bytes: bytes), "\(details)")
            case .countOverflow: Issue.record("count overflow for an untyped request: \(details)")
            }
        case .failure(let error):
            // A fresh pool with everything free serves whatever fits it and its alignment.
            let bytes = max(superblock, (byteCount + superblock - 1) / superblock * superblock)
            let satisfiable = byteCount > 0 && powerOfTwo && byteCount <= pool.capacity
                && (alignment <= superblock || fits(pool, alignment: alignment, bytes: bytes))
            #expect(!satisfiable, "size \(byteCount) alignment \(alignment) failed: \(error)")
        }
    }

    @Test("the requests that trapped are answered, and the valid ones served with the alignment asked for")
    func issueRequests() throws {
        let pool = try TestPools.make("edges", capacity: 64 << 20)
        for (size, alignment) in [(Int.max, 16), (Int.max - 4095, 4096), (4096, 1 << 40), (4096, 1 << 62)] {
            guard case .failure(.invalidRequest) = pool.tryAllocate(byteCount: size, alignment: alignment) else {
                // 4096 bytes aligned to 1 TiB are possible only if the region happens to hold such an address.
                #expect(Self.fits(pool, alignment: alignment, bytes: Self.superblock), "size \(size) alignment \(alignment)")
                continue
            }
        }
        let a = try pool.allocate(byteCount: 4096, alignment: 4 << 20)
        #expect(Int(bitPattern: a) % (4 << 20) == 0)
        let b = try pool.allocate(byteCount: 1, alignment: 32 << 20)
        #expect(Int(bitPattern: b) % (32 << 20) == 0)
        #expect(pool.allocatedSize(of: b) == Self.superblock)
        pool.deallocate(a, byteCount: 4096)
        pool.deallocate(b, byteCount: 1)
        try pool.checkInvariants()
        let stats = pool.statistics
        #expect(stats.usedBytes == 0)
        let again = try pool.allocate(byteCount: 64 << 10)
        pool.deallocate(again)
    }

    @Test("every size edge with every alignment edge: a block or a typed error, and nothing lost")
    func sizeAndAlignmentEdges() throws {
        let pool = try TestPools.make("edge-grid", capacity: 64 << 20)
        for size in Self.edges {
            for alignment in Self.edges { Self.check(pool, byteCount: size, alignment: alignment) }
        }
        try pool.checkInvariants()
        #expect(pool.statistics.usedBytes == 0)
        #expect(pool.statistics.freeBytes + pool.statistics.cachedBytes == pool.statistics.managedBytes)
    }

    @Test("contiguous runs, typed counts and sized checks at the edges answer without a trap")
    func otherEntryPoints() throws {
        let pool = try TestPools.make("edge-other", capacity: 64 << 20)
        for size in Self.edges {
            for boundary in [0, 4096, Self.superblock, 1 << 40, -1, 3, Int.max] {
                if case .success(let pointer) = Result(catching: { () throws(PoolError) in
                    try pool.allocateContiguous(byteCount: size, alignment: 4096, boundary: boundary)
                }) {
                    #expect(boundary >= 0 && (boundary == 0 || boundary & (boundary - 1) == 0))
                    if boundary > 0 {
                        let start = UInt(bitPattern: pointer)
                        #expect(start / UInt(boundary) == (start + UInt(size) - 1) / UInt(boundary), "crosses \(boundary)")
                    }
                    pool.deallocate(pointer)
                }
            }
        }
        for count in [Int.min, -1, 0, Int.max, Int.max / 8, Int.max / 8 + 1] {
            #expect(throws: PoolError.self) { _ = try pool.allocate(UInt64.self, count: count) }
        }
        let block = try pool.allocate(byteCount: 8192)
        for size in Self.edges where size != 8192 && size != 5000 {
            // A sized check with a wrong size names the problem; it never traps.
            if size > 4096, size <= 8192 { continue }
            #expect(pool.validate(block, byteCount: size) != nil, "size \(size)")
        }
        pool.deallocate(block)
        pool.drainCaches()
        // Counts and targets of the maintenance calls.
        #expect(pool.reclaimCandidates(count: -1).isEmpty)
        #expect(pool.reclaimCandidates(count: Int.max).count == 32)
        #expect(pool.topAllocationSites(-5).isEmpty)
        for count in [0, Int.max, -1] {
            let report = pool.compactRun(count: count)
            #expect(report.blocksMoved == 0 && report.superblocksFreed == 0, "nothing to move in an empty pool (count \(count))")
        }
        #expect(pool.compact(superblocks: -1).superblocksFreed == 0)
        #expect(pool.shrink(to: Int.max).releasedBytes == 0)
        #expect(pool.shrink(to: -1).managedBytesAfter == 0, "a target below zero is zero")
        #expect(try pool.grow(to: Int.min) == 0)
        #expect(try pool.grow(to: Int.max) == 64 << 20)
        try pool.checkInvariants()
        #expect(pool.statistics.usedBytes == 0)
    }

    @Test("random requests of any size and alignment never trap, and the pool ends whole", arguments: [1, 2, 3])
    func randomRequests(seed: UInt64) throws {
        let pool = try TestPools.make("edge-random", capacity: 32 << 20)
        var random = SplitMix64(seed: seed)
        var live: [(UnsafeMutableRawPointer, Int)] = []
        var served = 0
        for _ in 0..<TestScale.operations(40_000) {
            if !live.isEmpty, random.next() % 3 == 0 {
                let (pointer, size) = live.swapRemoveRandom(&random)!
                if random.next() & 1 == 0 { pool.deallocate(pointer, byteCount: size) } else { pool.deallocate(pointer) }
                continue
            }
            // Sizes from every magnitude (most small), sometimes negative; alignments likewise.
            let shift = Int(random.next() % 64)
            var size = Int(truncatingIfNeeded: random.next() >> UInt64(shift))
            if random.next() % 16 == 0 { size = -size }
            let alignment = random.next() % 8 == 0 ? Int(truncatingIfNeeded: random.next()) : 1 << Int(random.next() % 24)
            switch pool.tryAllocate(byteCount: size, alignment: alignment) {
            case .success(let pointer):
                #expect(Int(bitPattern: pointer) & (alignment - 1) == 0)
                live.append((pointer, size))
                served += 1
            case .failure(.invalidRequest), .failure(.exhausted): break
            case .failure(let error): Issue.record("unexpected \(error)")
            }
        }
        // Small requests are most of the draws (shift >= 40 gives at most 16 MiB), so many are served.
        #expect(served >= TestScale.operations(40_000) / 10, "only \(served) requests served")
        for (pointer, _) in live { pool.deallocate(pointer) }
        try pool.checkInvariants()
        pool.drainCaches()
        #expect(pool.statistics.usedBytes == 0)
        #expect(pool.statistics.whollyFreeSuperblocks == 16, "every superblock whole again")
    }

    @Test("id lists refuse ids out of range without trapping")
    func idSets() {
        var nodes = NodeSet()
        #expect(nodes.insert(-1) == false)
        #expect(nodes.insert(NodeSet.maximumID + 1) == false)
        #expect(nodes.insert(3) == true)
        #expect(nodes == [3])
        #expect(NodeSet([-5, 1 << 40]).isEmpty)
    }
}
