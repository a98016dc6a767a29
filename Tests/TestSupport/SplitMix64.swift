import Glibc

/// A small deterministic generator so a failing seed can be replayed.
package struct SplitMix64: RandomNumberGenerator {
    private var state: UInt64

    package init(seed: UInt64) { state = seed }

    package mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// How many operations randomized suites run: the full count in release builds (as CI runs
/// them), a tenth in debug builds so a developer's `swift test` stays quick.
package enum TestScale {
    /// BUDDYPOOLS_TEST_SCALE overrides (the NUMA guests, whose emulated CPUs are slow, run less).
    package static let factor: Double = {
        if let text = getenv("BUDDYPOOLS_TEST_SCALE").map({ String(cString: $0) }), let value = Double(text), value > 0 { return value }
        #if DEBUG
        return 0.1
        #else
        return 1.0
        #endif
    }()

    package static func operations(_ full: Int) -> Int { max(1, Int(Double(full) * factor)) }
}
