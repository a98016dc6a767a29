import BuddyCaches
import BuddyConfig
import BuddyCore
import BuddySystem
import Synchronization

/// Owned, typed memory from a pool that frees itself: a `~Copyable` value, so it cannot be
/// copied, and using it after `deallocate()` (or freeing it twice) does not compile.
///
/// ```swift
/// var samples = try PoolBuffer<Float>(pool: pool, count: 4096, repeating: 0)
/// samples[0] = 1
/// samples.deallocate()       // or let it go out of scope
/// // samples[0]              // error: 'samples' used after consume
/// ```
public struct PoolBuffer<Element>: ~Copyable {
    // Unmanaged (retained by hand) so `release()` can `discard self`, which needs trivially
    // destroyed stored properties.
    private let poolReference: Unmanaged<MemoryPool>
    public let baseAddress: UnsafeMutablePointer<Element>
    public let count: Int

    public var pool: MemoryPool { poolReference.takeUnretainedValue() }

    /// `count` elements, each initialized to `value`.
    public init(
        pool: MemoryPool, count: Int, repeating value: Element, file: StaticString = #fileID, line: UInt = #line
    ) throws(PoolError) {
        baseAddress = try pool.allocate(Element.self, count: count, file: file, line: line)
        baseAddress.initialize(repeating: value, count: count)
        poolReference = Unmanaged.passRetained(pool)
        self.count = count
    }

    /// Takes ownership of memory `pool` allocated for `count` initialized elements.
    public init(adopting baseAddress: UnsafeMutablePointer<Element>, count: Int, pool: MemoryPool) {
        self.baseAddress = baseAddress
        self.count = count
        poolReference = Unmanaged.passRetained(pool)
    }

    public subscript(index: Int) -> Element {
        get {
            precondition(index >= 0 && index < count, "PoolBuffer index \(index) out of 0..<\(count)")
            return baseAddress[index]
        }
        nonmutating set {
            precondition(index >= 0 && index < count, "PoolBuffer index \(index) out of 0..<\(count)")
            baseAddress[index] = newValue
        }
    }

    public func withUnsafeMutableBufferPointer<R, E: Error>(_ body: (UnsafeMutableBufferPointer<Element>) throws(E) -> R) throws(E) -> R {
        try body(UnsafeMutableBufferPointer(start: baseAddress, count: count))
    }

    /// Frees the memory now; the buffer is consumed.
    public consuming func deallocate() {
        // deinit runs when self is consumed here.
    }

    /// Gives the memory to the caller, who must free it with `pool.deallocate(_:)`.
    public consuming func release() -> UnsafeMutablePointer<Element> {
        let pointer = baseAddress
        let reference = poolReference
        discard self
        reference.release()
        return pointer
    }

    deinit {
        baseAddress.deinitialize(count: count)
        poolReference.takeUnretainedValue().deallocate(baseAddress)
        poolReference.release()
    }
}

extension MemoryPool {
    /// Uninitialized memory for `count` values of `type`, aligned for it (at least 16 bytes).
    public func allocate<T>(
        _ type: T.Type, count: Int, file: StaticString = #fileID, line: UInt = #line
    ) throws(PoolError) -> UnsafeMutablePointer<T> {
        let (bytes, overflow) = MemoryLayout<T>.stride.multipliedReportingOverflow(by: max(count, 1))
        guard count > 0, !overflow else {
            throw .invalidRequest(InvalidRequest(
                pool: name, byteCount: count, alignment: MemoryLayout<T>.alignment, reason: count > 0 ? .countOverflow : .zeroOrNegativeSize))
        }
        return try allocate(byteCount: bytes, alignment: max(16, MemoryLayout<T>.alignment), file: file, line: line)
            .bindMemory(to: T.self, capacity: count)
    }
}
