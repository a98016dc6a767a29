import BuddyCore
import TestSupport
import Testing

/// Randomized runs of the pure buddy algorithm against a simple model. Together with the
/// pool model tests they exceed ten million checked operations in release builds.
@Suite("BuddyArena model")
struct BuddyArenaModelTests {
    struct Scenario: CustomTestStringConvertible, Sendable {
        let minBlock: Int
        let maxOrder: Int
        let slots: Int
        let operations: Int
        /// Check every invariant after this many operations (1: after every one).
        let checkEvery: Int
        let seed: UInt64

        var testDescription: String {
            "min-block \(minBlock), max-order \(maxOrder), \(slots) slots, \(operations) ops, seed \(seed)"
        }
    }

    static let smallArenas: [Scenario] = [
        Scenario(minBlock: 64, maxOrder: 4, slots: 3, operations: 200_000, checkEvery: 1, seed: 1),
        Scenario(minBlock: 4096, maxOrder: 3, slots: 4, operations: 200_000, checkEvery: 1, seed: 2),
        Scenario(minBlock: 4096, maxOrder: 5, slots: 2, operations: 200_000, checkEvery: 1, seed: 3),
        Scenario(minBlock: 1 << 20, maxOrder: 0, slots: 6, operations: 100_000, checkEvery: 1, seed: 4),
        Scenario(minBlock: 512, maxOrder: 2, slots: 8, operations: 200_000, checkEvery: 1, seed: 5),
    ]

    static let largeArenas: [Scenario] = [
        Scenario(minBlock: 4096, maxOrder: 9, slots: 64, operations: 1_500_000, checkEvery: 50_000, seed: 11),
        Scenario(minBlock: 64, maxOrder: 12, slots: 16, operations: 1_500_000, checkEvery: 50_000, seed: 12),
        Scenario(minBlock: 4096, maxOrder: 6, slots: 200, operations: 1_500_000, checkEvery: 50_000, seed: 13),
        Scenario(minBlock: 256, maxOrder: 8, slots: 32, operations: 1_500_000, checkEvery: 50_000, seed: 14),
    ]

    @Test("small arenas, invariants after every operation", arguments: smallArenas)
    func small(_ scenario: Scenario) throws {
        try run(scenario)
    }

    @Test("large arenas, invariants at intervals", arguments: largeArenas)
    func large(_ scenario: Scenario) throws {
        try run(scenario)
    }

    func run(_ scenario: Scenario) throws {
        let geometry = try BuddyGeometry(minBlockSize: scenario.minBlock, maxOrder: scenario.maxOrder)
        let capacity = scenario.slots * geometry.superblockSize
        let memory = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: geometry.superblockSize)
        defer { memory.deallocate() }
        let arena = BuddyArena(geometry: geometry, base: memory, superblockCount: scenario.slots)
        var model = LiveBlockModel()
        var random = SplitMix64(seed: scenario.seed)
        var tag: UInt64 = 0
        let operations = TestScale.operations(scenario.operations)
        let start = UInt(bitPattern: memory)

        #expect(arena.freeBytes == capacity)
        for step in 0..<operations {
            // Drift between filling up and draining so exhaustion and coalescing both happen.
            let fillBias = (step / 5000) % 2 == 0 ? 0.62 : 0.4
            if model.isEmpty || Double.random(in: 0..<1, using: &random) < fillBias {
                tag += 1
                let mobility = Int.random(in: 0..<3, using: &random)
                if scenario.slots >= 2, Int.random(in: 0..<50, using: &random) == 0 {
                    let count = Int.random(in: 2...min(4, scenario.slots), using: &random)
                    let alignment = [0, geometry.superblockSize * 2, geometry.superblockSize * 4].randomElement(using: &random)!
                    if let run = arena.allocateRun(count: count, alignment: alignment, mobilityClass: mobility) {
                        if alignment > 0 { #expect(run.address % UInt(alignment) == 0) }
                        try record(model.insert(.init(address: run.address, byteCount: count * geometry.superblockSize, tag: tag)))
                    } else {
                        let missed = Self.hasFreeRun(arena, count: count, alignment: alignment, geometry: geometry)
                        #expect(!missed, "run refused though one was free")
                    }
                } else {
                    // Log-uniform orders: small blocks are common, large ones rare.
                    let order = min(geometry.maxOrder, Int.random(in: 0...geometry.maxOrder, using: &random) * Int.random(in: 0...1, using: &random)
                        + Int.random(in: 0...1, using: &random))
                    if let block = arena.allocate(order: order, mobilityClass: mobility) {
                        let size = geometry.blockSize(order: order)
                        #expect(block.address % UInt(size) == 0, "block not aligned to its size")
                        #expect(block.address >= start && block.address + UInt(size) <= start + UInt(capacity))
                        try record(model.insert(.init(address: block.address, byteCount: size, tag: tag)))
                    } else {
                        #expect((arena.largestFreeOrder ?? -1) < order, "order \(order) refused with a larger block free")
                    }
                }
            } else {
                let index = Int.random(in: 0..<model.count, using: &random)
                let block = model.remove(at: index)
                #expect(LiveBlockModel.patternIsIntact(block), "pattern of block at 0x\(String(block.address, radix: 16)) was overwritten")
                guard case .head(let location, let state) = arena.lookup(block.address), state.isAllocated else {
                    Issue.record("live block at 0x\(String(block.address, radix: 16)) is not an allocated head: \(arena.lookup(block.address))")
                    return
                }
                let release = arena.free(location)
                #expect(release.byteCount == block.byteCount)
                // A freed block's head is free or interior now, never allocated: a second free is detectable.
                if case .head(_, let after) = arena.lookup(block.address) { #expect(!after.isAllocated) }
            }
            #expect(arena.freeBytes == capacity - model.liveBytes)
            if step % scenario.checkEvery == 0 { try arena.checkInvariants() }
        }
        try arena.checkInvariants()
        while !model.isEmpty {
            let block = model.remove(at: model.count - 1)
            #expect(LiveBlockModel.patternIsIntact(block))
            guard case .head(let location, _) = arena.lookup(block.address) else {
                Issue.record("lost block")
                return
            }
            arena.free(location)
        }
        try arena.checkInvariants()
        #expect(arena.freeBytes == capacity)
        #expect(arena.whollyFreeSlotCount == scenario.slots, "every superblock is whole again")
    }

    private func record(_ overlap: String?) throws {
        if let overlap { Issue.record(Comment(rawValue: overlap)) }
    }

    /// Brute force: is there a run the arena should have found?
    static func hasFreeRun(_ arena: BuddyArena, count: Int, alignment: Int, geometry: BuddyGeometry) -> Bool {
        for first in 0...(arena.slotCapacity - count) {
            let base = arena.baseAddress(slot: first)
            if alignment > 0, base % UInt(alignment) != 0 { continue }
            if (0..<count).allSatisfy({ arena.isWhollyFree(slot: first + $0) && arena.baseAddress(slot: first + $0) == base + UInt($0 * geometry.superblockSize) }) {
                return true
            }
        }
        return false
    }
}
