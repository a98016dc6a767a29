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
            set = try PoolSet(environment: environment)
        } catch {
            // A malloc cannot throw: say why once and start on the default pools.
            Self.report("BUDDYPOOLS is invalid (\(error)); using the default pools")
            set = try? PoolSet(environment: environment.filter { !$0.key.hasPrefix("BUDDYPOOLS") })
        }
        if set == nil { Self.report("no pool could be created; every request goes to the fallback (\(fallback.rawValue))") }
        self.set = set
        var named: MemoryPool?
        if let value = environment["BUDDYPOOLS_MALLOC"], value != "local" {
            named = set?[value]
            if named == nil {
                Self.report("BUDDYPOOLS_MALLOC=\(value) names no pool (pools: \(set?.pools.map(\.name).joined(separator: ", ") ?? "none")); using local")
            }
        }
        self.named = named
        cNames = (set?.pools ?? []).map { UInt(bitPattern: strdup($0.name)) }
    }

    /// One line on stderr (write(2): no stdio state shared with the program).
    static func report(_ message: String) {
        var line = "BuddyPools: \(message)\n"
        line.withUTF8 { bytes in _ = write(STDERR_FILENO, bytes.baseAddress, bytes.count) }
    }

    /// The pool that serves `buddypools_malloc` on this thread now.
    var servingPool: MemoryPool? { named ?? set?.localPool }

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

    static func systemAllocate(_ bytes: Int, alignment: Int) -> UnsafeMutableRawPointer? {
        if alignment <= 16 { return malloc(bytes) }
        var result: UnsafeMutableRawPointer?
        let status = posix_memalign(&result, max(alignment, MemoryLayout<UnsafeRawPointer>.size), bytes)
        if status != 0 { errno = status }
        return status == 0 ? result : nil
    }

    /// Frees a pointer of any pool of the set; a pointer of none goes to the system's free when
    /// the fallback may have made it, and otherwise stops the process.
    func free(_ pointer: UnsafeMutableRawPointer) {
        if let pool = set?.pool(holding: pointer) {
            pool.deallocate(pointer)
            return
        }
        guard fallback == .fail else {
            Glibc.free(pointer)
            return
        }
        Self.report("buddypools_free(0x\(String(UInt(bitPattern: pointer), radix: 16))): foreign pointer: not memory of any BuddyPools pool")
        abort()
    }

    /// The bytes a block holds, from its pool or the system's malloc.
    func usableSize(_ pointer: UnsafeMutableRawPointer) -> Int {
        if let pool = set?.pool(holding: pointer) { return pool.allocatedSize(of: pointer) ?? 0 }
        return fallback == .fail ? 0 : cbuddypools_system_usable_size(pointer)
    }
}
