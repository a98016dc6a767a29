import BuddyPools
import TestSupport
import Synchronization
import Testing

@Suite("Anti-fragmentation: grouping, compaction, shrinkers, shrink and grow")
struct AntiFragmentationTests {
    static let superblock = 2 << 20

    /// Writes a recognizable pattern over a whole block.
    static func fill(_ pointer: UnsafeMutableRawPointer, bytes: Int, seed: UInt64) {
        let words = pointer.bindMemory(to: UInt64.self, capacity: bytes / 8)
        for index in 0..<(bytes / 8) { words[index] = seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64(index) }
    }

    static func check(_ pointer: UnsafeMutableRawPointer, bytes: Int, seed: UInt64) -> Bool {
        let words = pointer.bindMemory(to: UInt64.self, capacity: bytes / 8)
        return (0..<(bytes / 8)).allSatisfy { words[$0] == seed &* 0x9E37_79B9_7F4A_7C15 &+ UInt64($0) }
    }

    /// A pool whose movable superblocks are half empty: every other 64 KiB handle freed.
    static func fragmentedPool(compaction: Bool = true) throws -> (MemoryPool, [(MovableHandle, UInt64)], [(UnsafeMutableRawPointer, UInt64)]) {
        let pool = try TestPools.make("frag", capacity: 16 << 20) {
            $0.compaction = compaction
            $0.cache.enabled = false
        }
        var unmovable: [(UnsafeMutableRawPointer, UInt64)] = []
        for seed in 1...8 {
            let block = try pool.allocate(byteCount: 65536)
            fill(block, bytes: 65536, seed: UInt64(seed))
            unmovable.append((block, UInt64(seed)))
        }
        var handles: [(MovableHandle, UInt64)] = []
        var seed: UInt64 = 100
        while let handle = try? pool.allocateMovable(byteCount: 65536) {
            seed += 1
            pool.withPinnedAddress(of: handle) { fill($0, bytes: 65536, seed: seed) }
            handles.append((handle, seed))
        }
        var kept: [(MovableHandle, UInt64)] = []
        for (index, entry) in handles.enumerated() {
            if index % 2 == 0 { pool.deallocate(entry.0) } else { kept.append(entry) }
        }
        return (pool, kept, unmovable)
    }

    @Test("compaction empties movable superblocks, moves no unmovable block, and every handle still reads its data")
    func compaction() throws {
        let (pool, handles, unmovable) = try Self.fragmentedPool()
        let before = pool.statistics
        #expect(before.whollyFreeSuperblocks == 0, "the fragmented pool has no free superblock")
        let addresses = unmovable.map { UInt(bitPattern: $0.0) }
        let report = pool.compact(superblocks: 3)
        #expect(report.superblocksFreed >= 3, "\(report)")
        #expect(report.blocksMoved > 0 && report.bytesMoved == report.blocksMoved * 65536)
        #expect(pool.statistics.whollyFreeSuperblocks >= 3)
        for ((block, seed), address) in zip(unmovable, addresses) {
            #expect(UInt(bitPattern: block) == address)
            #expect(Self.check(block, bytes: 65536, seed: seed), "an unmovable block was disturbed")
        }
        for (handle, seed) in handles {
            #expect(pool.withPinnedAddress(of: handle) { Self.check($0, bytes: 65536, seed: seed) }, "\(handle) lost its data")
        }
        try pool.checkInvariants()
        #expect(pool.statistics.superblocksCompacted >= 3 && pool.statistics.bytesMoved == report.bytesMoved)
    }

    @Test("a pinned block is not moved")
    func pinnedStays() throws {
        let (pool, handles, _) = try Self.fragmentedPool()
        let (handle, seed) = handles[0]
        pool.withPinnedAddress(of: handle) { address in
            let report = pool.compact(superblocks: 8)
            #expect(report.blocksSkipped >= 1)
            #expect(pool.currentAddress(of: handle) == address, "a pinned block moved")
            #expect(Self.check(address, bytes: 65536, seed: seed))
        }
        try pool.checkInvariants()
    }

    @Test("a max-order request that finds no free superblock is met by compaction; without compaction it fails")
    func superblockRequest() throws {
        let (pool, _, _) = try Self.fragmentedPool()
        let block = try pool.allocate(byteCount: Self.superblock)
        #expect(pool.statistics.superblocksCompacted >= 1)
        pool.deallocate(block)
        try pool.checkInvariants()

        let (plain, _, _) = try Self.fragmentedPool(compaction: false)
        #expect(throws: PoolError.self) { try plain.allocate(byteCount: Self.superblock) }
    }

