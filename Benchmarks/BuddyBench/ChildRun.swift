import BuddyPools
import CBenchSupport
import Foundation

/// Runs scenarios for one contender inside a child process and prints each result as a
/// `RESULT {json}` line on stdout for the parent.
struct ChildRun {
    let contender: Contender
    let settings: BenchSettings
    let topology: NUMATopology
    /// The node of the CPU the child is pinned to.
    let localNode: Int
    let localCPU: Int

    init(contender: Contender, settings: BenchSettings) throws {
        self.contender = contender
        self.settings = settings
        topology = try NUMATopology.current()
        let node = topology.nodes.first { !$0.isMemoryless && !$0.cpus.isEmpty } ?? topology.nodes[0]
        localNode = node.id
        localCPU = node.cpus.first ?? 0
    }

    func runAll(_ scenarios: [Scenario]) {
        Diagnostics.standardErrorLevel = nil
        for scenario in scenarios {
            let result = run(scenario)
            let data = try! JSONEncoder().encode(result)
            print("RESULT " + String(decoding: data, as: UTF8.self))
            fflush(nil)  // all streams: stdout is a C global Swift 6 will not reference
        }
    }

    private func result(_ scenario: Scenario, _ status: ScenarioResult.Status, _ note: String? = nil) -> ScenarioResult {
        ScenarioResult(scenario: scenario, contender: contender, status: status, note: note)
    }

    func run(_ scenario: Scenario) -> ScenarioResult {
        if contender == .memkindRegular || contender == .memkindHugetlb {
            let kind: Int32 = contender == .memkindRegular ? 1 : 2
            guard cbench_memkind_open(kind) == 1 else {
                return result(scenario, .missing, "missing: " + String(cString: cbench_memkind_error()) + " (apt-get install libmemkind0)")
            }
        }
        switch scenario {
        case .fixed4K, .fixed4KAligned, .fixed4K2, .fixed64K, .fixed64KAligned, .fixed2M, .fixed16M: return fixed(scenario)
        case .mixed1, .mixed2: return mixed(scenario)
        case .small1, .small2: return small(threads: scenario == .small2 ? 2 : 1, scenario)
        case .smallCrossThread: return smallCrossThread()
        case .scaling: return scaling()
        case .footprint: return FootprintExperiment(node: localNode).run()
        case .gups: return gups()
        case .numa: return numa()
        case .churn: return ChurnExperiment(settings: settings, node: localNode).run()
        case .program: return ProgramScenario.run(contender: contender)
        case .compile: return ProgramScenario.compile(contender: contender)
        }
    }

    // MARK: Allocators per scenario

    /// A pool on the local node big enough for the scenario: the default configuration (2 MiB
    /// pages, falling back as usual; 2 MiB superblocks), with its caches or without.
    func makePool(capacity: Int, node: Int? = nil, name: String = "bench", caches: Bool = true) -> MemoryPool? {
        let superblock = BuddyGeometry.standard.superblockSize
        var configuration = PoolConfiguration(name: name, capacity: (capacity + superblock - 1) / superblock * superblock)
        configuration.nodes = [node ?? localNode]
        configuration.cache.enabled = caches
        return try? MemoryPool(configuration: configuration)
    }

    /// One null allocator per thread, for sizes up to `maxSize`, `slots` of each power of two.
    func nullAllocators(threads: Int, maxSize: Int, slots: Int) -> [NullAllocator]? {
        var allocators: [NullAllocator] = []
        for _ in 0..<threads {
            guard let allocator = NullAllocator(maxSize: maxSize, slots: slots, node: localNode) else { return nil }
            allocators.append(allocator)
        }
        return allocators
    }

