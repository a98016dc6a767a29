import Foundation

/// The table on stdout.
enum ReportText {
    static func render(_ report: BenchReport) -> String {
        var lines: [String] = []
        lines.append("buddypools-bench \(report.date)  \(report.machine.cpu), \(report.machine.cpus) CPUs, kernel \(report.machine.kernel), THP \(report.machine.transparentHugepages)")
        lines += report.machine.nodes.map { "  " + $0 }
        lines.append("  \(report.repeats) interleaved repeats, \(report.settings.duration) s per loop; medians, spread = (slowest - fastest) / median")
        for scenario in Scenario.allCases {
            let rows = report.aggregates.filter { $0.scenario == scenario }
            guard !rows.isEmpty else { continue }
            lines.append("")
            lines.append("\(scenario.rawValue): \(scenario.summary)")
            let showTails = rows.contains { $0.latency != nil }
            var header = ["contender", scenario == .gups ? "ns/update" : "ns/op", "spread", "vs best peer", "vs null", "faults/op"]
            if showTails { header += ["p50", "p99", "p99.9", "max"] }
            header.append("notes")
            var table: [[String]] = [header]
            for row in rows.sorted(by: { ($0.nanosecondsPerOperation ?? .infinity) < ($1.nanosecondsPerOperation ?? .infinity) }) {
                var cells = [row.contender.rawValue]
                if row.status == .ok, let value = row.nanosecondsPerOperation {
                    cells += [number(value), row.spread.map { String(format: "%.0f%%", $0 * 100) } ?? "",
                              row.ratioToBestPeer.map { String(format: "%.3fx", $0) } ?? "",
                              row.ratioToNull.map { String(format: "%.2fx", $0) } ?? "",
                              row.faultsPerOperation.map { String(format: "%.4f", $0) } ?? ""]
                } else {
                    cells += [row.status.rawValue, "", "", "", ""]
                }
                if showTails {
                    if let latency = row.latency {
                        cells += [latency.p50, latency.p99, latency.p999, latency.max].map(duration)
                    } else {
                        cells += ["", "", "", ""]
                    }
                }
                var notes = row.note ?? ""
                let metrics = row.metrics.filter { $0.key != "per_thread_ns_per_op" }.sorted { $0.key < $1.key }
                if !metrics.isEmpty {
                    notes += (notes.isEmpty ? "" : "; ") + metrics.map { "\($0.key)=\(number($0.value))" }.joined(separator: " ")
                }
                cells.append(notes)
                table.append(cells)
            }
            lines.append(columns(table))
        }
        lines.append("")
        lines.append("Targets")
        var targets: [[String]] = [["check", "goal", "measured", "result"]]
        for check in report.targets {
            targets.append([check.name, check.goal, check.measured, check.met.map { $0 ? "met" : "MISSED" } ?? "n/a"])
        }
        lines.append(columns(targets))
        return lines.joined(separator: "\n")
    }

    static func number(_ value: Double) -> String {
        value >= 100 ? String(format: "%.0f", value) : value >= 10 ? String(format: "%.1f", value) : String(format: "%.2f", value)
    }

    static func duration(_ nanoseconds: Double) -> String {
        nanoseconds >= 1_000_000 ? String(format: "%.1f ms", nanoseconds / 1e6)
            : nanoseconds >= 1000 ? String(format: "%.1f us", nanoseconds / 1e3) : String(format: "%.0f ns", nanoseconds)
    }

    static func columns(_ rows: [[String]]) -> String {
        let widths = rows[0].indices.map { column in rows.map { column < $0.count ? $0[column].count : 0 }.max() ?? 0 }
        return rows.enumerated().flatMap { index, row -> [String] in
            let line = "  " + row.enumerated().map { column, cell in
                column == row.count - 1 ? cell : cell.padding(toLength: widths[column], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
            return index == 0 ? [line, "  " + widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")] : [line]
        }.joined(separator: "\n")
    }
}
