import BuddyPools
import FakeMachines
import TestSupport
import Testing

@Suite("Configuration from the environment")
struct ConfigurationTests {
    struct BadInput: CustomTestStringConvertible, Sendable {
        let environment: [String: String]
        let variable: String
        let pool: String?
        let token: String
        let expected: String

        init(_ value: String, pool: String?, token: String, expected: String, extra: [String: String] = [:], variable: String = "BUDDYPOOLS") {
            environment = ["BUDDYPOOLS": value].merging(extra) { $1 }
            self.variable = variable
            self.pool = pool
            self.token = token
            self.expected = expected
        }

        var testDescription: String { "\(environment) -> \(token)" }
    }

    static let grammarErrors: [BadInput] = [
        BadInput("", pool: nil, token: "", expected: "at least one pool"),
        BadInput("a:size=2M;;b:size=2M", pool: nil, token: "", expected: "empty part"),
        BadInput("a:size=2M;", pool: nil, token: "", expected: "empty part"),
        BadInput("a size=2M", pool: nil, token: "a size=2M", expected: "':' after the pool name"),
        BadInput("h@t:size=2M", pool: nil, token: "h@t", expected: "pool name of letters"),
        BadInput("a:size=2M;a:size=4M", pool: "a", token: "a", expected: "duplicate pool name"),
        BadInput("a:", pool: "a", token: "a:", expected: "at least size"),
        BadInput("a:size=2M,,nodes=0", pool: "a", token: "", expected: "remove the empty part"),
        BadInput("a:size=2M,nodes", pool: "a", token: "nodes", expected: "<key>=<value>"),
        BadInput("a:sise=2M", pool: "a", token: "sise", expected: "a key from: size, nodes"),
        BadInput("a:size=2M,size=4M", pool: "a", token: "size=4M", expected: "each key once"),
        BadInput("a:size=", pool: "a", token: "size=", expected: "a size like"),
        BadInput("a:size=1Q", pool: "a", token: "size=1Q", expected: "a size like"),
        BadInput("a:size=99999999999T", pool: "a", token: "size=99999999999T", expected: "a size like"),
        BadInput("a:size=-2M", pool: "a", token: "size=-2M", expected: "a size like"),
        BadInput("a:size=2M,nodes=0-", pool: "a", token: "nodes=0-", expected: "node list"),
        BadInput("a:size=2M,nodes=3-1", pool: "a", token: "nodes=3-1", expected: "node list"),
        BadInput("a:size=2M,policy=local", pool: "a", token: "policy=local", expected: "bind, preferred, interleave or weighted"),
        BadInput("a:size=2M,page=3M", pool: "a", token: "page=3M", expected: "4K, thp, 2M or 1G"),
        BadInput("a:size=2M,priority=high", pool: "a", token: "priority=high", expected: "whole number"),
        BadInput("a:size=2M,priority=99999999999999999999", pool: "a", token: "priority=99999999999999999999", expected: "whole number"),
        BadInput("a:size=2M,locked=yes", pool: "a", token: "locked=yes", expected: "0 or 1"),
        BadInput("a:size=2M,max-order=16", pool: "a", token: "max-order=16", expected: "0 to 15"),
        BadInput("a:size=2M,cache=some", pool: "a", token: "cache=some", expected: "cpu, node, group"),
        BadInput("a:nodes=0", pool: "a", token: "a:nodes=0", expected: "size is required"),
    ]

