/// A contender's runs of one scenario, summarized by their medians.
struct Aggregate: Codable, Sendable {
    var scenario: Scenario
    var contender: Contender
    var status: ScenarioResult.Status
    var note: String?
    var runs: Int
    /// Median over the repeats, and the spread of the repeats.
    var nanosecondsPerOperation: Double?
    var fastestNanoseconds: Double?
    var slowestNanoseconds: Double?
    var faultsPerOperation: Double?
    var latency: LatencySummary?
    var metrics: [String: Double]
    /// ns/op over the best peer's ns/op (below 1: faster than every peer).
    var ratioToBestPeer: Double?
    /// ns/op over the null allocator's (1 is the cost of the workload itself).
    var ratioToNull: Double?

    init(scenario: Scenario, contender: Contender, results: [ScenarioResult]) {
        self.scenario = scenario
        self.contender = contender
        let ok = results.filter { $0.status == .ok }
        status = ok.isEmpty ? (results.first?.status ?? .skipped) : .ok
        note = (ok.first ?? results.first)?.note
        runs = ok.count
        let times = ok.compactMap(\.nanosecondsPerOperation)
        if !times.isEmpty {
            nanosecondsPerOperation = median(times)
            fastestNanoseconds = times.min()
            slowestNanoseconds = times.max()
        }
        let faults = ok.compactMap(\.faultsPerOperation)
        faultsPerOperation = faults.isEmpty ? nil : median(faults)
        let latencies = ok.compactMap(\.latency)
        if !latencies.isEmpty {
            latency = LatencySummary(
                p50: median(latencies.map(\.p50)), p99: median(latencies.map(\.p99)), p999: median(latencies.map(\.p999)),
                max: latencies.map(\.max).max()!, count: latencies.reduce(0) { $0 + $1.count })
        }
        var merged: [String: Double] = [:]
        for key in Set(ok.flatMap(\.metrics.keys)) {
            merged[key] = median(ok.compactMap { $0.metrics[key] })
        }
        metrics = merged
    }

    /// The spread of the repeats as a share of the median (wide: a noisy machine).
    var spread: Double? {
        guard let median = nanosecondsPerOperation, let fast = fastestNanoseconds, let slow = slowestNanoseconds, median > 0 else { return nil }
        return (slow - fast) / median
    }
}

extension LatencySummary {
    init(p50: Double, p99: Double, p999: Double, max: Double, count: Int) {
        self.p50 = p50
        self.p99 = p99
        self.p999 = p999
        self.max = max
        self.count = count
    }
}

/// Fills in the ratios of every aggregate of a scenario.
func computeRatios(_ aggregates: inout [Aggregate]) {
    for scenario in Set(aggregates.map(\.scenario)) {
        let rows = aggregates.indices.filter { aggregates[$0].scenario == scenario }
        let bestPeer = rows.filter { aggregates[$0].contender.isPeer }.compactMap { aggregates[$0].nanosecondsPerOperation }.min()
        let null = rows.first { aggregates[$0].contender == .null }.flatMap { aggregates[$0].nanosecondsPerOperation }
        for row in rows {
            guard let value = aggregates[row].nanosecondsPerOperation else { continue }
            if let bestPeer { aggregates[row].ratioToBestPeer = value / bestPeer }
            if let null { aggregates[row].ratioToNull = value / null }
        }
    }
}
