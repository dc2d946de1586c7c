import Foundation
import Kernels
import Support

/// Data parallelism and ZeRO: every rank holds the model and trains on its own share of each batch; the ranks
/// combine their gradients so that every rank takes the step one process would take on the whole batch.
///
/// - ZeRO 0 is PyTorch's DistributedDataParallel: buckets of gradients all-reduced (summed) as backward produces
///   them, then every rank runs the same optimizer step on the same numbers.
/// - ZeRO 1 (Rajbhandari et al., 2020) shards the optimizer: rank r keeps Adam's moments only for its chunk of
///   each bucket, updates only those weights, and the ranks all-gather the updated weights.
/// - ZeRO 2 also shards the gradients: buckets are reduce-scattered, the first half of an all-reduce, so that
///   rank r receives only the sum of its own chunk, and keeps only that.
///
/// Every one of them gives the same bits: the chunk sums are the same additions (an all-reduce is a reduce-scatter
/// and an all-gather), Adam is elementwise, and the gradient norm is summed in the same blocks in the same order
/// (`clipGradNorm`).

/// Which ZeRO stage a data-parallel run uses.
public enum ZeroStage: Int, CaseIterable, Sendable {
  case none = 0, optimizer = 1, gradients = 2
}

/// The bytes one rank holds, by kind, at the end of a step.
public struct ParallelLedger: Sendable, Equatable {
  public var weights = 0
  public var gradients = 0
  public var optimizer = 0
  public var total: Int { weights + gradients + optimizer }
}

/// One rank's share of a data-parallel run: its model's parameters, its optimizer (whole or a shard), and the
/// gradients' journey between the ranks.
public final class DataParallel {
  public typealias Scalar = Float
  /// The rank's group (the rank's own thread uses it).
  public let communicator: any Communicator
  /// A duplicate of it for the communication thread.
  let channel: any Communicator
  public let parameters: [Tensor<Scalar>]
  public let layout: GradientLayout<Scalar>
  public let zero: ZeroStage
  /// The optimizer's settings and step count. With ZeRO 0 it also holds the state and does the update.
  public let optimizer: Adam<Scalar>
  /// Each parameter's weight decay (from the optimizer's groups).
  let decay: [Double]
  let index: [ObjectIdentifier: Int]
  let worker: CommunicationThread

  /// A bucket's values in flight: the compute thread fills it, the communication thread reduces it, and the
  /// compute thread reads it again only after waiting for the communication thread.
  final class Buffer: @unchecked Sendable { var values: [Scalar] = [] }
  let flat: [Buffer]
  /// ZeRO 1 and 2: Adam's moments of this rank's chunk of each bucket. ZeRO 2: that chunk's gradient too.
  let firstMoments: [Buffer]
  let secondMoments: [Buffer]
  let ownGradients: [Buffer]
  /// The squared gradient norm of the whole model, when these parameters are one rank's share of a model cut
  /// by tensor parallelism (ZeRO 0 only); nil: the squares of these parameters' gradients.
  public var gradientSquares: (() throws -> Double)?
  /// Parameters of each bucket whose gradient is not final yet in this backward.
  var waiting: [Int]
  /// The first bucket not yet handed to the communication thread (buckets go in order, on every rank alike).
  var nextBucket = 0

