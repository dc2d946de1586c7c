import Datasets
import Foundation
import Support

/// The stage's demo: an MLP classifies the handwritten digits, with minibatches, an optimizer, a schedule,
/// dropout, clipping, evaluation on held-out data every epoch, and checkpoints.

// MARK: - Configuration

/// The optimizers the command line offers, with the learning rate and weight decay each starts from.
public enum OptimizerKind: String, CaseIterable, Sendable {
  case sgd, momentum, adam, adamw

  public var defaultLearningRate: Double {
    switch self {
    case .sgd: return 0.2
    case .momentum: return 0.05
    case .adam, .adamw: return 3e-3
    }
  }

  /// AdamW is PyTorch's default 0.01; the others start without weight decay.
  public var defaultWeightDecay: Double { self == .adamw ? 0.01 : 0 }
}

/// The schedule names the command line offers.
public enum ScheduleKind: String, CaseIterable, Sendable {
  case constant, step, linear, cosine
}

/// Everything that decides a run.
public struct TrainConfig: Sendable {
  public var optimizer = OptimizerKind.adamw
  public var learningRate: Double? = nil
  public var weightDecay: Double? = nil
  public var schedule = ScheduleKind.cosine
  public var epochs = 50
  public var batchSize = 32
  /// Micro-batches per optimizer step: gradients of `accumulation` batches add up before one update.
  public var accumulation = 1
  public var hidden = [512]
  public var dropout = 0.2
  /// Global gradient-norm limit; 0 turns clipping off.
  public var clip = 1.0
  public var seed: UInt64 = 1337

  public init() {}

  public var lr: Double { learningRate ?? optimizer.defaultLearningRate }
  public var decay: Double { weightDecay ?? optimizer.defaultWeightDecay }

  /// The options that shape the run, as the command line spells them (the learning rate and weight decay in
  /// effect, not "the optimizer's default"): a checkpoint records them, and `--resume` continues with them.
  public var options: [(flag: String, value: String)] {
    let widths = hidden.map(String.init).joined(separator: ",")
    let options: [(flag: String, value: String)] = [
      ("--optimizer", optimizer.rawValue), ("--lr", String(lr)), ("--weight-decay", String(decay)),
      ("--schedule", schedule.rawValue), ("--epochs", String(epochs)), ("--batch-size", String(batchSize)),
      ("--accumulation", String(accumulation)), ("--hidden", widths), ("--dropout", String(dropout)),
      ("--clip", String(clip)), ("--seed", String(seed)),
    ]
    return options
  }

  /// `options` as one line: "--optimizer adamw --lr 0.003 ...".
  public var commandLine: String { options.map { $0.flag + " " + $0.value }.joined(separator: " ") }

  /// Roughly the memory a run on `data` needs, in bytes, for `Check.memory`: the parameters with their
  /// gradients, the optimizer's buffers and a scratch copy, and the activations of the largest batch it forms (a
  /// training batch, or a whole evaluation set) kept for backward. Counted in Double: no product overflows.
  func estimatedBytes(data: DigitsSplits) -> Double {
    let sizes = [64.0] + hidden.map(Double.init) + [10]
    let parameters = zip(sizes, sizes.dropFirst()).map { ($0 + 1) * $1 }.reduce(0, +)
    let rows = Double(max(min(batchSize, data.train.count), data.validation.count, data.test.count))
    let activations = 6 * rows * sizes.reduce(0, +)
    return 4 * (5 * parameters + activations)
  }

  /// The schedule over the whole run: 5% warmup, then down to a tenth of the rate (step: x0.3 every 10 epochs).
  func makeSchedule(stepsPerEpoch: Int) -> LRSchedule {
    let total = epochs * stepsPerEpoch
    switch schedule {
    case .constant: return .constant
    case .step: return .step(every: 10 * stepsPerEpoch, gamma: 0.3)
    case .linear: return .linear(warmup: total / 20, total: total, floor: 0.1)
    case .cosine: return .cosine(warmup: total / 20, total: total, floor: 0.1)
    }
  }
}

/// The figures of one epoch.
public struct EpochRecord: Sendable, Equatable {
  public let epoch: Int
  public let trainLoss: Double
  public let validationLoss: Double
  public let validationAccuracy: Double
  public let learningRate: Double
}

