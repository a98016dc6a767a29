import BuddyCore
import CNuma
import Glibc

/// libnuma, the scheduler's affinity and the limits: what `NUMATopology.current()` reads.
package enum TopologyCalls {
    /// Whether the kernel supports NUMA policies at all (node 0 stands for the machine otherwise).
    package static var isNUMAAvailable: Bool { cnuma_available() == 1 }
    package static var maxNode: Int { Int(cnuma_max_node()) }
    package static func isNodePresent(_ node: Int) -> Bool { cnuma_node_present(Int32(node)) == 1 }
    package static var supportsPreferredMany: Bool { cnuma_has_preferred_many() == 1 }

    package static func nodeSize(_ node: Int) -> Result<(total: Int, free: Int), SystemError> {
        if let code = SystemCallFaults.injected(.numaNodeSize) { return .failure(.call(.numaNodeSize, "node \(node)", errno: code)) }
        var free: Int64 = 0
        let total = cnuma_node_size(Int32(node), &free)
        guard total >= 0 else { return .failure(.call(.numaNodeSize, "node \(node)", errno: errno)) }
        return .success((Int(total), Int(max(free, 0))))
    }

    /// numa_distance (10 is local).
    package static func distance(_ a: Int, _ b: Int) -> Result<Int, SystemError> {
        if let code = SystemCallFaults.injected(.numaDistance) { return .failure(.call(.numaDistance, "\(a), \(b)", errno: code)) }
        let distance = cnuma_distance(Int32(a), Int32(b))
        guard distance > 0 else { return .failure(.call(.numaDistance, "\(a), \(b)", errno: errno)) }
        return .success(Int(distance))
    }

    package static func nodeCPUs(_ node: Int) -> Result<[Int], SystemError> {
        readList(.numaNodeToCPUs, "node \(node)") { cnuma_node_cpus(Int32(node), $0, $1) }
    }

    /// Nodes the cpuset lets this process allocate on (mems_allowed).
    package static func allowedNodes() -> Result<[Int], SystemError> {
        readList(.numaGetMemsAllowed, "") { cnuma_allowed_nodes($0, $1) }
    }

    /// CPUs this thread may run on.
    package static func allowedCPUs() -> Result<[Int], SystemError> {
        readList(.schedGetaffinity, "") { cnuma_allowed_cpus($0, $1) }
    }

    package static func configuredCPUs() -> Result<Int, SystemError> {
        if let code = SystemCallFaults.injected(.sysconf) { return .failure(.call(.sysconf, "_SC_NPROCESSORS_CONF", errno: code)) }
        let count = cnuma_configured_cpus()
        guard count > 0 else { return .failure(.call(.sysconf, "_SC_NPROCESSORS_CONF", errno: errno)) }
        return .success(Int(count))
    }

    /// RLIMIT_MEMLOCK in bytes; nil when unlimited.
    package static func memlockLimit() -> Result<UInt64?, SystemError> {
        if let code = SystemCallFaults.injected(.getrlimit) { return .failure(.call(.getrlimit, "RLIMIT_MEMLOCK", errno: code)) }
        var limit: UInt64 = 0
        guard cnuma_memlock_limit(&limit) == 0 else { return .failure(.call(.getrlimit, "RLIMIT_MEMLOCK", errno: errno)) }
        return .success(limit == UInt64.max ? nil : limit)
    }

    package static func kernelRelease() -> String {
        var name = utsname()
        guard uname(&name) == 0 else { return "" }
        return withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    }

    /// Calls a shim function that fills an int array and returns the count, growing the array as needed.
    private static func readList(
        _ call: SystemCall, _ detail: String, _ fill: (UnsafeMutablePointer<Int32>, Int32) -> Int32
    ) -> Result<[Int], SystemError> {
        if let code = SystemCallFaults.injected(call) { return .failure(.call(call, detail, errno: code)) }
        var capacity = 256
        while true {
            var buffer = [Int32](repeating: 0, count: capacity)
            let count = Int(buffer.withUnsafeMutableBufferPointer { fill($0.baseAddress!, Int32(capacity)) })
            if count < 0 { return .failure(.call(call, detail, errno: errno)) }
            if count <= capacity { return .success(buffer[0..<count].map(Int.init)) }
            capacity = count
        }
    }
}
