import BuddyCore
import BuddySystem
import Synchronization

/// The slab descriptors of one region: for each superblock that ever held a slab, a table of
/// one descriptor per 16 KiB unit with its two bitmaps, made on first use and kept for the
/// region's life (a table is reached without a lock, so it is never unmapped under a reader).
/// Per superblock: 128 descriptors (128 bytes) and 2 x 256 bytes of bitmaps per unit (interleaved),
/// 81,984 bytes for 2 MiB (3.9%), only for superblocks that hold or held objects.
package final class SlabTables: @unchecked Sendable {
    // @unchecked: table pointers are atomics; buffers behind their mutex; descriptors follow
    // SlabDescriptor's ownership rules.
    package let superblockCount: Int
    package let superblockShift: Int
    /// Descriptors per table: superblock / unit (at least 1).
    package let units: Int
    package let unitShift: Int
    /// One table address per superblock (0: none yet), read by the object fast path.
    package let pointers: UnsafeMutablePointer<Atomic<UInt>>
    private let buffers = Mutex<[MetadataBuffer]>([])
    /// Where new tables go: the region's nodes, changed by a migration.
    private let nodes: Mutex<NodeSet>
    private let locked: Bool
    private let label: String

    package init(superblockCount: Int, superblockShift: Int, nodes: NodeSet, locked: Bool, label: String) {
        self.superblockCount = superblockCount
        self.superblockShift = superblockShift
        unitShift = min(SizeClasses.unitShift, superblockShift)
        units = 1 << (superblockShift - unitShift)
        self.nodes = Mutex(nodes)
        self.locked = locked
        self.label = label
        pointers = .allocate(capacity: max(1, superblockCount))
        for index in 0..<max(1, superblockCount) { (pointers + index).initialize(to: Atomic(0)) }
    }

    deinit {
        for index in 0..<superblockCount {
            guard let table = table(superblock: index) else { continue }
            table.deinitialize(count: units)
        }
        pointers.deinitialize(count: max(1, superblockCount))
        pointers.deallocate()
    }

    /// Bytes of one table.
    package var tableBytes: Int {
        units * (MemoryLayout<SlabDescriptor>.stride + 2 * SlabDescriptor.wordsPerUnit * 8) + 64
    }

    /// Moves every table made so far to `nodes`, and puts later ones there; the failures, if any.
    package func moveTables(to nodes: NodeSet) -> [SystemError] {
        self.nodes.locked { $0 = nodes }
        return buffers.locked { buffers in
            buffers.compactMap { buffer in
                if case .failure(let error) = buffer.move(to: nodes) { return error }
                return nil
            }
        }
    }

    /// Bytes of all tables made so far.
    package var metadataBytes: Int { buffers.locked { $0.reduce(0) { $0 + $1.byteCount } } }

    /// The table of a superblock, if one was made. Lock-free.
    @inlinable @inline(__always)
    package func table(superblock index: Int) -> UnsafeMutablePointer<SlabDescriptor>? {
        UnsafeMutablePointer(bitPattern: pointers[index].load(ordering: .acquiring))
    }

    /// The table of a superblock, made now if needed (pool lock held by the caller).
    package func tableOrCreate(superblock index: Int) -> UnsafeMutablePointer<SlabDescriptor>? {
        if let table = table(superblock: index) { return table }
        guard let buffer = try? MetadataBuffer(byteCount: tableBytes, nodes: nodes.locked { $0 }, locked: locked, label: "\(label) slab table") else {
            return nil
        }
        var offset = 0
        let descriptors = buffer.slice(offset: &offset, byteCount: units * MemoryLayout<SlabDescriptor>.stride)
            .bindMemory(to: SlabDescriptor.self, capacity: units)
        let bitWords = units * 2 * SlabDescriptor.wordsPerUnit
        let bits = buffer.slice(offset: &offset, byteCount: bitWords * 8).bindMemory(to: Atomic<UInt64>.self, capacity: bitWords)
        for word in 0..<bitWords { (bits + word).initialize(to: Atomic(0)) }
        for unit in 0..<units {
            (descriptors + unit).initialize(to: SlabDescriptor(bits: bits + unit * 2 * SlabDescriptor.wordsPerUnit))
        }
        buffers.locked { $0.append(buffer) }
        pointers[index].store(UInt(bitPattern: descriptors), ordering: .releasing)
        return descriptors
    }

    /// The descriptor of the slab whose head is `head`, `offset` bytes into its superblock.
    @inlinable @inline(__always)
    package func descriptor(superblock index: Int, offsetInSuperblock offset: Int) -> UnsafeMutablePointer<SlabDescriptor>? {
        table(superblock: index).map { $0 + (offset &>> unitShift) }
    }
}