    static let machineErrors: [BadInput] = [
        BadInput("a:size=3M", pool: "a", token: "size=3M", expected: "multiple of the 2 MiB superblock"),
        BadInput("a:size=4M,min=8M", pool: "a", token: "min=8M", expected: "min > size"),
        BadInput("a:size=8M,max=4M", pool: "a", token: "max=4M", expected: "size > max"),
        BadInput("a:size=4M,nodes=7", pool: "a", token: "nodes=7", expected: "node 7 does not"),
        BadInput("a:size=4M,nodes=0,2", pool: "a", token: "nodes=0,2", expected: "node 2 is memory-less"),
        BadInput("a:size=4M,nodes=0,x", pool: "a", token: "x", expected: "a key from"),
        BadInput("a:size=4M,nodes=2", pool: "a", token: "nodes=2", expected: "node 2 is memory-less"),
        BadInput("a:size=4M,nodes=3", pool: "a", token: "nodes=3", expected: "node 3 is not allowed"),
        BadInput("a:size=4M,weights=0:3,1:0", pool: "a", token: "weights=0:3,1:0", expected: "the weight 0 of node 1 is not from 1 to 1000"),
        BadInput("a:size=4M,weights=0:x", pool: "a", token: "weights=0:x", expected: "'0:x' is not node:weight"),
        BadInput("a:size=4M,weights=0:3,0:1", pool: "a", token: "weights=0:3,0:1", expected: "node 0 is weighted twice"),
        BadInput("a:size=4M,weights=0:3,2:1", pool: "a", token: "weights=0:3,2:1", expected: "node 2 is memory-less"),
        BadInput("a:size=4M,policy=interleave,weights=0:3,1:1", pool: "a", token: "policy=interleave", expected: "policy=weighted with weights"),
        BadInput("a:size=4M,policy=weighted", pool: "a", token: "policy=weighted", expected: "weights=<node:weight"),
        BadInput("a:size=4M,nodes=0,weights=0:3,1:1", pool: "a", token: "nodes=0", expected: "the nodes the weights name (0-1)"),
        BadInput("a:size=4M,cpus=0-9", pool: "a", token: "cpus=0-9", expected: "does not"),
        BadInput("a:size=4M,cpus=4", pool: "a", token: "cpus=4", expected: "CPU 4 is not allowed"),
        BadInput("a:size=4M,min-block=3000", pool: "a", token: "min-block=3000", expected: "power of two"),
        BadInput("a:size=4M,fit=tight", pool: "a", token: "fit=tight", expected: "buddy or exact"),
        BadInput("a:size=4M,min-block=1M,max-order=11", pool: "a", token: "max-order=11", expected: "at most 1G"),
        BadInput("a:size=4M,max-order=5,cache-order=7", pool: "a", token: "cache-order=7", expected: "max-order 5"),
        BadInput("a:size=4M", pool: nil, token: "B", expected: "name of a pool in BUDDYPOOLS",
                 extra: ["BUDDYPOOLS_B_SIZE": "4M"], variable: "BUDDYPOOLS_B_SIZE"),
        BadInput("a:size=4M", pool: "a", token: "lots", expected: "a size like",
                 extra: ["BUDDYPOOLS_A_SIZE": "lots"], variable: "BUDDYPOOLS_A_SIZE"),
        BadInput("a:size=4M", pool: "a", token: "3M", expected: "multiple of the 2 MiB superblock",
                 extra: ["BUDDYPOOLS_A_SIZE": "3M"], variable: "BUDDYPOOLS_A_SIZE"),
    ]

