import BuddyPools
import CBenchSupport
import Glibc

/// What a workload needs from an allocator. Workloads are generic over it, so each loop is
/// specialized for one allocator and calls it directly, with no dynamic dispatch.
protocol BenchAllocator: Sendable {
    func allocate(_ size: Int) -> UnsafeMutableRawPointer?
    /// `size` bytes aligned to `alignment` (a power of two, at most a page in the scenarios).
    func allocate(_ size: Int, alignment: Int) -> UnsafeMutableRawPointer?
    func deallocate(_ pointer: UnsafeMutableRawPointer, size: Int)
}

/// The process's malloc: glibc, or the peer LD_PRELOAD put in front of it.
struct MallocAllocator: BenchAllocator {
    @inline(__always) func allocate(_ size: Int) -> UnsafeMutableRawPointer? { malloc(size) }
    @inline(__always) func allocate(_ size: Int, alignment: Int) -> UnsafeMutableRawPointer? { aligned_alloc(alignment, size) }
    @inline(__always) func deallocate(_ pointer: UnsafeMutableRawPointer, size: Int) { free(pointer) }
}

/// A BuddyPools pool, called as users write it: `allocate(byteCount:)` with its default
/// alignment, or `allocate(byteCount:alignment:)`.
struct PoolAllocator: BenchAllocator {
    let pool: MemoryPool
    @inline(__always) func allocate(_ size: Int) -> UnsafeMutableRawPointer? { try? pool.allocate(byteCount: size) }
    @inline(__always) func allocate(_ size: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        try? pool.allocate(byteCount: size, alignment: alignment)
    }
    @inline(__always) func deallocate(_ pointer: UnsafeMutableRawPointer, size: Int) { pool.deallocate(pointer) }
}

/// libnuma's numa_alloc_onnode / numa_free: an mmap and an mbind per call (page-aligned anyway).
struct NumaAllocator: BenchAllocator {
    let node: Int32
    @inline(__always) func allocate(_ size: Int) -> UnsafeMutableRawPointer? { cbench_numa_alloc_onnode(size, node) }
    @inline(__always) func allocate(_ size: Int, alignment: Int) -> UnsafeMutableRawPointer? { cbench_numa_alloc_onnode(size, node) }
    @inline(__always) func deallocate(_ pointer: UnsafeMutableRawPointer, size: Int) { cbench_numa_free(pointer, size) }
}

/// memkind through dlopen (MEMKIND_REGULAR: local nodes; MEMKIND_HUGETLB: reserved hugepages).
struct MemkindAllocator: BenchAllocator {
    let kind: Int32
    @inline(__always) func allocate(_ size: Int) -> UnsafeMutableRawPointer? { cbench_memkind_malloc(kind, size) }
    @inline(__always) func allocate(_ size: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        cbench_memkind_posix_memalign(kind, alignment, size)
    }
    @inline(__always) func deallocate(_ pointer: UnsafeMutableRawPointer, size: Int) { cbench_memkind_free(kind, pointer) }
}

/// The cost of the workload itself: an allocator that does nothing but pop and push stacks of
/// prefaulted slots, one stack per power-of-two size, so its memory is laid out as a buddy
/// allocator's would be (blocks rounded to a power of two) and the loop touches memory the way
/// it does with any allocator. Not thread-safe: one per thread.
final class NullAllocator: BenchAllocator, @unchecked Sendable {
    // @unchecked: used by exactly one thread.
    private let region: Region
    private let minShift: Int
    private let classes: Int
    private let slotsPerClass: Int
    /// log2(slotsPerClass * 4096): a slot's class follows from its offset with a shift.
    private let setShift: Int
    /// Per class, a stack of free slot addresses, and its height.
    private let stacks: UnsafeMutablePointer<UnsafeMutableRawPointer>
    private let heights: UnsafeMutablePointer<Int>

    /// Slots for sizes up to `maxSize` (from 4 KiB up): at least `slots` of each power of two.
    init?(maxSize: Int, slots: Int, node: Int) {
        minShift = 12
        let maxShift = max(minShift, Int.bitWidth - (max(maxSize, 4096) - 1).leadingZeroBitCount)
        classes = maxShift - minShift + 1
        let slotsPerClass = 1 << (Int.bitWidth - (max(slots, 2) - 1).leadingZeroBitCount)
        self.slotsPerClass = slotsPerClass
        setShift = slotsPerClass.trailingZeroBitCount + minShift
        let perSet = (0..<classes).reduce(0) { $0 + (4096 << $1) }
        let bytes = (perSet * slotsPerClass + (2 << 20) - 1) / (2 << 20) * (2 << 20)
        guard let region = try? Region(label: "null allocator", byteCount: bytes, nodes: [node], policy: .preferred, pageSize: .huge2M)
        else { return nil }
        self.region = region
        stacks = .allocate(capacity: classes * slotsPerClass)
        heights = .allocate(capacity: classes)
        var offset = 0
        for index in 0..<classes {
            for slot in 0..<slotsPerClass {
                stacks[index * slotsPerClass + slot] = region.baseAddress + offset
                offset += 4096 << index
            }
            heights[index] = slotsPerClass
        }
    }

    deinit {
        stacks.deallocate()
        heights.deallocate()
    }

    @inline(__always) private func sizeClass(_ size: Int) -> Int {
        max(0, Int.bitWidth - (size &- 1).leadingZeroBitCount - minShift)
    }

    @inline(__always) func allocate(_ size: Int) -> UnsafeMutableRawPointer? {
        var index = sizeClass(size)
        // A class that ran dry borrows a slot of a larger one (rare: slots cover the live set).
        while index < classes, heights[index] == 0 { index += 1 }
        guard index < classes else { return nil }
        heights[index] -= 1
        return stacks[index * slotsPerClass + heights[index]]
    }

    @inline(__always) func allocate(_ size: Int, alignment: Int) -> UnsafeMutableRawPointer? { allocate(size) }

    @inline(__always) func deallocate(_ pointer: UnsafeMutableRawPointer, size: Int) {
        // Class i starts at (2^i - 1) sets of slots: its class follows from the offset.
        let sets = (pointer - region.baseAddress) >> setShift
        let index = Int.bitWidth - 1 - (sets + 1).leadingZeroBitCount
        stacks[index * slotsPerClass + heights[index]] = pointer
        heights[index] += 1
    }
}
