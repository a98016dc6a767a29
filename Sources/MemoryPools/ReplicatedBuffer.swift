import BuddyCore
import BuddySystem
import Synchronization

/// Read-mostly data (lookup tables, model weights, graph topology) with one copy per node, each
/// in a pool on that node: readers read the copy of the node they run on, with no system call
/// (the current CPU from rseq, mapped to a replica by a table made at creation).
///
/// Each replica holds two copies of the data and a sequence word. An update writes the copy
/// readers are not using, in every replica one after another, and then publishes it in that
/// replica; a reader runs its closure on the published copy and runs it again only when two
/// updates overtook it (the copy it read was rewritten meanwhile). So a reader never returns a
/// result computed from a torn copy, and most reads during an update do not retry.
///
/// Ordering: every replica switches from one version to the next atomically; replicas switch
/// one after another, so for the length of an update a reader on one node may see the new
/// version while a reader on another still sees the old one. Cost: a read is a CPU lookup, two
/// loads of the local sequence word and the closure; an update copies the data twice per replica
/// (the current version into the spare copy, then the change), under one lock for writers.
public final class ReplicatedBuffer: @unchecked Sendable {
    // @unchecked: the replicas' memory is reached only through the sequence protocol below;
    // the rest is immutable after init.
    public let byteCount: Int
    /// The node of each replica, in order.
    public let nodes: [Int]
    private let replicas: [Replica]
    /// Replica index per CPU id (the nearest replica for CPUs of nodes without one).
    private let replicaOfCPU: [Int]
    private let writer = Mutex<UInt64>(0)

    /// One replica: a sequence word, then two copies, in a block of a pool on its node.
    private struct Replica {
        let pool: MemoryPool
        let block: UnsafeMutableRawPointer
        let stride: Int
        /// Published version times two, plus one while an update writes the spare copy.
        var sequence: UnsafeMutablePointer<Atomic<UInt64>> { block.assumingMemoryBound(to: Atomic<UInt64>.self) }
        func copy(_ index: UInt64) -> UnsafeMutableRawPointer { block + 64 + Int(index & 1) * stride }
    }

    /// Makes one replica per node of `nodes` (default: every node that has a pool in `set`), each
    /// from the set's pool on that node, and fills them with `initialize`.
    public init(
        byteCount: Int, nodes wanted: NodeSet? = nil, in set: PoolSet, initialize: (UnsafeMutableRawBufferPointer) -> Void
    ) throws(PoolError) {
        guard byteCount > 0 else { throw .invalidRequest(InvalidRequest(pool: "replicated buffer", byteCount: byteCount, alignment: 64, reason: .zeroOrNegativeSize)) }
        let (rounded, overflow) = byteCount.addingReportingOverflow(63)
        guard !overflow else { throw .invalidRequest(InvalidRequest(pool: "replicated buffer", byteCount: byteCount, alignment: 64, reason: .largerThanPool)) }
        let stride = rounded & ~63
        let (copies, overflowed) = stride.multipliedReportingOverflow(by: 2)
        guard !overflowed, copies <= Int.max - 64 else {
            throw .invalidRequest(InvalidRequest(pool: "replicated buffer", byteCount: byteCount, alignment: 64, reason: .largerThanPool))
        }
        let candidates = wanted ?? NodeSet(set.pools.flatMap { $0.nodes.count == 1 ? Array($0.nodes) : [] })
        var made: [Replica] = []
        func release() { for replica in made { replica.pool.deallocate(replica.block) } }
        for node in candidates {
            guard let pool = set.pools.first(where: { $0.nodes == [node] }) else {
                release()
                throw .invalidConfiguration(pool: "replicated buffer", reason: "no pool of the set is on node \(node) alone "
                    + "(pools: \(set.pools.map { "\($0.name) on \($0.nodes)" }.joined(separator: ", ")))")
            }
            do {
                let block = try pool.allocate(byteCount: 64 + copies, alignment: 64)
                block.bindMemory(to: Atomic<UInt64>.self, capacity: 1).initialize(to: Atomic(0))
                made.append(Replica(pool: pool, block: block, stride: stride))
            } catch {
                release()
                throw error
            }
        }
        guard let first = made.first else {
            throw .invalidConfiguration(pool: "replicated buffer", reason: "no node to place a replica on (the set has no single-node pool)")
        }
        initialize(UnsafeMutableRawBufferPointer(start: first.copy(0), count: byteCount))
        for replica in made.dropFirst() { replica.copy(0).copyMemory(from: first.copy(0), byteCount: byteCount) }
        self.byteCount = byteCount
        self.nodes = Array(candidates)
        replicas = made
        let topology = set.topology
        let cpuCount = (topology.nodes.compactMap { $0.cpus.last }.max() ?? 0) + 1
        let replicaNodes = Array(candidates)
        replicaOfCPU = (0..<cpuCount).map { cpu in
            guard let node = topology.node(ofCPU: cpu)?.id else { return 0 }
            if let index = replicaNodes.firstIndex(of: node) { return index }
            let nearest = topology.nodesByDistance(from: node).first { replicaNodes.contains($0) }
            return nearest.flatMap { replicaNodes.firstIndex(of: $0) } ?? 0
        }
    }

