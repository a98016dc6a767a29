import BuddyCore
import CNuma
import Glibc

/// Mappings, memory policy and advice: each call wrapped once, its errno kept in a
/// `SystemError`, EINTR retried where the kernel can return it (MADV_POPULATE_WRITE).
package enum MemoryCalls {
    /// Address space only: PROT_NONE, nothing committed.
    package static func reserveAddressSpace(_ length: Int) -> Result<UnsafeMutableRawPointer, SystemError> {
        if let code = SystemCallFaults.injected(.mmap) { return .failure(.call(.mmap, "PROT_NONE, \(formatBytes(length))", errno: code)) }
        guard let pointer = cnuma_reserve_address_space(length) else {
            return .failure(.call(.mmap, "PROT_NONE, \(formatBytes(length))", errno: errno))
        }
        SystemCallFaults.noteMapping(length)
        return .success(pointer)
    }

    /// Read-write anonymous memory in place of a reservation (MAP_FIXED); `hugePageShift` 21 or
    /// 30 asks for hugetlb pages of that size, 0 for normal pages.
    package static func mapFixed(_ address: UnsafeMutableRawPointer, _ length: Int, hugePageShift: Int32) -> Result<Void, SystemError> {
        let detail = hugePageShift > 0 ? "MAP_HUGETLB \(formatBytes(1 << Int(hugePageShift))) pages, \(formatBytes(length))" : formatBytes(length)
        if let code = SystemCallFaults.injected(.mmap) { return .failure(.call(.mmap, detail, errno: code)) }
        guard cnuma_map_fixed(address, length, hugePageShift) != nil else { return .failure(.call(.mmap, detail, errno: errno)) }
        return .success(())
    }

    /// Makes a reserved range readable and writable (mprotect), committing it: under strict
    /// overcommit (`vm.overcommit_memory=2`) the kernel charges it now and may refuse (ENOMEM).
    package static func commit(_ address: UnsafeMutableRawPointer, _ length: Int) -> Result<Void, SystemError> {
        if let code = SystemCallFaults.injected(.mprotect) { return .failure(.call(.mprotect, "PROT_READ|PROT_WRITE, \(formatBytes(length))", errno: code)) }
        guard cnuma_commit(address, length) == 0 else {
            return .failure(.call(.mprotect, "PROT_READ|PROT_WRITE, \(formatBytes(length))", errno: errno))
        }
        return .success(())
    }

    package static func unmap(_ address: UnsafeMutableRawPointer, _ length: Int) -> Result<Void, SystemError> {
        if let code = SystemCallFaults.injected(.munmap) { return .failure(.call(.munmap, formatBytes(length), errno: code)) }
        guard cnuma_unmap(address, length) == 0 else { return .failure(.call(.munmap, formatBytes(length), errno: errno)) }
        SystemCallFaults.noteMapping(-length)
        return .success(())
    }

    /// mbind(2) of the range to `nodes` with a kernel policy mode (MPOL_*) and flags (MPOL_MF_*).
    package static func bind(
        _ address: UnsafeMutableRawPointer, _ length: Int, mode: Int32, nodes: NodeSet, flags: UInt32 = 0
    ) -> Result<Void, SystemError> {
        let maskBits = ((nodes.last ?? 0) / 64 + 1) * 64
        let mask = nodes.maskWords(bitCount: maskBits)
        let detail = "\(PolicyMode.name(mode)), nodes \(nodes)\(flags & UInt32(CNUMA_MPOL_MF_MOVE) != 0 ? ", MPOL_MF_MOVE" : "")"
        if let code = SystemCallFaults.injected(.mbind) { return .failure(.call(.mbind, detail, errno: code)) }
        while true {
            let result = mask.withUnsafeBufferPointer {
                cnuma_mbind(address, length, mode, $0.baseAddress, UInt(maskBits + 1), flags)
            }
            if result == 0 { return .success(()) }
            if errno != EINTR { return .failure(.call(.mbind, detail, errno: errno)) }
        }
    }

    package static func advise(_ address: UnsafeMutableRawPointer, _ length: Int, _ advice: MemoryAdvice) -> Result<Void, SystemError> {
        if let code = SystemCallFaults.injected(.madvise, advice: advice) {
            return .failure(.call(.madvise, "\(advice), \(formatBytes(length))", errno: code))
        }
        let native: cnuma_advice = switch advice {
        case .hugepage: CNUMA_ADVISE_HUGEPAGE
        case .noHugepage: CNUMA_ADVISE_NOHUGEPAGE
        case .populateWrite: CNUMA_ADVISE_POPULATE_WRITE
        case .dontFork: CNUMA_ADVISE_DONTFORK
        case .doFork: CNUMA_ADVISE_DOFORK
        case .dontNeed: CNUMA_ADVISE_DONTNEED
        }
        while true {
            if cnuma_advise(address, length, native) == 0 { return .success(()) }
            // MADV_POPULATE_WRITE returns EINTR when a signal arrives while it faults pages in.
            if errno != EINTR { return .failure(.call(.madvise, "\(advice), \(formatBytes(length))", errno: errno)) }
        }
    }

    package static func lock(_ address: UnsafeMutableRawPointer, _ length: Int) -> Result<Void, SystemError> {
        if let code = SystemCallFaults.injected(.mlock) { return .failure(.call(.mlock, formatBytes(length), errno: code)) }
        guard cnuma_lock(address, length) == 0 else { return .failure(.call(.mlock, formatBytes(length), errno: errno)) }
        return .success(())
    }

    package static func unlock(_ address: UnsafeMutableRawPointer, _ length: Int) -> Result<Void, SystemError> {
        if let code = SystemCallFaults.injected(.munlock) { return .failure(.call(.munlock, formatBytes(length), errno: code)) }
        guard cnuma_unlock(address, length) == 0 else { return .failure(.call(.munlock, formatBytes(length), errno: errno)) }
        return .success(())
    }

    /// One write per `pageSize` bytes: faults the range in where MADV_POPULATE_WRITE is missing.
    package static func touchPages(_ address: UnsafeMutableRawPointer, _ length: Int, pageSize: Int) {
        cnuma_touch_pages(address, length, pageSize)
    }
}

/// The kernel's memory policy modes, as mbind(2) takes them.
package enum PolicyMode {
    package static let preferred = Int32(CNUMA_MPOL_PREFERRED)
    package static let bind = Int32(CNUMA_MPOL_BIND)
    package static let interleave = Int32(CNUMA_MPOL_INTERLEAVE)
    package static let preferredMany = Int32(CNUMA_MPOL_PREFERRED_MANY)
    /// MPOL_MF_MOVE: move pages already there to conform to the new policy.
    package static let moveFlag = UInt32(CNUMA_MPOL_MF_MOVE)
    /// MPOL_MF_STRICT (with MPOL_MF_MOVE): fail with EIO when a page could not be moved.
    package static let strictFlag = UInt32(CNUMA_MPOL_MF_STRICT)

    static func name(_ mode: Int32) -> String {
        switch mode {
        case preferred: "MPOL_PREFERRED"
        case bind: "MPOL_BIND"
        case interleave: "MPOL_INTERLEAVE"
        case preferredMany: "MPOL_PREFERRED_MANY"
        default: "mode \(mode)"
        }
    }
}
