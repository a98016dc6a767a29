import BuddyPools
import Synchronization

/// The fragmentation experiment: churn a pool at 70-90% occupancy (ending at 80%) with random sizes and
/// lifetimes (20% unmovable, 50% movable behind handles, 30% reclaimable with a shrinker), then
/// ask for whole superblocks while free memory allows. Run three ways: grouping with compaction
/// and the shrinker; grouping off with compaction; and a plain buddy allocator (grouping and
/// compaction off, no shrinker).
struct ChurnExperiment {
    let settings: BenchSettings
    let node: Int

    struct Outcome {
        /// Requests made: the free bytes at the start over the superblock size.
        var attempts = 0
        /// Free bytes in superblocks without unmovable data, over the superblock size: what
        /// compaction and shrinkers could possibly turn into free superblocks.
        var recoverableAttempts = 0
        var granted = 0
        var superblocksWithUnmovable = 0
        /// Free bytes inside superblocks that hold unmovable data.
        var freeBytesTrapped = 0
        var bytesMoved = 0
        var shrinkerBytes = 0
        var successRate: Double { attempts == 0 ? 0 : Double(granted) / Double(attempts) }
        var recoverableRate: Double { recoverableAttempts == 0 ? 0 : min(1, Double(granted) / Double(recoverableAttempts)) }
    }

    func run() -> ScenarioResult {
        var result = ScenarioResult(scenario: .churn, contender: .buddypools, status: .ok)
        guard let grouped = run(grouping: true, compaction: true, shrinker: true),
              let compactedOnly = run(grouping: false, compaction: true, shrinker: false),
              let plain = run(grouping: false, compaction: false, shrinker: false)
        else {
            result.status = .failed
            result.note = "could not create the churn pool"
            return result
        }
        result.metrics = [
            "grouping_success_rate": grouped.successRate,
            "grouping_attempts": Double(grouped.attempts),
            "grouping_recoverable_attempts": Double(grouped.recoverableAttempts),
            "grouping_recoverable_success_rate": grouped.recoverableRate,
            "grouping_bytes_moved": Double(grouped.bytesMoved),
            "grouping_shrinker_bytes": Double(grouped.shrinkerBytes),
            "grouping_superblocks_with_unmovable": Double(grouped.superblocksWithUnmovable),
            "grouping_free_trapped_MiB": Double(grouped.freeBytesTrapped >> 20),
            "nogrouping_superblocks_with_unmovable": Double(plain.superblocksWithUnmovable),
            "nogrouping_free_trapped_MiB": Double(plain.freeBytesTrapped >> 20),
            "nogrouping_compaction_success_rate": compactedOnly.successRate,
            "nogrouping_compaction_bytes_moved": Double(compactedOnly.bytesMoved),
            "nogrouping_success_rate": plain.successRate,
            "nogrouping_attempts": Double(plain.attempts),
            "nogrouping_recoverable_attempts": Double(plain.recoverableAttempts),
        ]
        result.note = "256 MiB pool, 2 MiB superblocks; max-order requests granted while free memory allowed"
        return result
    }

