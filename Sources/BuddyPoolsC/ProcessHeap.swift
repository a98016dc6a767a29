import BuddyConfig
import BuddySystem
import CBuddyPools
import Glibc
import MemoryPools

/// What `buddypools_malloc` does when its pool is out of memory (`BUDDYPOOLS_MALLOC_FALLBACK`).
enum MallocFallback: String, CaseIterable, Sendable {
    /// The other pools by NUMA distance, then the system's malloc.
    case next
    /// The system's malloc at once.
    case system
    /// NULL with ENOMEM: a hard limit.
    case fail
}

/// The process's pools as the C API serves them: built once, on the first call, from the
/// environment, and kept for the life of the process (C callers hold raw pointers into them).
final class ProcessHeap: Sendable {
    let set: PoolSet?
    /// The pool `BUDDYPOOLS_MALLOC` names; nil: the pool of the calling CPU's node.
    let named: MemoryPool?
    let fallback: MallocFallback
    /// The set's one pool, when it has one: no CPU lookup per call, and every pool address is
    /// its (nothing to lend to). Unmanaged: the set keeps it alive for the process's life,
    /// and a pool's retain count lives in a side table (it is weakly referenced), so a retain
    /// per malloc cost more than the allocation (perf, Python under LD_PRELOAD).
    let onlyPool: Unmanaged<MemoryPool>?
    /// Each pool's name as a C string for `buddypools_pool_of`, by position in `set.pools`.
    /// Never freed: callers may keep the pointers.
    private let cNames: [UInt]

    static let shared = ProcessHeap(environment: ProcessEnvironment.current())

    init(environment: [String: String]) {
        var fallback = MallocFallback.next
        if let value = environment["BUDDYPOOLS_MALLOC_FALLBACK"] {
            if let parsed = MallocFallback(rawValue: value) {
                fallback = parsed
            } else {
                Self.report("BUDDYPOOLS_MALLOC_FALLBACK=\(value) is not one of next, system, fail; using next")
            }
        }
        self.fallback = fallback
        let set: PoolSet?
        do {
            let defaults = environment["BUDDYPOOLS"] == nil
            set = try PoolSet(environment: environment) { Self.heapConfiguration(&$0, defaults: defaults) }
        } catch {
            // A malloc cannot throw: say why once and start on the default pools.
            Self.report("BUDDYPOOLS is invalid (\(error)); using the default pools")
            set = try? PoolSet(environment: environment.filter { !$0.key.hasPrefix("BUDDYPOOLS") }) { Self.heapConfiguration(&$0, defaults: true) }
        }
        if set == nil { Self.report("no pool could be created; every request goes to the fallback (\(fallback.rawValue))") }
        self.set = set
        // Frees of the malloc library tell pool memory from the system's by these ranges.
        for pool in set?.pools ?? [] {
            for region in pool.regions {
                let start = UInt(bitPattern: region.baseAddress)
                cbuddypools_add_range(start, start + UInt(region.byteCount))
            }
        }
        var named: MemoryPool?
        if let value = environment["BUDDYPOOLS_MALLOC"], value != "local" {
            named = set?[value]
            if named == nil {
                Self.report("BUDDYPOOLS_MALLOC=\(value) names no pool (pools: \(set?.pools.map(\.name).joined(separator: ", ") ?? "none")); using local")
            }
        }
        self.named = named
        onlyPool = set.flatMap { $0.pools.count == 1 && named == nil ? Unmanaged.passUnretained($0.pools[0]) : nil }
        cNames = (set?.pools ?? []).map { UInt(bitPattern: strdup($0.name)) }
    }

    /// One line on stderr (write(2): no stdio state shared with the program).
    /// What a process's heap needs of every pool: kept across fork (a shell or Python's
    /// subprocess forks and goes on allocating and freeing what the parent made), its base and
    /// transparent pages left to fault in (every child process of a preloaded program makes its
    /// own pools; populating each at startup would cost time and memory it may never use), and
    /// no placement sampling of pages that are not there yet. The default pools use
    /// transparent hugepages: a fork child's copy-on-write of private hugetlb pages needs spare
    /// reserved pages, and without them the kernel kills the child (`page=2M` in BUDDYPOOLS
    /// still asks for them).
    static func heapConfiguration(_ configuration: inout PoolConfiguration, defaults: Bool) {
        if defaults { configuration.pageSize = .transparent }
        configuration.keptAcrossFork = true
        configuration.populatedAtCreation = false
        if !configuration.pageSize.isHugetlb { configuration.placementCheck = .off }
    }

    /// One line on stderr (write(2): no stdio state shared with the program).
    static func report(_ message: String) {
        var line = "BuddyPools: \(message)\n"
        line.withUTF8 { bytes in _ = write(STDERR_FILENO, bytes.baseAddress, bytes.count) }
    }

    /// The pool holding a pointer, from a search of the set (more than one pool).
    func holder(of pointer: UnsafeMutableRawPointer) -> MemoryPool? { set?.pool(holding: pointer) }

    /// `malloc` and `aligned_alloc`: the serving pool, then the fallback. A set with one pool
    /// and no BUDDYPOOLS_MALLOC tries that pool's caches with no retain of it (the pool's
    /// retain count lives in a side table: a retain and release per malloc cost about 190 of
    /// the 620 instructions of a small pair, callgrind); the rest, pressure ladder and
    /// fallback, once when they miss.
    @inline(__always)
    func allocate(_ byteCount: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        if let onlyPool {
            return onlyPool._withUnsafeGuaranteedRef { pool in
                if byteCount > 0, let pointer = pool.allocateFromCaches(byteCount: byteCount, alignment: alignment) { return pointer }
                return allocate(byteCount, alignment: alignment, from: pool, fallsBack: true)
            }
        }
        return allocate(byteCount, alignment: alignment, from: named ?? set?.localPool, fallsBack: true)
    }

