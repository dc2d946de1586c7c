/// Optimizers: turn gradients into parameter updates.

// MARK: - SGD

/// Plain stochastic gradient descent: p <- p - lr * dL/dp, with the learning rate decayed linearly from
/// `learningRate` down to `learningRate * finalFraction` over `totalSteps` steps (micrograd's demo decays
/// 1.0 -> 0.1 over 100 steps).
public struct SGD<Scalar: TensorScalar> {
  public let parameters: [Tensor<Scalar>]
  public let learningRate: Double
  public let finalFraction: Double
  public let totalSteps: Int
  /// Updates made so far.
  public private(set) var stepCount = 0

  public init(parameters: [Tensor<Scalar>], learningRate: Double, finalFraction: Double = 1, totalSteps: Int = 1) {
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

  /// One update of every parameter along its negative gradient, in place (a parameter without a gradient,
  /// one the loss did not reach, stays as it is).
  public mutating func step() {
    let lr = Scalar(learningRate(at: stepCount))
    for p in parameters {
      guard let g = p.gradStorage else { continue }
      p.storage.withUnsafeMutableBufferPointer { w in
        for i in w.indices { w[i] -= lr * g[i] }
      }
    }
    stepCount += 1
  }

  /// Forgets every parameter's gradient.
  public func zeroGrad() {
    for p in parameters { p.zeroGrad() }
  }
}
