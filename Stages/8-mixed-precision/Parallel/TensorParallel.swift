import Foundation
import Kernels
import Support

/// Tensor parallelism as Megatron-LM does it (Shoeybi et al., 2019): each block's matrices cut across the ranks,
/// so that each rank holds and multiplies 1/N of them, and two all-reduces per block put the pieces together.
///
/// - Column-parallel (qkv, the MLP's expand): rank r holds rows r of the weight [out, in], computes its slice of
///   the outputs from the whole input. Attention's heads split with qkv: rank r runs heads r.
/// - Row-parallel (attention's projection, the MLP's contract): rank r holds columns r, multiplies its slice of
///   the inputs (the outputs of its heads, of its MLP slice) and gets a partial sum of the whole output.
/// - f, before a column-parallel layer: identity forward (every rank has the input), all-reduce backward (each
///   rank's slice contributes to the input's gradient).
/// - g, after a row-parallel layer: all-reduce forward (the partial sums), identity backward.
/// - The token embedding is cut by vocabulary: rank r holds a range of ids' rows, looks up the ids in its range
///   (zeros for the others) and g sums them. The tied head then gives each rank its range's logits, and the
///   cross-entropy is computed without ever gathering them: the row maxima, the sums of exponentials and the
///   target logits are all-reduced, a few numbers per row instead of the vocabulary.
///
/// A vocabulary that does not divide by N is padded to the next multiple, as Megatron pads it; here the padded
/// rows are zeros whose logits the softmax leaves out, so the model is exactly the unpadded one.

/// A rank's tensor-parallel group, and a failure its backward pass met (a backward closure cannot throw: the
/// error waits here, the remaining all-reduces are skipped, and `check()` throws it after backward).
public final class TensorParallelGroup {
  public let communicator: any Communicator
  var failure: (any Error)?

  public init(_ communicator: any Communicator) { self.communicator = communicator }

  public var size: Int { communicator.size }
  public var rank: Int { communicator.rank }

  /// f: the identity forward; backward all-reduces the gradient.
  public func enter(_ x: Tensor<Float>) -> Tensor<Float> {
    guard size > 1 else { return x }
    return Tensor(x.storage, shape: x.shape, op: "f", parents: [x]) { [self] out in
      var gradient = out.gradStorage!
      if failure == nil {
        do { try communicator.allReduce(&gradient) } catch { failure = error }
      }
      x.accumulateGrad(gradient)
    }
  }

  /// g: all-reduces forward; backward passes the gradient through.
  public func leave(_ x: Tensor<Float>) throws -> Tensor<Float> {
    guard size > 1 else { return x }
    try check()
    var sum = x.storage
    try communicator.allReduce(&sum)
    return Tensor(sum, shape: x.shape, op: "g", parents: [x]) { out in x.accumulateGrad(out.gradStorage!) }
  }

  /// Throws the failure a backward pass met, if any.
  public func check() throws {
    if let failure {
      self.failure = nil
      throw failure
    }
  }
}

/// One block with its matrices cut: pre-norm, causal, as stage 5's GPT block.
public final class TensorParallelBlock: Module {
  public typealias Scalar = Float
  public let norm1: LayerNorm<Float>
  /// Column-parallel: this rank's heads' rows of q, k and v, packed [3C/N, C].
  public let qkv: Linear<Float>
  /// Row-parallel: the columns of this rank's heads [C, C/N]; the bias is added once, after the sum.
  public let projection: Linear<Float>
  public let projectionBias: Tensor<Float>?
  public let norm2: LayerNorm<Float>
  /// Column-parallel [4C/N, C], and row-parallel [C, 4C/N].
  public let expand: Linear<Float>
  public let contract: Linear<Float>
  public let contractBias: Tensor<Float>?
  public let heads: Int
  let activation: GELUForm
  unowned let group: TensorParallelGroup
  public var isTraining = true