    /// Calls `body` with one allocator per thread (shared where the allocator is thread-safe).
    /// For a pool, `body` also runs with the null allocator right after, in the same process,
    /// so the pool's figure has the workload's own cost beside it: `nullBody` gets that result.
    func withAllocators<R>(capacity: Int, maxSize: Int, slots: Int, threads: Int,
                           _ body: (AllocatorSet) -> R?) -> (R?, String?, R?) {
        switch contender {
        case .buddypools, .buddypoolsNocache:
            guard let pool = makePool(capacity: capacity, caches: contender == .buddypools) else {
                return (nil, "could not create a \(ByteCount.format(capacity)) pool", nil)
            }
            let note = "pool \(ByteCount.format(pool.capacity)), \(pool.regions[0].pageSize), superblock \(ByteCount.format(pool.geometry.superblockSize))"
            let outcome = body(.pool(PoolAllocator(pool: pool)))
            let null = nullAllocators(threads: threads, maxSize: maxSize, slots: slots).flatMap { body(.null($0)) }
            return (outcome, note, null)
        case .null:
            guard let allocators = nullAllocators(threads: threads, maxSize: maxSize, slots: slots) else {
                return (nil, "could not map the null allocator's slots", nil)
            }
            return (body(.null(allocators)), nil, nil)
        case .glibc, .jemalloc, .mimalloc, .tcmalloc, .buddypoolsMalloc: return (body(.malloc(MallocAllocator())), nil, nil)
        case .numaAllocOnnode: return (body(.numa(NumaAllocator(node: Int32(localNode)))), nil, nil)
        case .memkindRegular: return (body(.memkind(MemkindAllocator(kind: 1))), nil, nil)
        case .memkindHugetlb: return (body(.memkind(MemkindAllocator(kind: 2))), nil, nil)
        }
    }

    // MARK: Scenarios

    private func fixed(_ scenario: Scenario) -> ScenarioResult {
        let threads = scenario == .fixed4K2 ? 2 : 1
        guard let measured = fixedLoop(size: scenario.fixedSize!, alignment: scenario.fixedAlignment, threads: threads) else {
            return result(scenario, .skipped, "needs \(threads) CPUs")
        }
        guard let outcome = measured.outcome else { return result(scenario, .failed, measured.note ?? "allocation failed") }
        var summary = summarize(scenario, outcome, note: measured.note)
        if let null = measured.null { summary.metrics["null_same_process_ns"] = wallNanoseconds(null) }
        return summary
    }

    /// The fixed loop on `threads` threads at once, each with its own 64 blocks; nil when the
    /// machine has fewer CPUs.
    private func fixedLoop(size: Int, alignment: Int, threads: Int) -> (outcome: [LoopMeasurement]?, note: String?, null: [LoopMeasurement]?)? {
        let live = 64
        let cpus = topology.allowedCPUs.map { $0 }
        guard threads <= cpus.count else { return nil }
        let duration = settings.duration
        let (outcome, note, null) = withAllocators(capacity: threads * (live * size * 5 / 4) + (64 << 20), maxSize: size, slots: live + 1, threads: threads) { set -> [LoopMeasurement]? in
            let results = ResultBox<LoopMeasurement>(count: threads)
            runOnThreads(threads) { index in
                _ = cbench_pin_to_cpu(Int32(threads == 1 ? localCPU : cpus[index % cpus.count]))
                results.set(index, set.visit(thread: index, FixedTask(size: size, alignment: alignment, live: live, duration: duration)))
            }
            let all = results.values
            return all.count == threads ? all : nil
        }
        return (outcome ?? nil, note, null ?? nil)
    }

    /// Wall nanoseconds per operation over all threads of one run.
    private func wallNanoseconds(_ measured: [LoopMeasurement]) -> Double {
        let operations = measured.reduce(0) { $0 + $1.operations }
        return Double(measured.map(\.nanoseconds).max() ?? 1) / Double(max(1, operations))
    }

    /// One result from each thread's loop: wall time per operation over all threads.
    private func summarize(_ scenario: Scenario, _ measured: [LoopMeasurement], note: String?) -> ScenarioResult {
        var summary = result(scenario, .ok, note)
        let operations = measured.reduce(0) { $0 + $1.operations }
        let wall = measured.map(\.nanoseconds).max() ?? 1
        summary.operations = operations
        summary.nanosecondsPerOperation = Double(wall) / Double(operations)
        summary.faultsPerOperation = Double(measured.reduce(0) { $0 + $1.faults }) / Double(operations)
        if measured.count > 1 { summary.metrics["per_thread_ns_per_op"] = median(measured.map(\.nanosecondsPerOperation)) }
        return summary
    }

