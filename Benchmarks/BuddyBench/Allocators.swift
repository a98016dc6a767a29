import BuddyPools
import CBenchSupport
import Glibc

/// What a workload needs from an allocator. Workloads are generic over it, so each loop is
/// specialized for one allocator and calls it directly, with no dynamic dispatch.
protocol BenchAllocator: Sendable {
    func allocate(_ size: Int) -> UnsafeMutableRawPointer?
    func deallocate(_ pointer: UnsafeMutableRawPointer, size: Int)
}

/// The process's malloc: glibc, or the peer LD_PRELOAD put in front of it.
struct MallocAllocator: BenchAllocator {
    @inline(__always) func allocate(_ size: Int) -> UnsafeMutableRawPointer? { malloc(size) }
    @inline(__always) func deallocate(_ pointer: UnsafeMutableRawPointer, size: Int) { free(pointer) }
}

/// A BuddyPools pool.
struct PoolAllocator: BenchAllocator {
    let pool: MemoryPool
    @inline(__always) func allocate(_ size: Int) -> UnsafeMutableRawPointer? { try? pool.allocate(byteCount: size) }
    @inline(__always) func deallocate(_ pointer: UnsafeMutableRawPointer, size: Int) { pool.deallocate(pointer) }
}

/// libnuma's numa_alloc_onnode / numa_free: an mmap and an mbind per call.
struct NumaAllocator: BenchAllocator {
    let node: Int32
    @inline(__always) func allocate(_ size: Int) -> UnsafeMutableRawPointer? { cbench_numa_alloc_onnode(size, node) }
    @inline(__always) func deallocate(_ pointer: UnsafeMutableRawPointer, size: Int) { cbench_numa_free(pointer, size) }
}

/// memkind through dlopen (MEMKIND_REGULAR: local nodes; MEMKIND_HUGETLB: reserved hugepages).
struct MemkindAllocator: BenchAllocator {
    let kind: Int32
    @inline(__always) func allocate(_ size: Int) -> UnsafeMutableRawPointer? { cbench_memkind_malloc(kind, size) }
    @inline(__always) func deallocate(_ pointer: UnsafeMutableRawPointer, size: Int) { cbench_memkind_free(kind, pointer) }
}

/// The cost of the workload itself: fixed slots of prefaulted hugepage-backed memory,
/// handed out from a stack. Not thread-safe: one per thread.
final class NullAllocator: BenchAllocator, @unchecked Sendable {
    // @unchecked: used by exactly one thread.
    private let region: Region
    private let slotBytes: Int
    private let stack: UnsafeMutablePointer<Int>
    private var top: Int

    init?(slotBytes: Int, slots: Int, node: Int) {
        let rounded = (slotBytes + 4095) / 4096 * 4096
        let bytes = (rounded * slots + (2 << 20) - 1) / (2 << 20) * (2 << 20)
        guard let region = try? Region(label: "null allocator", byteCount: bytes, nodes: [node], policy: .preferred, pageSize: .huge2M)
        else { return nil }
        self.region = region
        self.slotBytes = rounded
        stack = .allocate(capacity: slots)
        for index in 0..<slots { stack[index] = slots - 1 - index }
        top = slots
    }

    deinit { stack.deallocate() }

    @inline(__always) func allocate(_ size: Int) -> UnsafeMutableRawPointer? {
        guard top > 0 else { return nil }
        top -= 1
        return region.baseAddress + stack[top] * slotBytes
    }

    @inline(__always) func deallocate(_ pointer: UnsafeMutableRawPointer, size: Int) {
        stack[top] = (pointer - region.baseAddress) / slotBytes
        top += 1
    }
}
