import BuddyPools
import Foundation

/// The figures the project promised, checked against this run.
struct TargetCheck: Codable, Sendable {
    var name: String
    var goal: String
    var measured: String
    /// nil when the run could not measure it (scenario skipped, peer missing).
    var met: Bool?
}

enum Targets {
    /// - Parameter gupsBytes: the GUPS table of this run; the target is set for 4 GiB and is not
    ///   judged on smaller tables (`--quick`), where 4 KiB pages still reach most of it.
    static func evaluate(_ aggregates: [Aggregate], gupsBytes: Int) -> [TargetCheck] {
        func value(_ scenario: Scenario, _ contender: Contender) -> Aggregate? {
            aggregates.first { $0.scenario == scenario && $0.contender == contender && $0.status == .ok }
        }
        func ns(_ scenario: Scenario, _ contender: Contender) -> Double? { value(scenario, contender)?.nanosecondsPerOperation }
        func format(_ value: Double?) -> String { value.map { String(format: "%.1f ns", $0) } ?? "not measured" }
        var checks: [TargetCheck] = []
        for (scenario, limit) in [(Scenario.fixed4K, 10.0), (.fixed2M, 40.0), (.fixed16M, 500.0)] {
            let measured = ns(scenario, .buddypools)
            checks.append(TargetCheck(name: "\(scenario.rawValue) pair", goal: "<= \(Int(limit)) ns", measured: format(measured),
                                      met: measured.map { $0 <= limit }))
        }
        let one = ns(.fixed4K, .buddypools), two = ns(.fixed4K2, .buddypools)
        let scaling = one.flatMap { one in two.map { one / $0 } }
        checks.append(TargetCheck(name: "fixed-4K: 2 threads vs 1 (throughput)", goal: ">= 1.7x",
                                  measured: scaling.map { String(format: "%.2fx", $0) } ?? "not measured", met: scaling.map { $0 >= 1.7 }))
        let mixedOne = ns(.mixed1, .buddypools), mixedTwo = ns(.mixed2, .buddypools)
        let nullOne = ns(.mixed1, .null), nullTwo = ns(.mixed2, .null)
        let mixedScaling = mixedOne.flatMap { one in mixedTwo.map { one / $0 } }
        let nullScaling = nullOne.flatMap { one in nullTwo.map { one / $0 } }
        checks.append(TargetCheck(
            name: "mixed: 2 threads vs 1 (throughput; memory-bound, so compare with null)", goal: "as the null allocator scales",
            measured: mixedScaling.map { String(format: "%.2fx (null %@)", $0, nullScaling.map { String(format: "%.2fx", $0) } ?? "?") } ?? "not measured",
            met: mixedScaling.flatMap { mine in nullScaling.map { mine >= $0 * 0.9 } }))
        let mixed = value(.mixed1, .buddypools)
        checks.append(TargetCheck(name: "mixed: vs best peer", goal: "<= 1/5 of the best peer's ns/op",
                                  measured: mixed?.ratioToBestPeer.map { String(format: "%.3f (1/%.1f)", $0, 1 / $0) } ?? "not measured",
                                  met: mixed?.ratioToBestPeer.map { $0 <= 0.2 }))
        checks.append(TargetCheck(name: "mixed: vs null allocator", goal: "<= 1.3x",
                                  measured: mixed?.ratioToNull.map { String(format: "%.2fx", $0) } ?? "not measured",
                                  met: mixed?.ratioToNull.map { $0 <= 1.3 }))
        checks.append(TargetCheck(name: "mixed: page faults in the timed region", goal: "0 per op",
                                  measured: mixed?.faultsPerOperation.map { String(format: "%.4f per op", $0) } ?? "not measured",
                                  met: mixed?.faultsPerOperation.map { $0 == 0 }))
        let nullMax = value(.mixed1, .null)?.latency?.max
        checks.append(TargetCheck(name: "mixed: max latency", goal: "<= 50 us",
                                  measured: mixed?.latency.map {
                                      String(format: "%.1f us (null allocator on this machine: %@)", $0.max / 1000,
                                             nullMax.map { String(format: "%.1f us", $0 / 1000) } ?? "?")
                                  } ?? "not measured",
                                  met: mixed?.latency.map { $0.max <= 50_000 }))
        let numaRatio = ns(.fixed64K, .numaAllocOnnode).flatMap { numa in ns(.fixed64K, .buddypools).map { numa / $0 } }
        checks.append(TargetCheck(name: "fixed-64K: numa_alloc_onnode vs pool", goal: ">= 100x more ns per pair",
                                  measured: numaRatio.map { String(format: "%.0fx", $0) } ?? "not measured", met: numaRatio.map { $0 >= 100 }))
        let gups = ns(.gups, .glibc).flatMap { malloc in ns(.gups, .buddypools).map { malloc / $0 } }
        let fullTable = gupsBytes >= 4 << 30
        checks.append(TargetCheck(
            name: "gups: pool vs glibc malloc (4 GiB table)", goal: ">= 1.4x faster",
            measured: gups.map { String(format: "%.2fx", $0) + (fullTable ? "" : " on a \(ByteCount.format(gupsBytes)) table, not judged") } ?? "not measured",
            met: fullTable ? gups.map { $0 >= 1.4 } : nil))
        if let churn = value(.churn, .buddypools), let recoverable = churn.metrics["grouping_recoverable_success_rate"],
           let overall = churn.metrics["grouping_success_rate"] {
            let plain = churn.metrics["nogrouping_success_rate"] ?? .nan
            checks.append(TargetCheck(
                name: "churn: max-order requests granted while free memory outside unmovable superblocks allows (grouping + compaction)",
                goal: ">= 95%",
                measured: String(format: "%.0f%% (of all free memory: %.0f%%; grouping off: %.0f%%)", recoverable * 100, overall * 100, plain * 100),
                met: recoverable >= 0.95))
        } else {
            checks.append(TargetCheck(name: "churn: max-order requests granted (grouping + compaction)", goal: ">= 95%", measured: "not measured", met: nil))
        }
        return checks
    }
}
