// A 2D heat stencil (Jacobi) split by rows over MPI ranks: one rank per NUMA node, each with a
// BuddyPools pool bound to its node, grids first touched by the rank that computes them, halo
// rows exchanged with MPI. Rank 0 checks the result against a serial run of the same problem.
//
//   mpirun -np 2 .build/release/stencil-mpi [columns rows iterations]
import BuddyPools
import COpenMPI
import Glibc

let arguments = CommandLine.arguments.dropFirst().compactMap { Int($0) }
let columns = arguments.count > 0 ? arguments[0] : 512
let rows = arguments.count > 1 ? arguments[1] : 512
let iterations = arguments.count > 2 ? arguments[2] : 300

_ = cmpi_init()
let rank = Int(cmpi_rank()), ranks = Int(cmpi_size())
guard rows % ranks == 0 else {
    if rank == 0 { print("stencil: rows (\(rows)) must divide evenly over \(ranks) ranks") }
    _ = cmpi_finalize()
    exit(2)
}

Diagnostics.standardErrorLevel = nil
let topology = try NUMATopology.current()
let memoryNodes = topology.memoryNodes.map { $0 }
let node = memoryNodes[rank % memoryNodes.count]
let localRows = rows / ranks
// Two grids of (local rows + 2 halo rows) x columns doubles, in a pool bound to this rank's node.
let gridBytes = (localRows + 2) * columns * MemoryLayout<Double>.stride
let superblock = 2 << 20
var configuration = PoolConfiguration(name: "rank\(rank)", capacity: max(1, (2 * gridBytes + 2 * superblock) / superblock) * superblock)
configuration.nodes = [node]
configuration.pageSize = .huge2M
let pool = try MemoryPool(configuration: configuration)
var current = try pool.allocate(Double.self, count: (localRows + 2) * columns)
var next = try pool.allocate(Double.self, count: (localRows + 2) * columns)

/// The fixed boundary: the top edge of the global grid is hot, the other edges cold.
func boundary(globalRow: Int) -> Double { globalRow < 0 ? 100 : 0 }

// First touch where the data is computed: this rank initializes its own rows.
for row in 0..<(localRows + 2) {
    let globalRow = rank * localRows + row - 1
    let value = globalRow < 0 || globalRow >= rows ? boundary(globalRow: globalRow) : 0
    for column in 0..<columns {
        current[row * columns + column] = value
        next[row * columns + column] = value
    }
}
let placement = PagePlacement.nodes(of: stride(from: 0, to: gridBytes, by: 4096).map { UnsafeRawPointer(current) + $0 })
let onNode = Double(placement.filter { $0 == node }.count) / Double(placement.count)

let up = rank > 0 ? rank - 1 : -1, down = rank < ranks - 1 ? rank + 1 : -1
let start = cmpi_wtime()
var change = 0.0
for _ in 0..<iterations {
    // Halo exchange: first row down to the rank above, last row to the rank below.
    _ = cmpi_sendrecv_doubles(current + columns, Int32(up), current + (localRows + 1) * columns, Int32(down), Int32(columns))
    _ = cmpi_sendrecv_doubles(current + localRows * columns, Int32(down), current, Int32(up), Int32(columns))
    var localChange = 0.0
    for row in 1...localRows {
        let base = row * columns
        for column in 1..<(columns - 1) {
            let value = 0.25 * (current[base - columns + column] + current[base + columns + column] + current[base + column - 1] + current[base + column + 1])
            localChange = max(localChange, abs(value - current[base + column]))
            next[base + column] = value
        }
    }
    swap(&current, &next)
    change = cmpi_allreduce_max(localChange)
}
let elapsed = cmpi_wtime() - start
let heat = cmpi_allreduce_sum((1...localRows).reduce(0.0) { sum, row in
    sum + (0..<columns).reduce(0.0) { $0 + current[row * columns + $1] }
})

// Rank 0 gathers the grid and compares it with a serial run of the same problem.
var gathered = [Double](repeating: 0, count: rank == 0 ? rows * columns : 0)
_ = gathered.withUnsafeMutableBufferPointer { cmpi_gather_doubles(current + columns, Int32(localRows * columns), $0.baseAddress) }
var status: Int32 = 0
print("rank \(rank): node \(node), \(Int(onNode * 100))% of its grid on that node, \(pool.regions[0].pageSize), \(String(format1: elapsed / Double(iterations) * 1e3)) ms per iteration")
if rank == 0 {
    var serial = [Double](repeating: 0, count: (rows + 2) * columns)
    var serialNext = serial
    for column in 0..<columns { serial[column] = 100; serialNext[column] = 100 }
    for _ in 0..<iterations {
        for row in 1...rows {
            for column in 1..<(columns - 1) {
                let index = row * columns + column
                serialNext[index] = 0.25 * (serial[index - columns] + serial[index + columns] + serial[index - 1] + serial[index + 1])
            }
        }
        swap(&serial, &serialNext)
    }
    var worst = 0.0
    for index in 0..<(rows * columns) { worst = max(worst, abs(gathered[index] - serial[columns + index])) }
    print("stencil: \(ranks) ranks, \(columns)x\(rows), \(iterations) iterations, heat \(String(format1: heat)), last change \(change), max difference from serial \(worst)")
    if worst > 1e-9 { status = 1 }
    if onNode < 1 { status = 1 }
}
pool.deallocate(current)
pool.deallocate(next)
_ = cmpi_finalize()
exit(status)

extension String {
    init(format1 value: Double) { self = "\((value * 1000).rounded() / 1000)" }
}
