import BuddyCore
/// Marker for sets of NUMA node ids.
public enum NodeIDKind: Sendable {}
/// Marker for sets of CPU ids.
public enum CPUIDKind: Sendable {}

/// NUMA node ids, written like numactl lists: `0-3,6`.
public typealias NodeSet = IDSet<NodeIDKind>
/// CPU ids, written like taskset lists: `0-7,16-23`.
public typealias CPUSet = IDSet<CPUIDKind>

/// A set of small non-negative ids (nodes or CPUs) kept as a bit mask.
public struct IDSet<Kind>: Hashable, Sendable, ExpressibleByArrayLiteral, Sequence, CustomStringConvertible {
    /// Largest id a list may name; bigger numbers are typing mistakes, not hardware.
    public static var maximumID: Int { 1 << 16 }

    private var words: [UInt64]

    public init() { words = [] }

    public init<S: Sequence<Int>>(_ ids: S) {
        words = []
        for id in ids { insert(id) }
    }

    public init(arrayLiteral ids: Int...) { self.init(ids) }

    public var isEmpty: Bool { words.allSatisfy { $0 == 0 } }
    public var count: Int { words.reduce(0) { $0 + $1.nonzeroBitCount } }
    public var first: Int? {
        var iterator = makeIterator()
        return iterator.next()
    }
    public var last: Int? {
        guard let index = words.lastIndex(where: { $0 != 0 }) else { return nil }
        return index * 64 + 63 - words[index].leadingZeroBitCount
    }

    public func contains(_ id: Int) -> Bool {
        guard id >= 0, id / 64 < words.count else { return false }
        return words[id / 64] & (1 << UInt64(id % 64)) != 0
    }

    /// Adds `id`; an id outside 0...maximumID is not added (false), so a set never grows a
    /// word array for a typing mistake and a node set with no valid id is refused as empty.
    @discardableResult
    public mutating func insert(_ id: Int) -> Bool {
        guard id >= 0 && id <= Self.maximumID else { return false }
        while words.count <= id / 64 { words.append(0) }
        words[id / 64] |= 1 << UInt64(id % 64)
        return true
    }

    public mutating func remove(_ id: Int) {
        guard id >= 0, id / 64 < words.count else { return }
        words[id / 64] &= ~(1 << UInt64(id % 64))
        trim()
    }

    public func union(_ other: IDSet) -> IDSet { combined(other, |) }
    public func intersection(_ other: IDSet) -> IDSet { combined(other, &) }
    public func subtracting(_ other: IDSet) -> IDSet { combined(other) { $0 & ~$1 } }
    public func isSubset(of other: IDSet) -> Bool { subtracting(other).isEmpty }

    /// The mask as `unsigned long` words for mbind(2) and friends, `bitCount` bits long.
    public func maskWords(bitCount: Int) -> [UInt] {
        var result = [UInt](repeating: 0, count: Swift.max(1, (bitCount + 63) / 64))
        for id in self where id < bitCount { result[id / 64] |= 1 << UInt(id % 64) }
        return result
    }

    public func makeIterator() -> Iterator { Iterator(words: words) }

    public struct Iterator: IteratorProtocol {
        let words: [UInt64]
        var wordIndex = 0
        var remaining: UInt64

        init(words: [UInt64]) {
            self.words = words
            remaining = words.first ?? 0
        }

        public mutating func next() -> Int? {
            while remaining == 0 {
                wordIndex += 1
                guard wordIndex < words.count else { return nil }
                remaining = words[wordIndex]
            }
            let bit = remaining.trailingZeroBitCount
            remaining &= remaining - 1
            return wordIndex * 64 + bit
        }
    }

    /// The numactl form: ranges joined by commas, e.g. `0-3,6`; empty set is an empty string.
    public var description: String {
        var parts: [String] = []
        var iterator = makeIterator()
        var start = iterator.next()
        while let rangeStart = start {
            var end = rangeStart
            var next = iterator.next()
            while let candidate = next, candidate == end + 1 {
                end = candidate
                next = iterator.next()
            }
            parts.append(end == rangeStart ? "\(rangeStart)" : "\(rangeStart)-\(end)")
            start = next
        }
        return parts.joined(separator: ",")
    }

    public static func == (lhs: IDSet, rhs: IDSet) -> Bool { lhs.trimmedWords == rhs.trimmedWords }
    public func hash(into hasher: inout Hasher) { hasher.combine(trimmedWords) }

    private var trimmedWords: ArraySlice<UInt64> {
        let end = (words.lastIndex(where: { $0 != 0 }) ?? -1) + 1
        return words[0..<end]
    }

    private mutating func trim() {
        while let last = words.last, last == 0 { words.removeLast() }
    }

    private func combined(_ other: IDSet, _ operation: (UInt64, UInt64) -> UInt64) -> IDSet {
        var result = IDSet()
        let length = Swift.max(words.count, other.words.count)
        result.words = (0..<length).map { index in
            operation(index < words.count ? words[index] : 0, index < other.words.count ? other.words[index] : 0)
        }
        result.trim()
        return result
    }
}

/// Why a numactl-style list did not parse: the offset of the offending character and what was expected.
public struct IDListParseError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Offset in characters from the start of the list.
    public let offset: Int
    /// The part of the list that did not parse.
    public let token: String
    public let expected: String

    public var description: String { "'\(token)' at offset \(offset): expected \(expected)" }
}

extension IDSet {
    /// Parses `0-3,6` style lists (ranges inclusive). Whitespace, empty parts, reversed
    /// ranges and ids above `maximumID` are errors.
    public init(parsing text: String) throws(IDListParseError) {
        self.init()
        guard !text.isEmpty else {
            throw IDListParseError(offset: 0, token: "", expected: "a list of ids like 0-3,6")
        }
        var offset = 0
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            defer { offset += part.count + 1 }
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count == 1 || bounds.count == 2 else {
                throw IDListParseError(offset: offset, token: String(part), expected: "an id or a range like 2-5")
            }
            var values: [Int] = []
            for bound in bounds {
                guard !bound.isEmpty, bound.allSatisfy({ $0.isASCII && $0.isNumber }),
                      let value = Int(bound), value <= Self.maximumID
                else {
                    throw IDListParseError(
                        offset: offset, token: String(part),
                        expected: "a decimal id from 0 to \(Self.maximumID) or a range like 2-5")
                }
                values.append(value)
            }
            let low = values[0], high = values.last!
            guard low <= high else {
                throw IDListParseError(offset: offset, token: String(part), expected: "a range whose start is not above its end")
            }
            for id in low...high { insert(id) }
        }
    }
}
