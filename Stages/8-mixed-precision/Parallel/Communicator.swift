import Foundation
import Kernels

/// A group of ranks that exchange numbers: the one thing every kind of parallelism needs. PyTorch calls it a process
/// group, MPI a communicator. Each rank is one worker (a thread here, a process under MPI) running the same program
/// on its own part of the work; they meet in collectives, which every rank of the group calls in the same order.
///
/// A backend provides four things: point-to-point send and receive of bytes, sub-groups, and failure. Every
/// collective is written once, below, from send and receive, with the ring algorithms NCCL and Horovod use, so that
/// the chapter can show them and the same code runs on threads and on MPI.

/// Why a collective could not finish: a rank failed (and said why), or stopped answering.
public struct ParallelError: Error, CustomStringConvertible, Sendable {
  /// The rank the problem is about (the one that failed, or the one that never answered).
  public let rank: Int
  public let description: String

  public init(rank: Int, _ description: String) {
    self.rank = rank
    self.description = description
  }
}

public protocol Communicator: AnyObject {
  /// This worker's number in the group, 0..<size.
  var rank: Int { get }
  /// How many ranks the group has.
  var size: Int { get }
  /// "threads" or "mpi".
  var backend: String { get }
  /// Bytes this rank has sent through the group (and the groups split from it): what the cost model counts.
  var bytesSent: Int { get }

  /// Sends `bytes` to rank `to`. Returns once the bytes are copied out: a send never waits for its receive.
  func send(_ bytes: UnsafeRawBufferPointer, to: Int, tag: Int) throws
  /// Waits for the next message from rank `from` with `tag` (messages between two ranks with one tag arrive in
  /// the order they were sent) and copies it into `bytes`, which must be its exact size.
  func receive(_ bytes: UnsafeMutableRawBufferPointer, from: Int, tag: Int) throws
  /// The ranks that pass the same `color` form a new group, numbered by `key` (then by rank): every rank of this
  /// group must call it (MPI_Comm_split). Messages of the new group never mix with this group's.
  func split(color: Int, key: Int) throws -> any Communicator
  /// Tells every rank that this one failed with `message`: their waits end with an error naming this rank.
  func fail(_ message: String)
}

/// What a collective does with the values the ranks contribute.
public enum ReduceOp: Sendable {
  case sum
  /// The sum divided by the group's size.
  case average
  /// The largest value (the vocabulary-parallel softmax's maximum).
  case max
}

/// The tags of the collectives (a user's point-to-point tags are small non-negative numbers).
enum CollectiveTag {
  static let reduceScatter = -1
  static let allGather = -2
  static let broadcast = -3
  static let gather = -4
  /// Pipeline parallelism's weights from the first stage to the last (tags down to -16 are this code's).
  static let pipelineTable = -5
}

extension Communicator {
  /// Sends the elements of `values`.
  public func send<S: BitwiseCopyable>(_ values: UnsafeBufferPointer<S>, to: Int, tag: Int = 0) throws {
    try send(UnsafeRawBufferPointer(values), to: to, tag: tag)
  }

  /// Receives exactly `values.count` elements into `values`.
  public func receive<S: BitwiseCopyable>(_ values: UnsafeMutableBufferPointer<S>, from: Int, tag: Int = 0) throws {
    try receive(UnsafeMutableRawBufferPointer(values), from: from, tag: tag)
  }

  /// A copy of this group, whose messages never mix with this one's (MPI_Comm_dup): a communication thread gets
  /// its own, so that its collectives and the rank's others cannot take each other's messages.
  public func duplicate() throws -> any Communicator { try split(color: 0, key: rank) }

  /// The even cut of n elements into `size` consecutive chunks: chunk r is bounds[r]..<bounds[r + 1].
  public func evenBounds(_ n: Int) -> [Int] { (0...size).map { n * $0 / size } }

