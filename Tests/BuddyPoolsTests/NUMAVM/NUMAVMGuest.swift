import BuddyPools
import Glibc
import Testing

/// The guest topology a NUMA VM run was booted with (`BUDDYPOOLS_NUMA_VM`, set by
/// scripts/numa-vm-tests); nil on the host, where the NUMA VM suites are disabled and run
/// instead inside the guests that CI boots.
enum NUMAVMGuest: String {
    /// Node 0: 2304 MiB with one 1 GiB hugepage; node 1: 768 MiB; one CPU and 64 2 MiB hugepages each.
    case twoNode = "two-node"
    /// Node 0 and 1: 768 MiB, 1 CPU, 32 hugepages each; node 2: memory-less with one CPU;
    /// node 3: 512 MiB, no CPU, no hugepages, far (distance 40 from 0, 30 from 1).
    case fourNode = "four-node"
    /// Two nodes of 768 MiB; 32 2 MiB hugepages on node 0 only.
    case shortHugepages = "short-hugepages"
    /// Four nodes of 384 MiB with one CPU each: a replica per node, a reader per node.
    case fourCPUNodes = "four-cpu-nodes"

    static var current: NUMAVMGuest? {
        guard let value = getenv("BUDDYPOOLS_NUMA_VM") else { return nil }
        return NUMAVMGuest(rawValue: String(cString: value))
    }

    /// A trait that runs a suite only inside this guest.
    static func only(_ guest: NUMAVMGuest) -> ConditionTrait {
        .enabled("runs inside the \(guest.rawValue) NUMA VM (scripts/numa-vm-tests)") { current == guest }
    }
}

/// Checks shared by the guest suites.
enum PlacementExpectations {
    /// A strict region on `node` of `pageSize` lands wholly there and is backed as asked.
    static func regionLands(on node: Int, pageSize: PageSize, byteCount: Int = 32 << 20) throws {
        let region = try Region(label: "vm test", byteCount: byteCount, nodes: [node], pageSize: pageSize, strictPageSize: true)
        let report = region.verifyPlacement()
        #expect(report.fractionOnIntendedNodes == 1.0, "node \(node) \(pageSize): \(report)")
        #expect(report.observedPageSize == pageSize, "node \(node): \(report)")
    }

    /// Every sampled block of a pool's allocations is on `node`.
    static func poolAllocates(on node: Int, pool: MemoryPool) throws {
        var blocks: [UnsafeMutableRawPointer] = []
        for size in [4096, 65536, 1 << 20, 2 << 20] {
            let block = try pool.allocate(byteCount: size)
            block.storeBytes(of: 1, as: UInt8.self)
            blocks.append(block)
        }
        let nodes = PagePlacement.nodes(of: blocks.map { UnsafeRawPointer($0) })
        #expect(nodes.allSatisfy { $0 == node }, "pool \(pool.name): blocks on nodes \(nodes), expected \(node)")
        for block in blocks { pool.deallocate(block) }
    }
}
