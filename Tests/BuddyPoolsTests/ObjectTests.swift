import BuddyPools
import Foundation
import Glibc
import Synchronization
import TestSupport
import Testing

/// Objects below a page (issue 14): slabs on buddy blocks, their density, statistics, the typed
/// and buffer paths, and thread exit. Bad object frees are exit tests in
/// CheckedDeallocationExitTests; cross-thread frees are in ConcurrencyTests (run under TSan).
@Suite("Objects below a page")
struct ObjectTests {
    struct Scenario: Sendable, CustomTestStringConvertible {
        var caches: Bool
        var operations: Int
        var checkEvery: Int
        var seed: UInt64
        var testDescription: String { "caches \(caches), \(operations) ops, invariants every \(checkEvery), seed \(seed)" }
    }

    @Test("random objects of 1 B-8 KiB, aligned 1 B-4 KiB: no overlap, alignment met, data intact, every superblock whole at the end",
          arguments: [Scenario(caches: true, operations: 20_000, checkEvery: 1, seed: 41),
                      Scenario(caches: false, operations: 20_000, checkEvery: 1, seed: 42),
                      Scenario(caches: true, operations: 400_000, checkEvery: 97, seed: 43)])
    func randomModel(_ scenario: Scenario) throws {
        let capacity = 32 << 20
        let pool = try TestPools.make("objects", capacity: capacity, pageSize: .base) { $0.cache.enabled = scenario.caches }
        var random = SplitMix64(seed: scenario.seed)
        var model = LiveBlockModel()
        var tag: UInt64 = 0
        var failures = 0
        let operations = TestScale.operations(scenario.operations)
        for step in 0..<operations {
            // Fill to about 2,000 live objects, then hover there.
            if model.isEmpty || (model.count < 2_000 && random.next() % 3 != 0) || random.next() % 2 == 0 {
                tag += 1
                let size = max(1, Int(exp2(Double(random.next() % 1_000_000) / 1_000_000 * 13)))  // log-uniform 1 B ... 8 KiB
                let alignment = 1 << Int(random.next() % 13)  // 1 B ... 4 KiB
                do {
                    let pointer = try pool.allocate(byteCount: size, alignment: alignment)
                    let address = UInt(bitPattern: pointer)
                    #expect(address % UInt(alignment) == 0, "alignment \(alignment) not met for \(size) bytes")
                    let held = try #require(pool.allocatedSize(of: pointer))
                    #expect(held >= size && held == pool.heldBytes(forByteCount: size, alignment: alignment),
                            "\(size) bytes aligned \(alignment): allocatedSize \(held), heldBytes \(String(describing: pool.heldBytes(forByteCount: size, alignment: alignment)))")
                    if let overlap = model.insert(.init(address: address, byteCount: size, tag: tag)) {
                        Issue.record(Comment(rawValue: overlap))
                        return
                    }
                } catch {
                    // 2,000 objects of at most 8 KiB (16 KiB held with their alignment) fill at
                    // most 32 MiB only if every one were the largest: the pool never runs dry here.
                    failures += 1
                    Issue.record("allocation of \(size) bytes aligned \(alignment) failed: \(error)")
                }
            } else {
                let block = model.remove(at: Int(random.next() % UInt64(model.count)))
                #expect(LiveBlockModel.patternIsIntact(block), "data of 0x\(String(block.address, radix: 16)) (+\(block.byteCount)) overwritten")
                let pointer = UnsafeMutableRawPointer(bitPattern: block.address)!
                #expect(pool.validate(pointer) == nil)
                if random.next() & 1 == 0 { pool.deallocate(pointer, byteCount: block.byteCount) } else { pool.deallocate(pointer) }
            }
            if step % scenario.checkEvery == 0 { try pool.checkInvariants() }
            if failures > 0 { return }
        }
        let classes = pool.statistics.slabs
        #expect(classes.count > 20, "the run used \(classes.count) object classes")
        while !model.isEmpty {
            let block = model.remove(at: model.count - 1)
            #expect(LiveBlockModel.patternIsIntact(block))
            pool.deallocate(UnsafeMutableRawPointer(bitPattern: block.address)!)
        }
        pool.drainCaches()
        try pool.checkInvariants()
        let stats = pool.statistics
        #expect(stats.usedBytes == 0)
        #expect(stats.slabs.isEmpty, "slabs left after everything was freed and caches drained: \(stats.slabs)")
        #expect(stats.freeBytes == capacity)
        #expect(stats.whollyFreeSuperblocks == capacity / pool.geometry.superblockSize, "every superblock whole again")
    }

    /// The bytes a pool spends on objects: the slabs in use, plus what its metadata grew by.
    static func spentBytes(_ pool: MemoryPool, metadataBefore: Int) -> Int {
        let stats = pool.statistics
        return stats.usedBytes + stats.metadataBytes - metadataBefore
    }

    @Test("a million live 24-byte objects (alignment 8) take at most 1.1 x 24 MB, slab metadata included")
    func denseSmallObjects() throws {
        let pool = try TestPools.make("dense", capacity: 64 << 20, pageSize: .base)
        let metadataBefore = pool.statistics.metadataBytes
        let count = 1_000_000
        let objects = UnsafeMutablePointer<UnsafeMutableRawPointer>.allocate(capacity: count)
        defer { objects.deallocate() }
        for index in 0..<count {
            objects[index] = try pool.allocate(byteCount: 24, alignment: 8)
            objects[index].storeBytes(of: UInt64(index), as: UInt64.self)
        }
        let spent = Self.spentBytes(pool, metadataBefore: metadataBefore)
        #expect(Double(spent) <= 1.1 * Double(24 * count), "1M x 24 B took \(spent) bytes (\(Double(spent) / Double(24 * count)) x)")
        let row = try #require(pool.statistics.slabs.first { $0.objectBytes == 24 })
        #expect(row.objectsInUse == count)
        #expect(row.objectsTotal >= count && row.objectsTotal < count + row.objectsTotal / max(1, row.slabs) * 2)
        for index in 0..<count {
            #expect(objects[index].load(as: UInt64.self) == UInt64(index))
            pool.deallocate(objects[index], byteCount: 24)
        }
        pool.drainCaches()
        #expect(pool.statistics.usedBytes == 0)
        #expect(pool.statistics.whollyFreeSuperblocks == pool.capacity / pool.geometry.superblockSize)
    }

    @Test("random sizes 1 B-4 KiB take at most 1.25 x the bytes asked for, slab metadata included")
    func randomSmallSizes() throws {
        let pool = try TestPools.make("mixed-small", capacity: 128 << 20, pageSize: .base)
        let metadataBefore = pool.statistics.metadataBytes
        var random = SplitMix64(seed: 7)
        var asked = 0
        var objects: [UnsafeMutableRawPointer] = []
        objects.reserveCapacity(40_000)
        for _ in 0..<40_000 {
            let size = Int(random.next() % 4096) + 1
            asked += size
            objects.append(try pool.allocate(byteCount: size, alignment: size >= 16 ? 16 : 8))
        }
        let spent = Self.spentBytes(pool, metadataBefore: metadataBefore)
        #expect(Double(spent) <= 1.25 * Double(asked), "asked \(asked), took \(spent) (\(Double(spent) / Double(asked)) x)")
        for object in objects { pool.deallocate(object) }
        pool.drainCaches()
        #expect(pool.statistics.usedBytes == 0)
    }

    @Test("allocatedSize is the class size, validate answers for objects, and interior pointers are named")
    func objectQueries() throws {
        let pool = try TestPools.make("queries", capacity: 8 << 20, pageSize: .base)
        let object = try pool.allocate(byteCount: 100, alignment: 4)
        #expect(pool.allocatedSize(of: object) == 104)
        #expect(pool.validate(object) == nil)
        #expect(pool.validate(object, byteCount: 100) == nil)
        #expect(pool.validate(object, byteCount: 97) == nil, "97 bytes round to the same class")
        #expect(pool.validate(object, byteCount: 200) != nil, "a sized free naming another class is refused")
        #expect(pool.validate(object + 8) != nil, "a pointer inside an object is not an object")
        #expect(pool.allocatedSize(of: object + 8) == nil)
        pool.deallocate(object, byteCount: 100)
        #expect(pool.validate(object) != nil, "a freed object is not live")
        pool.drainCaches()
        #expect(pool.statistics.usedBytes == 0)
    }

    @Test("statistics per class, like /proc/slabinfo: in use, total, slabs, bytes; text and Codable")
    func slabStatistics() throws {
        let pool = try TestPools.make("slabinfo", capacity: 16 << 20, pageSize: .base)
        let small = try (0..<1000).map { _ in try pool.allocate(byteCount: 48) }
        let large = try (0..<10).map { _ in try pool.allocate(byteCount: 3000) }
        let rows = pool.statistics.slabs
        let row48 = try #require(rows.first { $0.objectBytes == 48 })
        let row3072 = try #require(rows.first { $0.objectBytes == 3072 })
        #expect(row48.objectsInUse == 1000 && row48.objectsTotal >= 1000)
        #expect(row48.slabBytes == row48.slabs * (pool.slabBytes(forObjectBytes: 48) ?? 0))
        #expect(row3072.objectsInUse == 10)
        #expect(pool.statistics.usedBytes >= row48.slabBytes + row3072.slabBytes - row48.emptySlabs * (pool.slabBytes(forObjectBytes: 48) ?? 0))
        #expect(pool.slabReport.contains("     48     1000"), "\(pool.slabReport)")
        let decoded = try JSONDecoder().decode([SlabClassStatistics].self, from: JSONEncoder().encode(pool.statistics.slabs))
        #expect(decoded == pool.statistics.slabs)
        for object in small + large { pool.deallocate(object) }
        pool.drainCaches()
        #expect(pool.statistics.slabs.isEmpty)
    }

    @Test("PoolBuffer and typed allocation of a few elements take objects, not pages")
    func typedAllocationUsesObjects() throws {
        let pool = try TestPools.make("typed", capacity: 8 << 20, pageSize: .base)
        let buffer = try PoolBuffer<Int32>(pool: pool, count: 5, repeating: 7)
        #expect(pool.allocatedSize(of: buffer.baseAddress) == 32, "5 x Int32 aligned 16 is a 32-byte object")
        let typed = try pool.allocate(Double.self, count: 3)
        #expect(pool.allocatedSize(of: typed) == 32)
        #expect(pool.statistics.slabs.map(\.objectsInUse).reduce(0, +) == 2)
        pool.deallocate(UnsafeMutableRawPointer(typed))
        buffer.deallocate()
        pool.drainCaches()
        #expect(pool.statistics.usedBytes == 0)
    }

    @Test("a thread that exits hands its slabs back: others free its objects and allocate from them")
    func threadExitOrphansSlabs() throws {
        let pool = try TestPools.make("orphans", capacity: 16 << 20, pageSize: .base)
        let handed = Mutex<[UInt]>([])
        runThreads(1) { _ in
            var mine: [UInt] = []
            for index in 0..<5_000 {
                let object = try! pool.allocate(byteCount: 64)
                object.storeBytes(of: UInt64(index), as: UInt64.self)
                mine.append(UInt(bitPattern: object))
            }
            // Half freed by the owner before it exits, half left for others.
            for address in mine[2_500...] { pool.deallocate(UnsafeMutableRawPointer(bitPattern: address)!) }
            handed.locked { $0 = Array(mine[..<2_500]) }
        }
        let left = handed.locked { $0 }
        #expect(pool.statistics.slabs.first { $0.objectBytes == 64 }?.objectsInUse == 2_500)
        // The exited thread's slabs are orphans: this thread's allocations adopt them.
        let adopted = try (0..<2_000).map { _ in try pool.allocate(byteCount: 64) }
        for (index, address) in left.enumerated() {
            let pointer = UnsafeMutableRawPointer(bitPattern: address)!
            #expect(pointer.load(as: UInt64.self) == UInt64(index))
            pool.deallocate(pointer)
        }
        for object in adopted { pool.deallocate(object) }
        pool.drainCaches()
        try pool.checkInvariants()
        #expect(pool.statistics.usedBytes == 0)
        #expect(pool.statistics.slabs.isEmpty)
        #expect(pool.statistics.whollyFreeSuperblocks == pool.capacity / pool.geometry.superblockSize)
    }

    @Test("pools that scrub or count allocation sites serve small requests as blocks")
    func scrubbingPoolsServeBlocks() throws {
        let pool = try TestPools.make("zeroing", capacity: 8 << 20, pageSize: .base) { $0.zeroing = .onAllocation }
        let block = try pool.allocate(byteCount: 24)
        #expect(pool.allocatedSize(of: block) == pool.geometry.minBlockSize)
        #expect(pool.statistics.slabs.isEmpty)
        pool.deallocate(block)
    }
}