  /// Rank `group.rank`'s share of `block` (of a model with `heads` heads).
  init(slicing block: Block<Float>, heads: Int, group: TensorParallelGroup) {
    let (n, r) = (group.size, group.rank)
    let c = block.norm1.gamma!.count
    let (local, hidden) = (c / n, 4 * c / n)
    func rows(_ t: Tensor<Float>, _ ranges: [Range<Int>]) -> Tensor<Float> {
      let width = t.count / t.shape[0]
      let values = ranges.flatMap { t.storage[($0.lowerBound * width)..<($0.upperBound * width)] }
      return Tensor(values, shape: [ranges.reduce(0) { $0 + $1.count }] + t.shape.dropFirst(), requiresGrad: true)
    }
    func columns(_ t: Tensor<Float>, _ range: Range<Int>) -> Tensor<Float> {
      let width = t.shape[1]
      let values = (0..<t.shape[0]).flatMap { row in
        t.storage[(row * width + range.lowerBound)..<(row * width + range.upperBound)]
      }
      return Tensor(values, shape: [t.shape[0], range.count], requiresGrad: true)
    }
    func copy(_ t: Tensor<Float>?) -> Tensor<Float>? {
      t.map { Tensor($0.storage, shape: $0.shape, requiresGrad: true) }
    }
    let mine = (r * local)..<((r + 1) * local)
    let qkvRows = (0..<3).map { part in (part * c + mine.lowerBound)..<(part * c + mine.upperBound) }
    let attention = block.attention
    qkv = Linear(weight: rows(attention.qkv.weight, qkvRows), bias: attention.qkv.bias.map { rows($0, qkvRows) })
    projection = Linear(weight: columns(attention.projection.weight, mine), bias: nil)
    projectionBias = copy(attention.projection.bias)
    let hiddenRange = (r * hidden)..<((r + 1) * hidden)
    expand = Linear(
      weight: rows(block.expand.weight, [hiddenRange]), bias: block.expand.bias.map { rows($0, [hiddenRange]) })
    contract = Linear(weight: columns(block.contract.weight, hiddenRange), bias: nil)
    contractBias = copy(block.contract.bias)
    norm1 = LayerNorm(gamma: copy(block.norm1.gamma), beta: copy(block.norm1.beta), eps: block.norm1.eps)
    norm2 = LayerNorm(gamma: copy(block.norm2.gamma), beta: copy(block.norm2.beta), eps: block.norm2.eps)
    self.heads = heads / n
    activation = block.activation
    self.group = group
  }

  func callAsFunction(_ x: Tensor<Float>) throws -> Tensor<Float> {
    let y = Tensor.attention(packed: qkv(group.enter(norm1(x))), heads: heads, causal: true)
    var attended = try group.leave(projection(y))
    if let projectionBias { attended = attended + projectionBias }
    let x = x + attended
    var mlp = try group.leave(contract(expand(group.enter(norm2(x))).gelu(activation)))
    if let contractBias { mlp = mlp + contractBias }
    return x + mlp
  }

  /// The parameters cut across the ranks (the rest, norms and the row-parallel biases, every rank holds whole).
  var shardedParameters: [Tensor<Float>] {
    [qkv.weight, projection.weight, expand.weight, contract.weight] + [qkv.bias, expand.bias].compactMap { $0 }
  }
}

/// A GPT with every block tensor-parallel and the embedding vocabulary-parallel: rank `group.rank`'s share.
public final class TensorParallelGPT: Module {
  public typealias Scalar = Float
  public let config: GPTConfig
  /// This rank's rows of the (padded) vocabulary's embedding, [V/N, C]; also the head (tied).
  public let tokenEmbedding: Tensor<Float>
  public let positionEmbedding: Tensor<Float>
  public let blocks: [TensorParallelBlock]
  public let finalNorm: LayerNorm<Float>
  /// The first id of this rank's rows, and how many ids the padded vocabulary has.
  public let vocabularyStart: Int
  public let paddedVocabulary: Int
  public let group: TensorParallelGroup
  public var isTraining = true