    @Test("raw movable blocks move only through the relocation handler, which may refuse")
    func relocationHandler() throws {
        let pool = try TestPools.make("raw", capacity: 8 << 20) { $0.cache.enabled = false }
        let table = Mutex<[UInt: UInt64]>([:])  // current address -> seed, what the "owner" tracks
        var raw: [UnsafeMutableRawPointer] = []
        while let block = try? pool.allocate(byteCount: 65536, mobility: .movable) { raw.append(block) }
        for (index, block) in raw.enumerated() {
            if index % 2 == 0 {
                pool.deallocate(block)
            } else {
                Self.fill(block, bytes: 65536, seed: UInt64(index))
                table.locked { $0[UInt(bitPattern: block)] = UInt64(index) }
            }
        }
        #expect(pool.compact(superblocks: 1).blocksMoved == 0, "no handler: raw movable blocks stay put")
        let refuse = Atomic<Int>(3)
        pool.setRelocationHandler { move in
            if refuse.subtract(1, ordering: .relaxed).newValue >= 0 { return false }
            move.destinationPointer.copyMemory(from: move.sourcePointer, byteCount: move.byteCount)
            return table.locked { table in
                guard let seed = table.removeValue(forKey: move.source) else { return false }
                table[move.destination] = seed
                return true
            }
        }
        let report = pool.compact(superblocks: 1)
        #expect(report.blocksMoved > 0 && report.blocksSkipped >= 3, "\(report)")
        #expect(pool.statistics.relocationsRefused >= 3)
        for (address, seed) in table.locked({ $0 }) {
            #expect(Self.check(UnsafeMutableRawPointer(bitPattern: address)!, bytes: 65536, seed: seed))
            #expect(pool.owns(UnsafeRawPointer(bitPattern: address)!))
        }
        try pool.checkInvariants()
    }

    @Test("shrinkers are asked before a request fails, and only then")
    func shrinkers() throws {
        let pool = try TestPools.make("cache", capacity: 8 << 20) { $0.cache.enabled = false }
        let held = Mutex<[UInt]>([])  // addresses: Sendable, unlike pointers
        while let block = try? pool.allocate(byteCount: 256 << 10, mobility: .reclaimable) { held.locked { $0.append(UInt(bitPattern: block)) } }
        let calls = Atomic<Int>(0)
        let registration = pool.registerShrinker { request in
            calls.add(1, ordering: .relaxed)
            var freed = 0
            while freed < request.bytesWanted, let address = held.locked({ $0.popLast() }) {
                pool.deallocate(UnsafeMutableRawPointer(bitPattern: address)!)
                freed += 256 << 10
            }
            return freed
        }
        #expect(calls.load(ordering: .relaxed) == 0)
        let block = try pool.allocate(byteCount: 512 << 10)
        #expect(calls.load(ordering: .relaxed) >= 1, "the shrinker ran before the request failed")
        #expect(pool.statistics.bytesReclaimed >= 512 << 10)
        pool.deallocate(block)
        pool.unregisterShrinker(registration)
        while let more = try? pool.allocate(byteCount: 256 << 10, mobility: .reclaimable) { held.locked { $0.append(UInt(bitPattern: more)) } }
        let before = calls.load(ordering: .relaxed)
        #expect(throws: PoolError.self) { try pool.allocate(byteCount: 256 << 10) }
        #expect(calls.load(ordering: .relaxed) == before, "an unregistered shrinker is not called")
        for address in held.locked({ $0 }) { pool.deallocate(UnsafeMutableRawPointer(bitPattern: address)!) }
        try pool.checkInvariants()
    }