  /// Wraps `parameters` (the same model on every rank) and `optimizer` (AdamW over them). The weights are
  /// broadcast from rank 0 first, as DDP does, so the ranks start equal even if their initial draws were not.
  public init(
    parameters: [Tensor<Scalar>], optimizer: Adam<Scalar>, communicator: any Communicator, zero: ZeroStage = .none,
    bucketBytes: Int = 1 << 20
  ) throws {
    self.parameters = parameters
    self.optimizer = optimizer
    self.communicator = communicator
    self.zero = zero
    channel = try communicator.duplicate()
    layout = GradientLayout(counts: parameters.map(\.count), bucketBytes: bucketBytes, ranks: communicator.size)
    var decayOf: [ObjectIdentifier: Double] = [:]
    for group in optimizer.groups { for p in group.parameters { decayOf[ObjectIdentifier(p)] = group.weightDecay } }
    decay = parameters.map { decayOf[ObjectIdentifier($0)] ?? 0 }
    index = Dictionary(uniqueKeysWithValues: parameters.enumerated().map { (ObjectIdentifier($1), $0) })
    worker = CommunicationThread(name: "rank \(communicator.rank) communication", origin: Stopwatch.now())
    flat = layout.buckets.map { _ in Buffer() }
    let rank = communicator.rank
    let shards = layout.buckets.map { $0.bounds[rank + 1] - $0.bounds[rank] }
    let sharded = zero != .none
    firstMoments = shards.map { n in
      let b = Buffer(); if sharded { b.values = .init(repeating: 0, count: n) }; return b
    }
    secondMoments = shards.map { n in
      let b = Buffer(); if sharded { b.values = .init(repeating: 0, count: n) }; return b
    }
    ownGradients = layout.buckets.map { _ in Buffer() }
    waiting = layout.buckets.map(\.parameters.count)
    for p in parameters { try p.storage.withUnsafeMutableBufferPointer { try communicator.broadcast($0, root: 0) } }
  }

  deinit { worker.stop() }

  /// Backward of this rank's loss. With `sync` (the last micro-batch of a step) each bucket is handed to the
  /// communication thread the moment its gradients are final, and this returns once every bucket is reduced.
  /// Without (DDP's `no_sync()`, the earlier micro-batches of gradient accumulation), the gradients only add up
  /// on this rank.
  public func backward(_ loss: Tensor<Scalar>, sync: Bool = true) throws {
    guard sync else { return loss.backward() }
    let start = worker.elapsed()
    waiting = layout.buckets.map(\.parameters.count)
    nextBucket = 0
    loss.backward { [self] leaf in
      guard let i = index[ObjectIdentifier(leaf)] else { return }
      waiting[layout.place[i].bucket] -= 1
      launchReadyBuckets()
    }
    lastBackward = (start, worker.elapsed())
    // A parameter backward never reached (unused by this loss) counts as a zero gradient.
    for b in layout.buckets.indices { waiting[b] = 0 }
    launchReadyBuckets()
    try worker.wait()
    if zero != .gradients {
      for bucket in layout.buckets.indices { copyBack(bucket) }
    }
    ledgerAfterBackward = ledger
  }

  /// `ledger` at the end of the last synchronising backward, when the gradients are all held (from the second
  /// step on, Adam's moments too): what a rank needs at its busiest.
  public private(set) var ledgerAfterBackward = ParallelLedger()

  /// Hands every bucket whose gradients are all final, in order, to the communication thread.
  func launchReadyBuckets() {
    while nextBucket < layout.buckets.count && waiting[nextBucket] == 0 {
      launch(nextBucket)
      nextBucket += 1
    }
  }

  func launch(_ b: Int) {
    let bucket = layout.buckets[b]
    let buffer = flat[b]
    buffer.values = [Scalar](repeating: 0, count: bucket.count)
    for (slot, i) in bucket.parameters.enumerated() {
      guard let grad = parameters[i].gradStorage else { continue }
      buffer.values.withUnsafeMutableBufferPointer { out in
        grad.withUnsafeBufferPointer { g in
          (out.baseAddress! + bucket.offsets[slot]).update(from: g.baseAddress!, count: g.count)
        }
      }
      if zero == .gradients { parameters[i].zeroGrad() }  // this rank will keep only its chunk
    }
    let (channel, zero, own, rank) = (self.channel, self.zero, ownGradients[b], communicator.rank)
    worker.submit("bucket \(b)") {
      try buffer.values.withUnsafeMutableBufferPointer { values in
        if zero == .gradients {
          try channel.reduceScatter(values, bounds: bucket.bounds)
          own.values = Array(values[bucket.bounds[rank]..<bucket.bounds[rank + 1]])
        } else {
          try channel.allReduce(values, .sum, bounds: bucket.bounds)
        }
      }
      if zero == .gradients { buffer.values = [] }
    }
  }

  /// The reduced bucket's gradients back into its parameters.
  func copyBack(_ b: Int) {
    let bucket = layout.buckets[b]
    for (slot, i) in bucket.parameters.enumerated() {
      parameters[i].gradStorage = Array(flat[b].values[bucket.offsets[slot]..<bucket.offsets[slot + 1]])
    }
    flat[b].values = []
  }

