import Foundation
import Support

/// The stage's demo: a tiny GPT learns to reverse a sequence of digits. Reversal is a task only attention can
/// solve: the digit to write at each step sits at a position that moves backwards as the answer moves forwards,
/// and a network that mixes positions only by attention must learn to look exactly there.

// MARK: - The task

/// Sequences "d1 d2 ... dn | dn ... d2 d1": digits 0...9, the separator 10. The model reads the whole thing as a
/// language model; only its predictions of the answer count in the loss.
public struct ReversalTask: Sendable {
  public let length: Int
  public static let separator = 10

  public init(length: Int = 8) { self.length = length }

  public var vocabulary: Int { 11 }
  /// Input positions: the n digits, the separator, and all but the last answer digit.
  public var context: Int { 2 * length }

  /// A random example: n digits, the separator, the n digits reversed.
  public func example(_ rng: inout SeededRNG) -> [Int] {
    let digits = (0..<length).map { _ in rng.index(below: 10) }
    return digits + [ReversalTask.separator] + digits.reversed()
  }

  /// Inputs (all but the last token) and targets (all but the first), the prompt's targets set to the ignore
  /// index: predicting random digits is impossible and not the point.
  public func inputsAndTargets(_ examples: [[Int]]) -> (inputs: [Int], targets: [Int]) {
    var inputs: [Int] = []
    var targets: [Int] = []
    for example in examples {
      inputs += example.dropLast()
      targets += example.dropFirst().enumerated().map { $0 < length ? -100 : $1 }
    }
    return (inputs, targets)
  }
}

// MARK: - Configuration

/// Everything that decides a run.
public struct TrainConfig: Sendable {
  public var steps = 500
  public var batchSize = 64
  public var learningRate = 3e-3
  public var weightDecay = 0.1
  public var layers = 2
  public var heads = 4
  public var width = 64
  public var dropout = 0.0
  public var positions = PositionEncoding.learned
  public var seed: UInt64 = 1337

  public init() {}

  public var task: ReversalTask { ReversalTask() }

  public var model: GPTConfig {
    var config = GPTConfig(
      vocabulary: task.vocabulary, context: task.context, layers: layers, heads: heads, width: width)
    config.dropout = dropout
    config.positions = positions
    return config
  }

  /// The options that shape the run, as the command line spells them: a checkpoint records them, `--resume`
  /// continues with them, and `sample` builds its model from them.
  public var options: [(flag: String, value: String)] {
    let options: [(flag: String, value: String)] = [
      ("--steps", String(steps)), ("--batch-size", String(batchSize)), ("--lr", String(learningRate)),
      ("--layers", String(layers)), ("--heads", String(heads)), ("--width", String(width)),
      ("--dropout", String(dropout)), ("--positions", positions.rawValue), ("--seed", String(seed)),
    ]
    return options
  }

  /// Roughly the memory a run of this configuration needs, in bytes, for `Check.memory`: the parameters with
  /// their gradients and AdamW's two moments, the activations a training step keeps for backward, and those of
  /// the evaluation, which runs the held-out sequences as one batch but keeps no graph (measured at width 256:
  /// 0.36 GB at batch 64, 1.4 GB at batch 1024). Counted in Double: no product overflows.
  func estimatedBytes(evaluationRows: Int = 1000) -> Double {
    let (w, ctx) = (Double(width), Double(model.context))
    let perBlock = 12 * w * w + 13 * w
    let parameters = Double(task.vocabulary + model.context) * w + Double(layers) * perBlock
    // Per token and block: about 34 width-sized values (LayerNorms, q/k/v, the MLP's 4x expansion, residuals)
    // and the attention weights over the context, for each head.
    let perToken = 34 * w + 5 * Double(heads) * ctx
    let training = Double(batchSize) * ctx * Double(layers) * perToken
    let evaluation = 0.5 * Double(evaluationRows) * ctx * perToken
    return 4 * (4 * parameters + training + evaluation)
  }

  /// `options` as one line: "--steps 500 --batch-size 64 ...".
  public var commandLine: String { options.map { $0.flag + " " + $0.value }.joined(separator: " ") }
}

/// The figures of one evaluation.
public struct StepRecord: Sendable, Equatable {
  public let step: Int
  public let loss: Double
  public let exactMatch: Double
}

// MARK: - Trainer

