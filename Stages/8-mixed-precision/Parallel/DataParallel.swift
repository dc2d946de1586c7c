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
/// - ZeRO 3 (PyTorch's FSDP) also shards the weights: between steps rank r holds only chunk r of each unit (a
///   block, or the rest of the model), and the ranks all-gather a unit's weights just before its forward, free
///   them after it, and gather them again just before its backward. The buckets are the units.
///
/// Every one of them gives the same bits: the chunk sums are the same additions (an all-reduce is a reduce-scatter
/// and an all-gather), Adam is elementwise, and the gradient norm is summed in the same blocks in the same order
/// (`clipGradNorm`).

/// Which ZeRO stage a data-parallel run uses.
public enum ZeroStage: Int, CaseIterable, Sendable {
  case none = 0, optimizer = 1, gradients = 2, parameters = 3

  /// Whether each rank keeps only its chunk of the gradients (ZeRO 2 and 3).
  var shardsGradients: Bool { rawValue >= 2 }
}

/// The bytes one rank holds, by kind, at the end of a step.
public struct ParallelLedger: Sendable, Equatable {
  public var weights = 0
  public var gradients = 0
  public var optimizer = 0
  public var total: Int { weights + gradients + optimizer }
  /// ZeRO 3: the most bytes of whole units' weights held at once during the step (the root and one block, or
  /// every unit while the whole model is gathered), on top of `weights`.
  public var gatheredPeak = 0
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
  /// ZeRO 3: this rank's chunk of each bucket's weights, the only copy it keeps between steps.
  let ownWeights: [Buffer]
  /// ZeRO 3: the buckets are the units, the blocks from last to first, then the root (every other parameter);
  /// held[b]: bucket b's parameters hold their whole weights now.
  var held: [Bool]
  /// ZeRO 3: every unit stays gathered (`gatherParameters`) until `releaseParameters`.
  var pinned = false
  var heldBytes = 0
  var gatheredPeak = 0
  /// A failure met inside forward or backward (their hooks cannot throw), thrown by `checkHooks`.
  var hookFailure: (any Error)?
  /// The squared gradient norm of the whole model, when these parameters are one rank's share of a model cut
  /// by tensor parallelism (ZeRO 0 only); nil: the squares of these parameters' gradients.
  public var gradientSquares: (() throws -> Double)?
  /// Parameters of each bucket whose gradient is not final yet in this backward.
  var waiting: [Int]
  /// The first bucket not yet handed to the communication thread (buckets go in order, on every rank alike).
  var nextBucket = 0

  /// Wraps `parameters` (the same model on every rank) and `optimizer` (AdamW over them). The weights are
  /// broadcast from rank 0 first, as DDP does, so the ranks start equal even if their initial draws were not.
  ///
  /// `blocks` cuts the model into FSDP's units: each block's parameter indices (the root unit is the rest). With
  /// it the buckets are the units instead of `bucketBytes` each; ZeRO 3 needs it, and installs `aroundBlock` as
  /// the model's hook.
  public init(
    parameters: [Tensor<Scalar>], optimizer: Adam<Scalar>, communicator: any Communicator, zero: ZeroStage = .none,
    bucketBytes: Int = 1 << 20, blocks: [[Int]]? = nil
  ) throws {
    precondition(zero != .parameters || blocks != nil, "DataParallel: ZeRO 3 needs the model's units")
    self.parameters = parameters
    self.optimizer = optimizer
    self.communicator = communicator
    self.zero = zero
    channel = try communicator.duplicate()
    let counts = parameters.map(\.count)
    if let blocks {
      let inBlocks = Set(blocks.joined())
      let root = parameters.indices.filter { !inBlocks.contains($0) }
      let groups = (blocks.reversed() + [root]).map { Array($0.reversed()) }
      layout = GradientLayout(counts: counts, groups: groups, ranks: communicator.size)
    } else {
      layout = GradientLayout(counts: counts, bucketBytes: bucketBytes, ranks: communicator.size)
    }
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
    ownWeights = layout.buckets.map { _ in Buffer() }
    held = layout.buckets.map { _ in true }
    waiting = layout.buckets.map(\.parameters.count)
    for p in parameters {
      try p.storage.withUnsafeMutableBufferPointer { try communicator.broadcast($0, root: 0) }
      p.pack()  // a mixed-precision working copy goes back to 16 bits (no-op for fp32)
    }
    heldBytes = parameters.reduce(0) { $0 + $1.count } * MemoryLayout<Scalar>.stride
    takeWeightShards()
  }

