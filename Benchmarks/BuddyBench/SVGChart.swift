import Foundation

/// Two charts for people: latency percentiles of the mixed workload per contender, and
/// ns/op of every scenario per contender (log scales, since peers differ by orders of magnitude).
enum SVGChart {
    static let palette = ["#1b9e77", "#7570b3", "#d95f02", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666", "#1f78b4"]

    static func render(_ report: BenchReport) -> String {
        let tails = report.aggregates.filter { $0.scenario == .mixed1 && $0.latency != nil }
        let throughput = report.aggregates.filter { $0.status == .ok && $0.nanosecondsPerOperation != nil && $0.scenario != .churn }
        let width = 1000
        let tailHeight = 60 + tails.count * 4 * 14 + 40
        let scenarios = Scenario.allCases.filter { scenario in throughput.contains { $0.scenario == scenario } }
        let contenders = Contender.allCases.filter { contender in throughput.contains { $0.contender == contender } }
        let groupHeight = contenders.count * 12 + 18
        let throughputHeight = 60 + scenarios.count * groupHeight + 40
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(width)\" height=\"\(tailHeight + throughputHeight)\" font-family=\"sans-serif\" font-size=\"11\">\n"
        svg += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
        svg += "<text x=\"10\" y=\"20\" font-size=\"15\">mixed-1t latency per operation (log scale): p50, p99, p99.9, max — \(escape(report.machine.cpu)), \(report.date)</text>\n"
        let left = 170.0, right = Double(width) - 40
        let allTail = tails.compactMap(\.latency).flatMap { [$0.p50, $0.p99, $0.p999, $0.max] }
        svg += bars(entries: tails.flatMap { row in
            [("p50", row.latency!.p50), ("p99", row.latency!.p99), ("p99.9", row.latency!.p999), ("max", row.latency!.max)].map { label, value in
                (label: "\(row.contender.rawValue) \(label)", value: value, color: color(row.contender))
            }
        }, top: 40, left: left, right: right, barHeight: 12, step: 14, minimum: max(1, (allTail.min() ?? 1) / 2), maximum: (allTail.max() ?? 10) * 2, unit: "ns")
        let top = Double(tailHeight)
        svg += "<text x=\"10\" y=\"\(Int(top) + 20)\" font-size=\"15\">ns per operation by scenario (log scale; shorter is faster)</text>\n"
        let values = throughput.compactMap(\.nanosecondsPerOperation)
        var y = top + 40
        for scenario in scenarios {
            svg += "<text x=\"10\" y=\"\(Int(y) + 10)\" font-weight=\"bold\">\(scenario.rawValue)</text>\n"
            let rows = contenders.compactMap { contender in throughput.first { $0.scenario == scenario && $0.contender == contender } }
            svg += bars(entries: rows.map { (label: $0.contender.rawValue, value: $0.nanosecondsPerOperation!, color: color($0.contender)) },
                        top: y + 14, left: left, right: right, barHeight: 10, step: 12,
                        minimum: max(0.5, (values.min() ?? 1) / 2), maximum: (values.max() ?? 10) * 2, unit: "ns")
            y += Double(groupHeight)
        }
        svg += "</svg>\n"
        return svg
    }

    private static func color(_ contender: Contender) -> String {
        palette[(Contender.allCases.firstIndex(of: contender) ?? 0) % palette.count]
    }

    private static func bars(entries: [(label: String, value: Double, color: String)], top: Double, left: Double, right: Double,
                             barHeight: Double, step: Double, minimum: Double, maximum: Double, unit: String) -> String {
        var svg = ""
        let span = log10(maximum) - log10(minimum)
        for (index, entry) in entries.enumerated() {
            let y = top + Double(index) * step
            let length = max(1, (log10(max(entry.value, minimum)) - log10(minimum)) / span * (right - left))
            svg += "<text x=\"\(Int(left) - 6)\" y=\"\(Int(y + barHeight - 2))\" text-anchor=\"end\">\(escape(entry.label))</text>"
            svg += "<rect x=\"\(Int(left))\" y=\"\(Int(y))\" width=\"\(Int(length))\" height=\"\(Int(barHeight))\" fill=\"\(entry.color)\"/>"
            svg += "<text x=\"\(Int(left + length) + 4)\" y=\"\(Int(y + barHeight - 2))\">\(ReportText.duration(entry.value))</text>\n"
        }
        return svg
    }

    private static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