    private func mixed(_ scenario: Scenario) -> ScenarioResult {
        let threads = scenario == .mixed2 ? 2 : 1
        guard let measured = mixedLoop(threads: threads, tails: threads == 1) else {
            return result(scenario, .skipped, "needs \(threads) CPUs")
        }
        guard let outcome = measured.outcome else { return result(scenario, .failed, measured.note ?? "allocation failed") }
        var summary = summarize(scenario, outcome.map(\.0), note: measured.note)
        summary.latency = outcome.first?.1
        if let null = measured.null { summary.metrics["null_same_process_ns"] = wallNanoseconds(null.map(\.0)) }
        return summary
    }

    /// A mixed-loop thread's share of the pool for `live` blocks of up to 4 MiB. Few blocks get
    /// the worst case, every block at 4 MiB, so no draw can exhaust the pool. 1024 blocks get
    /// 2 GiB: rounded up to a power of two they average 0.8 MiB, so their live set averages
    /// 820 MiB with a standard deviation of 40 MiB, and 2 GiB is 30 of those above it.
    private static func mixedShare(live: Int) -> Int { max(16 << 20, min(2 << 30, live * (4 << 20))) }

    /// The mixed workload on `threads` threads, each with `live` blocks (1024 in the scenario;
    /// fewer only where `scaling` must fit a small machine). `live` is a power of two: the loop
    /// picks the slot to replace with a mask.
    private func mixedLoop(threads: Int, tails: Bool, live: Int = 1024) -> (outcome: [(LoopMeasurement, LatencySummary?)]?, note: String?, null: [(LoopMeasurement, LatencySummary?)]?)? {
        let cpus = topology.allowedCPUs.map { $0 }
        guard threads <= cpus.count else { return nil }
        let duration = settings.duration
        let seed = settings.seed
        // 256 slots of each power of two at 1024 live: the live set holds about 102 of each of
        // the ten sizes above 4 KiB, and drifts well past 128 over a run.
        precondition(live > 0 && live & (live - 1) == 0, "mixed keeps a power of two of live blocks, not \(live)")
        let capacity = threads * Self.mixedShare(live: live)
        let (outcome, note, null) = withAllocators(capacity: capacity, maxSize: 4 << 20, slots: max(16, live / 4), threads: threads) { set -> [(LoopMeasurement, LatencySummary?)]? in
            let results = ResultBox<(LoopMeasurement, LatencySummary?)>(count: threads)
            runOnThreads(threads) { index in
                _ = cbench_pin_to_cpu(Int32(cpus[index % cpus.count]))
                let task = MixedTask(live: live, duration: duration, seed: seed &+ UInt64(index), tails: tails)
                results.set(index, set.visit(thread: index, task) ?? nil)
            }
            let all = results.values
            return all.count == threads ? all : nil
        }
        return (outcome ?? nil, note, null ?? nil)
    }

    /// small-1t on `threads` threads, each its own 1024 objects.
    private func small(threads: Int, _ scenario: Scenario) -> ScenarioResult {
        let live = 1024
        let cpus = topology.allowedCPUs.map { $0 }
        guard threads <= cpus.count else { return result(scenario, .skipped, "needs \(threads) CPUs") }
        let duration = settings.duration, seed = settings.seed
        let (outcome, note, null) = withAllocators(capacity: 64 << 20, maxSize: 1024, slots: live + 1, threads: threads) { set -> [LoopMeasurement]? in
            let results = ResultBox<LoopMeasurement>(count: threads)
            runOnThreads(threads) { index in
                _ = cbench_pin_to_cpu(Int32(threads == 1 ? localCPU : cpus[index % cpus.count]))
                results.set(index, set.visit(thread: index, SmallTask(live: live, duration: duration, seed: seed &+ UInt64(index))))
            }
            let all = results.values
            return all.count == threads ? all : nil
        }
        guard let measured = outcome ?? nil else { return result(scenario, .failed, note ?? "allocation failed") }
        var summary = summarize(scenario, measured, note: note)
        if let null = null ?? nil { summary.metrics["null_same_process_ns"] = wallNanoseconds(null) }
        return summary
    }

