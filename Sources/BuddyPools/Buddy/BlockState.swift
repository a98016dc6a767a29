/// The one byte kept per minimum block, out of band. Only the first block of a buddy block
/// (its head) says anything; every other byte of the block is `interior`.
///
/// High nibble: what the block is. Low nibble: its order (0...15). One byte, not a bit,
/// so neighbours never share a word that two threads write (the lock-free cache writes
/// the heads of blocks it holds while the pool lock is held by another thread).
public struct BlockState: Equatable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8

    public init(rawValue: UInt8) { self.rawValue = rawValue }

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
        /// A byte value no code writes: memory corruption or a bug.
        case invalid
    }

    public static let interior = BlockState(rawValue: 0)

    @inline(__always)
    public static func free(order: Int) -> BlockState { BlockState(rawValue: 0x10 | UInt8(order)) }

    @inline(__always)
    public static func allocated(order: Int, mobilityClass: Int, alignmentRaised: Bool = false) -> BlockState {
        BlockState(rawValue: UInt8((alignmentRaised ? 5 : 2) + mobilityClass) << 4 | UInt8(order))
    }

    @inline(__always)
    public static func cached(order: Int) -> BlockState { BlockState(rawValue: 0x80 | UInt8(order)) }

    @inline(__always)
    public var order: Int { Int(rawValue & 0x0F) }

    public var kind: Kind {
        switch rawValue >> 4 {
        case 0: rawValue == 0 ? .interior : .invalid
        case 1: .free
        case 2, 3, 4: .allocated(mobilityClass: Int(rawValue >> 4) - 2, alignmentRaised: false)
        case 5, 6, 7: .allocated(mobilityClass: Int(rawValue >> 4) - 5, alignmentRaised: true)
        case 8: .cached
        default: .invalid
        }
    }

    @inline(__always)
    public var isAllocated: Bool { (2...7).contains(rawValue >> 4) }

    public var description: String {
        switch kind {
        case .interior: "interior"
        case .free: "free(order \(order))"
        case .allocated(let mobility, let raised): "allocated(order \(order), class \(mobility)\(raised ? ", alignment-raised" : ""))"
        case .cached: "cached(order \(order))"
        case .invalid: "invalid(0x\(String(rawValue, radix: 16)))"
        }
    }
}
