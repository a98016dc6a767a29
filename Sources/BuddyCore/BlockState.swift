/// The one byte kept per minimum block, out of band. Only the first block of a buddy block
/// (its head) says anything; every other byte of the block is `interior`.
///
/// High nibble: what the block is (`Tag`). Low nibble: its order (0...15). One byte, not a
/// bit, so neighbours never share a word that two threads write (the lock-free cache writes
/// the heads of blocks it holds while the pool lock is held by another thread).
///
/// Every encoding is in `Tag`, the one table; the fast path uses its `raw` constants, so a
/// change here changes every writer.
public struct BlockState: Equatable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8

    public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// The high nibble of a head. Values 13-15 are spare: the layers above take theirs from
    /// here, so no two layers read one value two ways.
    @frozen
    public enum Tag: UInt8, Sendable {
        /// 0 with order 0: not a head (a byte inside a larger block, free or allocated).
        case interior = 0
        /// A free buddy block, listed in the free bitmaps.
        case free = 1
        /// Allocated, class 0 (unmovable): the only tag the cache fast path hands out and takes back.
        case allocatedUnmovable = 2
        case allocatedMovable = 3
        case allocatedReclaimable = 4
        /// Allocated with the order raised to meet an alignment (a sized free may name fewer bytes),
        /// class 0, 1, 2; run heads carry it too, so neither is taken for a plain cacheable block.
        case raisedUnmovable = 5
        case raisedMovable = 6
        case raisedReclaimable = 7
        /// Allocated from the buddy's view, sitting in a per-thread or per-CPU cache.
        case cached = 8
        /// Allocated from the buddy's view (unmovable), carved into objects by the slab layer. The
        /// low nibble is the slab's order.
        case slab = 9
        /// Every other minimum block of a slab, with the slab's order, so any address inside a
        /// slab finds its head by masking (a plain interior byte could not say how far).
        case slabInterior = 10
        /// The first piece of an exact-size allocation (unmovable; `fit=exact`): a block of this
        /// order, followed by its `trimmedPiece`s, each half or less the one before. The tail of
        /// the power-of-two block past the pages asked for went back to the free bitmaps.
        case trimmed = 11
        /// A later piece of an exact-size allocation: a block of this order, freed only with the
        /// allocation's first piece (an address here is interior).
        case trimmedPiece = 12

        /// The tag of an allocated block of a mobility class (0...2).
        @inlinable
        public static func allocated(mobilityClass: Int, alignmentRaised: Bool) -> Tag {
            // Invariant: the arena keeps classes to 0...2, the three the byte can tell apart.
            assert((0...2).contains(mobilityClass), "mobility class \(mobilityClass) outside 0...2")
            let base = alignmentRaised ? Tag.raisedUnmovable : Tag.allocatedUnmovable
            return Tag(rawValue: base.rawValue &+ UInt8(truncatingIfNeeded: mobilityClass)) ?? base
        }

        /// The state byte of a head with this tag and `order`: what the fast path stores.
        @inlinable @inline(__always)
        public func byte(order: Int) -> UInt8 {
            // Invariant: orders are 0...15 (BuddyGeometry.maxOrderRange), the low nibble.
            assert(order >= 0 && order <= 15, "order \(order) does not fit the state byte")
            return rawValue &<< 4 | UInt8(truncatingIfNeeded: order)
        }
    }

    public static let interior = BlockState(rawValue: 0)

    /// What a head says about its block.
    public enum Kind: Equatable, Sendable {
        /// Not a head: inside a larger block, free or allocated.
        case interior
        /// A free buddy block, listed in the free bitmaps.
        case free
        /// Handed out to a caller. `alignmentRaised`: the order was raised to meet an alignment,
        /// so a sized free may name fewer bytes than the block holds; run heads carry it too, so
        /// neither kind is ever taken for a plain cacheable block.
        case allocated(mobilityClass: Int, alignmentRaised: Bool)
        /// Allocated from the buddy's view but sitting in a per-thread or per-CPU cache.
        case cached
        /// A slab's head (allocated, unmovable, from the buddy's view).
        case slab
        /// A minimum block inside a slab, past its head.
        case slabInterior
        /// The first piece of an exact-size allocation (allocated, unmovable).
        case trimmed
        /// A later piece of an exact-size allocation.
        case trimmedPiece
        /// A byte value no code writes: memory corruption or a bug.
        case invalid
    }

    @inline(__always)
    public static func free(order: Int) -> BlockState { BlockState(rawValue: Tag.free.byte(order: order)) }

    @inline(__always)
    public static func allocated(order: Int, mobilityClass: Int, alignmentRaised: Bool = false) -> BlockState {
        BlockState(rawValue: Tag.allocated(mobilityClass: mobilityClass, alignmentRaised: alignmentRaised).byte(order: order))
    }

    @inline(__always)
    public static func cached(order: Int) -> BlockState { BlockState(rawValue: Tag.cached.byte(order: order)) }

    @inlinable @inline(__always)
    public var order: Int { Int(rawValue & 0x0F) }

    /// The tag, or nil for a spare value no code writes.
    @inlinable @inline(__always)
    public var tag: Tag? { Tag(rawValue: rawValue >> 4) }

    /// A switch over the nibble, not over `Tag(rawValue:)`: with thirteen tags that initializer
    /// stopped being inlined (+30 instructions a checked free, callgrind).
    @inlinable
    public var kind: Kind {
        let tag = rawValue >> 4
        switch tag {
        case Tag.interior.rawValue: return rawValue == 0 ? .interior : .invalid
        case Tag.free.rawValue: return .free
        case Tag.allocatedUnmovable.rawValue...Tag.allocatedReclaimable.rawValue:
            return .allocated(mobilityClass: Int(tag &- Tag.allocatedUnmovable.rawValue), alignmentRaised: false)
        case Tag.raisedUnmovable.rawValue...Tag.raisedReclaimable.rawValue:
            return .allocated(mobilityClass: Int(tag &- Tag.raisedUnmovable.rawValue), alignmentRaised: true)
        case Tag.cached.rawValue: return .cached
        case Tag.slab.rawValue: return .slab
        case Tag.slabInterior.rawValue: return .slabInterior
        case Tag.trimmed.rawValue: return .trimmed
        case Tag.trimmedPiece.rawValue: return .trimmedPiece
        default: return .invalid
        }
    }

    /// The first piece of an exact-size allocation (a tag comparison: cheaper than `kind`).
    @inlinable @inline(__always)
    public var isTrimmed: Bool { rawValue >> 4 == Tag.trimmed.rawValue }

    /// A later piece of an exact-size allocation.
    @inlinable @inline(__always)
    public var isTrimmedPiece: Bool { rawValue >> 4 == Tag.trimmedPiece.rawValue }

    /// Allocated with one of the mobility tags: a block compaction may look at. The pieces of an
    /// exact-size allocation are not (they are unmovable and freed together).
    @inlinable @inline(__always)
    public var isAllocated: Bool {
        (Tag.allocatedUnmovable.rawValue...Tag.raisedReclaimable.rawValue).contains(rawValue >> 4)
    }

    public var description: String {
        switch kind {
        case .interior: "interior"
        case .free: "free(order \(order))"
        case .allocated(let mobility, let raised): "allocated(order \(order), class \(mobility)\(raised ? ", alignment-raised" : ""))"
        case .cached: "cached(order \(order))"
        case .slab: "slab(order \(order))"
        case .slabInterior: "inside a slab of order \(order)"
        case .trimmed: "trimmed(first piece of order \(order))"
        case .trimmedPiece: "trimmed piece(order \(order))"
        case .invalid: "invalid(0x\(String(rawValue, radix: 16)))"
        }
    }
}