  /// Rank `group.rank`'s share of `model`. Refuses (a `UserError`) what it cannot cut: heads that do not divide
  /// by the ranks, and the model options it does not implement.
  public init(slicing model: GPT<Float>, group: TensorParallelGroup) throws {
    let config = model.config
    let n = group.size
    guard config.heads % n == 0 else {
      throw UserError("--tp \(n) does not divide the \(config.heads) heads: each rank must hold whole heads")
    }
    guard config.dropout == 0, config.positions == .learned, config.norm == .pre, config.causal,
      let positions = model.positionEmbedding
    else {
      throw UserError("tensor parallelism runs GPT-2's blocks (pre-norm, learned positions) without dropout")
    }
    self.config = config
    self.group = group
    paddedVocabulary = (config.vocabulary + n - 1) / n * n
    let rowsPerRank = paddedVocabulary / n
    vocabularyStart = group.rank * rowsPerRank
    let c = config.width
    let table = model.tokenEmbedding.weight.storage
    var rows = [Float](repeating: 0, count: rowsPerRank * c)
    let real = max(0, min(rowsPerRank, config.vocabulary - vocabularyStart))
    if real > 0 {  // a rank whose rows are all padding (12 ranks, 65 ids) copies nothing
      rows.replaceSubrange(0..<(real * c), with: table[(vocabularyStart * c)..<((vocabularyStart + real) * c)])
    }
    tokenEmbedding = Tensor(rows, shape: [rowsPerRank, c], requiresGrad: true)
    positionEmbedding = Tensor(positions.weight.storage, shape: positions.weight.shape, requiresGrad: true)
    blocks = model.blocks.map { TensorParallelBlock(slicing: $0, heads: config.heads, group: group) }
    finalNorm = LayerNorm(
      gamma: model.finalNorm.gamma.map { Tensor($0.storage, shape: $0.shape, requiresGrad: true) },
      beta: model.finalNorm.beta.map { Tensor($0.storage, shape: $0.shape, requiresGrad: true) },
      eps: model.finalNorm.eps)
  }

  /// This rank's logits [B * T, V/N] for `tokens` (rows of T ids).
  public func logits(_ tokens: [Int], batch: Int) throws -> Tensor<Float> {
    let t = tokens.count / batch
    let rowsHere = tokenEmbedding.shape[0]
    let local = tokens.map { $0 - vocabularyStart }
    let inRange = local.map { (0..<rowsHere).contains($0) }
    // Ids outside this rank's range look up row 0 and are multiplied by 0: the sum over ranks is the real row.
    var x = tokenEmbedding.gatherRows(zip(local, inRange).map { $1 ? $0 : 0 }, indexShape: [batch, t])
    if group.size > 1 { x = x * Tensor(inRange.map { $0 ? 1 : 0 }, shape: [batch, t, 1]) }
    x = try group.leave(x) + positionEmbedding[0..<t]
    for block in blocks { x = try block(x) }
    return group.enter(finalNorm(x)).linear(tokenEmbedding, nil).reshape([batch * t, rowsHere])
  }

  /// The mean next-token loss of `tokens` -> `targets`, the cross-entropy computed vocabulary-parallel.
  public func loss(_ tokens: [Int], _ targets: [Int], batch: Int) throws -> Tensor<Float> {
    try vocabularyParallelCrossEntropy(logits(tokens, batch: batch), targets: targets)
  }

  /// Cross-entropy over logits cut by vocabulary: log sum_j e^(x_j) - x_target over all ranks' columns, from a
  /// max, a sum and a target logit per row, each all-reduced. Padded columns are left out.
  func vocabularyParallelCrossEntropy(_ logits: Tensor<Float>, targets: [Int]) throws -> Tensor<Float> {
    let (rows, columns) = (logits.shape[0], logits.shape[1])
    let valid = max(0, min(columns, config.vocabulary - vocabularyStart))
    let x = logits.storage
    var maxima = (0..<rows).map { row in x[(row * columns)..<(row * columns + valid)].max() ?? -.infinity }
    if group.size > 1 { try group.communicator.allReduce(&maxima, .max) }
    // The row sums of e^(x - max) and the target logits, in one message.
    var sums = [Float](repeating: 0, count: 2 * rows)
    var exponentials = [Float](repeating: 0, count: rows * columns)
    for row in 0..<rows {
      var sum: Float = 0
      for j in 0..<valid {
        let e = exp(x[row * columns + j] - maxima[row])
        exponentials[row * columns + j] = e
        sum += e
      }
      sums[row] = sum
      let target = targets[row] - vocabularyStart
      if (0..<valid).contains(target) { sums[rows + row] = x[row * columns + target] }
    }
    if group.size > 1 { try group.communicator.allReduce(&sums) }
    var total: Float = 0
    for row in 0..<rows { total += log(sums[row]) + maxima[row] - sums[rows + row] }
    let scale = 1 / Float(rows)
    let vocabularyStart = self.vocabularyStart
    return Tensor([total * scale], shape: [], op: "vocabParallelCrossEntropy", parents: [logits]) { out in
      let dy = out.gradStorage![0] * scale
      logits.addToGrad { g in
        for row in 0..<rows {
          let target = targets[row] - vocabularyStart
          for j in 0..<valid {
            let p = exponentials[row * columns + j] / sums[row]
            g[row * columns + j] += dy * (j == target ? p - 1 : p)
          }
        }
      }
    }
  }

