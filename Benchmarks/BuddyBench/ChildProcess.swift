import Glibc

/// Spawns a process (posix_spawn) with this one's environment plus extra variables and
/// returns its stdout, exit status, wall time and peak RSS: this executable again, so each
/// contender runs in a process of its own, or a real program under a contender's malloc.
enum ChildProcess {
    struct Outcome {
        var output: String
        /// The exit status, or 128 + signal number when it was killed.
        var status: Int32
        /// From just before the spawn to the child's exit.
        var nanoseconds: UInt64 = 0
        /// The child's peak RSS (wait4's ru_maxrss). Not its own when the spawner is larger: Linux
        /// carries the spawning process's high-water mark into a vfork-exec'd child.
        var peakResidentKiB: Int = 0
    }

    static func executablePath() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        return length > 0 ? String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self) : CommandLine.arguments[0]
    }

    /// This executable again with `arguments`; status -1 when it could not be started.
    static func run(arguments: [String], extraEnvironment: [String: String]) -> Outcome {
        spawn(executablePath(), arguments: arguments, extraEnvironment: extraEnvironment, searchesPath: false)
            ?? Outcome(output: "", status: -1)
    }

    /// `program` (looked up on PATH with `searchesPath`) with `arguments`; nil with errno set
    /// when it could not be started.
    static func spawn(_ program: String, arguments: [String], extraEnvironment: [String: String], searchesPath: Bool) -> Outcome? {
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

        let argv = ([program] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup($0) } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var start = timespec()
        clock_gettime(CLOCK_MONOTONIC, &start)
        var pid = pid_t()
        let spawned = searchesPath ? posix_spawnp(&pid, program, &actions, nil, argv, envp) : posix_spawn(&pid, program, &actions, nil, argv, envp)
        close(pipe[1])
        guard spawned == 0 else {
            close(pipe[0])
            errno = spawned
            return nil
        }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
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
        let exited = status & 0x7F == 0
        return Outcome(
            output: String(decoding: bytes, as: UTF8.self), status: exited ? (status >> 8) & 0xFF : 128 + (status & 0x7F),
            nanoseconds: UInt64(end.tv_sec - start.tv_sec) &* 1_000_000_000 &+ UInt64(end.tv_nsec) &- UInt64(start.tv_nsec),
            peakResidentKiB: usage.ru_maxrss)
    }
}
