import Foundation
import Kernels
import Support

/// Pipeline parallelism: the blocks cut into p consecutive stages, one per rank. Rank 0 embeds and runs the first
/// blocks, sends its activations to rank 1, and so on; the last rank computes the loss, and the gradients travel
/// back the same way. One batch would leave all but one rank idle at any moment, so the batch is cut into m
/// micro-batches that follow each other down the pipe (GPipe, Huang et al., 2019), and the ranks idle only while
/// the pipe fills and drains: (p - 1) / (m + p - 1) of the time, the bubble.
///
/// The schedule is the order in which a rank runs its micro-batches' forwards and backwards:
/// - GPipe: every forward, then every backward. A rank keeps all m micro-batches' activations.
/// - 1F1B (PipeDream-Flush, Narayanan et al., 2021): after p - 1 - s warm-up forwards, stage s alternates one
///   forward and one backward, so it keeps at most p - s micro-batches' activations: the same bubble, less memory.
///
/// GPT's head is its token embedding (tied), which lives on the first stage. The last stage uses a copy; each
/// micro-batch's gradient of the copy goes to the first stage, which adds it to the embedding's own gradient of
/// that micro-batch in the order one process adds them, and after each step the first stage sends the updated
/// table to the last (Megatron keeps the two copies in step with an all-reduce instead).

/// The two schedules.
public enum PipelineSchedule: String, CaseIterable, Sendable {
  case gpipe
  case oneForwardOneBackward = "1f1b"

  /// Stage `stage` of `stages`'s work for `micro` micro-batches, in order: (isForward, micro-batch).
  public func order(stage: Int, stages: Int, micro: Int) -> [(forward: Bool, micro: Int)] {
    switch self {
    case .gpipe:
      return (0..<micro).map { (true, $0) } + (0..<micro).map { (false, $0) }
    case .oneForwardOneBackward:
      let warmup = min(stages - 1 - stage, micro)
      var work = (0..<warmup).map { (forward: true, micro: $0) }
      var (forward, backward) = (warmup, 0)
      while forward < micro {
        work += [(true, forward), (false, backward)]
        (forward, backward) = (forward + 1, backward + 1)
      }
      while backward < micro {
        work.append((false, backward))
        backward += 1
      }
      return work
    }
  }
}

/// One box of the timeline picture: what a rank did from `start` to `end` (seconds since the step began).
public struct PipelineSpan: Sendable, Equatable {
  public let rank: Int
  public let forward: Bool
  public let micro: Int
  public let start: Double
  public let end: Double
}

/// One rank's stage of a pipeline-parallel GPT (built from the whole model, of which it keeps its part).
public final class PipelineStage {
  public let config: TrainConfig
  /// The pipeline: rank s runs stage s.
  public let communicator: any Communicator
  public let stage: Int
  public let stages: Int
  public let blocks: [Block<Float>]
  /// The first stage's embeddings.
  let tokenEmbedding: Embedding<Float>?
  let positionEmbedding: Embedding<Float>?
  /// The last stage's final norm and its copy of the (tied) token embedding, the head.
  let finalNorm: LayerNorm<Float>?
  let head: Tensor<Float>?
  /// The parameters this stage trains (the head's copy is not one: the first stage trains the table).
  public let parameters: [Tensor<Float>]
  public let optimizer: Adam<Float>
  public let sampler: WindowSampler
  let schedule: LRSchedule
  /// The whole model's trainer, of which this stage trains its part: its sampler and step are the stage's, and
  /// `train` evaluates, samples and checkpoints with it (on rank 0, after `gatherModel`).
  public let trainer: Trainer
  /// Every parameter of the whole model in its order, with this stage's marked: the gradient norm's blocks.
  var modelParameters: [Tensor<Float>] { trainer.parameters }
  let owned: Set<ObjectIdentifier>
  public internal(set) var step = 0
  /// The spans of the last step, for the timeline and the bubble.
  public internal(set) var spans: [PipelineSpan] = []
  /// The most micro-batches whose activations this stage held at once in the last step.
  public internal(set) var peakInFlight = 0

