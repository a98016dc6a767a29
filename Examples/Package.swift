// swift-tools-version: 6.2
// Examples that need more than the library (Open MPI for the stencil), kept out of the root
// package so its build needs nothing but libnuma.
import Foundation
import PackageDescription

// SwiftPM names a path dependency after its directory, which is whatever the clone is called.
let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent.lowercased()
let buddyPools = Target.Dependency.product(name: "BuddyPools", package: root)

let package = Package(
    name: "BuddyPoolsExamples",
    dependencies: [
        .package(path: ".."),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        .systemLibrary(
            name: "COpenMPI",
            path: "Sources/COpenMPI",
            pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev"])]
        ),
        .executableTarget(name: "stencil-mpi", dependencies: [buddyPools, "COpenMPI"], path: "Sources/StencilMPI"),
        .executableTarget(
            name: "realtime-loop",
            dependencies: [buddyPools, .product(name: "Histogram", package: "hdrhistogram-swift")],
            path: "Sources/RealtimeLoop"
        ),
        .executableTarget(name: "dma-ring", dependencies: [buddyPools], path: "Sources/DMARing"),
        // The pools as the program's malloc by linking, not LD_PRELOAD (docs/malloc.md).
        .executableTarget(
            name: "linked-malloc", dependencies: [.product(name: "BuddyPoolsMalloc", package: root)], path: "Sources/LinkedMalloc"),
    ],
    swiftLanguageModes: [.v6]
)
