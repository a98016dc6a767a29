import ArgumentParser
import BuddyPools

/// Validates a BUDDYPOOLS setting and shows what it would create, creating nothing.
struct CheckCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check",
        abstract: "Validate BUDDYPOOLS (or --env) and print the pools it would create, without creating them.",
        discussion: "Exit status 0 when the configuration is valid on this machine, 1 with the error otherwise.")

    @Option(name: .customLong("env"), help: "A BUDDYPOOLS value to check instead of the environment's.")
    var value: String?

    func run() throws {
        var environment = ProcessEnvironment.current()
        if let value { environment["BUDDYPOOLS"] = value }
        do {
            let plans = try PoolSet.plan(environment: environment)
            print(Self.table(plans))
            for plan in plans {
                for step in plan.fallbacks { print("  \(plan.configuration.name): \(step)") }
            }
        } catch {
            print("error: \(error)")
            throw ExitCode(1)
        }
    }

    static func table(_ plans: [PoolPlan]) -> String {
        var table = TextTable("pool", "size", "nodes", "policy", "page (after fallback)", "priority", "min", "max", "locked", "may borrow")
        for plan in plans {
            let configuration = plan.configuration
            let requested = configuration.pageSize.configurationToken + (configuration.strictPageSize ? "!" : "")
            let got = Array(Set(plan.pageSizes.map(\.configurationToken))).sorted().joined(separator: "+")
            table.add(
                configuration.name, ByteCount.format(configuration.capacity), configuration.nodes.description,
                configuration.policy.rawValue, got == requested ? got : "\(got) (asked \(requested))", "\(configuration.priority)",
                ByteCount.format(configuration.minimumBytes), configuration.maximumBytes.map(ByteCount.format) ?? "-",
                configuration.locked ? "yes" : "no", ByteCount.format(plan.borrowHeadroomBytes))
        }
        return table.render()
    }
}
