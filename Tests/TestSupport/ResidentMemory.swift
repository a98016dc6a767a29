import Foundation

/// What the kernel says is resident, read by the tests themselves from /proc (not through the
/// library they check): smaps' Rss and hugetlb lines for an address range, and the hugepage
/// pool's free count.
package enum ResidentMemory {
    /// Resident bytes of the mappings that overlap `range`: Rss plus Private_Hugetlb and
    /// Shared_Hugetlb (smaps counts hugetlb pages apart from Rss).
    package static func bytes(in range: Range<UInt>) -> Int {
        sum(of: ["Rss:", "Private_Hugetlb:", "Shared_Hugetlb:"], in: range)
    }

    /// Locked bytes (smaps' Locked) of the mappings that overlap `range`.
    package static func lockedBytes(in range: Range<UInt>) -> Int { sum(of: ["Locked:"], in: range) }

    private static func sum(of names: Set<Substring>, in range: Range<UInt>) -> Int {
        // /proc files say they are empty: read until the end, not by their size.
        guard let data = FileHandle(forReadingAtPath: "/proc/self/smaps")?.readDataToEndOfFile() else { return -1 }
        let text = String(decoding: data, as: UTF8.self)
        var inRange = false
        var total = 0
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard let first = fields.first else { continue }
            if first.contains("-"), let dash = first.firstIndex(of: "-"),
               let start = UInt(first[..<dash], radix: 16), let end = UInt(first[first.index(after: dash)...], radix: 16) {
                inRange = start < range.upperBound && end > range.lowerBound
                continue
            }
            guard inRange, fields.count >= 2, let kilobytes = Int(fields[1]) else { continue }
            if names.contains(first) { total += kilobytes * 1024 }
        }
        return total
    }

    /// Bytes of `range` in mappings the kernel shows readable and writable (/proc/self/maps):
    /// committed memory, where a reservation is PROT_NONE. -1 when the file cannot be read.
    package static func writableBytes(in range: Range<UInt>) -> Int {
        guard let data = FileHandle(forReadingAtPath: "/proc/self/maps")?.readDataToEndOfFile() else { return -1 }
        var total = 0
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2, let dash = fields[0].firstIndex(of: "-"),
                  let start = UInt(fields[0][..<dash], radix: 16), let end = UInt(fields[0][fields[0].index(after: dash)...], radix: 16),
                  fields[1].hasPrefix("rw") else { continue }
            let low = max(start, range.lowerBound), high = min(end, range.upperBound)
            if low < high { total += Int(high - low) }
        }
        return total
    }

    /// Free 2 MiB hugepages of the system's pool (free_hugepages), or 0 when unknown.
    package static var free2MHugepages: Int {
        let path = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return 0 }
        return Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }
}
