// Realtime Swift with ordinary collections: under LD_PRELOAD=libBuddyPoolsMalloc.so with a locked
// pool serving malloc, a thread that called buddypools_prepare_thread() appends to Arrays
// within their reserved capacity and beyond it, builds Strings, fills a Dictionary and creates and
// drops class instances, and makes no system call and takes no page fault doing so.
//
//   realtime_collections faults    the loop on a thread counting its own page faults (RUSAGE_THREAD)
//   realtime_collections strict    the loop on a thread in seccomp strict mode: any system call
//                                  other than read, write, exit and sigreturn kills the process
//   realtime_collections forbidden strict mode and one getppid(): the kernel kills the thread (exit 3)
//
// Both runs compute the checksum the main thread computed first; exit status 0 means it matched,
// every object lived in a pool, and (faults) the loop took no page fault.
import Glibc

let iterations = 100_000
let warmUpIterations = 20_000

final class Particle {
    let id: Int
    var next: Particle?
    init(_ id: Int, next: Particle?) { self.id = id; self.next = next }
}

/// One step of the loop: every kind of allocation a Swift program makes without thinking of it.
/// `kept` holds arrays across steps, so frees come in another order than allocations.
@inline(never)
func step(_ index: Int, _ kept: inout [[Int]]) -> Int {
    var values: [Int] = []
    values.reserveCapacity(16)
    for element in 0..<16 { values.append(index &+ element) }     // within the reserved capacity
    for element in 0..<48 { values.append(element) }              // beyond it: 32, 64 elements
    let label = "particle-\(index)-" + String(repeating: "x", count: index % 40)  // heap strings above 15 bytes
    var chain: Particle?
    for link in 0..<8 { chain = Particle(index &+ link, next: chain) }
    var table: [Int: Int] = [:]
    for key in 0..<8 { table[key &* 31 &+ index] = key }
    var sum = values.count &+ label.utf8.count &+ table.count &+ values[index % values.count]
    while let particle = chain { sum &+= particle.id; chain = particle.next }
    kept[index % kept.count] = values
    return sum
}

func loop(_ count: Int) -> Int {
    var kept = [[Int]](repeating: [], count: 64)
    var checksum = 0
    for index in 0..<count { checksum = checksum &* 31 &+ step(index, &kept) }
    return checksum
}

typealias PrepareThread = @convention(c) () -> Int32
typealias PoolOf = @convention(c) (UnsafeRawPointer?) -> UnsafePointer<CChar>?
typealias Prctl = @convention(c) (Int32, UInt, UInt, UInt, UInt) -> Int32
typealias Syscall = @convention(c) (Int, Int) -> Int

func symbol<T>(_ name: String, as type: T.Type) -> T {
    guard let address = dlsym(nil, name) else {  // RTLD_DEFAULT
        print("realtime_collections: \(name) not found (is libBuddyPoolsMalloc.so preloaded?)")
        exit(2)
    }
    return unsafeBitCast(address, to: type)
}

let prepareThread = symbol("buddypools_prepare_thread", as: PrepareThread.self)
let poolOf = symbol("buddypools_pool_of", as: PoolOf.self)
// prctl and syscall are variadic in C (Swift cannot call them); through a fixed signature their
// integer arguments pass the same way on x86-64.
let prctl = symbol("prctl", as: Prctl.self)
let rawSyscall = symbol("syscall", as: Syscall.self)

/// What the worker thread reports; written by it, read after pthread_join.
final class Outcome: @unchecked Sendable {
    let strict: Bool
    let forbidden: Bool
    var checksum = 0
    var minorFaults = -1
    var majorFaults = -1
    var objectsOutsidePools = -1
    var completed = false
    var enteredStrictMode = false
    init(mode: String) {
        strict = mode != "faults"
        forbidden = mode == "forbidden"
    }
}

func threadFaults() -> (minor: Int, major: Int) {
    var usage = rusage()
    // RUSAGE_THREAD (1): glibc declares it only under _GNU_SOURCE, which Swift does not import.
    guard getrusage(__rusage_who_t(1), &usage) == 0 else { return (Int.min / 2, Int.min / 2) }
    return (usage.ru_minflt, usage.ru_majflt)
}

func work(_ outcome: Outcome) {
    guard prepareThread() == 0 else { return }
    _ = loop(warmUpIterations)  // every path, stack page and slab of the loop, touched once
    let probe = (0..<256).map { Particle($0, next: nil) }
    let outside = probe.filter { poolOf(Unmanaged.passUnretained($0).toOpaque()) == nil }.count
    let before = threadFaults()
    if outcome.strict {
        let PR_SET_SECCOMP: Int32 = 22, SECCOMP_MODE_STRICT: UInt = 1
        guard prctl(PR_SET_SECCOMP, SECCOMP_MODE_STRICT, 0, 0, 0) == 0 else { return }
        outcome.enteredStrictMode = true
    }
    if outcome.forbidden { _ = getppid() }
    let checksum = loop(iterations)
    if !outcome.strict {
        let after = threadFaults()
        outcome.minorFaults = after.minor - before.minor
        outcome.majorFaults = after.major - before.major
    }
    outcome.checksum = checksum
    outcome.objectsOutsidePools = outside
    outcome.completed = true
    withExtendedLifetime(probe) {}
}

guard CommandLine.arguments.count == 2, ["faults", "strict", "forbidden"].contains(CommandLine.arguments[1]) else {
    print("usage: realtime_collections faults|strict|forbidden")
    exit(2)
}
let expected = loop(iterations)
let outcome = Outcome(mode: CommandLine.arguments[1])
var thread = pthread_t()
let context = Unmanaged.passRetained(outcome).toOpaque()
pthread_create(&thread, nil, { raw in
    let outcome = Unmanaged<Outcome>.fromOpaque(raw!).takeUnretainedValue()
    work(outcome)
    // Strict mode allows exit(2) of the thread only (no pthread_exit clean-up, no exit_group).
    if outcome.strict { while true { _ = rawSyscall(60, 0) } }  // SYS_exit on x86-64
    return nil
}, context)
pthread_join(thread, nil)

if outcome.enteredStrictMode && !outcome.completed {
    // Strict mode kills only the thread that made the call: the process goes on to say so.
    print("realtime_collections: the worker made a system call in strict mode and was killed")
    exit(3)
}
guard outcome.completed else {
    print("realtime_collections: the worker did not finish (prepare failed or prctl refused)")
    exit(1)
}
var failed = false
if outcome.checksum != expected {
    print("realtime_collections: checksum \(outcome.checksum), expected \(expected)")
    failed = true
}
if outcome.objectsOutsidePools != 0 {
    print("realtime_collections: \(outcome.objectsOutsidePools) of 256 objects outside every pool")
    failed = true
}
if !outcome.strict && (outcome.minorFaults != 0 || outcome.majorFaults != 0) {
    print("realtime_collections: \(outcome.minorFaults) minor and \(outcome.majorFaults) major page faults in \(iterations) iterations")
    failed = true
}
if failed { exit(1) }
print(outcome.strict
    ? "realtime_collections strict: \(iterations) iterations in seccomp strict mode, no system call, checksum matched"
    : "realtime_collections faults: \(iterations) iterations, 0 minor and 0 major page faults, checksum matched")
