import Foundation
import Glibc

/// An allocator the benchmark compares, each run in its own child process.
enum Contender: String, CaseIterable, Codable, Sendable {
    case buddypools
    /// A pool with its caches off: every operation through the pool lock.
    case buddypoolsNocache = "buddypools-nocache"
    /// BuddyPools as the process's malloc: libBuddyPoolsMalloc.so preloaded like the malloc
    /// peers, on its default pools (transparent pages, faulting in), the workload calling malloc.
    case buddypoolsMalloc = "buddypools-malloc"
    case null
    case glibc
    case jemalloc
    case mimalloc
    case tcmalloc
    case numaAllocOnnode = "numa_alloc_onnode"
    case memkindRegular = "memkind-regular"
    case memkindHugetlb = "memkind-hugetlb"

    /// The allocators users would pick instead (the ratios are against the best of these).
    var isPeer: Bool { self != .buddypools && self != .buddypoolsNocache && self != .buddypoolsMalloc && self != .null }

    /// Ours: a pool, with or without caches.
    var isPool: Bool { self == .buddypools || self == .buddypoolsNocache }

    /// The library LD_PRELOAD puts in front of malloc, for the malloc peers.
    var preloadLibrary: String? {
        switch self {
        case .jemalloc: "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2"
        case .mimalloc: "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2"
        case .tcmalloc: "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"
        case .buddypoolsMalloc: Self.ownMallocLibrary
        default: nil
        }
    }

    /// libBuddyPoolsMalloc.so beside this executable (both are products of the same build).
    static var ownMallocLibrary: String {
        let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        return URL(fileURLWithPath: executable).deletingLastPathComponent().appendingPathComponent("libBuddyPoolsMalloc.so").path
    }

    /// The Debian package that provides the peer.
    var package: String? {
        switch self {
        case .jemalloc: "libjemalloc2"
        case .mimalloc: "libmimalloc2.0"
        case .tcmalloc: "libtcmalloc-minimal4"
        case .memkindRegular, .memkindHugetlb: "libmemkind0"
        case .numaAllocOnnode: "libnuma1"
        default: nil
        }
    }

    /// Why the contender cannot run here, or nil. (memkind is probed in its child.)
    var missingReason: String? {
        guard let library = preloadLibrary, access(library, R_OK) != 0 else { return nil }
        if self == .buddypoolsMalloc { return "missing: \(library) not built (swift build -c release --product BuddyPoolsMalloc)" }
        return "missing: \(library) not found (apt-get install \(package ?? "?"))"
    }
}

/// A named, documented workload.
enum Scenario: String, CaseIterable, Codable, Sendable {
    case fixed4K = "fixed-4K"
    case fixed4KAligned = "fixed-4K-aligned"
    case fixed4K2 = "fixed-4K-2t"
    case fixed64K = "fixed-64K"
    case fixed64KAligned = "fixed-64K-aligned"
    case fixed2M = "fixed-2M"
    case fixed16M = "fixed-16M"
    case mixed1 = "mixed-1t"
    case mixed2 = "mixed-2t"
    case small1 = "small-1t"
    case smallCrossThread = "small-xthread"
    case small2 = "small-2t"
    case scaling
    case gups
    case numa
    case churn
    case footprint
    case program
    case compile

