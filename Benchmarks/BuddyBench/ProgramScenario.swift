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
        // The program reports its own peak RSS (VmHWM, its address space's high-water mark): the
        // child's ru_maxrss is no good here, since Linux carries the spawning process's high-water
        // mark into a vfork-exec'd child (a contender that ran gups before showed 4 GiB).
        let wrapper = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__'); "
            + "print(next(line.split()[1] for line in open('/proc/self/status') if line.startswith('VmHWM:')))"
        guard let run = ChildProcess.spawn("python3", arguments: ["-c", wrapper, path], extraEnvironment: ["PYTHONMALLOC": "malloc"],
                                           searchesPath: true) else {
            result.status = .failed
            result.note = "could not start python3 (posix_spawnp: \(String(cString: strerror(errno))))"
            return result
        }
        // Its answer, then its peak RSS in KiB on a line of its own.
        let lines = run.output.split(separator: "\n", omittingEmptySubsequences: false)
        guard run.status == 0, lines.count == 3, lines[0] + "\n" == expectedOutput, let peakKiB = Double(lines[1]) else {
            result.status = .failed
            result.note = "python3 \(script) exited \(run.status) with \(run.output.prefix(80).debugDescription), not \(expectedOutput.debugDescription) and its VmHWM"
            return result
        }
        result.nanosecondsPerOperation = Double(run.nanoseconds)
        result.operations = 1
        result.metrics["peak_rss_kib"] = peakKiB
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
