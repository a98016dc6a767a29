/// The reference model for randomized allocator tests: live blocks as sorted disjoint
/// intervals, each with a pattern written at its first and last word.
package struct LiveBlockModel {
    package init() {}

    package struct Block {
        package let address: UInt
        package let byteCount: Int
        package let tag: UInt64

        package init(address: UInt, byteCount: Int, tag: UInt64) {
            self.address = address
            self.byteCount = byteCount
            self.tag = tag
        }
    }

    package private(set) var blocks: [Block] = []  // sorted by address
    package private(set) var liveBytes = 0

    package var count: Int { blocks.count }
    package var isEmpty: Bool { blocks.isEmpty }

    /// Inserts a block; returns a description of the overlap if it overlaps a live one.
    package mutating func insert(_ block: Block) -> String? {
        var low = 0, high = blocks.count
        while low < high {
            let mid = (low + high) / 2
            if blocks[mid].address < block.address { low = mid + 1 } else { high = mid }
        }
        if low > 0 {
            let previous = blocks[low - 1]
            if previous.address + UInt(previous.byteCount) > block.address {
                return "block at 0x\(String(block.address, radix: 16)) overlaps live block at 0x\(String(previous.address, radix: 16)) (+\(previous.byteCount))"
            }
        }
        if low < blocks.count, block.address + UInt(block.byteCount) > blocks[low].address {
            return "block at 0x\(String(block.address, radix: 16)) (+\(block.byteCount)) overlaps live block at 0x\(String(blocks[low].address, radix: 16))"
        }
        blocks.insert(block, at: low)
        liveBytes += block.byteCount
        Self.writePattern(block)
        return nil
    }

    /// Removes the block at `index`, returning it.
    package mutating func remove(at index: Int) -> Block {
        let block = blocks.remove(at: index)
        liveBytes -= block.byteCount
        return block
    }

    package static func pattern(_ block: Block) -> (UInt64, UInt64) {
        (block.tag ^ 0xA5A5_5A5A_0F0F_F0F0, ~block.tag ^ UInt64(block.address))
    }

    package static func writePattern(_ block: Block) {
        let (head, tail) = pattern(block)
        let start = UnsafeMutableRawPointer(bitPattern: block.address)!
        start.storeBytes(of: head, as: UInt64.self)
        if block.byteCount >= 16 { (start + block.byteCount - 8).storeBytes(of: tail, as: UInt64.self) }
    }

    package static func patternIsIntact(_ block: Block) -> Bool {
        let (head, tail) = pattern(block)
        let start = UnsafeMutableRawPointer(bitPattern: block.address)!
        guard start.loadUnaligned(as: UInt64.self) == head else { return false }
        return block.byteCount < 16 || (start + block.byteCount - 8).loadUnaligned(as: UInt64.self) == tail
    }
}