  /// Parameters cut across the ranks; the others every rank holds whole (and computes the same gradient for).
  public var shardedParameters: [Tensor<Float>] { [tokenEmbedding] + blocks.flatMap(\.shardedParameters) }

  /// The squared norm of the whole model's gradient: the cut parameters' squares summed over the ranks, the
  /// whole ones' once.
  public func gradientSquares() throws -> Double {
    let sharded = Set(shardedParameters.map(ObjectIdentifier.init))
    let all = parameters()
    var squares = [
      gradientBlockSquares(all.filter { sharded.contains(ObjectIdentifier($0)) }).reduce(0, +)
    ]
    if group.size > 1 { try group.communicator.allReduce(&squares) }
    return squares[0] + gradientBlockSquares(all.filter { !sharded.contains(ObjectIdentifier($0)) }).reduce(0, +)
  }
}

/// One rank of a tensor-parallel run, or of data x tensor parallel: the tensor group holds one model cut in N,
/// the data group (when there is one) holds copies of that cut, each on its own rows of the batch.
public final class TensorParallelTrainer {
  public let config: TrainConfig
  public let model: TensorParallelGPT
  public let optimizer: Adam<Float>
  public let sampler: WindowSampler
  let schedule: LRSchedule
  /// Across the copies (nil without data parallelism).
  public let dataParallel: DataParallel?
  public internal(set) var step = 0
  /// The whole model's trainer, whose slices this rank trains: its sampler and step are this rank's, and `train`
  /// evaluates, samples and checkpoints with it (on rank 0, after `gatherModel`).
  public let trainer: Trainer

  /// Every rank builds the whole model from the seed (as one process would) and keeps its share of it.
  public init(
    _ config: TrainConfig, data: SharedData, tensor: any Communicator, data dataGroup: (any Communicator)?
  )
    throws
  {
    let whole = Trainer(config, tokenizer: data.tokenizer, train: data.train, val: data.val)
    self.config = config
    let group = TensorParallelGroup(tensor)
    model = try TensorParallelGPT(slicing: whole.model, group: group)
    let reference = whole.optimizer as! Adam<Float>
    optimizer = Adam(
      ParameterGroup.decayingMatrices(model.parameters(), weightDecay: config.weightDecay),
      learningRate: config.learningRate, beta1: reference.beta1, beta2: reference.beta2, eps: reference.eps,
      decoupledWeightDecay: true)
    sampler = whole.sampler
    schedule = whole.schedule
    trainer = whole
    if let dataGroup {
      let parallel = try DataParallel(parameters: model.parameters(), optimizer: optimizer, communicator: dataGroup)
      let model = self.model
      parallel.gradientSquares = { try model.gradientSquares() }
      dataParallel = parallel
    } else {
      dataParallel = nil
    }
  }

  /// One optimizer step on this rank's rows of `accumulation` global batches (every rank of a tensor group reads
  /// the same rows). Returns the mean loss (over the data group's ranks too).
  @discardableResult
  public func runStep() throws -> Double {
    let (copies, copy) = (dataParallel?.communicator.size ?? 1, dataParallel?.communicator.rank ?? 0)
    let accumulation = config.accumulation
    var total = 0.0
    for micro in 0..<accumulation {
      let (inputs, targets) = sampler.nextBatch(rank: copy, ranks: copies)
      let loss = try model.loss(inputs, targets, batch: inputs.count / config.context)
      let value = Double(loss.item)
      try Check.finiteLoss(value, step: step + 1, learningRate: config.learningRate)
      total += value
      let scaled = loss / Float(accumulation * copies)
      if let dataParallel {
        try dataParallel.backward(scaled, sync: micro == accumulation - 1)
      } else {
        scaled.backward()
      }
      try model.group.check()
    }
    let learningRate = config.learningRate * schedule.factor(at: step)
    if let dataParallel {
      try dataParallel.step(learningRate: learningRate)
    } else {
      clipGradients(model.parameters(), norm: try model.gradientSquares().squareRoot(), maxNorm: 1)
      optimizer.learningRate = learningRate
      optimizer.step()
      optimizer.zeroGrad()
    }
    step += 1
    trainer.step = step
    let mean = total / Double(accumulation)
    guard let dataParallel else { return mean }
    return try dataParallel.communicator.gather(mean).reduce(0, +) / Double(copies)
  }
}

