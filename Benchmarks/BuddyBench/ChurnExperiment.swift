/// The fragmentation experiment (filled in with the anti-fragmentation work).
struct ChurnExperiment {
    let settings: BenchSettings
    let node: Int

    func run() -> ScenarioResult {
        ScenarioResult(scenario: .churn, contender: .buddypools, status: .skipped, note: "not built yet")
    }
}