  /// The ring's neighbours: a rank sends to the next and receives from the previous.
  var next: Int { (rank + 1) % size }
  var previous: Int { (rank + size - 1) % size }

  /// Ring reduce-scatter: afterwards chunk `rank` of `buffer` (bounds[rank]..<bounds[rank + 1]) holds the sum over
  /// all ranks of that chunk; the other chunks hold partial sums. In step s = 0 ... size - 2, every rank sends chunk
  /// (rank - s - 1) to the next rank and adds the chunk (rank - s - 2) that arrives from the previous one into its
  /// own copy. So chunk c starts at rank c + 1 and travels the ring once, gathering one term per rank, and every
  /// rank sends (size - 1) / size of the buffer in all, however many ranks there are.
  ///
  /// The sum of chunk c is formed in the order of the ring from rank c + 1: with two ranks that is a + b in every
  /// chunk (the same bits as b + a), with more it differs from chunk to chunk, as in NCCL.
  public func reduceScatter<S: KernelScalar & BitwiseCopyable>(
    _ buffer: UnsafeMutableBufferPointer<S>, bounds: [Int], _ op: ReduceOp = .sum
  ) throws {
    precondition(bounds.count == size + 1 && bounds.last == buffer.count, "reduceScatter: bounds do not cut the buffer")
    guard size > 1 else { return }
    let largest = (0..<size).map { bounds[$0 + 1] - bounds[$0] }.max()!
    var arrived = [S](repeating: 0, count: largest)
    for step in 0..<(size - 1) {
      let out = (rank - step - 1 + 2 * size) % size
      let into = (rank - step - 2 + 2 * size) % size
      try send(
        UnsafeBufferPointer(rebasing: buffer[bounds[out]..<bounds[out + 1]]), to: next, tag: CollectiveTag.reduceScatter
      )
      let count = bounds[into + 1] - bounds[into]
      try arrived.withUnsafeMutableBufferPointer { arrived in
        try receive(
          UnsafeMutableBufferPointer(rebasing: arrived[0..<count]), from: previous, tag: CollectiveTag.reduceScatter)
        combine(buffer.baseAddress! + bounds[into], arrived.baseAddress!, count: count, op)
      }
    }
    if op == .average {
      let divisor = S(size)
      for i in bounds[rank]..<bounds[rank + 1] { buffer[i] /= divisor }
    }
  }

  /// Ring all-gather: each rank holds chunk `rank` of `buffer`; afterwards every rank holds every chunk. In step s
  /// every rank passes the chunk (rank - s) it got last to the next rank: size - 1 steps, (size - 1) / size of the
  /// buffer sent per rank.
  public func allGather<S: BitwiseCopyable>(_ buffer: UnsafeMutableBufferPointer<S>, bounds: [Int]) throws {
    precondition(bounds.count == size + 1 && bounds.last == buffer.count, "allGather: bounds do not cut the buffer")
    guard size > 1 else { return }
    for step in 0..<(size - 1) {
      let out = (rank - step + size) % size
      let into = (rank - step - 1 + size) % size
      try send(
        UnsafeBufferPointer(rebasing: buffer[bounds[out]..<bounds[out + 1]]), to: next, tag: CollectiveTag.allGather)
      try receive(
        UnsafeMutableBufferPointer(rebasing: buffer[bounds[into]..<bounds[into + 1]]), from: previous,
        tag: CollectiveTag.allGather)
    }
  }

  /// All-reduce as the ring does it: reduce-scatter, then all-gather of the reduced chunks. Each rank sends
  /// 2 (size - 1) / size of the buffer, the least any all-reduce can (Patarasuk and Yuan, 2009), in 2 (size - 1)
  /// steps. `bounds` (even by default) cuts the buffer into the chunks.
  public func allReduce<S: KernelScalar & BitwiseCopyable>(
    _ buffer: UnsafeMutableBufferPointer<S>, _ op: ReduceOp = .sum, bounds: [Int]? = nil
  ) throws {
    let bounds = bounds ?? evenBounds(buffer.count)
    try reduceScatter(buffer, bounds: bounds, op)
    try allGather(buffer, bounds: bounds)

  }

