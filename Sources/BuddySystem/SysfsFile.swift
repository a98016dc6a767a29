import BuddyCore
#if canImport(Glibc)
import Glibc
#endif

/// Reads small kernel text files (sysfs, procfs) without Foundation.
enum SysfsFile {
    /// The whole file as text, or nil when it cannot be opened.
    static func read(_ path: String, limit: Int = 1 << 20) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while bytes.count < limit {
            let n = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if n < 0, errno == EINTR { continue }
            guard n > 0 else { break }
            bytes.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// The first line of the file, trimmed, or nil.
    static func readLine(_ path: String) -> String? {
        guard let text = read(path, limit: 4096) else { return nil }
        return text.split(separator: "\n", maxSplits: 1).first.map { $0.trimmingASCIIWhitespace() } ?? ""
    }

    /// The file's first line as an integer, or nil.
    static func readInt(_ path: String) -> Int? {
        readLine(path).flatMap { Int($0) }
    }

    /// Writes text to a file (sysfs knobs); returns errno on failure, 0 on success.
    @discardableResult
    static func write(_ path: String, _ text: String) -> Int32 {
        let fd = open(path, O_WRONLY | O_CLOEXEC)
        guard fd >= 0 else { return errno }
        defer { close(fd) }
        let written = text.withCString { Glibc.write(fd, $0, strlen($0)) }
        return written < 0 ? errno : 0
    }

    /// `key: value kB` lines of a meminfo file (the node form starts with `Node N `), in bytes.
    static func meminfo(_ path: String) -> [String: Int] {
        guard let text = read(path) else { return [:] }
        var result: [String: Int] = [:]
        for line in text.split(separator: "\n") {
            var fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if fields.first == "Node", fields.count > 2 { fields.removeFirst(2) }
            guard fields.count >= 2, fields[0].hasSuffix(":"), let value = Int(fields[1]) else { continue }
            let key = String(fields[0].dropLast())
            result[key] = fields.count >= 3 && fields[2] == "kB" ? value * 1024 : value
        }
        return result
    }
}

extension Substring {
    func trimmingASCIIWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }
        guard let start = firstIndex(where: { !isSpace($0) }) else { return "" }
        let end = lastIndex(where: { !isSpace($0) })!
        return String(self[start...end])
    }
}
