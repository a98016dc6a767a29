/// A bitset with summary levels: bit i of level n+1 is set when word i of level n is not
/// zero. Finding the first set bit at or after an index costs O(levels) word operations,
/// about log64(bitCount), whatever the density. Storage is borrowed, not owned.
struct HierarchicalBitset {
    let bitCount: Int
    private let words: UnsafeMutablePointer<UInt64>
    private let levelCount: Int
    // Word offsets and bit counts of the levels, level 0 first; inline, so no heap array to chase.
    // Six levels hold 64^6 bits, far beyond any arena (slot capacity is below 2^32).
    private var offsets = InlineArray<6, Int>(repeating: 0)
    private var counts = InlineArray<6, Int>(repeating: 0)

    /// Words of storage a bitset of `bitCount` bits needs.
    static func wordCount(bitCount: Int) -> Int {
        var total = 0
        var bits = max(bitCount, 1)
        repeat {
            let words = (bits + 63) / 64
            total += words
            bits = words
        } while bits > 1
        return total
    }

    /// Lays the bitset over `storage`, which must hold `wordCount(bitCount:)` zeroed words.
    init(bitCount: Int, storage: UnsafeMutablePointer<UInt64>) {
        self.bitCount = bitCount
        self.words = storage
        var level = 0
        var bits = max(bitCount, 1)
        var offset = 0
        repeat {
            assert(level < 6, "a bitset of \(bitCount) bits needs more than six levels")
            offsets[level] = offset
            counts[level] = bits
            let wordsHere = (bits + 63) / 64
            offset += wordsHere
            bits = wordsHere
            level += 1
        } while bits > 1
        levelCount = level
    }

    @inline(__always)
    private func offset(_ level: Int) -> Int { offsets[level] }

    @inline(__always)
    private func count(_ level: Int) -> Int { counts[level] }

    @inline(__always)
    func contains(_ index: Int) -> Bool {
        words[index >> 6] & (1 << UInt64(index & 63)) != 0
    }

    var isEmpty: Bool { words[offset(levelCount - 1)] == 0 }

    /// Level-0 words: bit i of word w is bit w * 64 + i.
    var wordCount: Int { (bitCount + 63) >> 6 }

    @inline(__always)
    func word(_ index: Int) -> UInt64 { words[index] }

    /// Sets bit `index`; returns false when it was set already.
    @discardableResult
    func insert(_ index: Int) -> Bool {
        var position = index
        for level in 0..<levelCount {
            let word = words + offset(level) + (position >> 6)
            let old = word.pointee
            let bit: UInt64 = 1 << UInt64(position & 63)
            if level == 0, old & bit != 0 { return false }
            word.pointee = old | bit
            // Upper levels already know this word is non-empty.
            if old != 0 { return true }
            position >>= 6
        }
        return true
    }

    /// Clears bit `index`; returns false when it was clear already.
    @discardableResult
    func remove(_ index: Int) -> Bool {
        var position = index
        for level in 0..<levelCount {
            let word = words + offset(level) + (position >> 6)
            let bit: UInt64 = 1 << UInt64(position & 63)
            let old = word.pointee
            if level == 0, old & bit == 0 { return false }
            let new = old & ~bit
            word.pointee = new
            if new != 0 { return true }
            position >>= 6
        }
        return true
    }

    /// The lowest set bit, or nil.
    func first() -> Int? {
        guard !isEmpty else { return nil }
        var position = 0
        var level = levelCount - 1
        while true {
            let word = words[offset(level) + position]
            position = (position << 6) | word.trailingZeroBitCount
            if level == 0 { return position }
            level -= 1
        }
    }

    /// The lowest set bit at or after `start`, or nil.
    func next(from start: Int) -> Int? {
        next(level: 0, from: start)
    }

    /// The lowest clear bit at or after `start`, or `bitCount` when every later bit is set.
    /// O(length of the set run / 64).
    func nextClear(from start: Int) -> Int {
        var wordIndex = start >> 6
        guard start < bitCount else { return bitCount }
        var bits = ~words[wordIndex] & (~0 << UInt64(start & 63))
        let lastWord = (bitCount - 1) >> 6
        while bits == 0 {
            wordIndex += 1
            guard wordIndex <= lastWord else { return bitCount }
            bits = ~words[wordIndex]
        }
        return min(bitCount, (wordIndex << 6) | bits.trailingZeroBitCount)
    }

    /// The lowest set bit in `range`, or nil.
    func first(in range: Range<Int>) -> Int? {
        guard let found = next(from: range.lowerBound), found < range.upperBound else { return nil }
        return found
    }

    private func next(level: Int, from start: Int) -> Int? {
        guard start < count(level) else { return nil }
        let wordIndex = start >> 6
        let bits = words[offset(level) + wordIndex] & (~0 << UInt64(start & 63))
        if bits != 0 { return (wordIndex << 6) | bits.trailingZeroBitCount }
        guard level + 1 < levelCount, let nextWord = next(level: level + 1, from: wordIndex + 1) else { return nil }
        return (nextWord << 6) | words[offset(level) + nextWord].trailingZeroBitCount
    }

    /// Every set bit in order (for invariant checks and statistics, not for hot paths).
    func forEach(_ body: (Int) -> Void) {
        var index = next(from: 0)
        while let found = index {
            body(found)
            index = next(from: found + 1)
        }
    }

    /// Whether each summary bit matches the emptiness of the word it summarizes.
    func summariesAreConsistent() -> Bool {
        for level in 1..<max(levelCount, 1) {
            for word in 0..<count(level) {
                let lower = words[offset(level - 1) + word] != 0
                let summary = words[offset(level) + (word >> 6)] & (1 << UInt64(word & 63)) != 0
                if lower != summary { return false }
            }
        }
        // No bit may be set beyond bitCount at level 0.
        let lastWord = (count(0) - 1) >> 6
        let usedBits = count(0) - lastWord * 64
        if usedBits < 64, words[lastWord] >> UInt64(usedBits) != 0 { return false }
        return true
    }
}