/// A training run in progress.
public final class Trainer {
  public let config: TrainConfig
  public let model: GPT<Float>
  public let parameters: [Tensor<Float>]
  public let optimizer: any Optimizer<Float>
  public let schedule: LRSchedule
  /// Training examples and dropout draw from here; a checkpoint saves it.
  let random: RandomSource
  /// Held-out examples, drawn from their own seed and never trained on.
  public let heldOut: [[Int]]
  let heldOutSet: Set<[Int]>
  public internal(set) var step = 0
  public internal(set) var history: [StepRecord] = []

  public init(_ config: TrainConfig, heldOutCount: Int = 1000) {
    self.config = config
    random = RandomSource(seed: config.seed &+ 1)
    model = GPT(config.model, seed: config.seed, random: random)
    parameters = model.parameters()
    // AdamW with decay on matrices and embeddings only, as nanoGPT configures it.
    optimizer = Adam(
      ParameterGroup.decayingMatrices(parameters, weightDecay: config.weightDecay), learningRate: config.learningRate,
      beta2: 0.99, decoupledWeightDecay: true)
    schedule = .cosine(warmup: config.steps / 20, total: config.steps, floor: 0.1)
    var rng = SeededRNG(seed: 0xD1617)
    var examples: [[Int]] = []
    var seen = Set<[Int]>()
    while examples.count < heldOutCount {
      let example = config.task.example(&rng)
      if seen.insert(example).inserted { examples.append(example) }
    }
    heldOut = examples
    heldOutSet = seen
  }

  /// One optimizer step on a fresh batch; returns its loss. A loss that is not finite stops the run before it
  /// reaches the weights (a `UserError` with the step and a hint).
  @discardableResult
  public func runStep() throws -> Double {
    model.train()
    var batch: [[Int]] = []
    while batch.count < config.batchSize {
      let example = config.task.example(&random.rng)
      if !heldOutSet.contains(example) { batch.append(example) }
    }
    let (inputs, targets) = config.task.inputsAndTargets(batch)
    let logits = model(inputs, batch: batch.count)
    let loss = crossEntropyLoss(logits: logits.reshape([-1, config.task.vocabulary]), labels: targets)
    try Check.finiteLoss(Double(loss.item), step: step + 1, learningRate: config.learningRate)
    loss.backward()
    clipGradNorm(parameters, maxNorm: 1)
    optimizer.learningRate = config.learningRate * schedule.factor(at: step)
    optimizer.step()
    optimizer.zeroGrad()
    step += 1
    return Double(loss.item)
  }

  /// The share of `examples` whose whole answer the model gets right, and the mean loss on them. Greedy decoding
  /// gets an answer right exactly when every answer position's most likely token is right given the true prefix,
  /// so one batched forward pass (teacher forcing) measures it.
  public func evaluate(_ examples: [[Int]]) -> (loss: Double, exactMatch: Double) {
    model.eval()
    defer { model.train() }
    return noGrad {
      let (inputs, targets) = config.task.inputsAndTargets(examples)
      let logits = model(inputs, batch: examples.count).reshape([-1, config.task.vocabulary])
      let loss = Double(crossEntropyLoss(logits: logits, labels: targets).item)
      let predicted = predictions(logits)
      let perExample = inputs.count / examples.count
      var solved = 0
      for e in 0..<examples.count {
        let range = (e * perExample)..<((e + 1) * perExample)
        if range.allSatisfy({ targets[$0] == -100 || predicted[$0] == targets[$0] }) { solved += 1 }
      }
      return (loss, Double(solved) / Double(examples.count))
    }
  }

  /// Evaluates on the held-out examples and records the result. Weights whose held-out loss is not finite have
  /// diverged (a `UserError`): the caller then never saves them over the last good checkpoint.
  @discardableResult
  public func record(trainLoss: Double) throws -> StepRecord {
    let (heldOutLoss, exactMatch) = evaluate(heldOut)
    try Check.finiteLoss(heldOutLoss, step: step, learningRate: config.learningRate, what: "the held-out loss")
    let record = StepRecord(step: step, loss: trainLoss, exactMatch: exactMatch)
    history.append(record)
    return record
  }
}

/// The largest logit of each row.
func predictions(_ logits: Tensor<Float>) -> [Int] {
  let columns = logits.shape[1]
  return (0..<logits.shape[0]).map { row in
    let values = logits.storage[(row * columns)..<((row + 1) * columns)]
    return values.indices.max { values[$0] < values[$1] }! - row * columns
  }
}
