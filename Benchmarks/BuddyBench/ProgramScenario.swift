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
        guard let run = spawn(["python3", path], extraEnvironment: ["PYTHONMALLOC": "malloc"]) else {
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

    struct Run {
        var output: String
        var status: Int32
        var nanoseconds: UInt64
        var peakResidentKiB: Int
    }

    /// Runs `arguments` (found on PATH) with this process's environment plus `extraEnvironment`:
    /// its stdout, exit status, wall time and peak RSS (wait4's rusage).
    static func spawn(_ arguments: [String], extraEnvironment: [String: String]) -> Run? {
        var pipe: [Int32] = [0, 0]
        guard Glibc.pipe(&pipe) == 0 else { return nil }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_adddup2(&actions, pipe[1], 1)
        posix_spawn_file_actions_addclose(&actions, pipe[0])
        defer { posix_spawn_file_actions_destroy(&actions) }
        var environment: [String] = []
        var cursor = environ
        while let entry = cursor.pointee {
            let text = String(cString: entry)
            let key = text.split(separator: "=", maxSplits: 1).first.map(String.init) ?? ""
            if extraEnvironment[key] == nil { environment.append(text) }
            cursor += 1
        }
        environment += extraEnvironment.map { "\($0.key)=\($0.value)" }
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var start = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        var pid = pid_t()
        let spawned = posix_spawnp(&pid, arguments[0], &actions, nil, argv, envp)
        close(pipe[1])
        guard spawned == 0 else {
            close(pipe[0])
            errno = spawned
            return nil
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            let count = chunk.withUnsafeMutableBytes { read(pipe[0], $0.baseAddress, $0.count) }
            if count < 0, errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += chunk[0..<count]
        }
        close(pipe[0])
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0, errno == EINTR {}
        var end = timespec()
        clock_gettime(CLOCK_MONOTONIC, &end)
        let nanoseconds = UInt64(end.tv_sec - start.tv_sec) * 1_000_000_000 + UInt64(end.tv_nsec) &- UInt64(start.tv_nsec)
        let exited = status & 0x7F == 0
        return Run(output: String(decoding: bytes, as: UTF8.self), status: exited ? (status >> 8) & 0xFF : 128 + (status & 0x7F),
                   nanoseconds: nanoseconds, peakResidentKiB: usage.ru_maxrss)
    }
}
