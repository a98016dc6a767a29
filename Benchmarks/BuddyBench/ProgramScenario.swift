import Glibc

/// The `program` scenario: a real, allocation-heavy program run to completion under the
/// contender's malloc. The program is a child of the contender's process, so it inherits the
/// LD_PRELOAD that put the allocator in front of malloc (none for glibc). Python with
/// `PYTHONMALLOC=malloc`, so its small objects reach malloc instead of pymalloc's arenas.
enum ProgramScenario {
    /// The program, in the repository; its known answer for the seed it uses.
    static let script = "Tests/MallocPrograms/list_churn.py"
    static let expectedOutput = "1014769\n"

    static func run(contender: Contender) -> ScenarioResult {
        var result = ScenarioResult(scenario: .program, contender: contender, status: .ok)
        guard let path = locateScript() else {
            result.status = .skipped
            result.note = "\(script) not found from the working directory or beside the executable: run from the repository"
            return result
        }
        guard let run = ChildProcess.spawn("python3", arguments: [path], extraEnvironment: ["PYTHONMALLOC": "malloc"], searchesPath: true) else {
            result.status = .failed
            result.note = "could not start python3 (posix_spawnp: \(String(cString: strerror(errno))))"
            return result
        }
        guard run.status == 0, run.output == expectedOutput else {
            result.status = .failed
            result.note = "python3 \(script) exited \(run.status) with \(run.output.prefix(80).debugDescription), not \(expectedOutput.debugDescription)"
            return result
        }
        result.nanosecondsPerOperation = Double(run.nanoseconds)
        result.operations = 1
        result.metrics["peak_rss_kib"] = Double(run.peakResidentKiB)
        result.note = "PYTHONMALLOC=malloc python3 \(script), one run per repeat"
        return result
    }

    /// The script from the working directory, or from the repository the executable was built
    /// in (`.build/<triple>/release/buddypools-bench`).
    static func locateScript() -> String? {
        var executable = ChildProcess.executablePath()
        var candidates = [script]
        for _ in 0..<4 {
            guard let slash = executable.lastIndex(of: "/") else { break }
            executable = String(executable[..<slash])
            candidates.append(executable + "/" + script)
        }
        return candidates.first { access($0, R_OK) == 0 }
    }
}
