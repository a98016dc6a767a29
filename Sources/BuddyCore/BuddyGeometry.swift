/// The shape of a buddy allocator: the minimum block and the inclusive maximum order.
/// A block of order k holds `minBlockSize << k` bytes; a superblock is the block of order
/// `maxOrder` (inclusive: order maxOrder exists), aligned to its own size.
public struct BuddyGeometry: Sendable, Equatable, Hashable, CustomStringConvertible {
    public static let minBlockSizeRange = 64...(1 << 20)
    /// Inclusive bounds of maxOrder; 15 fits the block-state byte's order nibble.
    public static let maxOrderRange = 0...15
    /// Superblocks above this are refused: one superblock is the unit of lending and reclaim.
    public static let maximumSuperblockSize = 1 << 30

    public let minBlockShift: Int
    /// The largest order, inclusive.
    public let maxOrder: Int

    // Masking shifts and wrapping sums: the initializer keeps every shift below 31, so these
    // compile to a shift, not to Swift's checks for shifts of 64 and more.
    @inlinable public var minBlockSize: Int { 1 &<< minBlockShift }
    @inlinable public var superblockShift: Int { minBlockShift &+ maxOrder }
    @inlinable public var superblockSize: Int { 1 &<< superblockShift }
    /// Minimum blocks per superblock.
    @inlinable public var blocksPerSuperblock: Int { 1 &<< maxOrder }

    /// - Parameters:
    ///   - minBlockSize: a power of two from 64 B to 1 MiB (default 4 KiB).
    ///   - maxOrder: inclusive; nil picks the order that makes a 2 MiB superblock (or one block when minBlockSize is larger).
    public init(minBlockSize: Int = 4096, maxOrder: Int? = nil) throws(GeometryError) {
        guard Self.minBlockSizeRange.contains(minBlockSize), minBlockSize & (minBlockSize - 1) == 0 else {
            throw GeometryError(message: "min-block must be a power of two from 64 B to 1 MiB, not \(minBlockSize)")
        }
        let shift = minBlockSize.trailingZeroBitCount
        let order = maxOrder ?? max(0, 21 - shift)
        guard Self.maxOrderRange.contains(order) else {
            throw GeometryError(message: "max-order must be from 0 to 15 (inclusive), not \(order)")
        }
        guard (1 << (shift + order)) <= Self.maximumSuperblockSize else {
            throw GeometryError(message: "a superblock of min-block \(minBlockSize) << max-order \(order) exceeds 1 GiB")
        }
        minBlockShift = shift
        self.maxOrder = order
    }

    /// The default: 4 KiB blocks, maxOrder 9, 2 MiB superblocks.
    public static let standard = try! BuddyGeometry()

    /// Bytes of a block of `order` (0 ... maxOrder; callers keep it there).
    @inlinable @inline(__always)
    public func blockSize(order: Int) -> Int {
        assert(order >= 0 && order <= maxOrder, "order \(order) outside 0...\(maxOrder)")
        return 1 &<< (minBlockShift &+ order)
    }

    /// The order a request needs and whether alignment (not size) decided it;
    /// nil when it needs more than one superblock.
    @inlinable @inline(__always)
    public func order(byteCount: Int, alignment: Int) -> (order: Int, alignmentRaised: Bool)? {
        let sizeShift = byteCount <= 1 ? 0 : Int.bitWidth - (byteCount - 1).leadingZeroBitCount
        let sizeOrder = max(0, sizeShift - minBlockShift)
        let alignShift = alignment <= 1 ? 0 : alignment.trailingZeroBitCount
        let alignOrder = max(0, alignShift - minBlockShift)
        let order = max(sizeOrder, alignOrder)
        guard order <= maxOrder else { return nil }
        return (order, alignOrder > sizeOrder)
    }

    /// Superblocks a run for `byteCount` bytes (positive) needs; never overflows, even for Int.max.
    @inlinable
    public func superblockCount(byteCount: Int) -> Int {
        (byteCount &>> superblockShift) &+ (byteCount & (superblockSize &- 1) == 0 ? 0 : 1)
    }

    public var description: String {
        "min-block \(formatBytes(minBlockSize)), max-order \(maxOrder) (superblock \(formatBytes(superblockSize)))"
    }
}

/// A geometry that cannot be built.
public struct GeometryError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}
