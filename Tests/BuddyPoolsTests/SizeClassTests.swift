import BuddyPools
import Testing

/// The size-class table (issue 14) and the one-step index the malloc path uses.
@Suite("Size classes")
struct SizeClassTests {
    @Test("the one-step class index agrees with classBytes and index(classBytes:) for every size and alignment")
    func oneStepIndex() {
        var alignment = 1
        while alignment <= 4096 {
            for size in 1...(SizeClasses.maxObjectBytes + 64) {
                let bytes = SizeClasses.classBytes(size: size, alignment: alignment)
                let expected = bytes.map { SizeClasses.index(classBytes: $0) }
                #expect(SizeClasses.index(size: size, alignment: alignment) == expected, "size \(size), alignment \(alignment)")
                if let expected { #expect(SizeClasses.sizes[expected] == bytes, "size \(size), alignment \(alignment)") }
            }
            alignment *= 2
        }
    }

    @Test("classes waste at most 7 bytes up to 128 and less than 12.5% above it")
    func roundingWaste() {
        for size in 1...SizeClasses.maxObjectBytes {
            guard let bytes = SizeClasses.classBytes(size: size, alignment: 1) else {
                Issue.record("no class for \(size) bytes")
                continue
            }
            #expect(bytes >= size)
            if size <= 128 { #expect(bytes - size <= 7, "size \(size)") } else { #expect((bytes - size) * 8 < size, "size \(size)") }
        }
    }
}
