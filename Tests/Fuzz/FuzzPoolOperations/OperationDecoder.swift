import BuddyPools

/// One step of the fuzzed sequence.
enum Operation: CustomStringConvertible {
    /// In pool 0 (the borrower) or 1 (the lender).
    case allocate(pool: Int, byteCount: Int, alignment: Int, mobility: Mobility, sized: Bool)
    case allocateContiguous(pool: Int, byteCount: Int, alignment: Int, boundary: Int)
    case allocateMovable(pool: Int, byteCount: Int)
    /// Frees the live block or handle at this index (modulo their count).
    case free(index: Int)
    case freeHandle(index: Int)
    case shrink(pool: Int, superblocks: Int)
    case grow(pool: Int, superblocks: Int)
    case compact(pool: Int, superblocks: Int)
    case drain(pool: Int)

    var description: String {
        switch self {
        case .allocate(let pool, let bytes, let alignment, let mobility, _): "allocate(pool \(pool), \(bytes) B, align \(alignment), \(mobility))"
        case .allocateContiguous(let pool, let bytes, let alignment, let boundary): "allocateContiguous(pool \(pool), \(bytes) B, align \(alignment), boundary \(boundary))"
        case .allocateMovable(let pool, let bytes): "allocateMovable(pool \(pool), \(bytes) B)"
        case .free(let index): "free(#\(index))"
        case .freeHandle(let index): "freeHandle(#\(index))"
        case .shrink(let pool, let superblocks): "shrink(pool \(pool), to \(superblocks) superblocks)"
        case .grow(let pool, let superblocks): "grow(pool \(pool), to \(superblocks) superblocks)"
        case .compact(let pool, let superblocks): "compact(pool \(pool), \(superblocks))"
        case .drain(let pool): "drainCaches(pool \(pool))"
        }
    }
}

/// Reads operations from the fuzzer's bytes: an opcode byte, then the operands it needs.
/// Sizes span every magnitude (a mantissa byte shifted by an exponent byte, so 1 byte to
/// 128 MiB, beyond both pools); alignments are powers of two up to 64 MiB, or any value.
struct OperationDecoder {
    private let bytes: UnsafeBufferPointer<UInt8>
    private var position = 0

    init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    mutating func byte() -> UInt8? {
        guard position < bytes.count else { return nil }
        defer { position += 1 }
        return bytes[position]
    }

    private mutating func size() -> Int? {
        guard let mantissa = byte(), let exponent = byte() else { return nil }
        return (Int(mantissa) + 1) << Int(exponent % 20)
    }

    private mutating func alignment() -> Int? {
        guard let code = byte() else { return nil }
        // Mostly powers of two; one code in 32 a value that is not one (0 and negatives included).
        let notPowers = [0, 3, 24, 4095, 4097, -1, -4096, Int.min]
        return code >= 248 ? notPowers[Int(code) - 248] : 1 << Int(code % 27)
    }

    mutating func operation() -> Operation? {
        guard let opcode = byte() else { return nil }
        let pool = Int(opcode >> 7)
        switch (opcode & 0x7F) % 12 {
        case 0, 1, 2:
            guard let bytes = size(), let alignment = alignment(), let flags = byte() else { return nil }
            let mobility: Mobility = [.unmovable, .movable, .reclaimable][Int(flags % 3)]
            return .allocate(pool: pool, byteCount: bytes, alignment: alignment, mobility: mobility, sized: flags & 0x80 != 0)
        case 3:
            guard let bytes = size(), let alignment = alignment(), let boundary = byte() else { return nil }
            return .allocateContiguous(pool: pool, byteCount: bytes, alignment: alignment, boundary: boundary == 0 ? 0 : 1 << Int(boundary % 28))
        case 4:
            guard let bytes = size() else { return nil }
            return .allocateMovable(pool: pool, byteCount: bytes)
        case 5, 6, 7:
            guard let index = byte() else { return nil }
            return .free(index: Int(index))
        case 8:
            guard let index = byte() else { return nil }
            return .freeHandle(index: Int(index))
        case 9:
            guard let count = byte() else { return nil }
            return count & 1 == 0 ? .shrink(pool: pool, superblocks: Int(count >> 1) % 8) : .grow(pool: pool, superblocks: Int(count >> 1) % 8)
        case 10:
            guard let count = byte() else { return nil }
            return .compact(pool: pool, superblocks: Int(count % 4))
        default:
            return .drain(pool: pool)
        }
    }
}
