import BuddySystem

/// A four-node machine for configuration tests: node 2 is memory-less, node 3 is CPU-less
/// and outside the cpuset; CPU 4 exists but the process may not run on it.
package enum FakeTopology {
    package static let machine = NUMATopology(
        nodes: [
            NUMANode(id: 0, cpus: [0, 1], totalBytes: 8 << 30, freeBytes: 6 << 30,
                     hugepages: [HugepageCounts(pageSize: .huge2M, total: 512, free: 512), HugepageCounts(pageSize: .huge1G, total: 0, free: 0)]),
            NUMANode(id: 1, cpus: [2, 3], totalBytes: 8 << 30, freeBytes: 6 << 30,
                     hugepages: [HugepageCounts(pageSize: .huge2M, total: 0, free: 0), HugepageCounts(pageSize: .huge1G, total: 0, free: 0)]),
            NUMANode(id: 2, cpus: [4], totalBytes: 0, freeBytes: 0),
            NUMANode(id: 3, cpus: [], totalBytes: 16 << 30, freeBytes: 16 << 30,
                     hugepages: [HugepageCounts(pageSize: .huge2M, total: 0, free: 0), HugepageCounts(pageSize: .huge1G, total: 0, free: 0)]),
        ],
        distances: [
            0: [0: 10, 1: 20, 2: 20, 3: 40],
            1: [0: 20, 1: 10, 2: 20, 3: 30],
            2: [0: 20, 1: 20, 2: 10, 3: 40],
            3: [0: 40, 1: 30, 2: 40, 3: 10],
        ],
        allowedNodes: [0, 1, 2], allowedCPUs: [0, 1, 2, 3])
}
