import Datasets
import Support

/// The stage's demos: stage 1's moons MLP, now one batch of matrix products per step, and three-armed spirals
/// learned with softmax cross-entropy. Training runs in Float.

// MARK: - Configuration

/// Everything that decides a run. The defaults are stage 1's (micrograd's) demo.
public struct TrainConfig: Sendable {
  public var dataset = ToyDataset.moons
  public var points = 100
  public var noise = 0.1
  /// Two classes train with micrograd's hinge loss on one score; more with softmax cross-entropy.
  public var classes = 2
  public var hidden = [16, 16]
  public var steps = 100
  public var learningRate = 1.0
  /// The learning rate decays linearly to this fraction of itself by the last step.
  public var finalLearningRateFraction = 0.1
  /// Weight of the L2 penalty on the parameters.
  public var alpha = 1e-4
  public var seed: UInt64 = 1337

  public init() {}

  /// The second demo: 300 points on three spiral arms, a wider network, cross-entropy, more steps.
  public static var spirals: TrainConfig {
    var config = TrainConfig()
    config.dataset = .spirals
    config.points = 300
    config.classes = 3
    config.hidden = [64, 64]
    config.steps = 1000
    config.learningRate = 0.3
    config.alpha = 1e-5
    return config
  }

  /// Network outputs: one score for two classes, one logit per class otherwise.
  var outputs: Int { classes == 2 ? 1 : classes }

  /// Roughly the memory a run needs, in bytes, for `Check.memory`: each layer's weights with their gradient and
  /// a scratch copy, and about six tensors of [points, width] per layer (product, bias, activation and their
  /// gradients) kept for backward, or two for the 80x80 grid of the decision-boundary picture (no graph) if that
  /// is larger. Counted in Double: no product overflows.
  var estimatedBytes: Double {
    let sizes = [2.0] + hidden.map(Double.init) + [Double(outputs)]
    let parameters = zip(sizes, sizes.dropFirst()).map { ($0 + 1) * $1 }.reduce(0, +)
    let rows = max(6 * Double(points), 2 * 6400)
    return 4 * (3 * parameters + rows * sizes.reduce(0, +))
  }
}

/// The figures of one training step.
public struct StepRecord: Sendable {
  public let step: Int
  public let loss: Double
  public let accuracy: Double
  public let learningRate: Double
}

/// A finished run: the trained model, its data and its history.
public struct TrainResult {
  public let model: MLP<Float>
  public let data: Points2D
  public let history: [StepRecord]
}

// MARK: - Training

/// The data as tensors: points [n, 2], and the labels as the loss wants them.
struct Batch {
  let inputs: Tensor<Float>
  /// +-1 per point, for the hinge loss.
  let signs: Tensor<Float>
  let labels: [Int]

  init(_ data: Points2D) {
    inputs = Tensor(data.points.flatMap { $0.map(Float.init) }, shape: [data.count, 2])
    signs = Tensor(data.labels.map { $0 == 1 ? 1 : -1 }, shape: [data.count])
    labels = data.labels
  }
}

/// The model's outputs for the whole batch, and the loss to minimise (data loss + L2 penalty).
func lossAndScores(
  _ model: MLP<Float>, _ batch: Batch, config: TrainConfig
) -> (
  loss: Tensor<Float>, scores: Tensor<Float>
) {
  let scores = model(batch.inputs)
  let dataLoss =
    config.classes == 2
    ? hingeLoss(scores: scores.reshape([-1]), labels: batch.signs)
    : crossEntropyLoss(logits: scores, labels: batch.labels)
  return (dataLoss + l2Penalty(model.parameters(), alpha: Float(config.alpha)), scores)
}

/// The predicted class of each row of scores: the sign of the score, or the largest logit.
func predictions(_ scores: Tensor<Float>) -> [Int] {
  let columns = scores.shape[1]
  if columns == 1 { return scores.storage.map { $0 > 0 ? 1 : 0 } }
  return (0..<scores.shape[0]).map { row in
    let logits = scores.storage[(row * columns)..<((row + 1) * columns)]
    return logits.indices.max { logits[$0] < logits[$1] }! - row * columns
  }
}

/// The share of points classified correctly.
func accuracy(_ scores: Tensor<Float>, _ labels: [Int]) -> Double {
  Double(zip(predictions(scores), labels).filter { $0 == $1 }.count) / Double(labels.count)
}

/// The model the config describes, freshly initialised (stage 1's draws for the same seed).
func makeModel(_ config: TrainConfig) -> MLP<Float> {
  var rng = SeededRNG(seed: config.seed)
  return MLP(inputs: 2, sizes: config.hidden + [config.outputs], activation: .relu, rng: &rng)
}

/// The data the config describes (seeded by the config's seed, independent of the model's draws).
func makeData(_ config: TrainConfig) -> Points2D {
  config.dataset.make(count: config.points, noise: config.noise, classes: config.classes, seed: config.seed &+ 1)
}

/// Trains an MLP on a toy set: each step is forward on the whole batch, loss, zeroGrad, backward, SGD update.
/// `onStep` sees each step's loss and accuracy (measured before that step's update).
/// A loss that is not finite stops the run before it reaches the weights (a `UserError` with the step).
public func train(_ config: TrainConfig, onStep: (StepRecord) -> Void = { _ in }) throws -> TrainResult {
  let data = makeData(config)
  let batch = Batch(data)
  let model = makeModel(config)
  var optimizer = SGD(
    parameters: model.parameters(), learningRate: config.learningRate,
    finalFraction: config.finalLearningRateFraction, totalSteps: config.steps)
  var history: [StepRecord] = []
  for step in 0..<config.steps {
    let (loss, scores) = lossAndScores(model, batch, config: config)
    try Check.finiteLoss(Double(loss.item), step: step + 1, learningRate: config.learningRate)
    let record = StepRecord(
      step: step + 1, loss: Double(loss.item), accuracy: accuracy(scores, data.labels),
      learningRate: optimizer.learningRate(at: step))
    optimizer.zeroGrad()
    loss.backward()
    optimizer.step()
    history.append(record)
    onStep(record)
  }
  return TrainResult(model: model, data: data, history: history)
}

/// The model on a regular grid that covers the data with a margin: the score (two classes) or the predicted
/// class, for the decision-boundary picture. One batched forward pass, without recording a graph.
func scoreGrid(
  _ model: MLP<Float>, _ data: Points2D, resolution: Int = 80
) -> (
  xs: [Double], ys: [Double], values: [[Double]]
) {
  func range(_ axis: Int) -> [Double] {
    let values = data.points.map { $0[axis] }
    let (low, high) = (values.min()! - 0.5, values.max()! + 0.5)
    return (0..<resolution).map { low + (high - low) * Double($0) / Double(resolution - 1) }
  }
  let xs = range(0)
  let ys = range(1)
  let grid = Tensor<Float>(
    ys.flatMap { y in xs.flatMap { x in [Float(x), Float(y)] } }, shape: [xs.count * ys.count, 2])
  let scores = noGrad { model(grid) }
  let flat = scores.shape[1] == 1 ? scores.storage.map(Double.init) : predictions(scores).map(Double.init)
  let values = ys.indices.map { i in Array(flat[(i * xs.count)..<((i + 1) * xs.count)]) }
  return (xs, ys, values)
}
