/// Optimizers: turn gradients into parameter updates.

// MARK: - SGD

/// Plain stochastic gradient descent: p <- p - lr * dL/dp, with the learning rate decayed linearly from
/// `learningRate` down to `learningRate * finalFraction` over `totalSteps` steps (micrograd's demo decays
/// 1.0 -> 0.1 over 100 steps).
public struct SGD {
  public let parameters: [Value]
  public let learningRate: Double
  public let finalFraction: Double
  public let totalSteps: Int
  /// Updates made so far.
  public private(set) var stepCount = 0

  public init(parameters: [Value], learningRate: Double, finalFraction: Double = 1, totalSteps: Int = 1) {
    self.parameters = parameters
    self.learningRate = learningRate
    self.finalFraction = finalFraction
    self.totalSteps = max(totalSteps, 1)
  }

  /// The learning rate of update number `step` (0-based).
  public func learningRate(at step: Int) -> Double {
    let progress = Double(min(step, totalSteps)) / Double(totalSteps)
    return learningRate * (1 - (1 - finalFraction) * progress)
  }

  /// One update of every parameter along its negative gradient.
  public mutating func step() {
    let lr = learningRate(at: stepCount)
    for p in parameters { p.data -= lr * p.grad }
    stepCount += 1
  }

  /// Zeroes every parameter's gradient.
  public func zeroGrad() {
    for p in parameters { p.grad = 0 }
  }
}