  /// ZeRO 3: this rank's chunks of the whole weights its parameters hold now, which are then let go.
  func takeWeightShards() {
    guard zero == .parameters else { return }
    let rank = communicator.rank
    for (b, bucket) in layout.buckets.enumerated() {
      let own = bucket.bounds[rank]..<bucket.bounds[rank + 1]
      ownWeights[b].values = bucket.pieces(of: own).flatMap { parameters[$0.parameter].storage[$0.inParameter] }
      held[b] = true
    }
    pinned = false
    for b in layout.buckets.indices { release(b) }
    gatheredPeak = 0
  }

  deinit { worker.stop() }

  /// Backward of this rank's loss. With `sync` (the last micro-batch of a step) each bucket is handed to the
  /// communication thread the moment its gradients are final, and this returns once every bucket is reduced.
  /// Without (DDP's `no_sync()`, the earlier micro-batches of gradient accumulation), the gradients only add up
  /// on this rank.
  ///
  /// ZeRO 3: a unit's weights are let go the moment its gradients are final (its backward is done with them),
  /// and the root's at the end. Without `sync` each rank keeps its whole gradients, as FSDP's `no_sync()` does.
  public func backward(_ loss: Tensor<Scalar>, sync: Bool = true) throws {
    guard sync || zero == .parameters else { return loss.backward() }
    let start = worker.elapsed()
    waiting = layout.buckets.map(\.parameters.count)
    nextBucket = 0
    loss.backward { [self] leaf in
      guard let i = index[ObjectIdentifier(leaf)] else { return }
      let b = layout.place[i].bucket
      waiting[b] -= 1
      if waiting[b] == 0 { release(b) }
      if sync { launchReadyBuckets() }
    }
    lastBackward = (start, worker.elapsed())
    // A parameter backward never reached (unused by this loss) counts as a zero gradient.
    for b in layout.buckets.indices {
      waiting[b] = 0
      release(b)
    }
    if sync { launchReadyBuckets() }
    try worker.wait()
    try checkHooks()
    guard sync else { return }
    if !zero.shardsGradients {
      for bucket in layout.buckets.indices { copyBack(bucket) }
    }
    ledgerAfterBackward = ledger
    if zero == .parameters {
      ledgerAfterBackward.gatheredPeak = gatheredPeak
      gatheredPeak = heldBytes
    }
  }

  // MARK: ZeRO 3's gathering

  /// ZeRO 3: bucket b's whole weights, all-gathered from the ranks' chunks into its parameters (nothing to do if
  /// they are there). Every rank calls it for the same buckets in the same order.
  func gather(_ b: Int) throws {
    guard zero == .parameters, !held[b] else { return }
    let bucket = layout.buckets[b]
    let rank = communicator.rank
    var values = [Scalar](repeating: 0, count: bucket.count)
    values.replaceSubrange(bucket.bounds[rank]..<bucket.bounds[rank + 1], with: ownWeights[b].values)
    // Whatever the collective does, the parameters get weights of their size: a failed gather leaves zeros for
    // the rest of a forward that `checkHooks` then stops.
    defer {
      for (slot, i) in bucket.parameters.enumerated() {
        parameters[i].storage = Array(values[bucket.offsets[slot]..<bucket.offsets[slot + 1]])
      }
      held[b] = true
      heldBytes += bucket.count * MemoryLayout<Scalar>.stride
      gatheredPeak = max(gatheredPeak, heldBytes)
    }
    try values.withUnsafeMutableBufferPointer { try communicator.allGather($0, bounds: bucket.bounds) }
  }

  /// ZeRO 3: bucket b's whole weights let go (the rank keeps its chunk), unless the whole model is pinned.
  func release(_ b: Int) {
    guard zero == .parameters, held[b], !pinned else { return }
    for i in layout.buckets[b].parameters { parameters[i].storage = [] }
    held[b] = false
    heldBytes -= layout.buckets[b].count * MemoryLayout<Scalar>.stride
  }

  /// Runs `body`, keeping its failure for `checkHooks` (the first one).
  func attempt(_ body: () throws -> Void) {
    do { try body() } catch { if hookFailure == nil { hookFailure = error } }
  }

