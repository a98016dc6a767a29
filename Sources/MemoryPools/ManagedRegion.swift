import BuddyCaches
import BuddyConfig
import BuddyCore
import BuddySlabs
import BuddySystem
import Synchronization

/// A region cut into superblocks, with the metadata every pool that ever owns one of them
/// shares: one state byte per minimum block, the owning pool of each superblock, and the
/// node each superblock sits on. Keeping the state bytes with the region (not the pool)
/// lets a superblock change owner without copying a byte of metadata.
final class ManagedRegion: @unchecked Sendable {
    // @unchecked: the pointers are immutable; state bytes and owners are atomics, the rest is read-only.
    let region: Region
    let base: UInt
    let byteCount: Int
    let superblockCount: Int
    let geometry: BuddyGeometry
    /// The pool that created the region (it lends, the others borrow).
    let homePoolID: UInt32
    /// Node of each superblock, sampled with move_pages after populating and after a
    /// migration (-1: unknown).
    var superblockNodes: [Int] { sampledNodes.locked { $0 } }
    func node(ofSuperblock index: Int) -> Int { sampledNodes.locked { $0[index] } }
    /// Where a superblock's pages are or will be, for lending: its sampled node, or, when
    /// sampling found no page (a heap region whose pages fault in later), the one node a `bind`
    /// region is bound to, where the kernel puts every page of it. -1 when neither says.
    /// Statistics and placement checks keep the sampled node (unknown stays unknown there).
    func placementNode(ofSuperblock index: Int) -> Int {
        let sampled = node(ofSuperblock: index)
        guard sampled < 0, region.policy == .bind, region.nodes.count == 1, let only = region.nodes.first else { return sampled }
        return only
    }
    private let sampledNodes: Mutex<[Int]>
    private let metadata: MetadataBuffer
    /// State bytes of every minimum block of the region.
    let states: UnsafeMutablePointer<Atomic<UInt8>>
    /// Pool id owning each superblock; 0 while a superblock is between owners.
    let owners: UnsafeMutablePointer<Atomic<UInt32>>
    /// Slab descriptors of the superblocks that hold objects, whichever pool owns them now.
    let slabTables: SlabTables

    init(region: Region, geometry: BuddyGeometry, homePoolID: UInt32) throws(SystemError) {
        self.region = region
        self.base = UInt(bitPattern: region.baseAddress)
        self.byteCount = region.byteCount
        self.geometry = geometry
        self.homePoolID = homePoolID
        superblockCount = region.byteCount >> geometry.superblockShift
        let stateCount = superblockCount << geometry.maxOrder
        metadata = try MetadataBuffer(
            byteCount: stateCount + superblockCount * 4 + 64, nodes: region.nodes, locked: region.isLocked,
            label: "\(region.label) block states")
        var offset = 0
        let stateMemory = metadata.slice(offset: &offset, byteCount: stateCount)
        let ownerMemory = metadata.slice(offset: &offset, byteCount: superblockCount * 4)
        states = stateMemory.bindMemory(to: Atomic<UInt8>.self, capacity: stateCount)
        for index in 0..<stateCount { (states + index).initialize(to: Atomic(0)) }
        owners = ownerMemory.bindMemory(to: Atomic<UInt32>.self, capacity: superblockCount)
        for index in 0..<superblockCount { (owners + index).initialize(to: Atomic(homePoolID)) }
        slabTables = SlabTables(superblockCount: superblockCount, superblockShift: geometry.superblockShift, nodes: region.nodes,
                                locked: region.isLocked, label: region.label)
        sampledNodes = Mutex(Self.sampleNodes(base: base, superblockCount: superblockCount, geometry: geometry))
    }

    var addressRange: Range<UInt> { base..<(base + UInt(byteCount)) }

    @inline(__always)
    func contains(_ address: UInt) -> Bool { address &- base < UInt(byteCount) }

    @inline(__always)
    func superblockIndex(of address: UInt) -> Int { Int(address &- base) >> geometry.superblockShift }

    func superblockBase(_ index: Int) -> UInt { base + UInt(index << geometry.superblockShift) }

    /// The state bytes of one superblock.
    func stateTable(superblock index: Int) -> UnsafeMutablePointer<Atomic<UInt8>> {
        states + (index << geometry.maxOrder)
    }

    func owner(superblock index: Int) -> UInt32 { owners[index].load(ordering: .acquiring) }
    func setOwner(superblock index: Int, _ pool: UInt32) { owners[index].store(pool, ordering: .releasing) }

    /// Samples every superblock's node again (after a migration).
    func resampleNodes() {
        let nodes = Self.sampleNodes(base: base, superblockCount: superblockCount, geometry: geometry)
        sampledNodes.locked { $0 = nodes }
    }

    /// Moves the state bytes, owners and slab tables to `nodes` (best effort: the result says what failed).
    func moveMetadata(to nodes: NodeSet) -> [SystemError] {
        var failures: [SystemError] = []
        if case .failure(let error) = metadata.move(to: nodes) { failures.append(error) }
        failures += slabTables.moveTables(to: nodes)
        return failures
    }

    /// One move_pages call for the first page of every superblock (-1 where the kernel cannot say).
    private static func sampleNodes(base: UInt, superblockCount: Int, geometry: BuddyGeometry) -> [Int] {
        // Invariant: a mapped region does not start at address 0.
        assert(base != 0, "a region at address 0")
        let pages = (0..<superblockCount).map { UnsafeRawPointer(bitPattern: base + UInt($0 << geometry.superblockShift)).unsafelyUnwrapped }
        switch PagePlacement.query(pages) {
        case .success(let nodes): return nodes.map { $0 ?? -1 }
        case .failure(let error):
            Diagnostics.report(.warning, DiagnosticEvent(.placement, .warning, subject: "region at 0x\(String(base, radix: 16))",
                message: "superblock nodes unknown: \(error)"))
            return [Int](repeating: -1, count: superblockCount)
        }
    }
}