  public init(_ config: TrainConfig, data: SharedData, communicator: any Communicator) throws {
    let whole = Trainer(config, tokenizer: data.tokenizer, train: data.train, val: data.val)
    let model = whole.model
    let (s, p) = (communicator.rank, communicator.size)
    guard config.layers >= p else {
      throw UserError("--pp \(p) needs at least \(p) blocks, one per stage; the model has \(config.layers)")
    }
    guard model.positionEmbedding != nil, config.dropout == 0 else {
      throw UserError("pipeline parallelism runs GPT-2's blocks (learned positions) without dropout")
    }
    self.config = config
    self.communicator = communicator
    (stage, stages) = (s, p)
    blocks = Array(model.blocks[(config.layers * s / p)..<(config.layers * (s + 1) / p)])
    tokenEmbedding = s == 0 ? model.tokenEmbedding : nil
    positionEmbedding = s == 0 ? model.positionEmbedding : nil
    finalNorm = s == p - 1 ? model.finalNorm : nil
    let table = model.tokenEmbedding.weight
    head = s == p - 1 ? (s == 0 ? table : Tensor(table.storage, shape: table.shape, requiresGrad: true)) : nil
    var mine: [Tensor<Float>] = []
    if let tokenEmbedding, let positionEmbedding { mine += [tokenEmbedding.weight, positionEmbedding.weight] }
    mine += blocks.flatMap { $0.parameters() }
    if let finalNorm { mine += finalNorm.parameters() }
    parameters = mine
    owned = Set(mine.map(ObjectIdentifier.init))
    trainer = whole
    let reference = whole.optimizer as! Adam<Float>
    optimizer = Adam(
      ParameterGroup.decayingMatrices(mine, weightDecay: config.weightDecay), learningRate: config.learningRate,
      beta1: reference.beta1, beta2: reference.beta2, eps: reference.eps, decoupledWeightDecay: true)
    sampler = whole.sampler
    schedule = whole.schedule
  }

  var isFirst: Bool { stage == 0 }
  var isLast: Bool { stage == stages - 1 }

  /// Tags of the point-to-point messages: activations forward, gradients back, the head's gradient to stage 0.
  enum Tag {
    static func activation(_ micro: Int) -> Int { 3 * micro }
    static func gradient(_ micro: Int) -> Int { 3 * micro + 1 }
    static func headGradient(_ micro: Int) -> Int { 3 * micro + 2 }
    static let table = CollectiveTag.pipelineTable
  }