    /// small-xthread: a producer thread allocates, a consumer thread frees.
    private func smallCrossThread() -> ScenarioResult {
        let cpus = topology.allowedCPUs.map { $0 }
        guard cpus.count >= 2 else { return result(.smallCrossThread, .skipped, "needs 2 CPUs") }
        let duration = settings.duration, seed = settings.seed
        let (outcome, note, _) = withAllocators(capacity: 64 << 20, maxSize: 1024, slots: 2, threads: 2) { set -> LoopMeasurement? in
            // The null allocator serves one thread only: it has no cross-thread figure.
            if case .null = set { return nil }
            let ring = ObjectRing()
            let results = ResultBox<LoopMeasurement>(count: 1)
            runOnThreads(2) { index in
                _ = cbench_pin_to_cpu(Int32(cpus[index % cpus.count]))
                if index == 0 {
                    _ = set.visit(thread: 0, ProducerTask(ring: ring, seed: seed))
                } else {
                    results.set(0, set.visit(thread: 0, ConsumerTask(ring: ring, duration: duration)))
                }
            }
            return results.values.first
        }
        guard let measured = outcome ?? nil else { return result(.smallCrossThread, .failed, note ?? "allocation failed") }
        return summarize(.smallCrossThread, [measured], note: note)
    }

    /// fixed-4K and mixed on 1 ... N threads: throughput at each count over throughput on one.
    private func scaling() -> ScenarioResult {
        let counts = Array(1...max(1, topology.allowedCPUs.count))
        // The mixed part keeps 1024 live blocks per thread where half the local node's
        // available memory holds every thread's share; a smaller machine (a NUMA guest, which
        // runs this for function) keeps fewer, the largest power of two that fits, at least 8,
        // and the note says how many.
        let available = topology.nodes.first { $0.id == localNode }?.availableBytes ?? Int.max
        var mixedLive = 1024
        while mixedLive > 8, counts.last! * Self.mixedShare(live: mixedLive) > available / 2 { mixedLive /= 2 }
        var summary = result(.scaling, .ok, "threads 1...\(counts.last!)" + (mixedLive < 1024 ? ", mixed with \(mixedLive) live blocks per thread" : ""))
        var fixedOne: Double?, mixedOne: Double?
        for threads in counts {
            guard let fixed = fixedLoop(size: 4 << 10, alignment: 0, threads: threads)?.outcome,
                  let mixed = mixedLoop(threads: threads, tails: false, live: mixedLive)?.outcome
            else { return result(.scaling, .failed, "allocation failed at \(threads) threads") }
            let fixedNs = wallNanoseconds(fixed), mixedNs = wallNanoseconds(mixed.map(\.0))
            if threads == 1 { fixedOne = fixedNs; mixedOne = mixedNs }
            summary.metrics["fixed-4K_\(threads)t_ns"] = fixedNs
            summary.metrics["mixed_\(threads)t_ns"] = mixedNs
            summary.metrics["fixed-4K_\(threads)t_speedup"] = (fixedOne ?? fixedNs) / fixedNs
            summary.metrics["mixed_\(threads)t_speedup"] = (mixedOne ?? mixedNs) / mixedNs
            if threads == counts.last! {
                summary.nanosecondsPerOperation = fixedNs
                summary.operations = fixed.reduce(0) { $0 + $1.operations }
            }
        }
        return summary
    }