  /// Throws the failure a hook met in forward or backward, if any.
  public func checkHooks() throws {
    if let failure = hookFailure {
      hookFailure = nil
      throw failure
    }
  }

  /// ZeRO 3: gathers the root unit (embeddings, final norm: the head uses the embedding last in forward and
  /// first in backward) before a forward; it stays until the end of backward. Every rank calls it.
  public func prepareForward() throws {
    try gather(layout.buckets.count - 1)
  }

  /// ZeRO 3's hook around block `i`'s forward (the model's `aroundBlock`): its unit gathered before, let go
  /// after, and gathered again when backward reaches the block's output, before any of the block's own backward
  /// (FSDP's pre-forward, post-forward and pre-backward hooks).
  public func aroundBlock(
    _ i: Int, _ x: Tensor<Scalar>, _ body: (Tensor<Scalar>) -> Tensor<Scalar>
  ) -> Tensor<Scalar> {
    let b = layout.buckets.count - 2 - i
    attempt { try gather(b) }
    let y = body(x)
    release(b)
    guard y.requiresGrad else { return y }
    return Tensor(y.storage, shape: y.shape, op: "gather", parents: [y]) { [self] out in
      attempt { try gather(b) }
      y.accumulateGrad(out.gradStorage!)
    }
  }

  /// ZeRO 3: every unit gathered and kept, so that the whole model is on every rank (to evaluate, sample or
  /// save it: FSDP's `summon_full_params`). Every rank calls it. Nothing to do below ZeRO 3.
  public func gatherParameters() throws {
    for b in layout.buckets.indices { try gather(b) }
    pinned = zero == .parameters
  }

