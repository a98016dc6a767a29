// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "BuddyPools",
    products: [
        .library(name: "BuddyPools", targets: ["BuddyPools"]),
        .library(name: "BuddyPoolsMetrics", targets: ["BuddyPoolsMetrics"]),
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
        // The C shim: what Swift cannot import directly (libnuma, mmap flags, __thread, membarrier).
        .target(
            name: "CNuma",
            path: "CNuma",
            linkerSettings: [.linkedLibrary("numa")]
        ),
        .target(
            name: "BuddyPools",
            dependencies: ["CNuma"]
        ),
        .target(
            name: "BuddyPoolsMetrics",
            dependencies: [
                "BuddyPools",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        .executableTarget(
            name: "buddypools",
            dependencies: [
                "BuddyPools",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .target(
            name: "CBenchSupport",
            path: "Benchmarks/CBenchSupport",
            linkerSettings: [.linkedLibrary("dl"), .linkedLibrary("numa")]
        ),
        .executableTarget(
            name: "BuddyBench",
            dependencies: [
                "BuddyPools",
                "CBenchSupport",
                "CNuma",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            path: "Benchmarks/BuddyBench"
        ),
        .executableTarget(
            name: "InstructionCount",
            dependencies: ["BuddyPools"],
            path: "Benchmarks/InstructionCount"
        ),
        .target(
            name: "CTestSupport",
            path: "Tests/CTestSupport"
        ),
        .testTarget(
            name: "BuddyPoolsTests",
            dependencies: ["BuddyPools", "CTestSupport", "CNuma"]
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
