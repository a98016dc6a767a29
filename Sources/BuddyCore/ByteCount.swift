/// Binary byte sizes for people: `512 MiB`, `1.5 GiB`, `4 KiB`, `100 B`.
public enum ByteCount {
    public static func format<T: BinaryInteger>(_ value: T) -> String {
        let bytes = Int64(value)
        let units: [(Int64, String)] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        for (size, name) in units where bytes.magnitude >= size {
            if bytes % size == 0 { return "\(bytes / size) \(name)" }
            let tenths = (bytes * 10 + size / 2) / size
            return "\(tenths / 10).\(tenths % 10) \(name)"
        }
        return "\(bytes) B"
    }
}

package func formatBytes<T: BinaryInteger>(_ value: T) -> String { ByteCount.format(value) }
