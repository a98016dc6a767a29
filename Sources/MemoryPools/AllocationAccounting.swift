import BuddyCaches
import BuddyConfig
import BuddyCore
import BuddySystem
import Synchronization

/// Where an allocation was asked for: the caller's file and line, captured by default
/// arguments at no cost unless the pool counts allocations by site.
public struct AllocationSite: Hashable, Sendable, CustomStringConvertible {
    public let file: StaticString
    public let line: UInt

    public init(file: StaticString, line: UInt) {
        self.file = file
        self.line = line
    }

    public static func == (a: AllocationSite, b: AllocationSite) -> Bool {
        a.line == b.line && a.file.utf8Start == b.file.utf8Start
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(UInt(bitPattern: file.utf8Start))
        hasher.combine(line)
    }

    public var description: String { "\(file):\(line)" }
}

/// Bytes and blocks one site holds now, and how many it allocated in all.
public struct AllocationSiteUsage: Sendable, Equatable, Codable {
    public let site: String
    public let liveBytes: Int
    public let liveBlocks: Int
    public let allocationsTotal: Int
}

/// Who holds a pool's memory, like the kernel's page_owner: every live block with the site
/// that allocated it. Switched on per pool (`allocationAccounting`, `accounting=1`); it takes a
/// lock per allocation and per free, so it is a tool for finding leaks, not for production loops.
final class AllocationAccounting: Sendable {
    private struct Usage {
        var liveBytes = 0
        var liveBlocks = 0
        var allocationsTotal = 0
    }

    private struct State {
        var bySite: [AllocationSite: Usage] = [:]
        var byAddress: [UInt: (site: AllocationSite, bytes: Int)] = [:]
    }

    private let state = Mutex(State())

    func record(_ address: UInt, bytes: Int, site: AllocationSite) {
        state.locked { state in
            state.byAddress[address] = (site, bytes)
            state.bySite[site, default: Usage()].liveBytes += bytes
            state.bySite[site, default: Usage()].liveBlocks += 1
            state.bySite[site, default: Usage()].allocationsTotal += 1
        }
    }

    func forget(_ address: UInt) {
        state.locked { state in
            guard let (site, bytes) = state.byAddress.removeValue(forKey: address) else { return }
            state.bySite[site]?.liveBytes -= bytes
            state.bySite[site]?.liveBlocks -= 1
        }
    }

    /// Moves a record when compaction moves a block.
    func move(from old: UInt, to new: UInt) {
        state.locked { state in
            if let entry = state.byAddress.removeValue(forKey: old) { state.byAddress[new] = entry }
        }
    }

    func top(_ count: Int) -> [AllocationSiteUsage] {
        state.locked { state in
            state.bySite.filter { $0.value.liveBlocks > 0 }
                .sorted { ($0.value.liveBytes, $0.value.liveBlocks) > ($1.value.liveBytes, $1.value.liveBlocks) }
                .prefix(max(0, count))
                .map { AllocationSiteUsage(site: $0.key.description, liveBytes: $0.value.liveBytes, liveBlocks: $0.value.liveBlocks,
                                           allocationsTotal: $0.value.allocationsTotal) }
        }
    }
}

extension MemoryPool {
    /// The sites holding the most bytes now (empty unless the pool counts by site).
    public func topAllocationSites(_ count: Int = 10) -> [AllocationSiteUsage] {
        accounting?.top(count) ?? []
    }

    /// A table of the top holders, for logs and for the CLI of a program.
    public func allocationReport(top count: Int = 10) -> String {
        guard accounting != nil else { return "pool '\(name)': allocation accounting is off (set allocationAccounting, or accounting=1)" }
        let rows = topAllocationSites(count)
        var lines = ["pool '\(name)': top \(rows.count) allocation sites by live bytes"]
        for row in rows {
            lines.append("  \(formatBytes(row.liveBytes).padding(12))  \(String(row.liveBlocks).padding(8)) blocks  \(row.allocationsTotal) allocated  \(row.site)")
        }
        return lines.joined(separator: "\n")
    }
}

extension String {
    /// Right-pads to `width` characters.
    func padding(_ width: Int) -> String { count >= width ? self : self + String(repeating: " ", count: width - count) }
}
