/// Binary byte sizes for people: `512 MiB`, `1.5 GiB`, `4 KiB`, `100 B`.
public enum ByteCount {
    /// Any integer, Int.min and UInt64.max included: error messages format the sizes callers
    /// passed, so this must not trap on any of them.
    public static func format<T: BinaryInteger>(_ value: T) -> String {
        let sign = value < 0 ? "-" : ""
        let magnitude = UInt64(clamping: value.magnitude)
        let units: [(UInt64, String)] = [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")]
        for (size, name) in units where magnitude >= size {
            var (whole, rest) = magnitude.quotientAndRemainder(dividingBy: size)
            if rest == 0 { return "\(sign)\(whole) \(name)" }
            // rest < size <= 2^40, so rest * 10 cannot overflow.
            var tenths = (rest * 10 + size / 2) / size
            if tenths == 10 { (whole, tenths) = (whole + 1, 0) }
            return "\(sign)\(whole).\(tenths) \(name)"
        }
        return "\(sign)\(magnitude) B"
    }
}

package func formatBytes<T: BinaryInteger>(_ value: T) -> String { ByteCount.format(value) }