    deinit {
        for replica in replicas { replica.pool.deallocate(replica.block) }
    }

    /// Updates published so far.
    public var version: UInt64 { writer.locked { $0 } }

    /// The replica a reader on the calling thread's CPU uses.
    public var localReplicaNode: Int { nodes[localIndex] }

    private var localIndex: Int {
        guard let cpu = ThreadCalls.currentCPU(), cpu < replicaOfCPU.count else { return 0 }
        return replicaOfCPU[cpu]
    }

    /// Runs `body` on the local replica's published copy; again, on a newer copy, in the rare
    /// case two updates overtook it. `body` must not keep the pointer, and must not rely on
    /// running once (it may see a copy being rewritten, whose result is then thrown away).
    public func read<Result, Failure: Error>(_ body: (UnsafeRawBufferPointer) throws(Failure) -> Result) throws(Failure) -> Result {
        try read(replica: localIndex, body)
    }

    /// `read` on the replica of `node` (for a caller that knows better than the CPU it runs on).
    public func read<Result, Failure: Error>(
        onNode node: Int, _ body: (UnsafeRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try read(replica: nodes.firstIndex(of: node) ?? localIndex, body)
    }

    private func read<Result, Failure: Error>(
        replica index: Int, _ body: (UnsafeRawBufferPointer) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        let replica = replicas[index]
        while true {
            let before = replica.sequence.pointee.load(ordering: .acquiring)
            let published = before >> 1
            let result = try body(UnsafeRawBufferPointer(start: replica.copy(published), count: byteCount))
            atomicMemoryFence(ordering: .acquiring)
            let after = replica.sequence.pointee.load(ordering: .relaxed)
            // The copy read was not rewritten unless an update of the copy after the next began.
            if after >> 1 == published || (after >> 1 == published &+ 1 && after & 1 == 0) { return result }
        }
    }

    /// Changes the data: `body` gets the current contents in the spare copy of the first
    /// replica and edits them; the result goes to every replica's spare copy, and each replica
    /// publishes it. Writers take turns (one lock); readers never wait.
    public func update(_ body: (UnsafeMutableRawBufferPointer) -> Void) {
        writer.locked { version in
            let next = version &+ 1
            let first = replicas[0]
            for (index, replica) in replicas.enumerated() {
                // Odd: the spare copy is being written (readers of the published one go on).
                replica.sequence.pointee.store(version << 1 | 1, ordering: .relaxed)
                atomicMemoryFence(ordering: .releasing)
                if index == 0 {
                    replica.copy(next).copyMemory(from: replica.copy(version), byteCount: byteCount)
                    body(UnsafeMutableRawBufferPointer(start: replica.copy(next), count: byteCount))
                } else {
                    replica.copy(next).copyMemory(from: first.copy(next), byteCount: byteCount)
                }
                replica.sequence.pointee.store(next << 1, ordering: .releasing)
            }
            version = next
        }
    }

    /// The bytes of the replica on `node` (its published copy), for placement checks; nil when
    /// there is none. Reading them races with updates: use `read(onNode:)` for the data.
    public func replicaAddresses(onNode node: Int) -> UnsafeRawBufferPointer? {
        guard let index = nodes.firstIndex(of: node) else { return nil }
        return UnsafeRawBufferPointer(start: replicas[index].block, count: 64 + 2 * replicas[index].stride)
    }
}