  /// One optimizer step on `micro` micro-batches of the global batch, in `schedule`'s order. Returns the mean
  /// loss (every rank returns it). `rows`/`copy`/`copies`: with data parallelism around the pipeline, this copy's
  /// share of the batch.
  @discardableResult
  public func runStep(
    micro: Int, schedule order: PipelineSchedule, copy: Int = 0, copies: Int = 1, dataGroup: (any Communicator)? = nil
  )
    throws -> Double
  {
    let (inputs, targets) = sampler.nextBatch(rank: copy, ranks: copies)
    let t = config.context
    let rowsPerMicro = inputs.count / t / micro
    try communicator.barrier()  // the ranks' clocks start together (one clock, on threads)
    let origin = Stopwatch.now()
    let elapsed = { Double(Stopwatch.now() &- origin) / 1e9 }
    spans = []
    peakInFlight = 0
    var outputs: [Int: Tensor<Float>] = [:]  // what forward left for backward: the stage's output (or loss)
    var stageInputs: [Int: Tensor<Float>] = [:]  // the received activations, whose gradient goes back
    var lookedUp: [Int: Tensor<Float>] = [:]  // the first stage's embedding rows
    var total = 0.0
    let width = config.width
    for (forward, m) in order.order(stage: stage, stages: stages, micro: micro) {
      var start = elapsed()  // moved past the wait for a message: a span is work, the bubble is the waiting
      let part = (m * rowsPerMicro * t)..<((m + 1) * rowsPerMicro * t)
      if forward {
        var x: Tensor<Float>
        if let tokenEmbedding, let positionEmbedding {
          let ids = Array(inputs[part])
          if isLast {
            x = tokenEmbedding(ids, shape: [rowsPerMicro, t])
          } else {
            // The rows looked up as a leaf of their own: backward leaves their gradient there, and the table's
            // gradient is made by hand below, after the head's (see `tableGradient`).
            let rows = noGrad { tokenEmbedding(ids, shape: [rowsPerMicro, t]) }
            x = rows.requiringGrad()
            lookedUp[m] = x
          }
          x = x + positionEmbedding(Array(0..<t))
        } else {
          var values = [Float](repeating: 0, count: rowsPerMicro * t * width)
          try values.withUnsafeMutableBufferPointer {
            try communicator.receive($0, from: stage - 1, tag: Tag.activation(m))
          }
          start = elapsed()
          x = Tensor(values, shape: [rowsPerMicro, t, width], requiresGrad: true)
          stageInputs[m] = x
        }
        for block in blocks { x = block(x, keyPadding: nil, cache: nil) }
        if let finalNorm, let head {
          let logits = finalNorm(x).linear(head, nil)
          let loss = crossEntropyLoss(logits: logits.reshape([-1, head.shape[0]]), labels: Array(targets[part]))
          let value = Double(loss.item)
          try Check.finiteLoss(value, step: step + 1, learningRate: config.learningRate)
          total += value
          outputs[m] = loss / Float(micro * copies)
        } else {
          try x.storage.withUnsafeBufferPointer { try communicator.send($0, to: stage + 1, tag: Tag.activation(m)) }
          outputs[m] = x
        }
        peakInFlight = max(peakInFlight, outputs.count)
      } else {
        let output = outputs.removeValue(forKey: m)!
        if isLast {
          output.backward()
        } else {
          var gradient = [Float](repeating: 0, count: output.count)
          try gradient.withUnsafeMutableBufferPointer {
            try communicator.receive($0, from: stage + 1, tag: Tag.gradient(m))
          }
          start = elapsed()
          output.backward(gradient: gradient)
        }
        if let input = stageInputs.removeValue(forKey: m) {
          try input.gradStorage!.withUnsafeBufferPointer {
            try communicator.send($0, to: stage - 1, tag: Tag.gradient(m))
          }
        }
        if isLast && !isFirst, let head {
          try head.gradStorage!.withUnsafeBufferPointer { try communicator.send($0, to: 0, tag: Tag.headGradient(m)) }
          head.zeroGrad()
        }
        if let rows = lookedUp.removeValue(forKey: m) {
          try tableGradient(rows: rows, ids: Array(inputs[part]), micro: m)
        }
      }
      spans.append(PipelineSpan(rank: communicator.rank, forward: forward, micro: m, start: start, end: elapsed()))
    }
    if let dataGroup { try reduceAcrossCopies(dataGroup) }
    // The norm of the whole model's gradient: each stage's blocks in the model's order, all-reduced (exact: one
    // stage's number plus zeros), then summed as one process sums them.
    var blocks: [Double] = []
    for p in modelParameters {
      let squares = gradientBlockSquares([p])
      blocks += owned.contains(ObjectIdentifier(p)) ? squares : Array(repeating: 0, count: squares.count)
    }
    try communicator.allReduce(&blocks)
    clipGradients(parameters, norm: blocks.reduce(0, +).squareRoot(), maxNorm: 1)
    optimizer.learningRate = config.learningRate * schedule.factor(at: step)
    optimizer.step()
    optimizer.zeroGrad()
    if stages > 1, isFirst {
      try tokenEmbedding!.weight.storage.withUnsafeBufferPointer {
        try communicator.send($0, to: stages - 1, tag: Tag.table)
      }
    } else if stages > 1, isLast, let head {
      try head.storage.withUnsafeMutableBufferPointer { try communicator.receive($0, from: 0, tag: Tag.table) }
    }
    step += 1
    trainer.step = step
    var losses = [isLast ? total / Double(micro) : 0]
    try communicator.allReduce(&losses)
    guard let dataGroup else { return losses[0] }
    return try dataGroup.gather(losses[0]).reduce(0, +) / Double(copies)
  }

  /// Takes up the state a checkpoint restored into `trainer` (the whole model's): this stage's share of Adam's
  /// moments, the step, and the head's copy of the table on the last stage.
  public func adoptTrainerState() {
    let whole = trainer.optimizer as! Adam<Float>
    for (kind, buffers) in whole.state {
      optimizer.state[kind] = buffers.filter { owned.contains($0.key) }
    }
    whole.state = [:]
    optimizer.stepCount = whole.stepCount
    step = trainer.step
    if let head, head !== trainer.model.tokenEmbedding.weight {
      head.storage = trainer.model.tokenEmbedding.weight.storage
    }
  }

  /// The stages' weights put together in `trainer`'s model at the pipeline's rank 0 (each stage's parameters are
  /// a run of the model's, in order). Every stage calls it.
  public func gatherModel() throws {
    guard let all = try communicator.gatherArrays(parameters.flatMap(\.storage)) else { return }
    var flat = all.joined().makeIterator()
    for p in trainer.parameters { p.storage = (0..<p.count).map { _ in flat.next()! } }
  }