  /// The optimizer step after the last backward of a step: clipping at `maxNorm` by the global norm, AdamW at
  /// `learningRate`, and with ZeRO the updated chunks all-gathered. Forgets the gradients. Returns the norm
  /// before clipping.
  @discardableResult
  public func step(learningRate: Double, maxNorm: Double = 1) throws -> Double {
    optimizer.learningRate = learningRate
    guard zero != .none else {
      if let gradientSquares {  // a model cut across a tensor group: its norm takes the group's parts
        let norm = try gradientSquares().squareRoot()
        clipGradients(parameters, norm: norm, maxNorm: maxNorm)
        optimizer.step()
        optimizer.zeroGrad()
        return norm
      }
      let norm = clipGradNorm(parameters, maxNorm: maxNorm)
      optimizer.step()
      optimizer.zeroGrad()
      return norm
    }
    let rank = communicator.rank
    let norm = try gradientNorm()
    let scale = clipScale(norm: norm, maxNorm: maxNorm, as: Scalar.self)
    optimizer.stepCount += 1
    for (b, bucket) in layout.buckets.enumerated() {
      let own = bucket.bounds[rank]..<bucket.bounds[rank + 1]
      for piece in bucket.pieces(of: own) {
        let p = parameters[piece.parameter]
        let constants = optimizer.constants(weightDecay: decay[piece.parameter])
        let n = piece.inBucket.count
        let shard = piece.inBucket.lowerBound - own.lowerBound
        // This piece's gradient: the rank's whole copy (ZeRO 1) or its own chunk (ZeRO 2), clipped as DDP clips.
        var grad =
          zero == .gradients
          ? Array(ownGradients[b].values[shard..<(shard + n)])
          : Array(p.gradStorage![piece.inParameter])
        if scale < 1 { grad.withUnsafeMutableBufferPointer { Kernels.scale($0.baseAddress!, count: n, by: scale) } }
        p.storage.withUnsafeMutableBufferPointer { w in
          firstMoments[b].values.withUnsafeMutableBufferPointer { m in
            secondMoments[b].values.withUnsafeMutableBufferPointer { v in
              grad.withUnsafeBufferPointer { g in
                adamUpdate(
                  w.baseAddress! + piece.inParameter.lowerBound, g.baseAddress!, m.baseAddress! + shard,
                  v.baseAddress! + shard, count: n, constants)
              }
            }
          }
        }
      }
      // Every rank's updated chunk to every rank.
      var values = [Scalar](repeating: 0, count: bucket.count)
      for (slot, i) in bucket.parameters.enumerated() {
        values.replaceSubrange(bucket.offsets[slot]..<bucket.offsets[slot + 1], with: parameters[i].storage)
      }
      try values.withUnsafeMutableBufferPointer { try communicator.allGather($0, bounds: bucket.bounds) }
      for (slot, i) in bucket.parameters.enumerated() {
        parameters[i].storage = Array(values[bucket.offsets[slot]..<bucket.offsets[slot + 1]])
      }
      ownGradients[b].values = []
    }
    optimizer.zeroGrad()
    return norm
  }

  /// ZeRO 1 and 2: every rank's moments gathered into the optimizer's `state`, whole and by parameter, as ZeRO 0
  /// holds them: what a checkpoint saves (so that it resumes at any number of ranks). Every rank calls it.
  public func gatherOptimizerState() throws {
    guard zero != .none else { return }
    let rank = communicator.rank
    for (b, bucket) in layout.buckets.enumerated() {
      for (kind, shards) in [("exp_avg", firstMoments), ("exp_avg_sq", secondMoments)] {
        var values = [Scalar](repeating: 0, count: bucket.count)
        values.replaceSubrange(bucket.bounds[rank]..<bucket.bounds[rank + 1], with: shards[b].values)
        try values.withUnsafeMutableBufferPointer { try communicator.allGather($0, bounds: bucket.bounds) }
        for (slot, i) in bucket.parameters.enumerated() {
          optimizer.state[kind, default: [:]][ObjectIdentifier(parameters[i])] = Array(
            values[bucket.offsets[slot]..<bucket.offsets[slot + 1]])
        }
      }
    }
  }