  /// All-reduce of an array.
  public func allReduce<S: KernelScalar & BitwiseCopyable>(_ values: inout [S], _ op: ReduceOp = .sum) throws {
    try values.withUnsafeMutableBufferPointer { try allReduce($0, op) }
  }

  /// Every rank gets `root`'s values. A chain along the ring: each rank passes the buffer on to the next until
  /// it has gone round once (size - 1 messages; latency grows with the ranks, but nothing here broadcasts much).
  public func broadcast<S: BitwiseCopyable>(_ buffer: UnsafeMutableBufferPointer<S>, root: Int) throws {
    guard size > 1 else { return }
    if rank != root { try receive(buffer, from: previous, tag: CollectiveTag.broadcast) }
    if next != root { try send(UnsafeBufferPointer(buffer), to: next, tag: CollectiveTag.broadcast) }
  }

  /// Broadcast of an array.
  public func broadcast<S: BitwiseCopyable>(_ values: inout [S], root: Int) throws {
    try values.withUnsafeMutableBufferPointer { try broadcast($0, root: root) }
  }

  /// Every rank's one value, in rank order.
  public func gather<S: KernelScalar & BitwiseCopyable>(_ value: S) throws -> [S] {
    var values = [S](repeating: 0, count: size)
    values[rank] = value
    try values.withUnsafeMutableBufferPointer { try allGather($0, bounds: Array(0...size)) }
    return values
  }

  /// Every rank's array (of any length) at `root`, in rank order; nil on the other ranks.
  public func gatherArrays<S: KernelScalar & BitwiseCopyable>(_ values: [S], root: Int = 0) throws -> [[S]]? {
    let counts = try gather(Double(values.count)).map { Int($0) }
    guard rank == root else {
      try values.withUnsafeBufferPointer { try send($0, to: root, tag: CollectiveTag.gather) }
      return nil
    }
    return try (0..<size).map { source in
      if source == root { return values }
      var arrived = [S](repeating: 0, count: counts[source])
      try arrived.withUnsafeMutableBufferPointer { try receive($0, from: source, tag: CollectiveTag.gather) }
      return arrived
    }
  }

  /// Returns once every rank of the group has called it.
  public func barrier() throws {
    var token: [Float] = [0]
    try allReduce(&token)
  }
}

/// own[i] = arrived[i] + own[i] (or the larger of the two), in a loop compiled for Float and for Double: called
/// from a collective on `any Communicator`, a generic loop would run unspecialised, ten times slower.
func combine<S: KernelScalar>(_ own: UnsafeMutablePointer<S>, _ arrived: UnsafePointer<S>, count: Int, _ op: ReduceOp) {
  func typed<T: KernelScalar>(_: T.Type, _ body: (UnsafeMutablePointer<T>, UnsafePointer<T>) -> Void) {
    body(
      UnsafeMutableRawPointer(own).assumingMemoryBound(to: T.self),
      UnsafeRawPointer(arrived).assumingMemoryBound(to: T.self))
  }
  if S.self == Float.self {
    typed(Float.self) { own, arrived in combineLoop(own, arrived, count: count, op) }
  } else if S.self == Double.self {
    typed(Double.self) { own, arrived in combineLoop(own, arrived, count: count, op) }
  } else {
    combineLoop(own, arrived, count: count, op)
  }
}

@inline(__always)
func combineLoop<S: KernelScalar>(
  _ own: UnsafeMutablePointer<S>, _ arrived: UnsafePointer<S>, count: Int, _ op: ReduceOp
) {
  if op == .max {
    for i in 0..<count { own[i] = Swift.max(arrived[i], own[i]) }
  } else {
    for i in 0..<count { own[i] = arrived[i] + own[i] }
  }
}
