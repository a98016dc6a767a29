/// Sizes and durations shared by the parent and its children.
struct BenchSettings: Codable, Sendable {
    /// Seconds per measured loop.
    var duration: Double
    var seed: UInt64
    /// Table size of the GUPS scenario.
    var gupsBytes: Int
    /// Buffer size of the NUMA bandwidth and latency measurements.
    var numaBytes: Int

    static let standard = BenchSettings(duration: 0.25, seed: 0x5EED, gupsBytes: 4 << 30, numaBytes: 64 << 20)
    static let quick = BenchSettings(duration: 0.08, seed: 0x5EED, gupsBytes: 2 << 30, numaBytes: 32 << 20)
}
