import BuddyPools
import FakeMachines
import FuzzSupport
import Glibc

// The BUDDYPOOLS grammar and resolver under libFuzzer. The input is up to three values split at
// NUL bytes: BUDDYPOOLS, BUDDYPOOLS_A_SIZE and BUDDYPOOLS_HOT_SIZE, resolved against the fake
// four-node machine. Whatever the bytes, the answer is a plan or a ConfigurationError, the same
// one twice, and what it says holds:
// - an error names a variable that was set, at an offset inside its value;
// - a plan's pools have unique names, a positive size that is a whole number of superblocks,
//   min <= size <= max, and nodes the machine has memory on and the cpuset allows.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzEnvironment(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let parts = bytes.split(separator: 0, maxSplits: 2, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
    let names = ["BUDDYPOOLS", "BUDDYPOOLS_A_SIZE", "BUDDYPOOLS_HOT_SIZE"]
    var environment: [String: String] = [:]
    for (name, value) in zip(names, parts) { environment[name] = value }
    let machine = FakeTopology.machine

    let first = Result { () throws(ConfigurationError) in try PoolSet.plan(environment: environment, topology: machine) }
    let second = Result { () throws(ConfigurationError) in try PoolSet.plan(environment: environment, topology: machine) }
    switch (first, second) {
    case (.failure(let error), .failure(let again)):
        require(error == again, "the same input gave two errors: \(error) / \(again)")
        guard let value = environment[error.variable] else { fail("the error names \(error.variable), which is not set: \(error)") }
        if let offset = error.offset { require(offset >= 0 && offset <= value.count, "offset \(offset) outside a \(value.count)-character value: \(error)") }
        require(!error.description.isEmpty && !error.expected.isEmpty, "an error without a message")
    case (.success(let plans), .success(let again)):
        require(plans.map(\.configuration) == again.map(\.configuration), "the same input gave two plans")
        require(Set(plans.map(\.configuration.name)).count == plans.count, "two pools share a name")
        for plan in plans { check(plan.configuration, machine: machine) }
    default:
        fail("the same input succeeded once and failed once")
    }
    return 0
}

func check(_ configuration: PoolConfiguration, machine: NUMATopology) {
    let name = configuration.name
    guard let geometry = try? configuration.geometry() else { fail("pool \(name): a plan whose geometry is invalid") }
    require(configuration.capacity > 0 && configuration.capacity % geometry.superblockSize == 0,
            "pool \(name): size \(configuration.capacity) is not a whole number of \(geometry.superblockSize)-byte superblocks")
    require(configuration.minimumBytes >= 0 && configuration.minimumBytes <= configuration.capacity, "pool \(name): min above size")
    if let maximum = configuration.maximumBytes { require(maximum >= configuration.capacity, "pool \(name): max below size") }
    require(!configuration.nodes.isEmpty && configuration.nodes.isSubset(of: machine.memoryNodes),
            "pool \(name): nodes \(configuration.nodes) outside the allowed nodes with memory \(machine.memoryNodes)")
}

func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition { fail(message()) }
}

func fail(_ message: String) -> Never {
    fatalError("FuzzEnvironment: \(message)")
}

/// A declaration under --sanitize=fuzzer (parsed as a library: libFuzzer's main runs); top-level
/// code in a normal build, where it replays the files given on the command line.
let replayed: Int32 = { exit(FuzzReplay.run(CommandLine.arguments, fuzzEnvironment)) }()
