import BuddyPools
import Foundation

/// Everything a run produced, as written to --json.
struct BenchReport: Codable, Sendable {
    var date: String
    var command: String
    var machine: MachineDescription
    var settings: BenchSettings
    var repeats: Int
    var scenarios: [String: String]
    var aggregates: [Aggregate]
    var targets: [TargetCheck]
    var runs: [ScenarioResult]
}

struct MachineDescription: Codable, Sendable {
    var kernel: String
    var cpu: String
    var cpus: Int
    var nodes: [String]
    var transparentHugepages: String

    static func current() -> MachineDescription {
        let topology = try? NUMATopology.current()
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }.map { String($0.split(separator: ":", maxSplits: 1).last ?? "").trimmingCharacters(in: .whitespaces) } ?? "unknown"
        return MachineDescription(
            kernel: topology?.kernelRelease ?? "?", cpu: model, cpus: topology?.allowedCPUs.count ?? 0,
            nodes: topology?.nodes.map { node in
                "node \(node.id): cpus \(node.cpus.isEmpty ? "-" : node.cpus.description), \(ByteCount.format(node.totalBytes)), 2M pages \(node.hugepages(.huge2M)?.free ?? 0)/\(node.hugepages(.huge2M)?.total ?? 0) free"
            } ?? [],
            transparentHugepages: topology?.transparentHugepages.rawValue ?? "?")
    }
}

/// Spawns the children, repeats interleaved, and summarizes.
struct ParentRun {
    let settings: BenchSettings
    let scenarios: [Scenario]
    let contenders: [Contender]
    let repeats: Int

    func run() -> BenchReport {
        var runs: [ScenarioResult] = []
        let encodedSettings = String(decoding: try! JSONEncoder().encode(settings), as: UTF8.self)
        let start = Date()
        for round in 1...repeats {
            for contender in contenders {
                let wanted = scenarios.filter { $0.applies(to: contender) }
                guard !wanted.isEmpty else { continue }
                if let reason = contender.missingReason {
                    if round == 1 { runs += wanted.map { ScenarioResult(scenario: $0, contender: contender, status: .missing, note: reason) } }
                    continue
                }
                progress("round \(round)/\(repeats): \(contender.rawValue) (\(wanted.map(\.rawValue).joined(separator: ", ")))")
                var environment: [String: String] = ["BUDDYPOOLS_DIAGNOSTICS": "quiet"]
                if let library = contender.preloadLibrary { environment["LD_PRELOAD"] = library }
                let outcome = ChildProcess.run(
                    arguments: ["child", "--contender", contender.rawValue, "--scenarios", wanted.map(\.rawValue).joined(separator: ","),
                                "--settings", encodedSettings],
                    extraEnvironment: environment)
                var reported: Set<Scenario> = []
                for line in outcome.output.split(separator: "\n") where line.hasPrefix("RESULT ") {
                    if let result = try? JSONDecoder().decode(ScenarioResult.self, from: Data(line.dropFirst(7).utf8)) {
                        runs.append(result)
                        reported.insert(result.scenario)
                    }
                }
                for scenario in wanted where !reported.contains(scenario) {
                    runs.append(ScenarioResult(scenario: scenario, contender: contender, status: .failed,
                                               note: "child exited with status \(outcome.status) before reporting"))
                }
            }
        }
        progress(String(format: "done in %.0f s", Date().timeIntervalSince(start)))
        var aggregates: [Aggregate] = []
        for scenario in scenarios {
            for contender in contenders where scenario.applies(to: contender) {
                let mine = runs.filter { $0.scenario == scenario && $0.contender == contender }
                if !mine.isEmpty { aggregates.append(Aggregate(scenario: scenario, contender: contender, results: mine)) }
            }
        }
        computeRatios(&aggregates)
        let formatter = ISO8601DateFormatter()
        return BenchReport(
            date: formatter.string(from: start), command: CommandLine.arguments.joined(separator: " "),
            machine: .current(), settings: settings, repeats: repeats,
            scenarios: Dictionary(uniqueKeysWithValues: scenarios.map { ($0.rawValue, $0.summary) }),
            aggregates: aggregates, targets: Targets.evaluate(aggregates, gupsBytes: settings.gupsBytes), runs: runs)
    }
}
