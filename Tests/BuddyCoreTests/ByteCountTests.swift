import BuddyCore
import Testing

@Suite("Byte counts for people")
struct ByteCountTests {
    @Test("sizes format with binary units and one decimal")
    func units() {
        #expect(ByteCount.format(100) == "100 B")
        #expect(ByteCount.format(4096) == "4 KiB")
        #expect(ByteCount.format(3 << 29) == "1.5 GiB")
        #expect(ByteCount.format((2 << 20) - 1) == "2.0 MiB", "rounding carries into the whole part")
        #expect(ByteCount.format(-4096) == "-4 KiB")
    }

    @Test("every extreme formats without a trap", arguments: [Int.max, Int.min, Int.min + 1, -1, 0])
    func extremes(value: Int) {
        #expect(!ByteCount.format(value).isEmpty)
    }

    @Test("unsigned values past Int64 format too")
    func unsigned() {
        #expect(ByteCount.format(UInt64.max) == "16777216.0 TiB")
        #expect(ByteCount.format(Int.min) == "-8388608 TiB")
    }
}
