// swift-tools-version: 6.2
import Foundation
import PackageDescription

// The malloc library's export list, by absolute path: the linker does not run in the package root.
let mallocExports = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Sources/CBuddyPoolsMalloc/exports.map").path

let package = Package(
    name: "BuddyPools",
    products: [
        .library(name: "BuddyPools", targets: ["BuddyPools"]),
        .library(name: "BuddyPoolsMetrics", targets: ["BuddyPoolsMetrics"]),
        // libBuddyPoolsC.so: the C API (buddypools.h) for C, C++ and Fortran programs.
        .library(name: "BuddyPoolsC", type: .dynamic, targets: ["BuddyPoolsC"]),
        // libBuddyPoolsMalloc.so: the pools behind the process's malloc (LD_PRELOAD or linked).
        .library(name: "BuddyPoolsMalloc", type: .dynamic, targets: ["CBuddyPoolsMalloc"]),
        .executable(name: "buddypools", targets: ["buddypools"]),
        .executable(name: "buddypools-bench", targets: ["BuddyBench"]),
        .executable(name: "buddypools-count", targets: ["InstructionCount"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.5.0"),
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.4.0"),
    ],
    targets: [
        // The layers, bottom up; each arrow points down, and only BuddySystem imports CNuma.
        // The C shim: what Swift cannot import directly (libnuma, mmap flags, __thread, membarrier).
        .target(
            name: "CNuma",
            path: "CNuma",
            linkerSettings: [.linkedLibrary("numa")]
        ),
        // The buddy algorithm over any memory: arena, geometry, state bytes. No OS, no dependency.
        .target(name: "BuddyCore"),
        // The one door to the OS: every system call wrapped once, topology, regions, placement.
        .target(name: "BuddySystem", dependencies: ["BuddyCore", "CNuma"]),
        // The object fast path in C (static inline): shared by the pools' inlined paths and the
        // malloc library's entry points, which must be C; views of the Swift structures it reads.
        .target(name: "CBuddyFastPath", dependencies: ["CNuma"]),
        // Per-thread magazines and per-CPU depots in front of a pool, and the fast path they serve.
        .target(name: "BuddyCaches", dependencies: ["BuddyCore", "BuddySystem", "CBuddyFastPath"]),
        // Objects below a page: size classes, slabs on buddy blocks with out-of-band bitmaps, per-thread heaps.
        .target(name: "BuddySlabs", dependencies: ["BuddyCore", "BuddySystem", "CBuddyFastPath"]),
        // PoolConfiguration and the BUDDYPOOLS grammar that fills it: plain values for the pools.
        .target(name: "BuddyConfig", dependencies: ["BuddyCore", "BuddySystem", "BuddyCaches"]),
        // MemoryPool and PoolSet: creation, allocation, checked frees, lending, reclaim, statistics.
        .target(name: "MemoryPools", dependencies: ["BuddyCore", "BuddySystem", "BuddyCaches", "BuddySlabs", "BuddyConfig", "CBuddyFastPath"]),
        // The umbrella users import: re-exports the layers' public names.
        .target(name: "BuddyPools", dependencies: ["BuddyCore", "BuddySystem", "BuddyCaches", "BuddyConfig", "MemoryPools"]),
        // The C API's header, buddypools.h, compiled as C once so a header that is not C fails the build.
        .target(name: "CBuddyPools"),
        // The C API: buddypools_malloc and friends over the process's pool set, with C names and errno.
        .target(name: "BuddyPoolsC", dependencies: ["MemoryPools", "BuddyConfig", "BuddySystem", "CBuddyPools"]),
        // malloc, free and the rest of the family in C, over the C API (docs/malloc.md).
        // It exports the malloc family and buddypools_* only (exports.map), so its own copy of
        // the Swift modules never mixes with a program's.
        .target(
            name: "CBuddyPoolsMalloc", dependencies: ["CNuma", "CBuddyFastPath", "CBuddyPools", "BuddyPoolsC"], exclude: ["exports.map"],
            linkerSettings: [.linkedLibrary("dl"), .unsafeFlags(["-Xlinker", "--version-script=\(mallocExports)"])]),
        // Optional adapters: pool gauges and counters for swift-metrics, diagnostics for swift-log.
        .target(
            name: "BuddyPoolsMetrics",
            dependencies: [
                "BuddyPools",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        // The command line tool: info, check, verify.
        .executableTarget(
            name: "buddypools",
            dependencies: [
                "BuddyPools",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // What the benchmark needs from C: peers through dlopen, libnuma's allocator, pinning.
        .target(
            name: "CBenchSupport",
            path: "Benchmarks/CBenchSupport",
            linkerSettings: [.linkedLibrary("dl"), .linkedLibrary("numa")]
        ),
        // buddypools-bench: the peers side by side, each in its own process.
        .executableTarget(
            name: "BuddyBench",
            dependencies: [
                "BuddyPools",
                "CBenchSupport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            path: "Benchmarks/BuddyBench"
        ),
        // buddypools-count: the loops scripts/count-instructions counts with callgrind.
        .executableTarget(
            name: "InstructionCount",
            dependencies: ["BuddyPools"],
            path: "Benchmarks/InstructionCount"
        ),
        // What tests need from C: seccomp strict mode, a raw thread exit, a malloc counter.
        .target(
            name: "CTestSupport",
            path: "Tests/CTestSupport"
        ),
        // Reference models and helpers the test targets share.
        .target(
            name: "TestSupport",
            path: "Tests/TestSupport"
        ),
        // A four-node machine with a memory-less, a CPU-less and a forbidden node, for the grammar.
        .target(
            name: "FakeMachines",
            dependencies: ["BuddySystem"],
            path: "Tests/FakeMachines"
        ),
        // What both fuzz targets share: replaying a corpus when built without libFuzzer.
        .target(name: "FuzzSupport", path: "Tests/Fuzz/FuzzSupport"),
        // libFuzzer targets (swift build --sanitize=fuzzer; scripts/run-fuzzers): the BUDDYPOOLS
        // grammar, and pool operations checked against a model after every step. Built normally,
        // each replays the files it is given (the committed corpus, in scripts/run-tests).
        .executableTarget(
            name: "FuzzEnvironment",
            dependencies: ["BuddyPools", "FakeMachines", "FuzzSupport"],
            path: "Tests/Fuzz/FuzzEnvironment"
        ),
        .executableTarget(
            name: "FuzzPoolOperations",
            dependencies: ["BuddyPools", "FuzzSupport"],
            path: "Tests/Fuzz/FuzzPoolOperations"
        ),
        // The buddy algorithm alone, over plain memory: fast, exhaustive model runs.
        .testTarget(
            name: "BuddyCoreTests",
            dependencies: ["BuddyCore", "TestSupport"]
        ),
        // The BUDDYPOOLS grammar and resolver against a fake machine.
        .testTarget(
            name: "BuddyConfigTests",
            dependencies: ["BuddyPools", "FakeMachines", "TestSupport"]
        ),
        // Pools on real memory: model, exit, realtime, concurrency, lending, reclaim, NUMA VM suites.
        .testTarget(
            name: "BuddyPoolsTests",
            dependencies: ["BuddyPools", "CTestSupport", "TestSupport"]
        ),
        .testTarget(
            name: "BuddyPoolsMetricsTests",
            dependencies: [
                "BuddyPoolsMetrics",
                .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "InMemoryLogging", package: "swift-log"),
            ]
        ),
    ],
    swiftLanguageModes: [.v6]
)
