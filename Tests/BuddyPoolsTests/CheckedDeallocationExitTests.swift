import BuddyPools
import TestSupport
import Testing

/// Each bad free stops the process with a message that names the pool, the address and the
/// problem. These run in child processes (exit tests), in release builds too.
@Suite("Checked deallocation (exit tests)")
struct CheckedDeallocationExitTests {
    /// A bad free and what its message must say.
    enum BadFree: String, Codable, Sendable, CaseIterable, CustomTestStringConvertible {
        case doubleFree, doubleFreeLarge, interior, foreign, wrongPool, wrongSize, handleAddress
        // Objects below a page (slabs): the same mistakes, the same messages.
        case objectDoubleFree, objectDoubleFreeOtherThread, objectDoubleFreeUncached, objectInterior, objectWrongPool, objectWrongSize
        // Exact-size allocations (fit=exact): 20 KiB kept as a 16 KiB piece and a 4 KiB piece.
        case exactDoubleFree, exactInteriorPiece, exactWrongSize

        var expectedText: [String] {
            switch self {
            case .doubleFree, .doubleFreeLarge, .objectDoubleFree, .objectDoubleFreeOtherThread, .objectDoubleFreeUncached, .exactDoubleFree: ["double free"]
            case .interior, .objectInterior: ["interior pointer"]
            // The message names the whole allocation, not the piece the address is in.
            case .exactInteriorPiece: ["interior pointer", "inside the 20 KiB block that starts at"]
            case .exactWrongSize: ["wrong size", "allocated as a 20 KiB block"]
            case .foreign: ["foreign pointer"]
            case .wrongPool, .objectWrongPool: ["wrong pool", "'owner'"]
            case .wrongSize, .objectWrongSize: ["wrong size"]
            case .handleAddress: ["belongs to movable handle #", "deallocate(handle)"]
            }
        }

        var testDescription: String { rawValue }

        /// Makes the mistake; the process must not return from here.
        func commit() {
            var configuration = PoolConfiguration(name: "victim", capacity: 8 << 20)
            configuration.pageSize = .base
            if self == .doubleFreeLarge || self == .objectDoubleFreeUncached { configuration.cache.enabled = false }
            if [.exactDoubleFree, .exactInteriorPiece, .exactWrongSize].contains(self) { configuration.fit = .exact }
            let pool = try! MemoryPool(configuration: configuration)
            switch self {
            case .doubleFree:
                let block = try! pool.allocate(byteCount: 4096)
                pool.deallocate(block)
                pool.deallocate(block)
            case .doubleFreeLarge:
                let block = try! pool.allocate(byteCount: 1 << 20, mobility: .movable)
                pool.deallocate(block)
                pool.deallocate(block)
            case .interior:
                let block = try! pool.allocate(byteCount: 65536)
                pool.deallocate(block + 8192)
            case .foreign:
                pool.deallocate(UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096))
            case .wrongPool:
                configuration.name = "owner"
                let owner = try! MemoryPool(configuration: configuration)
                pool.deallocate(try! owner.allocate(byteCount: 4096))
            case .wrongSize:
                let block = try! pool.allocate(byteCount: 16384)
                pool.deallocate(block, byteCount: 4096)
            case .handleAddress:
                let handle = try! pool.allocateMovable(byteCount: 4096)
                pool.deallocate(pool.currentAddress(of: handle)!)
            case .objectDoubleFree, .objectDoubleFreeUncached:
                let object = try! pool.allocate(byteCount: 24)
                pool.deallocate(object)
                pool.deallocate(object)
            case .objectDoubleFreeOtherThread:
                // Freed twice by a thread that does not own the slab: the remote bit is already set.
                let object = UInt(bitPattern: try! pool.allocate(byteCount: 200))
                runThreads(1) { _ in
                    pool.deallocate(UnsafeMutableRawPointer(bitPattern: object)!)
                    pool.deallocate(UnsafeMutableRawPointer(bitPattern: object)!)
                }
            case .objectInterior:
                let object = try! pool.allocate(byteCount: 64)
                pool.deallocate(object + 16)
            case .objectWrongPool:
                configuration.name = "owner"
                let owner = try! MemoryPool(configuration: configuration)
                pool.deallocate(try! owner.allocate(byteCount: 64))
            case .objectWrongSize:
                let object = try! pool.allocate(byteCount: 64)
                pool.deallocate(object, byteCount: 1000)
            case .exactDoubleFree:
                let block = try! pool.allocate(byteCount: 20 << 10)
                pool.deallocate(block)
                pool.deallocate(block)
            case .exactInteriorPiece:
                let block = try! pool.allocate(byteCount: 20 << 10)
                pool.deallocate(block + (16 << 10))
            case .exactWrongSize:
                let block = try! pool.allocate(byteCount: 20 << 10)
                pool.deallocate(block, byteCount: 8 << 10)
            }
        }
    }

    @Test("a bad free stops the process with a message naming the pool, the address and the problem", arguments: BadFree.allCases)
    func badFree(_ mistake: BadFree) async throws {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { [mistake] in
            mistake.commit()
        }
        let text = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(text.contains("pool 'victim'"), "\(text)")
        #expect(text.contains("deallocate(0x"), "\(text)")
        for expected in mistake.expectedText { #expect(text.contains(expected), "\(mistake): \(text)") }
    }

    @Test("validate names the handle that owns a movable block; freeing through the handle is clean")
    func handleOwnedBlock() throws {
        let pool = try TestPools.make("handles", capacity: 4 << 20, pageSize: .base)
        let handle = try pool.allocateMovable(byteCount: 4096)
        let address = try #require(pool.currentAddress(of: handle))
        #expect(pool.validate(address) == .ownedByHandle(handle))
        pool.deallocate(handle)
        #expect(pool.currentAddress(of: handle) == nil, "the handle is stale once freed")
        #expect(pool.statistics.usedBytes == 0)
    }

    @Test("a correct program exits cleanly (the harness can tell success from failure)")
    func control() async throws {
        await #expect(processExitsWith: .success) {
            var configuration = PoolConfiguration(name: "victim", capacity: 4 << 20)
            configuration.pageSize = .base
            let pool = try! MemoryPool(configuration: configuration)
            let block = try! pool.allocate(byteCount: 16384)
            pool.deallocate(block, byteCount: 16384)
        }
    }
}
