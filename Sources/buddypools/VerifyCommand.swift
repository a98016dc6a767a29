import ArgumentParser
import BuddyPools

/// A placement self-check: maps a small region on every node with memory, for each page
/// size, and reports where the kernel really put the pages.
struct VerifyCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Map a test region per node and page size and report where its pages landed (move_pages).")

    @Option(help: "Bytes per test region (a multiple of 2 MiB).")
    var size = 16 << 20

    func run() throws {
        let topology = try NUMATopology.current()
        var table = TextTable("node", "asked", "got", "on node", "huge share", "notes")
        var failures = 0
        for node in topology.memoryNodes {
            for page in [PageSize.huge2M, .transparent, .base] {
                do {
                    let region = try Region(label: "verify node \(node)", byteCount: size, nodes: [node], pageSize: page, topology: topology)
                    let report = region.verifyPlacement()
                    let percent = Int((report.fractionOnIntendedNodes * 100).rounded())
                    if report.fractionOnIntendedNodes < 1 { failures += 1 }
                    table.add("\(node)", page.configurationToken, report.observedPageSize.configurationToken, "\(percent)%",
                              "\(Int((report.hugepageFraction * 100).rounded()))%",
                              region.fallbacks.map { "fell back: \($0.reason)" }.joined(separator: "; "))
                } catch {
                    failures += 1
                    table.add("\(node)", page.configurationToken, "-", "-", "-", "\(error)")
                }
            }
        }
        print(table.render())
        if failures > 0 {
            print("\(failures) region(s) not fully on their node")
            throw ExitCode(1)
        }
    }
}