    private func gups() -> ScenarioResult {
        let bytes = settings.gupsBytes
        let words = bytes / 8
        _ = cbench_pin_to_cpu(Int32(localCPU))
        let table: UnsafeMutablePointer<UInt64>
        var note: String?
        var keepAlive: AnyObject?
        var release: () -> Void = {}
        switch contender {
        case .buddypools, .buddypoolsNocache:
            guard let pool = makePool(capacity: bytes + (2 << 20), name: "gups"),
                  let memory = try? pool.allocateContiguous(byteCount: bytes, alignment: 2 << 20)
            else { return result(.gups, .failed, "could not get \(ByteCount.format(bytes)) from a pool") }
            table = memory.bindMemory(to: UInt64.self, capacity: words)
            note = "pool \(pool.regions[0].pageSize)"
            keepAlive = pool
            release = { pool.deallocate(memory) }
        case .memkindHugetlb, .glibc, .jemalloc, .mimalloc, .tcmalloc:
            let allocator: any BenchAllocator = contender == .memkindHugetlb ? MemkindAllocator(kind: 2) : MallocAllocator()
            guard let memory = allocator.allocate(bytes) else { return result(.gups, .failed, "allocation of \(ByteCount.format(bytes)) failed") }
            table = memory.bindMemory(to: UInt64.self, capacity: words)
            release = { allocator.deallocate(memory, size: bytes) }
        default:
            return result(.gups, .skipped)
        }
        // Initialize outside the clock: first touch, as a program would.
        table.initialize(repeating: 0, count: words)
        let measurement = Workloads.randomUpdates(table: table, words: words, duration: settings.duration, seed: settings.seed)
        release()
        _ = keepAlive
        var outcome = result(.gups, .ok, note.map { "\($0), table \(ByteCount.format(bytes))" } ?? "table \(ByteCount.format(bytes))")
        outcome.nanosecondsPerOperation = measurement.nanosecondsPerOperation
        outcome.operations = measurement.operations
        outcome.faultsPerOperation = measurement.faultsPerOperation
        return outcome
    }

    private func numa() -> ScenarioResult {
        let memoryNodes = topology.memoryNodes.map { $0 }
        guard memoryNodes.count > 1 else {
            return result(.numa, .skipped, "skipped by name: this machine has one NUMA node (numa scenarios need two or more)")
        }
        _ = cbench_pin_to_cpu(Int32(localCPU))
        let remote = memoryNodes.filter { $0 != localNode }.max { (topology.distance(from: localNode, to: $0) ?? 0, $1) < (topology.distance(from: localNode, to: $1) ?? 0, $0) }!
        let bytes = settings.numaBytes
        var outcome = result(.numa, .ok, "local node \(localNode) (CPU \(localCPU)), remote node \(remote) at distance \(topology.distance(from: localNode, to: remote) ?? 0)")
        // Where does memory meant for the remote node land?
        let placement: Double?
        switch contender {
        case .buddypools, .buddypoolsNocache:
            guard let pool = makePool(capacity: bytes + (2 << 20), node: remote, name: "remote"),
                  let memory = try? pool.allocateContiguous(byteCount: bytes, alignment: 2 << 20)
            else { return result(.numa, .failed, "could not create a pool on node \(remote)") }
            placement = fraction(memory, bytes: bytes, on: remote)
            outcome.metrics["remote_bandwidth_GBps"] = Workloads.readBandwidth(memory, bytes: bytes, duration: settings.duration / 2)
            outcome.metrics["remote_latency_ns"] = Workloads.chaseLatency(memory, bytes: bytes, duration: settings.duration / 2, seed: settings.seed)
            pool.deallocate(memory)
            if let local = makePool(capacity: bytes + (2 << 20), node: localNode, name: "local"),
               let memory = try? local.allocateContiguous(byteCount: bytes, alignment: 2 << 20) {
                outcome.metrics["local_fraction_on_node"] = fraction(memory, bytes: bytes, on: localNode)
                outcome.metrics["local_bandwidth_GBps"] = Workloads.readBandwidth(memory, bytes: bytes, duration: settings.duration / 2)
                outcome.metrics["local_latency_ns"] = Workloads.chaseLatency(memory, bytes: bytes, duration: settings.duration / 2, seed: settings.seed)
                local.deallocate(memory)
            }
        case .numaAllocOnnode:
            guard let memory = cbench_numa_alloc_onnode(bytes, Int32(remote)) else { return result(.numa, .failed) }
            memory.initializeMemory(as: UInt8.self, repeating: 1, count: bytes)
            placement = fraction(memory, bytes: bytes, on: remote)
            cbench_numa_free(memory, bytes)
        case .glibc, .jemalloc, .mimalloc, .tcmalloc, .memkindRegular:
            // No way to ask for a node: first touch from this thread decides.
            let allocator: any BenchAllocator = contender == .memkindRegular ? MemkindAllocator(kind: 1) : MallocAllocator()
            guard let memory = allocator.allocate(bytes) else { return result(.numa, .failed) }
            memory.initializeMemory(as: UInt8.self, repeating: 1, count: bytes)
            placement = fraction(memory, bytes: bytes, on: remote)
            allocator.deallocate(memory, size: bytes)
        case .null, .memkindHugetlb, .buddypoolsMalloc:
            return result(.numa, .skipped)
        }
        outcome.metrics["fraction_on_requested_node"] = placement
        return outcome
    }