  /// ZeRO 1 and 2: this rank's chunks of the moments taken from the optimizer's whole `state` (a resumed run's),
  /// which is then let go. Nothing to take before the first step.
  public func loadOptimizerShards() {
    guard zero != .none else { return }
    let rank = communicator.rank
    for (b, bucket) in layout.buckets.enumerated() {
      let own = bucket.bounds[rank]..<bucket.bounds[rank + 1]
      for (kind, shards) in [("exp_avg", firstMoments), ("exp_avg_sq", secondMoments)] {
        for piece in bucket.pieces(of: own) {
          guard let whole = optimizer.state[kind]?[ObjectIdentifier(parameters[piece.parameter])] else { continue }
          let at = piece.inBucket.lowerBound - own.lowerBound
          shards[b].values.replaceSubrange(at..<(at + piece.inBucket.count), with: whole[piece.inParameter])
        }
      }
    }
    optimizer.state = [:]
  }

  /// The global gradient norm, the same number `clipGradNorm` computes in one process: each block's sum of
  /// squares, then the blocks' sums in order. With ZeRO 2 a rank computes the blocks of its chunks and the ranks
  /// all-reduce the table of blocks (each entry is one rank's number plus zeros, so exact).
  func gradientNorm() throws -> Double {
    guard zero == .gradients else { return gradientBlockSquares(parameters).reduce(0, +).squareRoot() }
    let rank = communicator.rank
    var blocks = [Double](repeating: 0, count: layout.blockCount)
    for (b, bucket) in layout.buckets.enumerated() {
      let own = bucket.bounds[rank]..<bucket.bounds[rank + 1]
      ownGradients[b].values.withUnsafeBufferPointer { g in
        for piece in bucket.pieces(of: own) {
          // A chunk starts at a block's start, so its pieces cut whole blocks (the last one of a parameter short).
          for start in stride(from: piece.inParameter.lowerBound, to: piece.inParameter.upperBound, by: normBlock) {
            let count = min(normBlock, piece.inParameter.upperBound - start)
            let at = piece.inBucket.lowerBound - own.lowerBound + (start - piece.inParameter.lowerBound)
            blocks[layout.firstBlock[piece.parameter] + start / normBlock] = sumOfSquares(
              g.baseAddress! + at, count: count)
          }
        }
      }
    }
    try communicator.allReduce(&blocks)
    return blocks.reduce(0, +).squareRoot()
  }

  /// The bytes this rank holds now: weights, gradients (whole, or its chunks with ZeRO 2) and Adam's moments
  /// (whole, or its chunks with ZeRO 1 and 2). Measure it after backward, before the step forgets the gradients.
  public var ledger: ParallelLedger {
    let size = MemoryLayout<Scalar>.stride
    var ledger = ParallelLedger()
    ledger.weights = parameters.reduce(0) { $0 + $1.storage.count } * size
    ledger.gradients =
      (zero == .gradients
        ? ownGradients.reduce(0) { $0 + $1.values.count }
        : parameters.reduce(0) { $0 + ($1.gradStorage?.count ?? 0) }) * size
    ledger.optimizer =
      (zero == .none
        ? optimizer.state.values.reduce(0) { $0 + $1.values.reduce(0) { $0 + $1.count } }
        : firstMoments.reduce(0) { $0 + $1.values.count } + secondMoments.reduce(0) { $0 + $1.values.count }) * size
    return ledger
  }

  /// The ZeRO paper's bytes per parameter for fp32 Adam on `ranks` ranks: 4 weights + 4 gradients + 8 moments,
  /// the moments divided by N from ZeRO 1, the gradients too from ZeRO 2.
  public static func paperBytesPerParameter(_ zero: ZeroStage, ranks: Int) -> Double {
    let n = Double(ranks)
    switch zero {
    case .none: return 16
    case .optimizer: return 8 + 8 / n
    case .gradients: return 4 + 12 / n
    }
  }

  /// When the last synchronising backward ran, and when each bucket's collective ran since the last call
  /// (seconds from this rank's start, one clock for both): the timeline of DDP's overlap.
  public private(set) var lastBackward: (start: Double, end: Double) = (0, 0)
  public func takeBucketSpans() -> [(start: Double, end: Double, label: String)] { worker.takeSpans() }
}
