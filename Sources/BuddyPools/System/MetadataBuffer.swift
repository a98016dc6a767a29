import CNuma

/// Zeroed memory for allocator metadata, mapped on the pool's nodes and populated at once
/// (locked too for realtime pools), so bookkeeping never page-faults later and sits near
/// the memory it describes.
final class MetadataBuffer: @unchecked Sendable {
    // @unchecked: the pointer is immutable; what lives in the buffer is synchronized by its users.
    let pointer: UnsafeMutableRawPointer
    let byteCount: Int

    init(byteCount requested: Int, nodes: NodeSet, locked: Bool, label: String) throws(SystemError) {
        let byteCount = max(4096, (requested + 4095) & ~4095)
        guard let reservation = cnuma_reserve_address_space(byteCount),
              cnuma_map_fixed(reservation, byteCount, 0) != nil
        else {
            throw SystemError(
                .insufficientMemory, call: "mmap(\(formatBytes(byteCount)) of metadata for \(label))", errno: currentErrno(),
                advice: "the process is out of address space or memory")
        }
        if let first = nodes.first {
            // Preferred, not bind: metadata is small and must never be the reason a pool fails.
            let mask = NodeSet([first]).maskWords(bitCount: (first / 64 + 1) * 64)
            _ = mask.withUnsafeBufferPointer {
                cnuma_mbind(reservation, byteCount, Int32(CNUMA_MPOL_PREFERRED), $0.baseAddress, UInt(mask.count * 64 + 1), 0)
            }
        }
        // Inherited across fork (unlike pool memory): a child that frees a parent's pointer reads
        // its state byte before it learns the pool is unusable there, and must not fault.
        if case .failed = PagePopulation.populate(reservation, byteCount: byteCount, pageSize: .base) {
            // Metadata is small; writing each page faults it in where the kernel refused to.
            cnuma_touch_pages(reservation, byteCount, 4096)
        }
        if locked, cnuma_lock(reservation, byteCount) != 0 {
            let code = currentErrno()
            _ = cnuma_unmap(reservation, byteCount)
            throw SystemError(
                .permissionDenied, call: "mlock(\(formatBytes(byteCount)) of metadata for \(label))", errno: code,
                advice: "a locked pool locks its metadata too; raise RLIMIT_MEMLOCK (ulimit -l) or grant CAP_IPC_LOCK")
        }
        pointer = reservation
        self.byteCount = byteCount
    }

    /// A sub-range of the buffer, `alignment`-aligned, after `offset` bytes already used.
    func slice(offset: inout Int, byteCount: Int, alignment: Int = 64) -> UnsafeMutableRawPointer {
        offset = (offset + alignment - 1) & ~(alignment - 1)
        precondition(offset + byteCount <= self.byteCount, "metadata buffer overflow")
        defer { offset += byteCount }
        return pointer + offset
    }

    deinit { _ = cnuma_unmap(pointer, byteCount) }
}