// MARK: - The whole model and the slices

/// Where one of a rank's tensors comes from in the whole model: the whole tensor, and for each local element the
/// whole's flat index (-1: a padded row of the vocabulary); `index` nil: the whole tensor, the same on every rank.
public struct TensorParallelPiece {
  public let whole: Tensor<Float>
  public let index: [Int]?

  /// The local values of `values` (the whole tensor's, or a buffer of its shape such as Adam's moments).
  func slice(_ values: [Float]) -> [Float] { index.map { $0.map { $0 < 0 ? 0 : values[$0] } } ?? values }
}

extension TensorParallelGPT {
  /// Rank `r` of `n`'s tensors, in the order of `slices`, and where each comes from in `model`: the cuts the
  /// initialiser makes, written as index maps, so that a rank's slices go back into the whole model (to evaluate
  /// and save it) and come out of it again (to resume).
  static func pieces(of model: GPT<Float>, rank r: Int, ranks n: Int) -> [TensorParallelPiece] {
    let c = model.config.width
    let (local, hidden) = (c / n, 4 * c / n)
    func rows(_ t: Tensor<Float>, _ ranges: [Range<Int>]) -> TensorParallelPiece {
      let width = t.count / t.shape[0]
      return .init(whole: t, index: ranges.flatMap { ($0.lowerBound * width)..<($0.upperBound * width) })
    }
    func columns(_ t: Tensor<Float>, _ range: Range<Int>) -> TensorParallelPiece {
      let width = t.shape[1]
      return .init(
        whole: t,
        index: (0..<t.shape[0]).flatMap { (($0 * width) + range.lowerBound)..<($0 * width + range.upperBound) })
    }
    func whole(_ t: Tensor<Float>?) -> [TensorParallelPiece] { t.map { [.init(whole: $0, index: nil)] } ?? [] }
    let vocabulary = model.config.vocabulary
    let rowsPerRank = (vocabulary + n - 1) / n
    let start = r * rowsPerRank
    let table = TensorParallelPiece(
      whole: model.tokenEmbedding.weight,
      index: (0..<(rowsPerRank * c)).map { i in start + i / c < vocabulary ? start * c + i : -1 })
    var pieces = [table] + whole(model.positionEmbedding?.weight)
    let mine = (r * local)..<((r + 1) * local)
    let qkvRows = (0..<3).map { part in (part * c + mine.lowerBound)..<(part * c + mine.upperBound) }
    let hiddenRange = (r * hidden)..<((r + 1) * hidden)
    for block in model.blocks {
      let attention = block.attention
      pieces += whole(block.norm1.gamma) + whole(block.norm1.beta)
      pieces += [rows(attention.qkv.weight, qkvRows)] + (attention.qkv.bias.map { [rows($0, qkvRows)] } ?? [])
      pieces += [columns(attention.projection.weight, mine)] + whole(attention.projection.bias)
      pieces += whole(block.norm2.gamma) + whole(block.norm2.beta)
      pieces += [rows(block.expand.weight, [hiddenRange])] + (block.expand.bias.map { [rows($0, [hiddenRange])] } ?? [])
      pieces += [columns(block.contract.weight, hiddenRange)] + whole(block.contract.bias)
    }
    return pieces + whole(model.finalNorm.gamma) + whole(model.finalNorm.beta)
  }