    @Test("every bad input names the variable, the pool and the token", arguments: grammarErrors + machineErrors)
    func badInput(_ input: BadInput) throws {
        do {
            _ = try PoolSet.plan(environment: input.environment, topology: FakeTopology.machine)
            Issue.record("accepted \(input.environment)")
        } catch {
            #expect(error.variable == input.variable)
            #expect(error.pool == input.pool)
            #expect(error.token == input.token, "\(error)")
            #expect(error.expected.contains(input.expected), "\(error)")
            let text = error.description
            #expect(text.hasPrefix(input.variable + ": "), "\(text)")
            if let pool = input.pool { #expect(text.contains("pool '\(pool)'"), "\(text)") }
            #expect(text.contains("'\(error.token)'"), "\(text)")
        }
    }

    @Test("a full definition parses into the configuration it says")
    func fullDefinition() throws {
        let plans = try PoolSet.plan(environment: [
            "BUDDYPOOLS": "hot:size=1G,nodes=0,page=2M,priority=10,locked=1,min=256M,max=2G,cpus=0-1,cache=group2,cache-order=4;"
                + "bulk:size=8G,nodes=1,policy=interleave,page=thp!,min-block=64K,max-order=5,grouping=0,accounting=1,fit=exact",
            "BUDDYPOOLS_BULK_SIZE": "4G",
        ], topology: FakeTopology.machine)
        #expect(plans.count == 2)
        let hot = plans[0].configuration
        #expect(hot.name == "hot" && hot.capacity == 1 << 30 && hot.nodes == [0] && hot.pageSize == .huge2M)
        #expect(hot.priority == 10 && hot.locked && hot.minimumBytes == 256 << 20 && hot.maximumBytes == 2 << 30)
        #expect(hot.cpus == [0, 1] && hot.cache.sharding == .perGroup(cpus: 2) && hot.cache.maxOrder == 4)
        #expect(plans[0].pageSizes == [.huge2M], "node 0 has 512 free 2 MiB pages")
        #expect(plans[0].borrowHeadroomBytes == 0, "bulk has another geometry and page size: nothing to borrow")
        let bulk = plans[1].configuration
        #expect(bulk.capacity == 4 << 30, "the override replaced the size")
        #expect(bulk.policy == .interleave && bulk.pageSize == .transparent && bulk.strictPageSize)
        #expect(bulk.minBlock == 64 << 10 && bulk.maxOrder == 5 && !bulk.mobilityGrouping && bulk.allocationAccounting)
        #expect(bulk.fit == .exact && hot.fit == .buddy, "fit=exact is asked for; buddy is the default")
        #expect(plans[1].borrowHeadroomBytes == 0, "the lowest priority borrows from nobody")

        let lending = try PoolSet.plan(
            environment: ["BUDDYPOOLS": "hi:size=64M,priority=5,max=96M;lo:size=256M;peer:size=64M,priority=5"],
            topology: FakeTopology.machine)
        #expect(lending[0].borrowHeadroomBytes == 32 << 20, "max caps borrowing at max - size")
        #expect(lending[2].borrowHeadroomBytes == 256 << 20, "no max: all a lower priority owns; equal priorities lend nothing")
    }

    @Test("node and CPU lists go on across commas, as numactl writes them")
    func listsAcrossCommas() throws {
        let plans = try PoolSet.plan(
            environment: ["BUDDYPOOLS": "a:size=64M,nodes=0,1,policy=interleave,cpus=0,1,priority=2;b:size=64M,cpus=1,nodes=1"],
            topology: FakeTopology.machine)
        #expect(plans[0].configuration.nodes == [0, 1] && plans[0].configuration.cpus == [0, 1])
        #expect(plans[0].configuration.policy == .interleave && plans[0].configuration.priority == 2)
        #expect(plans[1].configuration.cpus == [1] && plans[1].configuration.nodes == [1])
        do {
            _ = try PoolSet.plan(environment: ["BUDDYPOOLS": "a:size=64M,nodes=0,1,nodes=1"], topology: FakeTopology.machine)
            Issue.record("a repeated list key was accepted")
        } catch {
            #expect(error.token == "nodes=1" && error.offset == 21, "the offset still points at the repeated key: \(error)")
        }
    }

    @Test("check predicts fallbacks with the hugepages earlier pools take")
    func cumulativeFallback() throws {
        let plans = try PoolSet.plan(
            environment: ["BUDDYPOOLS": "a:size=768M,nodes=0,page=2M;b:size=512M,nodes=0,page=2M;c:size=64M,nodes=1,page=2M"],
            topology: FakeTopology.machine)
        #expect(plans[0].pageSizes == [.huge2M])
        #expect(plans[1].pageSizes == [.transparent], "a took 384 of node 0's 512 pages; b needs 256")
        #expect(plans[1].fallbacks.first?.reason.contains("node 0 has 128 free") == true, "\(plans[1].fallbacks)")
        #expect(plans[2].pageSizes == [.transparent])
        do {
            _ = try PoolSet.plan(environment: ["BUDDYPOOLS": "a:size=64M,nodes=1,page=2M!"], topology: FakeTopology.machine)
            Issue.record("strict 2M on a node without hugepages was accepted")
        } catch {
            #expect(error.pool == "a")
            #expect(error.expected.contains("echo"), "the message says how to reserve: \(error)")
        }
    }

    @Test("without BUDDYPOOLS: one pool per node with memory, bound to it")
    func defaults() throws {
        let plans = try PoolSet.plan(environment: [:], topology: FakeTopology.machine)
        #expect(plans.map(\.configuration.name) == ["node0", "node1"], "memory-less node 2 and forbidden node 3 get none")
        #expect(plans.allSatisfy { $0.configuration.capacity == 384 << 20 }, "1/16 of 6 GiB available")
        #expect(plans[1].configuration.nodes == [1])
        let resized = try PoolSet.plan(environment: ["BUDDYPOOLS_NODE1_SIZE": "64M"], topology: FakeTopology.machine)
        #expect(resized[1].configuration.capacity == 64 << 20)
    }

    @Test("random strings never crash the parser and only ever fail with a ConfigurationError")
    func fuzzParser() {
        var random = SplitMix64(seed: 77)
        let alphabet = Array("ab-_:;,=!0123456789KMGTsizenodpcylkvrtfgh ")
        let valid = "hot:size=8M,nodes=0,page=2M,priority=10,locked=0;bulk:size=16M,nodes=0-1,policy=interleave"
        var accepted = 0
        for round in 0..<TestScale.operations(40_000) {
            var text: String
            if round % 2 == 0 {
                text = String((0..<Int.random(in: 0...40, using: &random)).map { _ in alphabet.randomElement(using: &random)! })
            } else {
                var characters = Array(valid)
                for _ in 0..<Int.random(in: 1...4, using: &random) {
                    let index = Int.random(in: 0..<characters.count, using: &random)
                    switch Int.random(in: 0..<3, using: &random) {
                    case 0: characters[index] = alphabet.randomElement(using: &random)!
                    case 1: characters.remove(at: index)
                    default: characters.insert(alphabet.randomElement(using: &random)!, at: index)
                    }
                }
                text = String(characters)
            }
            do {
                let plans = try PoolSet.plan(environment: ["BUDDYPOOLS": text], topology: FakeTopology.machine)
                #expect(!plans.isEmpty)
                accepted += 1
            } catch {
                #expect(error.variable == "BUDDYPOOLS")
                #expect(!error.expected.isEmpty)
            }
        }
        #expect(accepted > 0, "mutations of a valid string sometimes stay valid")
    }

    @Test("a set that fails part-way releases the pools it had already made")
    func noHalfCreation() throws {
        let topology = try NUMATopology.current()
        let node = topology.memoryNodes.first!
        let free2M = topology.node(node)?.hugepages(.huge2M)?.free ?? 0
        let tag = "half\(UInt32.random(in: 0...UInt32.max))"
        let events = EventLog()
        let subscription = Diagnostics.subscribe { event in
            if event.kind == .lifecycle, event.subject.contains(tag) { events.append(event.subject + " " + event.message) }
        }
        defer { subscription.cancel() }
        // The second pool asks for more strict 2 MiB pages than the node has free.
        let environment = [
            "BUDDYPOOLS": "\(tag)-a:size=8M,page=4K,nodes=\(node);\(tag)-b:size=\((free2M + 2) * 2)M,page=2M!,nodes=\(node)",
        ]
        #expect(throws: ConfigurationError.self) { try PoolSet(environment: environment) }
        let log = events.entries
        #expect(log.contains { $0.hasPrefix("pool \(tag)-a created") }, "\(log)")
        #expect(log.contains { $0 == "pool \(tag)-a released" }, "the first pool was released: \(log)")
        #expect(!log.contains { $0.hasPrefix("pool \(tag)-b created") })
    }
}