    private func run(grouping: Bool, compaction: Bool, shrinker: Bool) -> Outcome? {
        var configuration = PoolConfiguration(name: "churn", capacity: 256 << 20)
        configuration.nodes = [node]
        configuration.pageSize = .huge2M
        configuration.mobilityGrouping = grouping
        configuration.compaction = compaction
        guard let pool = try? MemoryPool(configuration: configuration) else { return nil }
        let capacity = pool.capacity
        let superblock = pool.geometry.superblockSize
        var random = WorkloadRandom(seed: settings.seed)
        var unmovable: [(UnsafeMutableRawPointer, Int)] = []
        var movable: [(MovableHandle, Int)] = []
        let reclaimable = ReclaimableList()
        var live = 0
        if shrinker {
            pool.registerShrinker { request in
                // Drop blocks inside the superblocks the pool wants emptied first, then the oldest.
                var freed = 0
                while freed < request.bytesWanted, let (address, size) = reclaimable.pop(preferring: request.preferredRanges) {
                    pool.deallocate(UnsafeMutableRawPointer(bitPattern: address)!)
                    freed += size
                }
                return freed
            }
        }
        func freeOne() {
            let pick = random.next() % 10
            if pick < 2, !unmovable.isEmpty {
                let (pointer, size) = unmovable.swapRemove(Int(random.next() % UInt64(unmovable.count)))
                pool.deallocate(pointer)
                live -= size
            } else if pick < 7, !movable.isEmpty {
                let (handle, size) = movable.swapRemove(Int(random.next() % UInt64(movable.count)))
                pool.deallocate(handle)
                live -= size
            } else if let (address, size) = reclaimable.popRandom(&random) {
                pool.deallocate(UnsafeMutableRawPointer(bitPattern: address)!)
                live -= size
            }
        }
        // Churn: random sizes and lifetimes, occupancy swinging between 70% and 90%.
        for step in 0..<200_000 {
            let high = (step / 20_000) % 2 == 0
            let target = capacity * (high ? 90 : 70) / 100
            if live < target {
                let size = random.logUniformSize(lowShift: 12, highShift: 18)
                let pick = random.next() % 10
                do {
                    if pick < 2 {
                        unmovable.append((try pool.allocate(byteCount: size), size))
                    } else if pick < 7 {
                        movable.append((try pool.allocateMovable(byteCount: size), size))
                    } else {
                        reclaimable.append(UInt(bitPattern: try pool.allocate(byteCount: size, mobility: .reclaimable)), size)
                    }
                    live += size
                } catch {
                    freeOne()
                }
            } else {
                freeOne()
            }
        }
        // End at 80% occupancy, freeing at random, whatever phase the churn ended in.
        while live > capacity * 80 / 100 { freeOne() }
        pool.drainCaches()
        // Where the unmovable data ended up: superblocks holding any can never be freed by compaction.
        let usage = pool.superblockUsage()
        var outcome = Outcome()
        outcome.superblocksWithUnmovable = usage.filter { $0.unmovableBytes > 0 }.count
        outcome.freeBytesTrapped = usage.filter { $0.unmovableBytes > 0 }.reduce(0) { $0 + $1.freeBytes }
        let movedBefore = pool.statistics.bytesMoved
        // As many max-order requests as the free memory could hold right now; all are kept.
        let start = pool.statistics
        outcome.attempts = start.freeBytes / superblock
        outcome.recoverableAttempts = pool.reclaimCandidates(count: Int.max).reduce(0) { $0 + $1.freeBytes } / superblock
        var granted: [UnsafeMutableRawPointer] = []
        for _ in 0..<outcome.attempts {
            if let block = try? pool.allocate(byteCount: superblock) {
                granted.append(block)
                outcome.granted += 1
            }
        }
        let stats = pool.statistics
        outcome.bytesMoved = stats.bytesMoved - movedBefore
        outcome.shrinkerBytes = stats.bytesReclaimed
        return outcome
    }
}

/// Reclaimable blocks, shared with the shrinker (which may run on the allocating thread).
private final class ReclaimableList: Sendable {
    private let blocks = Mutex<[(address: UInt, size: Int)]>([])

    func append(_ address: UInt, _ size: Int) { blocks.withLock { $0.append((address, size)) } }
    func pop(preferring ranges: [Range<UInt>]) -> (UInt, Int)? {
        blocks.withLock { blocks in
            if let index = blocks.firstIndex(where: { block in ranges.contains { $0.contains(block.address) } }) {
                return blocks.remove(at: index)
            }
            return blocks.isEmpty ? nil : blocks.removeFirst()
        }
    }
    func popRandom(_ random: inout WorkloadRandom) -> (UInt, Int)? {
        let pick = random.next()
        return blocks.withLock { $0.isEmpty ? nil : $0.swapRemove(Int(pick % UInt64($0.count))) }
    }
}

extension Array {
    mutating func swapRemove(_ index: Int) -> Element {
        swapAt(index, count - 1)
        return removeLast()
    }
}
