// A Swift program that gets the pools as its malloc by linking the BuddyPoolsMalloc product,
// with no LD_PRELOAD: its Arrays, Strings, Dictionaries and class instances come from the
// process heap's pools (BUDDYPOOLS, BUDDYPOOLS_MALLOC; the default pools without them).
//
//   swift build -c release --product linked-malloc && .build/release/linked-malloc
//
// It knows nothing else of BuddyPools: buddypools_pool_of (found with dlsym) says where its
// objects live. Exits 0 when every check holds.
import Glibc

final class Particle {
    var position: (Double, Double, Double)
    let label: String
    init(_ index: Int) {
        position = (Double(index), Double(index) / 2, 0)
        label = "particle-\(index)-of-a-longer-name"
    }
}

typealias PoolOf = @convention(c) (UnsafeRawPointer?) -> UnsafePointer<CChar>?
guard let symbol = dlsym(nil, "buddypools_pool_of") else {  // RTLD_DEFAULT
    print("linked-malloc: buddypools_pool_of not found: the BuddyPoolsMalloc product is not linked")
    exit(2)
}
let poolOf = unsafeBitCast(symbol, to: PoolOf.self)

var particles = (0..<10_000).map(Particle.init)
var index: [String: Int] = [:]
for (position, particle) in particles.enumerated() { index[particle.label] = position }
particles.removeLast(5_000)
let total = particles.reduce(0.0) { $0 + $1.position.0 } + Double(index.count)

let objects = particles.prefix(1000).map { Unmanaged.passUnretained($0).toOpaque() }
let inPools = objects.filter { poolOf($0) != nil }.count
var buffer: [UInt8] = Array(repeating: 7, count: 100_000)
let bufferPool = buffer.withUnsafeBufferPointer { poolOf($0.baseAddress).map { String(cString: $0) } }
buffer[0] = 1

let expected = 12_497_500.0 + 10_000  // the x of the 5,000 kept particles, and every label indexed
print("linked-malloc: total \(total) (expected \(expected)), \(inPools) of 1000 objects in a pool, "
    + "a 100 kB array in pool \(bufferPool ?? "none")")
exit(total == expected && inPools == 1000 && bufferPool != nil ? 0 : 1)
