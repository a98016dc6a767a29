import BuddyPools
import Glibc

// buddypools-count: the loops whose instructions scripts/count-instructions counts with callgrind.
// Each loop keeps 64 blocks live and replaces one per pair (free one, allocate one), as
// buddypools-bench's fixed scenarios do, with the size and alignment written as literals, as a
// user writes them. Run it twice with different pair counts: the difference of the two totals
// over the difference of the counts is the cost of one pair, loop included, with set-up and
// tear-down cancelled out.
//
//   buddypools-count SCENARIO PAIRS
//
// SCENARIO: 4K (alignment 16), 4K-aligned (alignment 4096), 64K, 64K-aligned, 2M, 16M (4096),
// 4K-nocache (4K on a pool with its caches off: the pool lock's path); objects below a page:
// 24 (24 bytes, alignment 16) and small (sizes 16 B ... 1 KiB from an inline xorshift, as
// buddypools-bench's small-1t draws them); 24-growth: PAIRS 24-byte objects allocated and all
// kept, then freed (a heap growing to millions of objects: each pair is one allocation made
// while up to PAIRS are live, and its free); 20K (five pages, a 32 KiB buddy block) and
// 20K-exact (the same on a fit=exact pool: five pages kept, the tail given back, the pool lock
// on both sides); mixed (mixed-1t's sizes, 4 KiB ... 4 MiB, 256 live, nothing touched).

/// Keeps the optimizer from proving the pointer unused.
@inline(never)
func escape(_ pointer: UnsafeMutableRawPointer) {
    withExtendedLifetime(pointer) {}
}

/// The fixed-size loop of buddypools-bench: free one of 64 live blocks, allocate one in its place.
@inline(__always)
func replaceLoop(_ pool: MemoryPool, pairs: Int, _ allocate: (MemoryPool) -> UnsafeMutableRawPointer?) -> Bool {
    let live = 64
    let slots = UnsafeMutablePointer<UnsafeMutableRawPointer>.allocate(capacity: live)
    defer { slots.deallocate() }
    for index in 0..<live {
        guard let pointer = allocate(pool) else { return false }
        slots[index] = pointer
    }
    for index in 0..<pairs {
        let slot = index & (live - 1)
        pool.deallocate(slots[slot])
        guard let pointer = allocate(pool) else { return false }
        escape(pointer)
        slots[slot] = pointer
    }
    for index in 0..<live { pool.deallocate(slots[index]) }
    return true
}

/// Random sizes of 16 B ... 1 KiB from an inline xorshift.
@inline(__always)
func smallLoop(_ pool: MemoryPool, pairs: Int) -> Bool {
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    return replaceLoop(pool, pairs: pairs) { pool in
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return try? pool.allocate(byteCount: 16 + Int(truncatingIfNeeded: state % 1009))
    }
}

/// buddypools-bench's mixed-1t without its memory: 256 live blocks of 4 KiB ... 4 MiB, a random
/// one replaced per pair. Sizes from an inline xorshift, uniform within a power of two drawn
/// uniformly from 2^12 ... 2^21 (close to the bench's log-uniform draw without its exp2); no
/// byte touched, so the count is the allocator's and the loop's.
@inline(never)
func mixedLoop(_ pool: MemoryPool, pairs: Int) -> Bool {
    let live = 256
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    @inline(__always) func draw() -> Int {
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        let shift = 12 + Int(truncatingIfNeeded: state % 10)
        return (1 << shift) + Int(truncatingIfNeeded: (state >> 32) & ((1 << shift) - 1))
    }
    let slots = UnsafeMutablePointer<UnsafeMutableRawPointer>.allocate(capacity: live)
    defer { slots.deallocate() }
    for index in 0..<live {
        guard let pointer = try? pool.allocate(byteCount: draw()) else { return false }
        slots[index] = pointer
    }
    for _ in 0..<pairs {
        let slot = Int(truncatingIfNeeded: (state >> 40) & UInt64(live - 1))
        pool.deallocate(slots[slot])
        guard let pointer = try? pool.allocate(byteCount: draw()) else { return false }
        escape(pointer)
        slots[slot] = pointer
    }
    for index in 0..<live { pool.deallocate(slots[index]) }
    return true
}

/// Allocates `count` 24-byte objects, keeping every one, then frees them all.
func growthLoop(_ pool: MemoryPool, count: Int) -> Bool {
    let slots = UnsafeMutablePointer<UnsafeMutableRawPointer>.allocate(capacity: count)
    defer { slots.deallocate() }
    for index in 0..<count {
        guard let pointer = try? pool.allocate(byteCount: 24) else { return false }
        slots[index] = pointer
    }
    for index in 0..<count { pool.deallocate(slots[index]) }
    return true
}

/// 20 KiB requests, in a function of their own: one more inlined `allocate` in `run` made the
/// optimizer stop inlining the others there (+28 instructions a pair on 4K-nocache).
@inline(never)
func pageMultipleLoop(_ pool: MemoryPool, pairs: Int) -> Bool {
    replaceLoop(pool, pairs: pairs) { try? $0.allocate(byteCount: 20 << 10) }
}

@inline(never)
func run(_ scenario: String, pool: MemoryPool, pairs: Int) -> Bool? {
    switch scenario {
    case "4K": replaceLoop(pool, pairs: pairs) { try? $0.allocate(byteCount: 4 << 10) }
    case "4K-aligned": replaceLoop(pool, pairs: pairs) { try? $0.allocate(byteCount: 4 << 10, alignment: 4096) }
    case "64K": replaceLoop(pool, pairs: pairs) { try? $0.allocate(byteCount: 64 << 10) }
    case "64K-aligned": replaceLoop(pool, pairs: pairs) { try? $0.allocate(byteCount: 64 << 10, alignment: 4096) }
    case "2M": replaceLoop(pool, pairs: pairs) { try? $0.allocate(byteCount: 2 << 20) }
    case "16M": replaceLoop(pool, pairs: pairs) { try? $0.allocate(byteCount: 16 << 20, alignment: 4096) }
    case "4K-nocache": replaceLoop(pool, pairs: pairs) { try? $0.allocate(byteCount: 4 << 10) }
    case "24": replaceLoop(pool, pairs: pairs) { try? $0.allocate(byteCount: 24) }
    case "small": smallLoop(pool, pairs: pairs)
    case "24-growth": growthLoop(pool, count: pairs)
    case "20K", "20K-exact": pageMultipleLoop(pool, pairs: pairs)
    case "mixed": mixedLoop(pool, pairs: pairs)
    default: nil
    }
}

let arguments = CommandLine.arguments
guard arguments.count == 3, let pairs = Int(arguments[2]), pairs > 0 else {
    print("usage: buddypools-count 4K|4K-aligned|64K|64K-aligned|2M|16M|4K-nocache|24|small|24-growth|20K|20K-exact|mixed PAIRS")
    exit(2)
}
// The default configuration except the size (enough for 80 blocks of the largest scenario) and
// transparent pages, so no hugepages need reserving to count.
var configuration = PoolConfiguration(name: "count", capacity: 1 << 30)
configuration.pageSize = .transparent
configuration.cache.enabled = !arguments[1].hasSuffix("-nocache")
if arguments[1].hasSuffix("-exact") { configuration.fit = .exact }
let pool = try MemoryPool(configuration: configuration)
switch run(arguments[1], pool: pool, pairs: pairs) {
case true?: break
case false?: print("allocation failed"); exit(1)
case nil: print("unknown scenario \(arguments[1])"); exit(2)
}
