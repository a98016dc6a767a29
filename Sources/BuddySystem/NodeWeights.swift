import BuddyCore

/// Shares of a weighted pool's superblocks per node, written `0:3,2:1` (three superblocks on
/// node 0 for every one on node 2). The pool binds each superblock to one node itself, so any
/// kernel does it (MPOL_WEIGHTED_INTERLEAVE, 6.9+, places pages, not superblocks, and is not needed).
public struct NodeWeights: Sendable, Hashable, Codable, CustomStringConvertible {
    /// Largest weight a list may give; bigger numbers are typing mistakes, not ratios.
    public static var maximumWeight: Int { 1000 }

    /// (node, weight) pairs sorted by node, every weight in 1...maximumWeight.
    public let entries: [Entry]

    public struct Entry: Sendable, Hashable, Codable {
        public let node: Int
        public let weight: Int
    }

    /// Why a weight list was refused; `description` names the bad piece.
    public struct ParseError: Error, Sendable, Equatable, CustomStringConvertible {
        public let description: String
    }

    public init(_ weights: [(node: Int, weight: Int)]) throws(ParseError) {
        guard !weights.isEmpty else { throw ParseError(description: "no node:weight pair") }
        var seen = NodeSet()
        for (node, weight) in weights {
            guard node >= 0, node <= NodeSet.maximumID else { throw ParseError(description: "\(node) is not a node id") }
            guard !seen.contains(node) else { throw ParseError(description: "node \(node) is weighted twice") }
            seen.insert(node)
            guard (1...Self.maximumWeight).contains(weight) else {
                throw ParseError(description: "the weight \(weight) of node \(node) is not from 1 to \(Self.maximumWeight)")
            }
        }
        entries = weights.map { Entry(node: $0.node, weight: $0.weight) }.sorted { $0.node < $1.node }
    }

    /// Parses `0:3,2:1`.
    public init(parsing text: String) throws(ParseError) {
        var pairs: [(node: Int, weight: Int)] = []
        for piece in text.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = piece.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let node = Int(parts[0]), let weight = Int(parts[1]) else {
                throw ParseError(description: "'\(piece)' is not node:weight (like 0:3)")
            }
            pairs.append((node, weight))
        }
        try self.init(pairs)
    }

    public var nodes: NodeSet { NodeSet(entries.map(\.node)) }
    public var totalWeight: Int { entries.reduce(0) { $0 + $1.weight } }

    public var description: String { entries.map { "\($0.node):\($0.weight)" }.joined(separator: ",") }

    /// The node of each of `chunks` consecutive superblocks: smooth weighted round robin, so every
    /// prefix is as close to the ratio as whole superblocks allow (3:1 gives 0,0,1,0, 0,0,1,0, ...)
    /// and a pool that takes superblocks in address order spreads its allocations in the ratio.
    public func plan(chunks: Int) -> [Int] {
        var credit = [Int](repeating: 0, count: entries.count)
        let total = totalWeight
        var plan: [Int] = []
        plan.reserveCapacity(max(0, chunks))
        for _ in 0..<max(0, chunks) {
            var best = 0
            for index in entries.indices {
                credit[index] += entries[index].weight
                if credit[index] > credit[best] { best = index }
            }
            credit[best] -= total
            plan.append(entries[best].node)
        }
        return plan
    }
}
