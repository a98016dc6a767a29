import BuddyPools
import BuddySystem
import TestSupport
import Testing

/// Placement checked at creation: the sampled node of each superblock against the pool's nodes.
/// The kernel is made to report pages on another node (`SystemCallFaults.reportingNode`), as it
/// does when a node runs short and `preferred` memory lands elsewhere.
@Suite("Placement checked at creation", .serialized)
struct PlacementCheckTests {
    static func make(_ name: String, check: PoolConfiguration.PlacementCheck) -> Result<MemoryPool, PoolError> {
        var configuration = PoolConfiguration(name: name, capacity: 8 << 20)
        configuration.pageSize = .base
        configuration.placementCheck = check
        return Result { () throws(PoolError) in try MemoryPool(configuration: configuration) }
    }

    @Test("placement=strict fails a pool whose sampled pages are on another node, naming the nodes")
    func strictFails() throws {
        let (result, outcome) = SystemCallFaults.reportingNode(7) { Self.make("strict-elsewhere", check: .strict) }
        #expect(outcome.fired >= 1, "the placement query ran")
        guard case .failure(.system(let error)) = result else {
            Issue.record("a pool whose pages are on node 7 was made under placement=strict: \(result)")
            return
        }
        #expect(error.kind == .invalidPlacement)
        #expect(error.description.contains("strict-elsewhere") && error.description.contains("7"), "\(error)")
        // Nothing was kept: the same name can be made once placement is right.
        let again = Self.make("strict-elsewhere", check: .strict)
        #expect((try? again.get()) != nil, "\(again)")
    }

    @Test("placement=check makes the pool and reports a warning naming the pages elsewhere; off says nothing")
    func checkWarns() throws {
        let log = EventLog()
        let subscription = Diagnostics.subscribe { event in
            if event.kind == .placement, event.subject.contains("placed-") { log.append("\(event.subject): \(event.message)") }
        }
        defer { subscription.cancel() }
        let (checked, _) = SystemCallFaults.reportingNode(7) { Self.make("placed-check", check: .check) }
        #expect((try? checked.get()) != nil)
        let (unchecked, _) = SystemCallFaults.reportingNode(7) { Self.make("placed-off", check: .off) }
        #expect((try? unchecked.get()) != nil)
        #expect(log.entries.count == 1 && log.entries.first?.contains("placed-check") == true, "\(log.entries)")
        #expect(log.entries.first?.contains("on nodes 7") == true, "\(log.entries)")
    }

    @Test("a pool whose pages are where they belong passes placement=strict")
    func strictPasses() throws {
        #expect((try? Self.make("strict-home", check: .strict).get()) != nil)
    }
}
