import BuddyCore
import BuddySystem
/// Byte sizes as the environment writes them: a decimal number with an optional binary
/// suffix K, M, G or T (case-insensitive): `4K`, `512M`, `1G`, `1073741824`.
enum SizeParser {
    static let expectation = "a size like 4K, 512M, 2G or 1T (a whole number with an optional binary suffix K, M, G or T)"

    /// The byte count, or nil when the text is not a size or overflows.
    static func parse(_ text: Substring) -> Int? {
        guard let last = text.last else { return nil }
        var digits = text
        var shift = 0
        switch last {
        case "K", "k": shift = 10
        case "M", "m": shift = 20
        case "G", "g": shift = 30
        case "T", "t": shift = 40
        default: break
        }
        if shift > 0 { digits = digits.dropLast() }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let value = Int(digits) else { return nil }
        let (result, overflow) = value.multipliedReportingOverflow(by: 1 << shift)
        return overflow ? nil : result
    }
}
