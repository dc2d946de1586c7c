import Datasets
import Support

/// The stage's demo: micrograd's classic, an MLP trained on a 2-D toy set with full-batch SGD.

// MARK: - Configuration

/// Everything that decides a run. The defaults are micrograd's demo.
public struct TrainConfig: Sendable {
  public var dataset = ToyDataset.moons
  public var points = 100
  public var noise = 0.1
  public var hidden = [16, 16]
  public var steps = 100
  public var learningRate = 1.0
  /// The learning rate decays linearly to this fraction of itself by the last step.
  public var finalLearningRateFraction = 0.1
  /// Weight of the L2 penalty on the parameters.
  public var alpha = 1e-4
  public var seed: UInt64 = 1337

  public init() {}
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
  public let model: MLP
  public let data: Points2D
  public let history: [StepRecord]
}

// MARK: - Training

/// The model's scores for every point, and the loss to minimise: the hinge loss plus the L2 penalty.
func lossAndScores(_ model: MLP, _ data: Points2D, alpha: Double) -> (loss: Value, scores: [Value]) {
  let inputs = data.points.map { point in point.map { Value($0) } }
  let scores = inputs.map { model($0)[0] }
  let signs = data.labels.map { $0 == 1 ? 1.0 : -1.0 }
  let loss = hingeLoss(scores: scores, labels: signs) + l2Penalty(model.parameters(), alpha: alpha)
  return (loss, scores)
}

/// The share of points on the right side of the boundary (score > 0 means class 1).
func accuracy(_ scores: [Value], _ labels: [Int]) -> Double {
  let correct = zip(scores, labels).filter { score, label in (score.data > 0) == (label == 1) }.count
  return Double(correct) / Double(labels.count)
}

/// The model the config describes, freshly initialised.
func makeModel(_ config: TrainConfig) -> MLP {
  var rng = SeededRNG(seed: config.seed)
  return MLP(inputs: 2, sizes: config.hidden + [1], activation: .relu, rng: &rng)
}

/// The data the config describes (seeded by the config's seed, independent of the model's draws).
func makeData(_ config: TrainConfig) -> Points2D {
  config.dataset.make(count: config.points, noise: config.noise, seed: config.seed &+ 1)
}

/// Roughly the memory one training step needs, in bytes, for `Check.memory`: every point builds its own graph
/// through the network, about two nodes (a product and a sum) per weight and two per neuron, each a Value of
/// about 110 bytes with its links (measured: 7.4 GB for 100,000 points through 16,16). Counted in Double: no
/// product overflows.
func estimatedBytes(points: Int, hidden: [Int]) -> Double {
  let sizes = [2.0] + hidden.map(Double.init) + [1]
  let nodesPerPoint = zip(sizes, sizes.dropFirst()).map { (2 * $0 + 2) * $1 }.reduce(0, +)
  return 110 * Double(points) * nodesPerPoint
}

/// Trains an MLP on a toy set: each step is forward on every point, loss, zeroGrad, backward, SGD update.
/// `onStep` sees each step's loss and accuracy (measured before that step's update, as micrograd prints them).
/// A loss that is not finite stops the run before it reaches the weights (a `UserError` with the step).
public func train(_ config: TrainConfig, onStep: (StepRecord) -> Void = { _ in }) throws -> TrainResult {
  let data = makeData(config)
  let model = makeModel(config)
  var optimizer = SGD(
    parameters: model.parameters(), learningRate: config.learningRate,
    finalFraction: config.finalLearningRateFraction, totalSteps: config.steps)
  var history: [StepRecord] = []
  for step in 0..<config.steps {
    let (loss, scores) = lossAndScores(model, data, alpha: config.alpha)
    try Check.finiteLoss(loss.data, step: step + 1, learningRate: config.learningRate)
    let record = StepRecord(
      step: step + 1, loss: loss.data, accuracy: accuracy(scores, data.labels),
      learningRate: optimizer.learningRate(at: step))
    optimizer.zeroGrad()
    loss.backward()
    optimizer.step()
    history.append(record)
    onStep(record)
  }
  return TrainResult(model: model, data: data, history: history)
}

/// The model's score on a regular grid that covers the data with a margin: the decision-boundary picture.
func scoreGrid(_ model: MLP, _ data: Points2D, resolution: Int = 80) -> (xs: [Double], ys: [Double], values: [[Double]])
{
  func range(_ axis: Int) -> [Double] {
    let values = data.points.map { $0[axis] }
    let (low, high) = (values.min()! - 0.5, values.max()! + 0.5)
    return (0..<resolution).map { low + (high - low) * Double($0) / Double(resolution - 1) }
  }
  let xs = range(0)
  let ys = range(1)
  let values = ys.map { y in xs.map { x in model([Value(x), Value(y)])[0].data } }
  return (xs, ys, values)
}