    @Test("shrink gives memory back cheapest-first and grow brings it back")
    func shrinkAndGrow() throws {
        let (pool, handles, unmovable) = try Self.fragmentedPool()
        // 8.25 MiB stay live (124 handles of 64 KiB and 512 KiB unmovable): five superblocks at least.
        let report = pool.shrink(to: 10 << 20)
        #expect(report.managedBytesAfter <= 10 << 20, "\(report)")
        #expect(report.releasedBytes == 6 << 20)
        #expect(report.compaction.superblocksFreed >= 3)
        #expect(pool.statistics.managedBytes <= 10 << 20)
        #expect(pool.shrink(to: 8 << 20).managedBytesAfter == 10 << 20, "nothing more can be freed, and shrink says so")
        for (handle, seed) in handles {
            #expect(pool.withPinnedAddress(of: handle) { Self.check($0, bytes: 65536, seed: seed) })
        }
        for (block, seed) in unmovable { #expect(Self.check(block, bytes: 65536, seed: seed)) }
        try pool.checkInvariants()
        let added = try pool.grow(to: 16 << 20)
        #expect(added == report.releasedBytes)
        #expect(pool.statistics.managedBytes == 16 << 20)
        let block = try pool.allocate(byteCount: 4 << 20)
        Self.fill(block, bytes: 4 << 20, seed: 9)
        pool.deallocate(block)
        try pool.checkInvariants()
    }

    @Test("a borrower gets superblocks a lender empties by compaction")
    func lenderCompacts() throws {
        let set = try PoolSet(environment: ["BUDDYPOOLS": "hi:size=2M,priority=10,page=4K,cache=off;lo:size=8M,priority=1,page=4K,cache=off"])
        let hi = try #require(set["hi"]), lo = try #require(set["lo"])
        var handles: [MovableHandle] = []
        while let handle = try? lo.allocateMovable(byteCount: 65536) { handles.append(handle) }
        for (index, handle) in handles.enumerated() where index % 2 == 0 { lo.deallocate(handle) }
        #expect(lo.statistics.whollyFreeSuperblocks == 0)
        let first = try hi.allocate(byteCount: Self.superblock)
        let second = try hi.allocate(byteCount: Self.superblock)
        #expect(hi.statistics.borrowedBytes == Self.superblock, "the second superblock was borrowed")
        #expect(lo.statistics.superblocksCompacted >= 1)
        hi.deallocate(first)
        hi.deallocate(second)
        try hi.checkInvariants()
        try lo.checkInvariants()
    }

    @Test("runs keep alignment and boundary over many random requests", arguments: [31, 32, 33])
    func runConstraints(seed: UInt64) throws {
        let pool = try TestPools.make("runs", capacity: 64 << 20) { $0.cache.enabled = false }
        var random = SplitMix64(seed: seed)
        var live: [(UnsafeMutableRawPointer, Int)] = []
        var failures = 0, attempts = 0
        for _ in 0..<TestScale.operations(3000) {
            if live.count > 6 || (Bool.random(using: &random) && !live.isEmpty) {
                let (block, bytes) = live.remove(at: Int(random.next() % UInt64(live.count)))
                pool.deallocate(block, byteCount: bytes)
                continue
            }
            let bytes = Int(random.next() % UInt64(6 << 20)) + (2 << 20) + 1
            let alignment = 1 << Int(21 + random.next() % 4)
            let boundary = [0, 8 << 20, 16 << 20, 32 << 20][Int(random.next() % 4)]
            guard boundary == 0 || boundary >= ((bytes + Self.superblock - 1) / Self.superblock) * Self.superblock else { continue }
            attempts += 1
            let block: UnsafeMutableRawPointer
            do {
                block = try pool.allocateContiguous(byteCount: bytes, alignment: alignment, boundary: boundary)
            } catch {
                // A refusal must be one no placement could avoid: no window of wholly free
                // superblocks with the alignment and inside the boundary.
                failures += 1
                guard case .exhausted = error else { Issue.record("\(error)"); continue }
                let free = Set(pool.superblockUsage().filter { $0.freeBytes == Self.superblock }.map(\.baseAddress))
                let count = (bytes + Self.superblock - 1) / Self.superblock
                let fits = pool.regions.contains { region in
                    stride(from: region.addressRange.lowerBound, to: region.addressRange.upperBound, by: Self.superblock).contains { start in
                        start % UInt(alignment) == 0 && start + UInt(count * Self.superblock) <= region.addressRange.upperBound
                            && (boundary == 0 || start / UInt(boundary) == (start + UInt(count * Self.superblock) - 1) / UInt(boundary))
                            && (0..<count).allSatisfy { free.contains(start + UInt($0 * Self.superblock)) }
                    }
                }
                #expect(!fits, "a \(bytes)-byte run aligned to \(alignment) within \(boundary) was refused with room for it")
                continue
            }
            let start = UInt(bitPattern: block)
            #expect(start % UInt(alignment) == 0)
            if boundary > 0 { #expect(start / UInt(boundary) == (start + UInt(bytes) - 1) / UInt(boundary)) }
            live.append((block, bytes))
        }
        for (block, bytes) in live { pool.deallocate(block, byteCount: bytes) }
        try pool.checkInvariants()
        #expect(pool.statistics.freeBytes == 64 << 20)
        // Every refusal was checked above; most requests must still be served (at most 7 runs of
        // at most 4 superblocks are live in 32 superblocks, so a refusal needs bad fragmentation).
        #expect(failures * 4 <= attempts, "\(failures) of \(attempts) run requests refused")
    }
}
