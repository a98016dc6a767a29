import Glibc

/// The real-program scenarios: an allocation-heavy program run to completion under the
/// contender's malloc. The program is a child of the contender's process, so it inherits the
/// LD_PRELOAD that put the allocator in front of malloc (none for glibc).
/// - `program`: Python with `PYTHONMALLOC=malloc`, so its small objects reach malloc instead of
///   pymalloc's arenas.
/// - `compile`: the Swift compiler (`swiftc -O -c`, whose driver starts `swift-frontend`, which
///   inherits the preload too) on a Codable-heavy file, the program issue 15 names.
enum ProgramScenario {
    /// The Python program, in the repository; its known answer for the seed it uses.
    static let script = "Tests/MallocPrograms/list_churn.py"
    static let expectedOutput = "1014769\n"
    /// The file the `compile` scenario compiles (never run).
    static let compiledFile = "Tests/MallocPrograms/codable_models.swift"

    static func run(contender: Contender) -> ScenarioResult {
        var result = ScenarioResult(scenario: .program, contender: contender, status: .ok)
        guard let path = locate(script, for: &result) else { return result }
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

    /// `swiftc -O -c` of `compiledFile` once. A small Python wrapper starts the compiler and
    /// reports its wall time and its peak RSS (RUSAGE_CHILDREN: the larger of the driver's and
    /// the frontend's), for the reason `run` gives: a process this one spawns would carry this
    /// one's high-water mark. The module cache is the bench's own, warmed by one untimed
    /// compile the first time, so no contender pays for building Foundation's modules.
    static func compile(contender: Contender) -> ScenarioResult {
        var result = ScenarioResult(scenario: .compile, contender: contender, status: .ok)
        guard let source = locate(compiledFile, for: &result) else { return result }
        guard let compiler = searchPath("swiftc") ?? ["/opt/swift/usr/bin/swiftc"].first(where: { access($0, X_OK) == 0 }) else {
            result.status = .skipped
            result.note = "swiftc not found on PATH or in /opt/swift/usr/bin"
            return result
        }
        let cache = "/tmp/buddypools-bench-module-cache"
        let object = "/tmp/buddypools-bench-compile-\(getpid()).o"
        defer { unlink(object) }
        let wrapper = "import resource, subprocess, sys, time; start = time.perf_counter_ns(); "
            + "code = subprocess.run(sys.argv[1:]).returncode; elapsed = time.perf_counter_ns() - start; "
            + "print(code, elapsed, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
        let arguments = ["-c", wrapper, compiler, "-O", "-c", source, "-module-cache-path", cache, "-o", object]
        if access(cache, F_OK) != 0 {
            _ = ChildProcess.spawn("python3", arguments: arguments, extraEnvironment: [:], searchesPath: true)
        }
        guard let run = ChildProcess.spawn("python3", arguments: arguments, extraEnvironment: [:], searchesPath: true) else {
            result.status = .failed
            result.note = "could not start python3 (posix_spawnp: \(String(cString: strerror(errno))))"
            return result
        }
        // "exit-code nanoseconds peak-KiB", and an object file that is not empty.
        var objectStatus = stat()
        let fields = run.output.split(whereSeparator: \.isWhitespace)
        guard run.status == 0, fields.count == 3, fields[0] == "0", let nanoseconds = Double(fields[1]), let peakKiB = Double(fields[2]),
              stat(object, &objectStatus) == 0, objectStatus.st_size > 0 else {
            result.status = .failed
            result.note = "swiftc -O -c \(compiledFile) failed: wrapper exited \(run.status) with \(run.output.suffix(200).debugDescription)"
            return result
        }
        result.nanosecondsPerOperation = nanoseconds
        result.operations = 1
        result.metrics["peak_rss_kib"] = peakKiB
        result.note = "swiftc -O -c \(compiledFile), one compile per repeat"
        return result
    }

    /// `name` in a directory of PATH, if it is there and executable.
    static func searchPath(_ name: String) -> String? {
        guard let path = getenv("PATH").map({ String(cString: $0) }) else { return nil }
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { access($0, X_OK) == 0 }
    }

    /// `file`'s path, or nil with `result` marked skipped and saying why.
    static func locate(_ file: String, for result: inout ScenarioResult) -> String? {
        if let path = locate(file) { return path }
        result.status = .skipped
        result.note = "\(file) not found from the working directory or beside the executable: run from the repository"
        return nil
    }

    /// A repository file from the working directory, or from the repository the executable was
    /// built in (`.build/<triple>/release/buddypools-bench`).
    static func locate(_ file: String) -> String? {
        var executable = ChildProcess.executablePath()
        var candidates = [file]
        for _ in 0..<4 {
            guard let slash = executable.lastIndex(of: "/") else { break }
            executable = String(executable[..<slash])
            candidates.append(executable + "/" + file)
        }
        return candidates.first { access($0, R_OK) == 0 }
    }
}