  /// This rank's tensors in the order of `pieces`.
  public var slices: [Tensor<Float>] {
    var tensors = [tokenEmbedding, positionEmbedding]
    for b in blocks {
      tensors += [b.norm1.gamma, b.norm1.beta, b.qkv.weight, b.qkv.bias, b.projection.weight, b.projectionBias]
        .compactMap { $0 }
      tensors += [b.norm2.gamma, b.norm2.beta, b.expand.weight, b.expand.bias, b.contract.weight, b.contractBias]
        .compactMap { $0 }
    }
    return tensors + [finalNorm.gamma, finalNorm.beta].compactMap { $0 }
  }
}

extension TensorParallelTrainer {
  var group: TensorParallelGroup { model.group }

  /// Takes up the state a checkpoint restored into `trainer` (the whole model's): this rank's slices of the
  /// weights and of Adam's moments, and the step.
  public func adoptTrainerState() {
    let whole = trainer.optimizer as! Adam<Float>
    let pieces = TensorParallelGPT.pieces(of: trainer.model, rank: group.rank, ranks: group.size)
    for (tensor, piece) in zip(model.slices, pieces) {
      tensor.storage = piece.slice(piece.whole.storage)
      for (kind, buffers) in whole.state {
        if let values = buffers[ObjectIdentifier(piece.whole)] {
          optimizer.state[kind, default: [:]][ObjectIdentifier(tensor)] = piece.slice(values)
        }
      }
    }
    whole.state = [:]
    optimizer.stepCount = whole.stepCount
    step = trainer.step
  }

  /// The ranks' slices put back together in `trainer`'s model at the tensor group's rank 0. Every rank of the
  /// group calls it.
  public func gatherModel() throws {
    guard let all = try group.communicator.gatherArrays(model.slices.flatMap(\.storage)) else { return }
    for (r, values) in all.enumerated() {
      var offset = 0
      for piece in TensorParallelGPT.pieces(of: trainer.model, rank: r, ranks: group.size) {
        let count = piece.index?.count ?? piece.whole.count
        if let index = piece.index {
          for (i, at) in index.enumerated() where at >= 0 { piece.whole.storage[at] = values[offset + i] }
        } else if r == 0 {
          piece.whole.storage = Array(values[offset..<(offset + count)])
        }
        offset += count
      }
    }
  }

  /// Saves the run to the checkpoint `path` in shards, one per rank of the tensor group: its slices of the
  /// weights and of Adam's moments, as runs of the whole tensors' elements (the tensors every rank holds whole,
  /// rank 0's); rank 0 also writes the rest. Every rank of the group calls it.
  public func saveCheckpoint(to path: String) throws {
    let names = Dictionary(
      uniqueKeysWithValues: trainer.model.namedParameters().map { (ObjectIdentifier($0.tensor), $0.name) })
    let pieces = TensorParallelGPT.pieces(of: trainer.model, rank: group.rank, ranks: group.size)
    var written: [(name: String, start: Int, values: [Float])] = []
    func write(_ name: String, _ piece: TensorParallelPiece, _ values: [Float]) {
      guard let index = piece.index else {
        if group.rank == 0 { written.append((name, 0, values)) }
        return
      }
      var i = 0
      while i < index.count {  // runs of consecutive elements, padding left out
        guard index[i] >= 0 else {
          i += 1
          continue
        }
        var end = i + 1
        while end < index.count && index[end] == index[end - 1] + 1 { end += 1 }
        written.append((name, index[i], Array(values[i..<end])))
        i = end
      }
    }
    let kinds = optimizer.stepCount > 0 ? optimizer.stateKinds : []
    for (tensor, piece) in zip(model.slices, pieces) {
      let name = names[ObjectIdentifier(piece.whole)]!
      write("model." + name, piece, tensor.storage)
      for kind in kinds {  // a parameter no step has reached yet has zeros, as Adam starts it
        let values = optimizer.state[kind]?[ObjectIdentifier(tensor)] ?? Array(repeating: 0, count: tensor.count)
        write("optimizer.\(kind)." + name, piece, values)
      }
    }
    let prefixes = ["model."] + kinds.map { "optimizer.\($0)." }
    let whole = trainer.model.namedParameters()
    (trainer.optimizer as! Adam<Float>).stepCount = optimizer.stepCount
    try writeShardedCheckpoint(
      trainer, to: path, pieces: written,
      sharded: prefixes.flatMap { prefix in whole.map { (prefix + $0.name, $0.tensor.shape) } },
      group: group.communicator)
  }
}
