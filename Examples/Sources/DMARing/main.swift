// A DMA-style buffer ring: buffers larger than a superblock from contiguous runs that never
// cross a 4 GiB boundary (a device that keeps the upper 32 address bits fixed per transfer),
// filled by a producer and checked by a consumer. Exits 1 on any violation.
//
//   .build/release/dma-ring
import BuddyPools
import Glibc

let bufferBytes = 6 << 20
let ringSize = 8
let boundary = 1 << 32

var configuration = PoolConfiguration(name: "dma", capacity: 64 << 20)
configuration.pageSize = .huge2M
let pool = try MemoryPool(configuration: configuration)

var ring: [UnsafeMutableRawPointer] = []
for _ in 0..<ringSize {
    ring.append(try pool.allocateContiguous(byteCount: bufferBytes, alignment: 2 << 20, boundary: boundary))
}
var failures = 0
for (index, buffer) in ring.enumerated() {
    let start = UInt(bitPattern: buffer), end = start + UInt(bufferBytes) - 1
    if start >> 32 != end >> 32 { failures += 1; print("buffer \(index) crosses a 4 GiB boundary") }
    if start % (2 << 20) != 0 { failures += 1; print("buffer \(index) is not 2 MiB aligned") }
}
// Producer and consumer go round the ring a few times.
for lap in 0..<4 {
    for (index, buffer) in ring.enumerated() {
        let words = buffer.bindMemory(to: UInt64.self, capacity: bufferBytes / 8)
        for word in 0..<(bufferBytes / 8) { words[word] = UInt64(lap &* 131 &+ index &* 7 &+ word) }
    }
    for (index, buffer) in ring.enumerated() {
        let words = buffer.bindMemory(to: UInt64.self, capacity: bufferBytes / 8)
        for word in stride(from: 0, to: bufferBytes / 8, by: 4099) where words[word] != UInt64(lap &* 131 &+ index &* 7 &+ word) {
            failures += 1
        }
    }
}
let first = UInt(bitPattern: ring[0])
print("dma-ring: \(ringSize) buffers of \(bufferBytes >> 20) MiB, 2 MiB aligned, none crossing a 4 GiB boundary (upper 32 bits 0x\(String(first >> 32, radix: 16))); backed by \(pool.regions[0].pageSize); \(failures) failures")
for buffer in ring { pool.deallocate(buffer, byteCount: bufferBytes) }
exit(failures == 0 ? 0 : 1)