    var summary: String {
        switch self {
        case .fixed4K, .fixed64K, .fixed2M, .fixed16M:
            "steady state of 64 live \(rawValue.dropFirst(6)) blocks; one op = free one + allocate one (no touch)"
        case .fixed4KAligned, .fixed64KAligned:
            "the same with alignment 4096, as a page allocator's users ask (aligned_alloc for the malloc peers)"
        case .fixed4K2:
            "fixed-4K on 2 threads at once, each with its own 64 blocks; ns/op is wall time over both threads' pairs"
        case .mixed1:
            "1024 live blocks, log-uniform 4 KiB..4 MiB, random replacement, first and last byte touched; 1 thread; the pool's default configuration; tails from a second, timed pass"
        case .mixed2:
            "the mixed workload on 2 threads at once (each its own 1024 blocks); ns/op is wall time over both threads' ops"
        case .small1:
            "1024 live objects of random sizes 16 B..1 KiB, free a random one + allocate one (first byte written); 1 thread"
        case .smallCrossThread:
            "one thread allocates objects of 16 B..1 KiB into a ring, another frees them; ns per object (the consumer's clock)"
        case .small2:
            "small-1t on 2 threads at once, each its own objects; ns/op is wall time over both threads' pairs"
        case .scaling:
            "fixed-4K and mixed on 1 ... N threads (N: the CPUs allowed), throughput relative to 1 thread"
        case .footprint:
            "what the pool keeps: cached bytes after one thread frees all it allocated (64 MiB pool) and with 64 idle threads (1 GiB pool), metadata of a 64-pool set"
        case .gups:
            "random 8-byte read-modify-write over a large table (GUPS-style); ns per update"
        case .numa:
            "pool memory on the local vs the farthest node: read bandwidth and load latency; and where each allocator puts memory asked for a remote node"
        case .program:
            "a real program under each malloc: PYTHONMALLOC=malloc python3 Tests/MallocPrograms/list_churn.py (3000 lists of 100-5000 strings, 400 kept), one run per repeat; ns/op is its wall time, peak RSS in the note"
        case .compile:
            "a real program under each malloc: swiftc -O -c Tests/MallocPrograms/codable_models.swift (Codable types, generics, enums with payloads: about 3-7 s here), one compile per repeat; ns/op is its wall time, peak RSS in the note"
        case .churn:
            "fragmentation: random sizes and lifetimes at 70-90% occupancy with movable and reclaimable shares, then max-order requests; grouping+compaction vs grouping off"
        }
    }

    var fixedSize: Int? {
        switch self {
        case .fixed4K, .fixed4K2, .fixed4KAligned: 4 << 10
        case .fixed64K, .fixed64KAligned: 64 << 10
        case .fixed2M: 2 << 20
        case .fixed16M: 16 << 20
        default: nil
        }
    }

    /// Alignment the fixed scenario asks for (0: the allocator's default).
    var fixedAlignment: Int {
        switch self {
        case .fixed4KAligned, .fixed64KAligned: 4096
        default: 0
        }
    }

    func applies(to contender: Contender) -> Bool {
        // The malloc library where malloc-level figures mean something: small objects and pages.
        if contender == .buddypoolsMalloc {
            return [.small1, .smallCrossThread, .small2, .fixed4K, .fixed4KAligned, .fixed64K, .mixed1, .program, .compile].contains(self)
        }
        return switch self {
        case .fixed4K, .fixed4KAligned, .fixed4K2, .fixed64K, .fixed64KAligned, .fixed2M, .fixed16M, .mixed1, .mixed2, .scaling, .small1, .small2: true
        case .smallCrossThread: contender != .null
        case .gups: contender != .null && contender != .numaAllocOnnode && contender != .memkindRegular && contender != .buddypoolsNocache
        case .numa: contender != .null && contender != .memkindHugetlb && contender != .buddypoolsNocache
        case .churn, .footprint: contender == .buddypools
        // Malloc replacements only: a pool is no process's malloc.
        case .program, .compile: [.glibc, .jemalloc, .mimalloc, .tcmalloc].contains(contender)
        }
    }
}

/// One contender's result for one scenario in one child run.
struct ScenarioResult: Codable, Sendable {
    enum Status: String, Codable, Sendable { case ok, missing, failed, skipped }

    var scenario: Scenario
    var contender: Contender
    var status: Status
    var note: String?
    var nanosecondsPerOperation: Double?
    var operations: Int?
    var faultsPerOperation: Double?
    var latency: LatencySummary?
    var metrics: [String: Double] = [:]
}