// MARK: - Trainer

/// A training run in progress: the model, the optimizer and the generator, and how far it has got.
public final class Trainer {
  public let config: TrainConfig
  public let data: DigitsSplits
  public let model: Sequential<Float>
  /// The model's parameters, found once (reflection is too slow for every step).
  public let parameters: [Tensor<Float>]
  public let optimizer: any Optimizer<Float>
  public let schedule: LRSchedule
  let loader: BatchLoader
  /// Optimizer steps per epoch: one per `accumulation` batches.
  public let stepsPerEpoch: Int
  /// Batch order and dropout masks come from here; a checkpoint saves it.
  let random: RandomSource
  /// Epochs completed.
  public internal(set) var epoch = 0
  public internal(set) var history: [EpochRecord] = []

  public init(_ config: TrainConfig, data: DigitsSplits) {
    self.config = config
    self.data = data
    random = RandomSource(seed: config.seed &+ 1)
    var rng = SeededRNG(seed: config.seed)
    model = makeMLP(
      inputs: 64, hidden: config.hidden, outputs: 10, dropout: config.dropout, random: random, rng: &rng)
    parameters = model.parameters()
    let groups = ParameterGroup.decayingMatrices(parameters, weightDecay: config.decay)
    switch config.optimizer {
    case .sgd: optimizer = SGD(groups, learningRate: config.lr)
    case .momentum: optimizer = SGD(groups, learningRate: config.lr, momentum: 0.9, nesterov: true)
    case .adam: optimizer = Adam(groups, learningRate: config.lr)
    case .adamw: optimizer = Adam(groups, learningRate: config.lr, decoupledWeightDecay: true)
    }
    loader = BatchLoader(count: data.train.count, batchSize: config.batchSize)
    stepsPerEpoch = (loader.batchesPerEpoch + config.accumulation - 1) / config.accumulation
    schedule = config.makeSchedule(stepsPerEpoch: stepsPerEpoch)
  }

  /// One epoch: every training example once, in a new order, then the validation figures. A loss that is not
  /// finite stops the run (a `UserError` with the step and a hint) before it reaches the weights; a validation
  /// loss that is not finite stops it before the caller can save the weights that gave it.
  @discardableResult
  public func runEpoch() throws -> EpochRecord {
    model.train()
    let batches = loader.epoch(random)
    var lossTotal = 0.0
    for start in stride(from: 0, to: batches.count, by: config.accumulation) {
      let group = batches[start..<min(start + config.accumulation, batches.count)]
      // Gradients of the micro-batches add up in the parameters; dividing each loss by their number makes the
      // sum the gradient of the mean loss, as if they had been one batch.
      for indices in group {
        let batch = data.train.rows(indices)
        let loss = crossEntropyLoss(logits: model(batch.features), labels: batch.labels) / Float(group.count)
        try Check.finiteLoss(Double(loss.item), step: optimizer.stepCount + 1, learningRate: config.lr)
        loss.backward()
        lossTotal += Double(loss.item)
      }
      if config.clip > 0 { clipGradNorm(parameters, maxNorm: config.clip) }
      optimizer.learningRate = config.lr * schedule.factor(at: optimizer.stepCount)
      optimizer.step()
      optimizer.zeroGrad()
    }
    let (validationLoss, validationAccuracy) = evaluate(data.validation)
    let step = optimizer.stepCount
    try Check.finiteLoss(validationLoss, step: step, learningRate: config.lr, what: "the validation loss")
    epoch += 1
    let record = EpochRecord(
      epoch: epoch, trainLoss: lossTotal / Double(stepsPerEpoch), validationLoss: validationLoss,
      validationAccuracy: validationAccuracy, learningRate: optimizer.learningRate)
    history.append(record)
    return record
  }

  /// Mean loss and accuracy on a data set, in evaluation mode, without a graph.
  public func evaluate(_ set: LabeledData) -> (loss: Double, accuracy: Double) {
    model.eval()
    defer { model.train() }
    return noGrad {
      let logits = model(set.features)
      let loss = Double(crossEntropyLoss(logits: logits, labels: set.labels).item)
      let correct = zip(predictions(logits), set.labels).filter { $0 == $1 }.count
      return (loss, Double(correct) / Double(set.count))
    }
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
