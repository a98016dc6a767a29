import Foundation

/// Running a fuzz target's entry point over saved inputs: what the executable does when it is
/// built without libFuzzer (`swift build`), so the committed corpus is a regression test.
public enum FuzzReplay {
    /// Runs `body` on every file named in `arguments` (directories: every file in them, sorted).
    /// Returns the exit status: 0 when at least one input ran, 2 for bad arguments.
    public static func run(_ arguments: [String], _ body: (UnsafePointer<UInt8>?, Int) -> CInt) -> Int32 {
        let paths = arguments.dropFirst()
        guard !paths.isEmpty else {
            FileHandle.standardError.write(Data("usage: \(arguments.first ?? "fuzz") FILE_OR_DIRECTORY... (built with --sanitize=fuzzer it is a libFuzzer binary)\n".utf8))
            return 2
        }
        var files: [String] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
                FileHandle.standardError.write(Data("fuzz replay: no such file: \(path)\n".utf8))
                return 2
            }
            if isDirectory.boolValue {
                let names = (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []
                files += names.sorted().map { "\(path)/\($0)" }
            } else {
                files.append(path)
            }
        }
        for file in files {
            guard let data = FileManager.default.contents(atPath: file) else { continue }
            let status = data.withUnsafeBytes { bytes in body(bytes.bindMemory(to: UInt8.self).baseAddress, bytes.count) }
            if status != 0 { return status }
        }
        print("fuzz replay: \(files.count) inputs ran")
        return files.isEmpty ? 2 : 0
    }
}
