import BuddyCore
/// Zeroed memory for allocator metadata, mapped on the pool's nodes and populated at once
/// (locked too for realtime pools), so bookkeeping never page-faults later and sits near
/// the memory it describes.
package final class MetadataBuffer: @unchecked Sendable {
    // @unchecked: the pointer is immutable; what lives in the buffer is synchronized by its users.
    package let pointer: UnsafeMutableRawPointer
    package let byteCount: Int

    package init(byteCount requested: Int, nodes: NodeSet, locked: Bool, label: String) throws(SystemError) {
        guard requested >= 0, requested <= 1 << 52 else {
            throw SystemError(.invalidArgument, call: "metadata size check for \(label)", advice: "\(requested) bytes of metadata cannot be mapped")
        }
        let byteCount = max(4096, (requested + 4095) & ~4095)
        let reservation: UnsafeMutableRawPointer
        switch MemoryCalls.reserveAddressSpace(byteCount) {
        case .success(let pointer): reservation = pointer
        case .failure(let error): throw error.explained(call: "mmap(\(formatBytes(byteCount)) of metadata for \(label))",
                                                        advice: "the process is out of address space or memory")
        }
        func fail(_ error: SystemError) -> SystemError {
            Self.unmap(reservation, byteCount, label: label)
            return error
        }
        if case .failure(let error) = MemoryCalls.mapFixed(reservation, byteCount, hugePageShift: 0) {
            throw fail(error.explained(call: "mmap(\(formatBytes(byteCount)) of metadata for \(label))",
                                       advice: "the process is out of address space or memory"))
        }
        if let first = nodes.first, TopologyCalls.isNUMAAvailable {
            // Preferred, not bind: metadata is small and must never be the reason a pool fails.
            if case .failure(let error) = MemoryCalls.bind(reservation, byteCount, mode: PolicyMode.preferred, nodes: NodeSet([first])) {
                Diagnostics.report(.info, DiagnosticEvent(.placement, .info, subject: label,
                    message: "metadata left to the default policy: \(error)", bytes: byteCount))
            }
        }
        // Inherited across fork (unlike pool memory): a child that frees a parent's pointer reads
        // its state byte before it learns the pool is unusable there, and must not fault.
        if case .failed = PagePopulation.populate(reservation, byteCount: byteCount, pageSize: .base) {
            // Metadata is small; writing each page faults it in where the kernel refused to.
            MemoryCalls.touchPages(reservation, byteCount, pageSize: 4096)
        }
        if locked, case .failure(let error) = MemoryCalls.lock(reservation, byteCount) {
            throw fail(error.explained(
                as: .permissionDenied, call: "mlock(\(formatBytes(byteCount)) of metadata for \(label))",
                advice: "a locked pool locks its metadata too; raise RLIMIT_MEMLOCK (ulimit -l) or grant CAP_IPC_LOCK"))
        }
        pointer = reservation
        self.byteCount = byteCount
    }

    /// A sub-range of the buffer, `alignment`-aligned, after `offset` bytes already used.
    package func slice(offset: inout Int, byteCount: Int, alignment: Int = 64) -> UnsafeMutableRawPointer {
        offset = (offset + alignment - 1) & ~(alignment - 1)
        // Invariant: the owner sized the buffer for every slice it takes.
        assert(offset + byteCount <= self.byteCount, "metadata buffer overflow")
        defer { offset += byteCount }
        return pointer + offset
    }

    /// Moves the buffer's pages to the first of `nodes` and prefers it from now on (mbind with
    /// MPOL_MF_MOVE; a migrating pool takes its metadata along).
    package func move(to nodes: NodeSet) -> Result<Void, SystemError> {
        guard let first = nodes.first, TopologyCalls.isNUMAAvailable else { return .success(()) }
        return MemoryCalls.bind(pointer, byteCount, mode: PolicyMode.preferred, nodes: NodeSet([first]), flags: PolicyMode.moveFlag)
    }

    deinit { Self.unmap(pointer, byteCount, label: "metadata buffer") }

    /// munmap with the failure reported: a deinit cannot throw, and nothing else refers to the range.
    private static func unmap(_ pointer: UnsafeMutableRawPointer, _ byteCount: Int, label: String) {
        if case .failure(let error) = MemoryCalls.unmap(pointer, byteCount) {
            Diagnostics.report(.warning, DiagnosticEvent(.lifecycle, .warning, subject: label, message: "\(error)", bytes: byteCount))
        }
    }
}
