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

    @Option(name: .customLong("pool"), help: "Make the pools of BUDDYPOOLS (or --env) and report where the named pool's pages are (repeatable; 'all' for every pool).")
    var pools: [String] = []

    @Option(name: .customLong("env"), help: "A BUDDYPOOLS value to use instead of the environment's (with --pool).")
    var value: String?

    @Option(help: "Pages sampled per region of a pool (with --pool).")
    var samples = 4096

    func run() throws {
        if !pools.isEmpty { return try verifyPools() }
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

extension VerifyCommand {
    /// Per pool: the share of its sampled pages on each node, against the nodes it is placed on.
    func verifyPools() throws {
        var environment = ProcessEnvironment.current()
        if let value { environment["BUDDYPOOLS"] = value }
        let set: PoolSet
        do {
            set = try PoolSet(environment: environment)
        } catch {
            print("error: \(error)")
            throw ExitCode(1)
        }
        let chosen = pools.contains("all") ? set.pools : try pools.map { name in
            guard let pool = set[name] else {
                print("error: no pool '\(name)' in BUDDYPOOLS (pools: \(set.pools.map(\.name).joined(separator: ", ")))")
                throw ExitCode(1)
            }
            return pool
        }
        var table = TextTable("pool", "nodes", "policy", "sampled", "on its nodes", "pages by node", "not present")
        var off = 0
        for pool in chosen {
            let reports = pool.verifyPlacement(sampleCount: samples)
            var byNode: [Int: Int] = [:]
            for report in reports { byNode.merge(report.pagesByNode, uniquingKeysWith: +) }
            let sampled = reports.reduce(0) { $0 + $1.sampledPages }
            let onNodes = byNode.filter { pool.nodes.contains($0.key) }.values.reduce(0, +)
            if onNodes < sampled - reports.reduce(0, { $0 + $1.pagesNotPresent }) { off += 1 }
            let shares = byNode.keys.sorted().map { "\($0): \(Self.percent(byNode[$0]!, of: sampled))" }.joined(separator: ", ")
            table.add(pool.name, "\(pool.nodes)", pool.policy.rawValue, "\(sampled)", Self.percent(onNodes, of: sampled), shares,
                      "\(reports.reduce(0) { $0 + $1.pagesNotPresent })")
        }
        print(table.render())
        if off > 0 {
            print("\(off) pool(s) with resident pages off their nodes")
            throw ExitCode(1)
        }
    }

    static func percent(_ part: Int, of whole: Int) -> String {
        whole == 0 ? "-" : "\((Double(part) * 1000 / Double(whole)).rounded() / 10)%"
    }
}
