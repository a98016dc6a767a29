// A Swift program that knows nothing of BuddyPools: arrays, strings, dictionaries and class
// instances churned to a known result. Under LD_PRELOAD=libBuddyPoolsMalloc.so it asks, through
// dlsym, whether its objects live in a pool. Exits 0 when the result and the check hold.
import Glibc

final class Node {
    let value: Int
    var next: Node?
    init(_ value: Int, next: Node?) { self.value = value; self.next = next }
}

var table: [String: [Int]] = [:]
for index in 0..<100_000 {
    table["key\(index % 5000)", default: []].append(index)
}
var list: Node?
for index in 0..<50_000 { list = Node(index, next: index % 3 == 0 ? nil : list) }
var text = ""
for index in 0..<20_000 { text += String(index, radix: 16) }
let sum = table.values.reduce(0) { $0 + $1.reduce(0, +) } + (list?.value ?? 0) + text.utf8.count

typealias PoolOf = @convention(c) (UnsafeRawPointer?) -> UnsafePointer<CChar>?
guard let symbol = dlsym(nil, "buddypools_pool_of") else {  // RTLD_DEFAULT
    print("libBuddyPoolsMalloc.so is not loaded")
    exit(2)
}
let poolOf = unsafeBitCast(symbol, to: PoolOf.self)
let objects = (0..<1000).map { Node($0, next: nil) }
let inPools = objects.filter { poolOf(Unmanaged.passUnretained($0).toOpaque()) != nil }.count
let expected = 4_999_950_000 + 49_999 + 75_632  // the indices, the last node, the hex digits of 0 ..< 20,000
print("sum \(sum) (expected \(expected)), \(inPools) of 1000 objects in a pool")
exit(sum == expected && inPools == 1000 ? 0 : 1)
