import BuddyPools

/// Two pools of one set (`hi` borrows from `lo`) and what the fuzzed program holds in them:
/// the reference the pools are checked against after every operation.
final class PoolModel {
    struct Block {
        let pool: Int
        let address: UInt
        let requested: Int
        let bytes: Int
        let tag: UInt64
        let sized: Bool
    }

    struct Handle {
        let pool: Int
        let handle: MovableHandle
        let requested: Int
        let tag: UInt64
    }

    static let superblock = 2 << 20
    static let capacities = [4 << 20, 8 << 20]

    let set: PoolSet
    let pools: [MemoryPool]
    private(set) var blocks: [Block] = []
    private(set) var handles: [Handle] = []
    private var nextTag: UInt64 = 0x7A6B_0000_0000_0001

    /// Options from one byte: the borrower's poison and zeroing, the lender's cache, min and
    /// lending, compaction on either side, exact sizes on both.
    init?(options: UInt8) {
        var hi = "hi:size=4M,priority=10,page=4K,max=12M"
        var lo = "lo:size=8M,priority=1,page=4K"
        if options & 1 != 0 { hi += ",poison=1" }
        hi += [",zero=none", ",zero=free", ",zero=alloc", ""][Int(options >> 1) & 3]
        if options & 8 != 0 { lo += ",cache=off" }
        if options & 16 != 0 { hi += ",compaction=0" }
        if options & 32 != 0 { lo += ",min=2M" }
        if options & 64 != 0 { lo += ",lend=0" }
        if options & 128 != 0 {
            hi += ",fit=exact"
            lo += ",fit=exact"
        }
        do {
            set = try PoolSet(environment: ["BUDDYPOOLS": "\(hi);\(lo)", "BUDDYPOOLS_DIAGNOSTICS": "quiet"])
        } catch {
            fatalError("FuzzPoolOperations: the pool set '\(hi);\(lo)' could not be made: \(error)")
        }
        pools = [set["hi"]!, set["lo"]!]
    }

    // MARK: Operations

    func apply(_ operation: Operation) {
        switch operation {
        case .allocate(let index, let byteCount, let alignment, let mobility, let sized):
            let pool = pools[index]
            switch pool.tryAllocate(byteCount: byteCount, alignment: alignment, mobility: mobility) {
            case .success(let pointer):
                add(pointer, pool: index, requested: byteCount, alignment: alignment, sized: sized, operation)
            case .failure(let error):
                expectRefusal(error, byteCount: byteCount, alignment: alignment, operation)
            }
        case .allocateContiguous(let index, let byteCount, let alignment, let boundary):
            let pool = pools[index]
            do {
                let pointer = try pool.allocateContiguous(byteCount: byteCount, alignment: alignment, boundary: boundary)
                if boundary > 0 {
                    let start = UInt(bitPattern: pointer)
                    require(start / UInt(boundary) == (start + UInt(byteCount) - 1) / UInt(boundary), "\(operation): the run crosses its boundary")
                }
                add(pointer, pool: index, requested: byteCount, alignment: alignment, sized: true, operation)
            } catch {
                expectRefusal(error, byteCount: byteCount, alignment: alignment, operation)
            }
        case .allocateMovable(let index, let byteCount):
            let pool = pools[index]
            do {
                let handle = try pool.allocateMovable(byteCount: byteCount)
                let tag = takeTag()
                let bytes = pool.withPinnedAddress(of: handle) { pointer in
                    let bytes = pool.allocatedSize(of: pointer) ?? 0
                    require(bytes >= byteCount, "\(operation): a \(bytes)-byte block for \(byteCount) bytes")
                    Self.write(tag, at: pointer, bytes: byteCount)
                    return byteCount
                }
                handles.append(Handle(pool: index, handle: handle, requested: bytes, tag: tag))
            } catch {
                expectRefusal(error, byteCount: byteCount, alignment: 16, operation)
            }
        case .free(let index):
            guard !blocks.isEmpty else { return }
            let block = blocks.remove(at: index % blocks.count)
            // Invariant: the model holds only live blocks of mapped pool memory.
            let pointer = UnsafeMutableRawPointer(bitPattern: block.address)!
            verify(block.tag, at: pointer, bytes: block.requested, "\(operation)")
            if block.sized { pools[block.pool].deallocate(pointer, byteCount: block.requested) } else { pools[block.pool].deallocate(pointer) }
        case .freeHandle(let index):
            guard !handles.isEmpty else { return }
            let entry = handles.remove(at: index % handles.count)
            let pool = pools[entry.pool]
            pool.withPinnedAddress(of: entry.handle) { verify(entry.tag, at: $0, bytes: entry.requested, "\(operation)") }
            pool.deallocate(entry.handle)
        case .shrink(let index, let superblocks):
            let report = pools[index].shrink(to: superblocks * Self.superblock)
            require(report.systemError == nil, "\(operation): \(report)")
        case .grow(let index, let superblocks):
            do {
                _ = try pools[index].grow(to: superblocks * Self.superblock)
            } catch {
                fail("\(operation): \(error)")
            }
        case .compact(let index, let superblocks):
            pools[index].compact(superblocks: superblocks)
        case .drain(let index):
            pools[index].drainCaches()
        }
    }

