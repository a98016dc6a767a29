import ArgumentParser
import BuddyPools
import Foundation

@main
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "buddypools-bench",
        abstract: "BuddyPools side by side with glibc, jemalloc, mimalloc, tcmalloc, numa_alloc_onnode and memkind, in one run.",
        discussion: """
            Every contender runs in a child process of its own (malloc peers through LD_PRELOAD), repeats \
            are interleaved (A B A B) and medians reported with their spread. Progress goes to stderr, \
            the table to stdout. Scenarios: \(Scenario.allCases.map(\.rawValue).joined(separator: ", ")).
            """,
        subcommands: [Run.self, Child.self],
        defaultSubcommand: Run.self)

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "run", abstract: "Run the benchmark (the default).")

        @Flag(help: "A short run (under a minute): fewer repeats, shorter loops, a 2 GiB GUPS table.")
        var quick = false
        @Option(help: "Write every result as JSON to this file.")
        var json: String?
        @Option(help: "Write charts of latency percentiles and throughput as SVG to this file.")
        var svg: String?
        @Option(name: .customLong("scenario"), help: "Run only these scenarios (repeatable).")
        var scenarios: [String] = []
        @Option(name: .customLong("contender"), help: "Run only these contenders (repeatable).")
        var contenders: [String] = []
        @Option(help: "Repeats per contender (default 3, 2 with --quick).")
        var repeats: Int?
        @Option(help: "Seconds per measured loop.")
        var duration: Double?
        @Option(help: "GUPS table size in MiB.")
        var gupsMiB: Int?
        @Flag(help: "List the scenarios and contenders and exit.")
        var list = false

        func run() throws {
            if list {
                for scenario in Scenario.allCases { print("\(scenario.rawValue): \(scenario.summary)") }
                print("contenders: " + Contender.allCases.map(\.rawValue).joined(separator: ", "))
                return
            }
            var settings = quick ? BenchSettings.quick : BenchSettings.standard
            if let duration { settings.duration = duration }
            if let gupsMiB { settings.gupsBytes = gupsMiB << 20 }
            let selectedScenarios = try scenarios.isEmpty ? Scenario.allCases : scenarios.map { name in
                guard let scenario = Scenario(rawValue: name) else { throw ValidationError("unknown scenario \(name); see --list") }
                return scenario
            }
            let selectedContenders = try contenders.isEmpty ? Contender.allCases : contenders.map { name in
                guard let contender = Contender(rawValue: name) else { throw ValidationError("unknown contender \(name); see --list") }
                return contender
            }
            let runner = ParentRun(settings: settings, scenarios: selectedScenarios, contenders: selectedContenders,
                                   repeats: repeats ?? (quick ? 2 : 3))
            let report = runner.run()
            print(ReportText.render(report))
            if let json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
                try encoder.encode(report).write(to: URL(fileURLWithPath: json))
                progress("wrote \(json)")
            }
            if let svg {
                try SVGChart.render(report).write(to: URL(fileURLWithPath: svg), atomically: true, encoding: .utf8)
                progress("wrote \(svg)")
            }
        }
    }

    /// Runs one contender's scenarios; spawned by `run`, prints `RESULT` lines.
    struct Child: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "child", abstract: "Internal: one contender in its own process.", shouldDisplay: false)

        @Option var contender: String
        @Option var scenarios: String
        @Option var settings: String

        func run() throws {
            guard let contender = Contender(rawValue: contender) else { throw ValidationError("unknown contender") }
            let settings = try JSONDecoder().decode(BenchSettings.self, from: Data(self.settings.utf8))
            let list = scenarios.split(separator: ",").compactMap { Scenario(rawValue: String($0)) }
            try ChildRun(contender: contender, settings: settings).runAll(list)
        }
    }
}

func progress(_ text: String) {
    FileHandle.standardError.write(Data(("buddypools-bench: " + text + "\n").utf8))
}
