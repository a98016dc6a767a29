import BuddyCore
import CNuma
import Glibc

/// Where pages are, and moving them: move_pages(2), wrapped once.
package enum PlacementCalls {
    /// The node of each page (move_pages in query mode): per page a node id, or a negative
    /// errno (-ENOENT: not resident, -EFAULT: not mapped).
    package static func queryNodes(_ pages: [UnsafeRawPointer]) -> Result<[Int32], SystemError> {
        guard !pages.isEmpty else { return .success([]) }
        let detail = "query \(pages.count) pages"
        if let code = SystemCallFaults.injected(.movePages) { return .failure(.call(.movePages, detail, errno: code)) }
        if let node = SystemCallFaults.reportedNode() { return .success([Int32](repeating: node, count: pages.count)) }
        var addresses: [UnsafeMutableRawPointer?] = pages.map { UnsafeMutableRawPointer(mutating: $0) }
        var status = [Int32](repeating: -1, count: pages.count)
        let result = addresses.withUnsafeMutableBufferPointer { pointers in
            status.withUnsafeMutableBufferPointer { cnuma_query_page_nodes(pointers.baseAddress, UInt(pages.count), $0.baseAddress) }
        }
        guard result == 0 else { return .failure(.call(.movePages, detail, errno: errno)) }
        return .success(status)
    }

    /// Moves each page to its node (move_pages with MPOL_MF_MOVE): per page the node it is on
    /// afterwards, or a negative errno (-ENOMEM: the target node is full, -EBUSY: pinned).
    package static func movePages(_ pages: [UnsafeRawPointer], to nodes: [Int32]) -> Result<[Int32], SystemError> {
        precondition(pages.count == nodes.count, "one target node per page")
        guard !pages.isEmpty else { return .success([]) }
        let detail = "move \(pages.count) pages"
        if let code = SystemCallFaults.injected(.movePages) { return .failure(.call(.movePages, detail, errno: code)) }
        var addresses: [UnsafeMutableRawPointer?] = pages.map { UnsafeMutableRawPointer(mutating: $0) }
        var status = [Int32](repeating: -1, count: pages.count)
        let result = addresses.withUnsafeMutableBufferPointer { pointers in
            nodes.withUnsafeBufferPointer { targets in
                status.withUnsafeMutableBufferPointer {
                    cnuma_move_pages(pointers.baseAddress, UInt(pages.count), targets.baseAddress, $0.baseAddress)
                }
            }
        }
        // A positive result counts pages the kernel left where they were; their status says why.
        guard result >= 0 else { return .failure(.call(.movePages, detail, errno: errno)) }
        return .success(status)
    }
}