    private func takeTag() -> UInt64 {
        nextTag &+= 0x9E37_79B9_7F4A_7C15
        return nextTag
    }

    /// A new block: aligned, as large as asked, owned by its pool, overlapping nothing live.
    private func add(_ pointer: UnsafeMutableRawPointer, pool index: Int, requested: Int, alignment: Int, sized: Bool, _ operation: Operation) {
        let pool = pools[index]
        let address = UInt(bitPattern: pointer)
        require(address & UInt(alignment - 1) == 0, "\(operation): \(pointer) is not aligned")
        require(pool.validate(pointer) == nil, "\(operation): the pool does not know its own block: \(String(describing: pool.validate(pointer)))")
        guard let bytes = pool.allocatedSize(of: pointer) else { fail("\(operation): no size for \(pointer)") }
        require(bytes >= requested, "\(operation): a \(bytes)-byte block for \(requested) bytes")
        for other in blocks where other.address < address + UInt(bytes) && address < other.address + UInt(other.bytes) {
            fail("\(operation): \(pointer) (\(bytes) B) overlaps the live block at 0x\(String(other.address, radix: 16)) (\(other.bytes) B)")
        }
        let tag = takeTag()
        Self.write(tag, at: pointer, bytes: requested)
        blocks.append(Block(pool: index, address: address, requested: requested, bytes: bytes, tag: tag, sized: sized))
    }

    /// A refused request must be refused for a reason: a bad alignment, a size no pool state
    /// could serve, or exhaustion.
    private func expectRefusal(_ error: PoolError, byteCount: Int, alignment: Int, _ operation: Operation) {
        let powerOfTwo = alignment > 0 && alignment & (alignment - 1) == 0
        switch error {
        case .invalidRequest(let details):
            switch details.reason {
            case .alignmentNotPowerOfTwo: require(!powerOfTwo, "\(operation): refused a power-of-two alignment: \(error)")
            case .zeroOrNegativeSize: fail("\(operation): a positive size refused as zero or negative")
            case .largerThanPool, .alignmentUnsatisfiable, .countOverflow: require(powerOfTwo, "\(operation): \(error)")
            }
        case .exhausted:
            require(powerOfTwo, "\(operation): a bad alignment reported as exhaustion")
        default:
            fail("\(operation): unexpected \(error)")
        }
    }

    // MARK: Checks

