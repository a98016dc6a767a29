import BuddyCore
/// The checks made before a region touches memory. They exist because the kernel's own
/// answers come too late: a hugetlb region bound to a node without free hugepages dies of
/// SIGBUS on first touch, and base pages bound to a full node summon the OOM killer.
package enum PlacementCheck {
    /// Validates a node set against the machine and returns it unchanged.
    package static func validate(nodes: NodeSet, policy: PlacementPolicy, topology: NUMATopology) throws(SystemError) -> NodeSet {
        guard !nodes.isEmpty else {
            throw SystemError(.invalidPlacement, call: "node set check", advice: "the node set is empty; name at least one node with memory, e.g. nodes=\(topology.memoryNodes)")
        }
        let unknown = nodes.subtracting(topology.nodeIDs)
        guard unknown.isEmpty else {
            throw SystemError(
                .invalidPlacement, call: "node set check",
                advice: "node \(unknown) does not exist; this machine has nodes \(topology.nodeIDs)")
        }
        for id in nodes {
            guard let node = topology.node(id), node.isMemoryless else { continue }
            let nearest = topology.nodesByDistance(from: id).first { topology.node($0)?.isMemoryless == false && topology.allowedNodes.contains($0) }
            throw SystemError(
                .invalidPlacement, call: "node set check",
                advice: "node \(id) has no memory (a memory-less node with CPUs \(node.cpus)); it cannot hold a region"
                    + (nearest.map { "; the nearest node with memory is \($0)" } ?? ""))
        }
        let forbidden = nodes.subtracting(topology.allowedNodes)
        guard forbidden.isEmpty else {
            throw SystemError(
                .invalidPlacement, call: "node set check",
                advice: "node \(forbidden) is outside this process's cpuset (mems_allowed \(topology.allowedNodes)); use nodes \(topology.allowedNodes) or widen the cpuset")
        }
        return nodes
    }

    /// Refuses requests the nodes cannot hold, before anything is mapped.
    package static func checkCapacity(
        byteCount: Int, nodes: NodeSet, policy: PlacementPolicy, pageSize: PageSize, topology: NUMATopology
    ) throws(SystemError) {
        let sourceNodes = policy.restrictsToNodes ? nodes : topology.memoryNodes.union(nodes)
        switch pageSize {
        case .huge2M, .huge1G:
            guard byteCount % pageSize.bytes == 0 else {
                throw SystemError(
                    .unsupported, call: "\(pageSize) size check",
                    advice: "\(formatBytes(byteCount)) is not a whole number of \(pageSize)")
            }
            let counts = sourceNodes.compactMap { topology.node($0)?.hugepages(pageSize) }
            guard counts.count == sourceNodes.count else {
                throw SystemError(
                    .unsupported, call: "\(pageSize) check",
                    advice: "this kernel offers no \(pageSize) (no sysfs \(pageSize.sysfsDirectoryName ?? "hugepages") directory)")
            }
            let needed = byteCount / pageSize.bytes
            let free = counts.reduce(0) { $0 + $1.free }
            guard free >= needed else {
                let perNode = sourceNodes.map { "node \($0) has \(topology.node($0)?.hugepages(pageSize)?.free ?? 0) free" }
                throw SystemError(
                    .hugepagesUnavailable, call: "\(pageSize) check",
                    advice: "the region needs \(needed) \(pageSize) on nodes \(sourceNodes) (\(policy)), "
                        + "\(perNode.joined(separator: ", ")); "
                        + reserveAdvice(pageSize: pageSize, pages: needed - free, nodes: nodes, topology: topology))
            }
        case .transparent, .base:
            if pageSize == .transparent, topology.transparentHugepages == .never || topology.transparentHugepages == .unavailable {
                throw SystemError(
                    .unsupported, call: "transparent hugepage check",
                    advice: "transparent hugepages are \(topology.transparentHugepages.rawValue) (/sys/kernel/mm/transparent_hugepage/enabled); set it to madvise to use them")
            }
            let available = sourceNodes.reduce(0) { $0 + (topology.node($1)?.availableBytes ?? 0) }
            guard available >= byteCount else {
                throw SystemError(
                    .insufficientMemory, call: "free memory check",
                    advice: "nodes \(sourceNodes) have \(formatBytes(available)) available and the region needs \(formatBytes(byteCount)); "
                        + (policy.restrictsToNodes
                            ? "binding there would end in the OOM killer, not an error: use fewer bytes, more nodes, or policy=preferred"
                            : "use fewer bytes"))
            }
        }
    }

    /// The mbind mode for a policy, and a note when the kernel forces a weaker one.
    package static func kernelMode(policy: PlacementPolicy, nodes: NodeSet, topology: NUMATopology) -> (mode: Int32, nodes: NodeSet, note: String?) {
        switch policy {
        // A weighted region binds each superblock to its one node (Region.bindWeighted).
        case .bind, .weighted: return (PolicyMode.bind, nodes, nil)
        case .interleave: return (PolicyMode.interleave, nodes, nil)
        case .preferred:
            if nodes.count == 1 { return (PolicyMode.preferred, nodes, nil) }
            if topology.supportsPreferredMany { return (PolicyMode.preferredMany, nodes, nil) }
            let first = NodeSet(nodes.first.map { [$0] } ?? [])
            return (PolicyMode.preferred, first, "this kernel lacks MPOL_PREFERRED_MANY (5.15+); preferring node \(first) only")
        }
    }

    /// How to reserve `pages` more hugepages spread over `nodes`.
    package static func reserveAdvice(pageSize: PageSize, pages: Int, nodes: NodeSet, topology: NUMATopology? = nil) -> String {
        guard let directory = pageSize.sysfsDirectoryName, let first = nodes.first else { return "" }
        let share = (pages + nodes.count - 1) / nodes.count
        let current = topology?.node(first)?.hugepages(pageSize)?.total ?? 0
        let more = nodes.count > 1 ? " (and likewise on nodes \(nodes.subtracting([first])))" : ""
        return "reserve \(share) more on node \(first): echo \(current + share) > /sys/devices/system/node/node\(first)/hugepages/\(directory)/nr_hugepages\(more)"
    }

    package static func memlockAdvice(byteCount: Int, topology: NUMATopology) -> String {
        let limit = topology.memlockLimitBytes.map(formatBytes) ?? "unlimited"
        return "RLIMIT_MEMLOCK is \(limit) and the region needs \(formatBytes(byteCount)) locked: raise it (ulimit -l unlimited, LimitMEMLOCK=infinity for a systemd unit) or grant CAP_IPC_LOCK; hugepage regions (page=2M or 1G) need no mlock"
    }
}
