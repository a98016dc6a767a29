import BuddyCaches
import BuddyConfig
import BuddyCore
import BuddySystem
import Synchronization

// The readable form of a pool snapshot (buddyinfo, pagetypeinfo, extfrag), for logs and the CLI.

extension PoolStatistics {
    /// A readable snapshot: totals, free blocks per order per node like /proc/buddyinfo,
    /// superblocks per mobility like /proc/pagetypeinfo, fragmentation indexes, counters.
    public var text: String {
        func bytes(_ value: Int) -> String { formatBytes(value) }
        var lines: [String] = []
        lines.append("pool '\(name)': \(bytes(managedBytes)) managed (\(bytes(capacityBytes)) own) on nodes \(nodes), \(pageSize), priority \(priority)\(locked ? ", locked" : "")")
        lines.append("  used \(bytes(usedBytes)), cached \(bytes(cachedBytes)), free \(bytes(freeBytes)), high water \(bytes(highWaterBytes)), largest free block \(bytes(largestFreeBlockBytes))")
        lines.append("  blocks: min \(bytes(minBlockBytes)), max order \(maxOrder) (inclusive), superblock \(bytes(superblockBytes)); metadata \(bytes(metadataBytes)) = \(String(metadataFraction * 100, decimals: 4))%")
        lines.append("  free blocks by order (buddyinfo):")
        for node in freeBlocksByNode.keys.sorted() {
            lines.append("    Node \(node), pool \(name) " + freeBlocksByNode[node]!.map { String($0).leftPadded(6) }.joined())
        }
        let groups = ["unmovable", "movable", "reclaimable"].map { "\($0) \(superblocksByMobility[$0] ?? 0)" }.joined(separator: ", ")
        lines.append("  superblocks by mobility (pagetypeinfo): \(groups), wholly free \(whollyFreeSuperblocks)")
        lines.append("  fragmentation by order (extfrag index / unusable free space):")
        lines.append("    " + fragmentation.map { entry in
            "\(entry.order):" + (entry.externalFragmentationIndex.map { String($0, decimals: 2) } ?? "ok") + "/" + String(entry.unusableFreeSpaceIndex, decimals: 2)
        }.joined(separator: " "))
        lines.append("  calls: \(allocationCount) allocations, \(deallocationCount) frees, \(failureCount) failures; caches: \(threadCaches) threads, \(cacheDrains) drains")
        lines.append("  lending: lent \(bytes(lentBytes)) \(lentTo), borrowed \(bytes(borrowedBytes)) \(borrowedFrom), \(superblocksBorrowedTotal) borrowed / \(superblocksReturnedTotal) returned in all")
        lines.append("  reclaim: \(compactions) compactions freed \(superblocksCompacted) superblocks, moved \(bytes(bytesMoved)); shrinkers \(shrinkerCalls) calls freed \(bytes(bytesReclaimed)); released \(bytes(releasedBytes)); \(movableHandles) handles")
        return lines.joined(separator: "\n")
    }
}

extension String {
    init(_ value: Double, decimals: Int) {
        var scale = 1.0
        for _ in 0..<decimals { scale *= 10 }
        let rounded = (value * scale).rounded() / scale
        var text = "\(rounded)"
        if let dot = text.firstIndex(of: ".") {
            let fraction = text[text.index(after: dot)...].count
            if fraction < decimals { text += String(repeating: "0", count: decimals - fraction) }
        }
        self = text
    }

    func leftPadded(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
}