  /// Saves the run to the checkpoint `path` in shards, one per stage: its weights and its Adam moments (see
  /// ShardedCheckpoint.swift); stage 0 also writes the rest. Every stage calls it.
  public func saveCheckpoint(to path: String) throws {
    let names = Dictionary(
      uniqueKeysWithValues: trainer.model.namedParameters().map { (ObjectIdentifier($0.tensor), $0.name) })
    var pieces: [(name: String, start: Int, values: [Float])] = parameters.map {
      ("model." + names[ObjectIdentifier($0)]!, 0, $0.storage)
    }
    for (kind, buffers) in optimizer.state {
      pieces += parameters.map {
        (
          "optimizer.\(kind)." + names[ObjectIdentifier($0)]!, 0,
          buffers[ObjectIdentifier($0)] ?? Array(repeating: 0, count: $0.count)
        )
      }
    }
    let kinds = ["model."] + (optimizer.stepCount > 0 ? optimizer.stateKinds.map { "optimizer.\($0)." } : [])
    let whole = trainer.model.namedParameters()
    (trainer.optimizer as! Adam<Float>).stepCount = optimizer.stepCount
    try writeShardedCheckpoint(
      trainer, to: path, pieces: pieces,
      sharded: kinds.flatMap { kind in whole.map { (kind + $0.name, $0.tensor.shape) } }, group: communicator)
  }

  /// The first stage's table gradient for micro-batch `micro`, added as one process's backward adds it: the
  /// head's gradient first (the last stage computed it), then each looked-up row's gradient into its id's row,
  /// token by token (what `gatherRows`'s backward does), and that sum added to the earlier micro-batches'.
  func tableGradient(rows: Tensor<Float>, ids: [Int], micro: Int) throws {
    let table = tokenEmbedding!.weight
    var gradient = [Float](repeating: 0, count: table.count)
    try gradient.withUnsafeMutableBufferPointer {
      try communicator.receive($0, from: stages - 1, tag: Tag.headGradient(micro))
    }
    let width = config.width
    let dRows = rows.gradStorage!
    for (r, id) in ids.enumerated() {
      for j in 0..<width { gradient[id * width + j] += dRows[r * width + j] }
    }
    table.accumulateGrad(gradient)
  }

  /// With data parallelism around the pipeline: the copies of this stage sum their gradients (one all-reduce of
  /// all of them, after the pipeline's last backward).
  func reduceAcrossCopies(_ group: any Communicator) throws {
    var flat = parameters.flatMap { $0.gradStorage ?? Array(repeating: 0, count: $0.count) }
    try group.allReduce(&flat)
    var offset = 0
    for p in parameters {
      p.gradStorage = Array(flat[offset..<(offset + p.count)])
      offset += p.count
    }
  }

  /// Every rank's spans of the last step at rank 0 (nil on the others).
  public func gatherSpans() throws -> [PipelineSpan]? {
    var mine: [Double] = []
    for span in spans { mine += [Double(span.rank), span.forward ? 1 : 0, Double(span.micro), span.start, span.end] }
    guard let all = try communicator.gatherArrays(mine) else { return nil }
    var decoded: [PipelineSpan] = []
    for values in all {
      for i in stride(from: 0, to: values.count, by: 5) {
        decoded.append(
          PipelineSpan(
            rank: Int(values[i]), forward: values[i + 1] == 1, micro: Int(values[i + 2]), start: values[i + 3],
            end: values[i + 4]))
      }
    }
    return decoded
  }

  /// The share of the step this rank spent waiting: 1 - (time in its forwards and backwards) / (the step's time).
  public static func bubble(_ spans: [PipelineSpan]) -> [Double] {
    let ranks = Set(spans.map(\.rank)).sorted()
    let begin = spans.map(\.start).min() ?? 0
    let end = spans.map(\.end).max() ?? 0
    return ranks.map { rank in
      let busy = spans.filter { $0.rank == rank }.reduce(0) { $0 + $1.end - $1.start }
      return 1 - busy / max(end - begin, 1e-12)
    }
  }

  /// The measured bubble of each rank (1F1B, the last of 3 steps) for each number of micro-batches that divides
  /// the batch, from 1 to the batch; at rank 0 (nil on the others).
  public static func bubbleTable(
    _ config: TrainConfig, data: SharedData, communicator: any Communicator, micro: [Int] = [1, 2, 4, 6, 12]
  ) throws -> [(Int, [Double])]? {
    var table: [(Int, [Double])] = []
    for m in micro where config.batchSize % m == 0 {
      let stage = try PipelineStage(config, data: data, communicator: communicator)
      for _ in 0..<3 { try stage.runStep(micro: m, schedule: .oneForwardOneBackward) }
      if let spans = try stage.gatherSpans() { table.append((m, bubble(spans))) }
    }
    return communicator.rank == 0 ? table : nil
  }

  /// The bubble one schedule of equal-sized forwards and backwards predicts: (p - 1) / (m + p - 1).
  public static func predictedBubble(stages p: Int, micro m: Int) -> Double { Double(p - 1) / Double(m + p - 1) }
}