  /// ZeRO 3: back to holding chunks only, after `gatherParameters` (on this rank alone: no messages).
  public func releaseParameters() {
    guard pinned else { return }
    pinned = false
    for b in layout.buckets.indices { release(b) }
    gatheredPeak = heldBytes
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
      if zero.shardsGradients { parameters[i].zeroGrad() }  // this rank will keep only its chunk
    }
    let (channel, zero, own, rank) = (self.channel, self.zero, ownGradients[b], communicator.rank)
    worker.submit("bucket \(b)") {
      try buffer.values.withUnsafeMutableBufferPointer { values in
        if zero.shardsGradients {
          try channel.reduceScatter(values, bounds: bucket.bounds)
          own.values = Array(values[bucket.bounds[rank]..<bucket.bounds[rank + 1]])
        } else {
          try channel.allReduce(values, .sum, bounds: bucket.bounds)
        }
      }
      if zero.shardsGradients { buffer.values = [] }
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
  /// `learningRate`, and with ZeRO 1 and 2 the updated chunks all-gathered (ZeRO 3 keeps its chunks). Forgets the
  /// gradients. Returns the norm before clipping.
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
        // This piece's gradient: the rank's whole copy (ZeRO 1) or its own chunk (ZeRO 2, 3), clipped as DDP
        // clips.
        var grad =
          zero.shardsGradients
          ? Array(ownGradients[b].values[shard..<(shard + n)])
          : Array(p.gradStorage![piece.inParameter])
        if scale < 1 { grad.withUnsafeMutableBufferPointer { Kernels.scale($0.baseAddress!, count: n, by: scale) } }
        // The weights it updates: the parameter's own (ZeRO 1, 2) or the rank's chunk of them (ZeRO 3).
        func update(_ w: UnsafeMutablePointer<Scalar>) {
          firstMoments[b].values.withUnsafeMutableBufferPointer { m in
            secondMoments[b].values.withUnsafeMutableBufferPointer { v in
              grad.withUnsafeBufferPointer { g in
                adamUpdate(w, g.baseAddress!, m.baseAddress! + shard, v.baseAddress! + shard, count: n, constants)
              }
            }
          }
        }
        if zero == .parameters {
          ownWeights[b].values.withUnsafeMutableBufferPointer { update($0.baseAddress! + shard) }
        } else {
          p.storage.withUnsafeMutableBufferPointer { update($0.baseAddress! + piece.inParameter.lowerBound) }
        }
      }
      ownGradients[b].values = []
      guard zero != .parameters else { continue }
      // Every rank's updated chunk to every rank.
      var values = [Scalar](repeating: 0, count: bucket.count)
      for (slot, i) in bucket.parameters.enumerated() {
        values.replaceSubrange(bucket.offsets[slot]..<bucket.offsets[slot + 1], with: parameters[i].storage)
      }
      try values.withUnsafeMutableBufferPointer { try communicator.allGather($0, bounds: bucket.bounds) }
      for (slot, i) in bucket.parameters.enumerated() {
        parameters[i].storage = Array(values[bucket.offsets[slot]..<bucket.offsets[slot + 1]])
      }
    }
    optimizer.zeroGrad()
    return norm
  }

  /// What this rank alone holds of the training state, for its shard of a checkpoint: its chunks of Adam's
  /// moments (ZeRO 1 to 3; none before the first step) and of the weights (ZeRO 3), each piece a run of one
  /// parameter's elements from `start` on. "model" or the optimizer's state kind names what a piece is of.
  public func ownedPieces() -> [(kind: String, parameter: Int, start: Int, values: [Scalar])] {
    guard zero != .none else { return [] }
    let rank = communicator.rank
    var kinds: [(String, [Buffer])] =
      optimizer.stepCount > 0 ? [("exp_avg", firstMoments), ("exp_avg_sq", secondMoments)] : []
    if zero == .parameters { kinds.append(("model", ownWeights)) }
    var pieces: [(kind: String, parameter: Int, start: Int, values: [Scalar])] = []
    for (b, bucket) in layout.buckets.enumerated() {
      let own = bucket.bounds[rank]..<bucket.bounds[rank + 1]
      for piece in bucket.pieces(of: own) {
        let at = piece.inBucket.lowerBound - own.lowerBound
        for (kind, buffers) in kinds {
          pieces.append(
            (
              kind, piece.parameter, piece.inParameter.lowerBound,
              Array(buffers[b].values[at..<(at + piece.inBucket.count)])
            ))
        }
      }
    }
    return pieces
  }

  /// ZeRO 1, 2 and 3: this rank's chunks of the moments taken from the optimizer's whole `state` (a resumed
  /// run's), which is then let go. Nothing to take before the first step. ZeRO 3: its chunks of the weights too,
  /// from the whole model its parameters hold (`gatherParameters`, then a checkpoint loaded into them).
  public func loadShards() {
    takeWeightShards()
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
    guard zero.shardsGradients else { return gradientBlockSquares(parameters).reduce(0, +).squareRoot() }
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

  /// The bytes this rank holds now: weights (whole, or its chunks with ZeRO 3, plus any unit gathered now),
  /// gradients (whole, or its chunks with ZeRO 2 and 3) and Adam's moments (whole, or its chunks with ZeRO 1 to
  /// 3). Measure it after backward, before the step forgets the gradients.
  public var ledger: ParallelLedger {
    let size = MemoryLayout<Scalar>.stride
    var ledger = ParallelLedger()
    ledger.weights =
      parameters.reduce(0) { $0 + $1.storageBytes } + ownWeights.reduce(0) { $0 + $1.values.count } * size
    ledger.gradients =
      (zero.shardsGradients
        ? ownGradients.reduce(0) { $0 + $1.values.count }
        : parameters.reduce(0) { $0 + ($1.gradStorage?.count ?? 0) }) * size
    ledger.optimizer =
      (zero == .none
        ? optimizer.state.values.reduce(0) { $0 + $1.values.reduce(0) { $0 + $1.count } }
        : firstMoments.reduce(0) { $0 + $1.values.count } + secondMoments.reduce(0) { $0 + $1.values.count }) * size
    return ledger
  }

  /// The ZeRO paper's bytes per parameter for fp32 Adam on `ranks` ranks: 4 weights + 4 gradients + 8 moments,
  /// the moments divided by N from ZeRO 1, the gradients too from ZeRO 2, everything from ZeRO 3.
  public static func paperBytesPerParameter(_ zero: ZeroStage, ranks: Int) -> Double {
    let n = Double(ranks)
    switch zero {
    case .none: return 16
    case .optimizer: return 8 + 8 / n
    case .gradients: return 4 + 12 / n
    case .parameters: return 16 / n
    }
  }

  /// When the last synchronising backward ran, and when each bucket's collective ran since the last call
  /// (seconds from this rank's start, one clock for both): the timeline of DDP's overlap.
  public private(set) var lastBackward: (start: Double, end: Double) = (0, 0)
  public func takeBucketSpans() -> [(start: Double, end: Double, label: String)] { worker.takeSpans() }
}