    /// The pools to try after `first` ran dry, nearest node first.
    func others(after first: MemoryPool) -> [MemoryPool] {
        guard let set else { return [] }
        let home = first.nodes.first ?? 0
        return set.pools.filter { $0 !== first }.sorted {
            (set.topology.distance(from: home, to: $0.nodes.first ?? 0) ?? Int.max)
                < (set.topology.distance(from: home, to: $1.nodes.first ?? 0) ?? Int.max)
        }
    }

    /// The C name of the pool holding `address`, or nil.
    func cName(holding pointer: UnsafeRawPointer) -> UnsafePointer<CChar>? {
        guard let set, let pool = set.pool(holding: pointer), let index = set.pools.firstIndex(where: { $0 === pool }) else { return nil }
        return UnsafePointer(bitPattern: cNames[index])
    }

    /// `byteCount` bytes aligned to `alignment` from `pool` or, when it is out of memory, as the
    /// fallback says (`fallsBack` false: that pool only). Sets errno on failure.
    func allocate(_ byteCount: Int, alignment: Int, from pool: MemoryPool?, fallsBack: Bool) -> UnsafeMutableRawPointer? {
        guard byteCount >= 0 else {
            errno = ENOMEM  // a size_t above Int.max
            return nil
        }
        let bytes = max(byteCount, 1)  // malloc(0) is a unique pointer
        if let pool {
            // The inlined fast path (a thread's magazine or object heap); when it misses, the
            // Result path (the pressure ladder once), whose error says why it failed.
            if let pointer = pool.allocateFromCaches(byteCount: bytes, alignment: alignment) { return pointer }
            switch pool.tryAllocate(byteCount: bytes, alignment: alignment) {
            case .success(let pointer): return pointer
            case .failure(let error):
                // A size no pool could hold is ENOMEM, as for malloc; a bad alignment EINVAL.
                if case .invalidRequest = error {
                    errno = alignment > 0 && alignment & (alignment - 1) == 0 ? ENOMEM : EINVAL
                    return nil
                }
            }
        }
        guard fallsBack else {
            errno = ENOMEM
            return nil
        }
        switch fallback {
        case .fail:
            errno = ENOMEM
            return nil
        case .next:
            if let pool {
                for other in others(after: pool) {
                    if case .success(let pointer) = other.tryAllocate(byteCount: bytes, alignment: alignment) { return pointer }
                }
            }
            return Self.systemAllocate(bytes, alignment: alignment)
        case .system:
            return Self.systemAllocate(bytes, alignment: alignment)
        }
    }

    /// glibc's own allocator (never an interposer, so the malloc library cannot recurse).
    static func systemAllocate(_ bytes: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        let pointer = alignment <= 16 ? cbuddypools_system_malloc(bytes) : cbuddypools_system_memalign(alignment, bytes)
        if pointer == nil { errno = ENOMEM }
        return pointer
    }

    /// Frees a pointer of any pool of the set; a pointer of none goes to the system's free when
    /// the fallback may have made it, and otherwise stops the process.
    func free(_ pointer: UnsafeMutableRawPointer) {
        if let onlyPool {
            if cbuddypools_in_pool_range(pointer) != 0 {
                onlyPool._withUnsafeGuaranteedRef { $0.deallocate(pointer) }
                return
            }
        } else if let pool = holder(of: pointer) {
            pool.deallocate(pointer)
            return
        }
        guard fallback == .fail else {
            cbuddypools_system_free(pointer)
            return
        }
        Self.report("buddypools_free(0x\(String(UInt(bitPattern: pointer), radix: 16))): foreign pointer: not memory of any BuddyPools pool")
        abort()
    }

    /// `free` of a pointer already known to be in a pool's range (the malloc library checked).
    func freeInPoolRange(_ pointer: UnsafeMutableRawPointer) {
        // Invariant: the caller found the pointer in a range cbuddypools_add_range registered.
        assert(cbuddypools_in_pool_range(pointer) != 0, "freeInPoolRange of a pointer outside every pool")
        if let onlyPool {
            onlyPool._withUnsafeGuaranteedRef { $0.deallocate(pointer) }
        } else {
            free(pointer)
        }
    }

    /// The bytes a block holds, from its pool or the system's malloc.
    /// `realloc`'s growth without a copy: the pool holding `pointer` grows its block in place.
    func resizeInPlace(_ pointer: UnsafeMutableRawPointer, byteCount: Int) -> Bool {
        if let onlyPool, cbuddypools_in_pool_range(pointer) != 0 {
            return onlyPool._withUnsafeGuaranteedRef { $0.resizeInPlace(pointer, byteCount: byteCount) }
        }
        return holder(of: pointer)?.resizeInPlace(pointer, byteCount: byteCount) ?? false
    }

    func usableSize(_ pointer: UnsafeMutableRawPointer) -> Int {
        if let onlyPool, cbuddypools_in_pool_range(pointer) != 0 {
            return onlyPool._withUnsafeGuaranteedRef { $0.allocatedSize(of: pointer) } ?? 0
        }
        if let pool = holder(of: pointer) { return pool.allocatedSize(of: pointer) ?? 0 }
        return fallback == .fail ? 0 : cbuddypools_system_usable_size(pointer)
    }
}
