import BuddyPools
import Testing

/// Hugepages are reserved on node 0 only. Binding 2 MiB pages to node 1 would SIGBUS on first
/// touch if nothing checked: these tests live only because the process does not die.
@Suite("NUMAVM short-hugepage guest", NUMAVMGuest.only(.shortHugepages))
struct ShortHugepageGuestTests {
    @Test("a 2M region on node 1 falls back by default, with the reason")
    func fallsBack() throws {
        let region = try Region(byteCount: 32 << 20, nodes: [1], pageSize: .huge2M)
        #expect(region.pageSize == .transparent)
        let reason = try #require(region.fallbacks.first?.reason)
        #expect(reason.contains("node 1 has 0 free") && reason.contains("node1/hugepages/hugepages-2048kB"), "\(reason)")
        region.baseAddress.initializeMemory(as: UInt8.self, repeating: 1, count: region.byteCount)
        #expect(region.verifyPlacement().fractionOnIntendedNodes == 1.0)
    }

    @Test("strict mode fails with an error that says how to reserve hugepages")
    func strictFails() throws {
        do {
            _ = try Region(byteCount: 32 << 20, nodes: [1], pageSize: .huge2M, strictPageSize: true)
            Issue.record("strict 2M on node 1 succeeded without hugepages there")
        } catch {
            #expect(error.kind == .hugepagesUnavailable)
            #expect(error.advice.contains("echo 16 > /sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages"), "\(error)")
        }
    }

    @Test("without the sysfs check, MADV_POPULATE_WRITE's EFAULT still prevents the SIGBUS")
    func kernelGuard() throws {
        let region = try Region(byteCount: 32 << 20, nodes: [1], pageSize: .huge2M, checkHugepagesFirst: false)
        #expect(region.pageSize == .transparent)
        let reason = try #require(region.fallbacks.first?.reason)
        #expect(reason.contains("ran out of 2 MiB hugepages while populating"), "\(reason)")
        do {
            _ = try Region(byteCount: 32 << 20, nodes: [1], pageSize: .huge2M, strictPageSize: true, checkHugepagesFirst: false)
            Issue.record("strict succeeded")
        } catch {
            #expect(error.call.contains("MADV_POPULATE_WRITE") && error.errno != 0, "\(error)")
        }
    }

    @Test("node 0 still gets real hugepages, and a pool set spreads as configured")
    func node0Hugepages() throws {
        try PlacementExpectations.regionLands(on: 0, pageSize: .huge2M)
        let set = try PoolSet(environment: ["BUDDYPOOLS": "a:size=32M,nodes=0,page=2M!;b:size=32M,nodes=1,page=2M"])
        #expect(set["a"]?.regions.first?.pageSize == .huge2M)
        #expect(set["b"]?.regions.first?.pageSize == .transparent)
        try PlacementExpectations.poolAllocates(on: 1, pool: try #require(set["b"]))
    }
}
