import BuddyPools
import FuzzSupport
import Glibc

// Pool operations under libFuzzer, checked against a model after every step. The first byte
// picks the options of the two pools (a high-priority borrower and its lender); the rest is a
// sequence of operations (OperationDecoder). After each operation: every live block is aligned,
// inside its pool, disjoint from the others and holds the tag written into it; both pools pass
// checkInvariants; usedBytes is exactly the sum of the live blocks' sizes. At the end everything
// is freed, and both pools must be whole again. Any violation stops the process (a finding).

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPoolOperations(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    var decoder = OperationDecoder(UnsafeBufferPointer(start: data, count: size))
    guard let options = decoder.byte() else { return 0 }
    guard let model = PoolModel(options: options) else { return 0 }
    var steps = 0
    while steps < 400, let operation = decoder.operation() {
        model.apply(operation)
        model.check(after: operation)
        steps += 1
    }
    model.finish()
    return 0
}

/// A declaration under --sanitize=fuzzer (parsed as a library: libFuzzer's main runs); top-level
/// code in a normal build, where it replays the files given on the command line.
let replayed: Int32 = { exit(FuzzReplay.run(CommandLine.arguments, fuzzPoolOperations)) }()