    func check(after operation: Operation) {
        for (index, pool) in pools.enumerated() {
            do {
                try pool.checkInvariants()
            } catch {
                fail("after \(operation): pool \(pool.name): \(error)")
            }
            // Held sizes below the minimum block are objects: they count through their slabs,
            // whole while any object in them is in use.
            let mine = blocks.filter { $0.pool == index }
            let objects = mine.filter { $0.bytes < pool.geometry.minBlockSize }
            let statistics = pool.statistics
            let slabBytesInUse = statistics.slabs.reduce(0) { total, row in
                total + (row.slabs == 0 ? 0 : row.slabBytes / row.slabs * (row.slabs - row.emptySlabs))
            }
            for row in statistics.slabs {
                let modelled = objects.filter { $0.bytes == row.objectBytes }.count
                require(row.objectsInUse == modelled,
                        "after \(operation): pool \(pool.name) counts \(row.objectsInUse) objects of \(row.objectBytes) B in use, the model holds \(modelled)")
            }
            require(objects.allSatisfy { object in statistics.slabs.contains { $0.objectBytes == object.bytes } },
                    "after \(operation): pool \(pool.name) has an object of a class its statistics do not list")
            let expected = mine.filter { $0.bytes >= pool.geometry.minBlockSize }.reduce(0) { $0 + $1.bytes } + slabBytesInUse
                + handles.filter { $0.pool == index }.reduce(0) { total, entry in
                    total + (pool.withPinnedAddress(of: entry.handle) { pool.allocatedSize(of: $0) } ?? 0)
                }
            let used = statistics.usedBytes
            require(used == expected, "after \(operation): pool \(pool.name) says \(used) bytes are used, the model holds \(expected)")
        }
        for block in blocks {
            verify(block.tag, at: UnsafeRawPointer(bitPattern: block.address)!, bytes: block.requested, "after \(operation)")
        }
        for entry in handles {
            pools[entry.pool].withPinnedAddress(of: entry.handle) { verify(entry.tag, at: $0, bytes: entry.requested, "after \(operation)") }
        }
    }

    /// Frees everything: both pools end whole, with every loan home.
    func finish() {
        for block in blocks {
            pools[block.pool].deallocate(UnsafeMutableRawPointer(bitPattern: block.address)!)
        }
        for entry in handles { pools[entry.pool].deallocate(entry.handle) }
        blocks = []
        handles = []
        for pool in pools { pool.drainCaches() }
        // Borrowed superblocks go home on a shrink; then each pool takes back its own.
        pools[0].shrink(to: 0)
        for (pool, capacity) in zip(pools, Self.capacities) {
            do {
                _ = try pool.grow(to: capacity)
            } catch {
                fail("at the end: pool \(pool.name) could not grow back: \(error)")
            }
        }
        for (pool, capacity) in zip(pools, Self.capacities) {
            let stats = pool.statistics
            require(stats.usedBytes == 0, "at the end: pool \(pool.name) has \(stats.usedBytes) bytes in use")
            require(stats.borrowedBytes == 0 && stats.lentBytes == 0, "at the end: pool \(pool.name) still has loans: \(stats.borrowedFrom) \(stats.lentTo)")
            require(stats.managedBytes == capacity, "at the end: pool \(pool.name) manages \(stats.managedBytes), not \(capacity)")
            require(stats.whollyFreeSuperblocks == capacity / Self.superblock, "at the end: pool \(pool.name) is not whole: \(stats.whollyFreeSuperblocks) free superblocks")
        }
    }

    // MARK: Tags

    /// The tag in the first 8 bytes (or as many as there are) and, from 16 bytes, the last 8.
    static func write(_ tag: UInt64, at pointer: UnsafeMutableRawPointer, bytes: Int) {
        withUnsafeBytes(of: tag) { tagBytes in
            for offset in 0..<min(8, bytes) { pointer.storeBytes(of: tagBytes[offset], toByteOffset: offset, as: UInt8.self) }
            if bytes >= 16 {
                for offset in 0..<8 { pointer.storeBytes(of: tagBytes[offset], toByteOffset: bytes - 8 + offset, as: UInt8.self) }
            }
        }
    }

    func verify(_ tag: UInt64, at pointer: UnsafeRawPointer, bytes: Int, _ context: String) {
        withUnsafeBytes(of: tag) { tagBytes in
            for offset in 0..<min(8, bytes) where pointer.load(fromByteOffset: offset, as: UInt8.self) != tagBytes[offset] {
                fail("\(context): the block at \(pointer) lost its tag at byte \(offset): it was reused or overwritten")
            }
            if bytes >= 16 {
                for offset in 0..<8 where pointer.load(fromByteOffset: bytes - 8 + offset, as: UInt8.self) != tagBytes[offset] {
                    fail("\(context): the block at \(pointer) lost its tail tag: it was reused or overwritten")
                }
            }
        }
    }
}

func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fail(message()) }
}

func fail(_ message: String) -> Never {
    fatalError("FuzzPoolOperations: \(message)")
}
