/// The object sizes below a page that slabs serve, and how a request maps to one.
///
/// 8-byte steps up to 128 bytes (a request wastes at most 7 bytes), then 8 classes per doubling
/// (a request above 128 bytes wastes less than 12.5%): 144, 160, ... 256, 288, ... 512, ...,
/// 2304, 2560, ... 3840. 55 classes. A request above 3840 bytes, or aligned to more than its
/// class gives, is a buddy block. jemalloc spaces its classes 4 per doubling (20% waste),
/// mimalloc about 8 (12.5%); these follow mimalloc's density with jemalloc's exact 8-byte start.
///
/// An object's address is its slab's base (aligned to the slab size, at least 16 KiB) plus a
/// multiple of the class size, so a class's natural alignment is the largest power of two
/// dividing its size. A request of `size` aligned to `alignment` takes the class
/// `roundUp(size, max(quantum(size), alignment))`: a multiple of the alignment, hence aligned.
public enum SizeClasses {
    /// Classes in all.
    public static let count = 55
    /// The largest object a slab serves.
    public static let maxObjectBytes = 3840
    /// The largest alignment a class can honour (2048 divides the class 2048).
    public static let maxAlignment = 2048
    /// Slabs are made of units of this many bytes (or the superblock, if smaller); every slab
    /// starts on a unit boundary and one descriptor serves each unit.
    public static let unitShift = 14
    public static let unitBytes = 1 << unitShift

    /// The spacing of classes around `size` (1 ... maxObjectBytes).
    @inlinable @inline(__always)
    public static func quantum(_ size: Int) -> Int {
        // 8 up to 128; above it 1/8 of the power of two below the size.
        size <= 128 ? 8 : 1 &<< (Int.bitWidth &- (size &- 1).leadingZeroBitCount &- 4)
    }

    /// The class size for a request, or nil when slabs do not serve it (the caller has checked
    /// 1 <= size and that alignment is a power of two).
    @inlinable @inline(__always)
    public static func classBytes(size: Int, alignment: Int) -> Int? {
        guard size <= maxObjectBytes, alignment <= maxAlignment else { return nil }
        let step = max(quantum(size), alignment)
        let bytes = (size &+ step &- 1) & ~(step &- 1)
        return bytes <= maxObjectBytes ? bytes : nil
    }

    /// The index (0 ..< count) of a class size `classBytes` returned.
    @inlinable @inline(__always)
    public static func index(classBytes bytes: Int) -> Int {
        if bytes <= 128 { return bytes &>> 3 &- 1 }
        // bytes in (2^k, 2^(k+1)] with k >= 7: 8 classes of step 2^(k-3) each.
        let k = Int.bitWidth &- (bytes &- 1).leadingZeroBitCount &- 1
        return 16 &+ (k &- 7) &* 8 &+ ((bytes &- (1 &<< k)) &>> (k &- 3)) &- 1
    }

    /// The class index for a request, or nil when slabs do not serve it (the caller has checked
    /// 1 <= size and that alignment is a power of two): `index(classBytes: classBytes(size:
    /// alignment:))` in one step. Alignments up to 16 never raise a class above 128 bytes (its
    /// step is at least 16 there), so the index follows from the size with one bit scan: a
    /// malloc's class in 8 instructions instead of 26 (callgrind, the malloc-free pair loop).
    @inlinable @inline(__always)
    public static func index(size: Int, alignment: Int) -> Int? {
        guard alignment <= 16 else {
            guard let bytes = classBytes(size: size, alignment: alignment) else { return nil }
            return index(classBytes: bytes)
        }
        if size <= 128 {
            // Steps of 8, or of 16 when aligned to 16: index = bytes / 8 - 1.
            return alignment <= 8 ? (size &+ 7) &>> 3 &- 1 : ((size &+ 15) &>> 4) &<< 1 &- 1
        }
        guard size <= maxObjectBytes else { return nil }
        // size in (2^k, 2^(k+1)]: the class is the ((size - 1) >> (k - 3)) - 7th of 8 there.
        let k = Int.bitWidth &- (size &- 1).leadingZeroBitCount &- 1
        return 8 &* k &- 48 &+ ((size &- 1) &>> (k &- 3))
    }

    /// Every class size, by index.
    public static let sizes: [Int] = {
        var sizes = Array(stride(from: 8, through: 128, by: 8))
        var low = 128
        while low < maxObjectBytes {
            let step = low / 8
            for size in stride(from: low + step, through: min(2 * low, maxObjectBytes), by: step) { sizes.append(size) }
            low *= 2
        }
        return sizes
    }()

    /// The slab size of a class (a power of two, at least a unit and at most `limit`): the
    /// smallest that holds 16 objects or more and wastes at most 1/32 of itself; nil when even
    /// `limit` cannot hold two objects.
    public static func slabBytes(classBytes: Int, limit: Int) -> Int? {
        var bytes = min(unitBytes, limit)
        while true {
            let objects = bytes / classBytes
            if objects >= 16, (bytes - objects * classBytes) * 32 <= bytes { return bytes }
            // Larger slabs would hold more objects than the bitmaps have bits, or not fit.
            guard bytes * 2 <= limit, objects * 2 <= maxObjectsPerSlab else { break }
            bytes *= 2
        }
        return bytes / classBytes >= 2 ? bytes : nil
    }

    /// The most objects one slab holds: a unit of the smallest class (the bitmaps' size).
    public static let maxObjectsPerSlab = unitBytes / 8
}
