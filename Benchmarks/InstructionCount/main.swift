import BuddyPools
import Glibc

// buddypools-count: the loops whose instructions scripts/count-instructions counts with callgrind.
// Each loop keeps 64 blocks live and replaces one per pair (free one, allocate one), as
// buddypools-bench's fixed scenarios do. Run it twice with different pair counts: the difference
// of the two totals over the difference of the counts is the cost of one pair, loop included,
// with set-up and tear-down cancelled out.
//
//   buddypools-count SCENARIO PAIRS
//
// SCENARIO: 4K (alignment 16), 4K-aligned (alignment 4096), 64K, 64K-aligned, 2M, 16M.

/// Keeps the optimizer from proving the pointer unused.
@inline(never)
func escape(_ pointer: UnsafeMutableRawPointer) {
    withExtendedLifetime(pointer) {}
}

let arguments = CommandLine.arguments
guard arguments.count == 3, let pairs = Int(arguments[2]), pairs > 0 else {
    print("usage: buddypools-count 4K|4K-aligned|64K|64K-aligned|2M|16M PAIRS")
    exit(2)
}
let scenarios: [String: (size: Int, alignment: Int)] = [
    "4K": (4 << 10, 16), "4K-aligned": (4 << 10, 4096), "64K": (64 << 10, 16), "64K-aligned": (64 << 10, 4096),
    "2M": (2 << 20, 16), "16M": (16 << 20, 4096),
]
guard let (size, alignment) = scenarios[arguments[1]] else {
    print("unknown scenario \(arguments[1]); one of \(scenarios.keys.sorted().joined(separator: ", "))")
    exit(2)
}

var configuration = PoolConfiguration(name: "count", capacity: max(64 << 20, (size * 80 + (2 << 20) - 1) / (2 << 20) * (2 << 20)))
configuration.pageSize = .transparent
let pool = try MemoryPool(configuration: configuration)
let live = 64
var slots: [UnsafeMutableRawPointer] = []
for _ in 0..<live { slots.append(try pool.allocate(byteCount: size, alignment: alignment)) }
slots.withUnsafeMutableBufferPointer { slots in
    for index in 0..<pairs {
        let slot = index & (live - 1)
        pool.deallocate(slots[slot])
        guard let pointer = try? pool.allocate(byteCount: size, alignment: alignment) else { exit(1) }
        escape(pointer)
        slots[slot] = pointer
    }
}
for pointer in slots { pool.deallocate(pointer) }