    private func fraction(_ memory: UnsafeMutableRawPointer, bytes: Int, on node: Int) -> Double {
        let samples = 256
        let addresses = (0..<samples).map { UnsafeRawPointer(memory + ($0 * (bytes / samples)) / 4096 * 4096) }
        let nodes = PagePlacement.nodes(of: addresses)
        return Double(nodes.filter { $0 == node }.count) / Double(samples)
    }
}

/// A workload to run with one allocator; `visit` calls it with the concrete type, so the
/// loop is specialized for that allocator (an existential would add a dynamic call per op).
protocol AllocatorTask: Sendable {
    associatedtype Output
    func run<A: BenchAllocator>(_ allocator: A) -> Output
}

struct FixedTask: AllocatorTask {
    let size: Int, alignment: Int, live: Int, duration: Double
    func run<A: BenchAllocator>(_ allocator: A) -> LoopMeasurement? {
        Workloads.fixedSize(allocator, size: size, alignment: alignment, live: live, duration: duration)
    }
}

struct MixedTask: AllocatorTask {
    let live: Int, duration: Double, seed: UInt64, tails: Bool
    func run<A: BenchAllocator>(_ allocator: A) -> (LoopMeasurement, LatencySummary?)? {
        Workloads.mixed(allocator, live: live, duration: duration, seed: seed, tails: tails)
    }
}

struct SmallTask: AllocatorTask {
    let live: Int, duration: Double, seed: UInt64
    func run<A: BenchAllocator>(_ allocator: A) -> LoopMeasurement? {
        Workloads.smallObjects(allocator, live: live, duration: duration, seed: seed)
    }
}

struct ProducerTask: AllocatorTask {
    let ring: ObjectRing, seed: UInt64
    func run<A: BenchAllocator>(_ allocator: A) -> Int { Workloads.produce(allocator, into: ring, seed: seed) }
}

struct ConsumerTask: AllocatorTask {
    let ring: ObjectRing, duration: Double
    func run<A: BenchAllocator>(_ allocator: A) -> LoopMeasurement? { Workloads.consume(allocator, from: ring, duration: duration) }
}

/// The allocators of one scenario run: one shared, or one per thread (the null allocator).
enum AllocatorSet: @unchecked Sendable {
    // @unchecked: null allocators are used by their own thread only; the others are thread-safe.
    case pool(PoolAllocator)
    case malloc(MallocAllocator)
    case numa(NumaAllocator)
    case memkind(MemkindAllocator)
    case null([NullAllocator])

    func visit<T: AllocatorTask>(thread: Int, _ task: T) -> T.Output {
        switch self {
        case .pool(let allocator): task.run(allocator)
        case .malloc(let allocator): task.run(allocator)
        case .numa(let allocator): task.run(allocator)
        case .memkind(let allocator): task.run(allocator)
        case .null(let allocators): task.run(allocators[thread])
        }
    }
}

/// Per-thread results collected from worker threads.
final class ResultBox<Value>: @unchecked Sendable {
    // @unchecked: each thread writes only its own index, and the reader waits for all (pthread_join).
    private var storage: [Value?]

    init(count: Int) { storage = Array(repeating: nil, count: count) }
    func set(_ index: Int, _ value: Value?) { storage[index] = value }
    var values: [Value] { storage.compactMap { $0 } }
}
