import Kernels
import Support

/// Optimizers: turn gradients into parameter updates. PyTorch's algorithms, with its names and defaults.

// MARK: - Parameter groups and the protocol

/// Parameters that share hyperparameters: usually weight matrices with weight decay, and biases and norm gains
/// without (decaying a bias or a LayerNorm gain towards 0 only hurts).
public struct ParameterGroup<Scalar: TensorScalar> {
  public let parameters: [Tensor<Scalar>]
  public let weightDecay: Double

  public init(_ parameters: [Tensor<Scalar>], weightDecay: Double = 0) {
    self.parameters = parameters
    self.weightDecay = weightDecay
  }

  /// The usual split: tensors of rank >= 2 (matrices, embeddings) decay; rank 1 (biases, norms) do not.
  public static func decayingMatrices(_ parameters: [Tensor<Scalar>], weightDecay: Double) -> [ParameterGroup] {
    [
      ParameterGroup(parameters.filter { $0.rank >= 2 }, weightDecay: weightDecay),
      ParameterGroup(parameters.filter { $0.rank < 2 }, weightDecay: 0),
    ]
  }
}

/// What every optimizer has: groups, a learning rate a schedule can set, a step count, and per-parameter state
/// (momentum, Adam's moments) that a checkpoint saves by kind and parameter.
public protocol Optimizer<Scalar>: AnyObject {
  associatedtype Scalar: TensorScalar
  var groups: [ParameterGroup<Scalar>] { get }
  var learningRate: Double { get set }
  var stepCount: Int { get set }
  /// State per parameter: kind ("momentum", "exp_avg", ...) -> parameter -> values.
  var state: [String: [ObjectIdentifier: [Scalar]]] { get set }
  /// The kinds of `state` every parameter has after the first step: what a checkpoint must hold to resume.
  var stateKinds: [String] { get }
  /// One update of every parameter that has a gradient.
  func step()
}

extension Optimizer {
  /// Forgets every parameter's gradient.
  public func zeroGrad() {
    for group in groups { for p in group.parameters { p.zeroGrad() } }
  }

  /// Takes the state buffer of `kind` for `p` out of `state` (zeros on first use); put it back when done.
  /// Taking it out leaves the array with one owner, so updating it changes it in place: a copy still held by
  /// the dictionary would make every write copy the whole buffer first (copy on write).
  func takeBuffer(_ kind: String, for p: Tensor<Scalar>) -> [Scalar] {
    state[kind, default: [:]].removeValue(forKey: ObjectIdentifier(p)) ?? [Scalar](repeating: 0, count: p.count)
  }
}

// MARK: - SGD

/// Stochastic gradient descent, PyTorch's torch.optim.SGD. For each parameter p with gradient g:
///   g <- g + weightDecay * p                          (L2 regularisation, coupled into the gradient)
///   b <- momentum * b + (1 - dampening) * g           (b = g on the first step)
///   g <- g + momentum * b  (Nesterov)  or  g <- b
///   p <- p - lr * g
public final class SGD<Scalar: TensorScalar>: Optimizer {
  public let groups: [ParameterGroup<Scalar>]
  public var learningRate: Double
  public let momentum: Double
  public let dampening: Double
  public let nesterov: Bool
  public var stepCount = 0
  public var state: [String: [ObjectIdentifier: [Scalar]]] = [:]
  public var stateKinds: [String] { momentum == 0 ? [] : ["momentum"] }

  public init(
    _ groups: [ParameterGroup<Scalar>], learningRate: Double, momentum: Double = 0, dampening: Double = 0,
    nesterov: Bool = false
  ) {
    precondition(!nesterov || (momentum > 0 && dampening == 0), "SGD: Nesterov needs momentum and no dampening")
    self.groups = groups
    self.learningRate = learningRate
    self.momentum = momentum
    self.dampening = dampening
    self.nesterov = nesterov
  }

  // Called through `any Optimizer`, a generic method runs unspecialised (every element through the generic
  // machinery) unless the compiler is told to make these versions.
  @_specialize(where Scalar == Float)
  @_specialize(where Scalar == Double)
  public func step() {
    let (lr, mu, damp) = (Scalar(learningRate), Scalar(momentum), Scalar(dampening))
    for group in groups {
      let decay = Scalar(group.weightDecay)
      for p in group.parameters {
        guard let grad = p.gradStorage else { continue }
        let first = state["momentum"]?[ObjectIdentifier(p)] == nil
        var b = mu == 0 ? nil : takeBuffer("momentum", for: p)
        let count = p.count
        p.storage.withUnsafeMutableBufferPointer { w in
          grad.withUnsafeBufferPointer { g in
            withOptionalPointer(&b) { b in
              sgdUpdate(
                w.start, g.start, momentumBuffer: b, count: count, lr: lr, weightDecay: decay, momentum: mu,
                dampening: damp, nesterov: nesterov, firstStep: first)
            }
          }
        }
        if let b { state["momentum", default: [:]][ObjectIdentifier(p)] = b }
      }
    }
    stepCount += 1
  }
}

// MARK: - Adam and AdamW

/// Adam (Kingma and Ba, 2015), PyTorch's torch.optim.Adam, and with `decoupledWeightDecay` AdamW (Loshchilov
/// and Hutter, 2019). For each parameter p with gradient g, at step t = 1, 2, ...:
///   Adam:  g <- g + weightDecay * p                   (L2 in the gradient: then scaled by 1/sqrt(v) below)
///   AdamW: p <- p - lr * weightDecay * p              (decay applied to the weight directly, unscaled)
///   m <- beta1 m + (1 - beta1) g,   v <- beta2 v + (1 - beta2) g^2
///   p <- p - lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
public final class Adam<Scalar: TensorScalar>: Optimizer {
  public let groups: [ParameterGroup<Scalar>]
  public var learningRate: Double
  public let beta1: Double
  public let beta2: Double
  public let eps: Double
  public let decoupledWeightDecay: Bool
  public var stepCount = 0
  public var state: [String: [ObjectIdentifier: [Scalar]]] = [:]
  public let stateKinds = ["exp_avg", "exp_avg_sq"]

  public init(
    _ groups: [ParameterGroup<Scalar>], learningRate: Double = 1e-3, beta1: Double = 0.9, beta2: Double = 0.999,
    eps: Double = 1e-8, decoupledWeightDecay: Bool = false
  ) {
    self.groups = groups
    self.learningRate = learningRate
    self.beta1 = beta1
    self.beta2 = beta2
    self.eps = eps
    self.decoupledWeightDecay = decoupledWeightDecay
  }

  @_specialize(where Scalar == Float)
  @_specialize(where Scalar == Double)
  public func step() {
    stepCount += 1
    let t = Double(stepCount)
    let lr = Scalar(learningRate)
    let (b1, b2, e) = (Scalar(beta1), Scalar(beta2), Scalar(eps))
    let (correction1, correction2) = (Scalar(1 - Double.pow(beta1, t)), Scalar(1 - Double.pow(beta2, t)))
    for group in groups {
      let decay = Scalar(group.weightDecay)
      // AdamW shrinks the weight before the step; Adam adds decay * p to the gradient (coupled).
      let (shrink, coupled) = decoupledWeightDecay ? (1 - lr * decay, Scalar(0)) : (1, decay)
      for p in group.parameters {
        guard let grad = p.gradStorage else { continue }
        var m = takeBuffer("exp_avg", for: p)
        var v = takeBuffer("exp_avg_sq", for: p)
        let constants = AdamConstants(
          lr: lr, beta1: b1, beta2: b2, eps: e, correction1: correction1, correction2: correction2, shrink: shrink,
          coupled: coupled)
        let count = p.count
        withMutablePointers(&p.storage, &m, &v) { w, m, v in
          grad.withUnsafeBufferPointer { g in adamUpdate(w, g.start, m, v, count: count, constants) }
        }
        state["exp_avg", default: [:]][ObjectIdentifier(p)] = m
        state["exp_avg_sq", default: [:]][ObjectIdentifier(p)] = v
      }
    }
  }
}

/// `body` with a pointer to the elements of `array`, or nil when there is no array.
func withOptionalPointer<Scalar>(_ array: inout [Scalar]?, _ body: (UnsafeMutablePointer<Scalar>?) -> Void) {
  if array == nil { return body(nil) }
  array!.withUnsafeMutableBufferPointer { body($0.start) }
}

// MARK: - Gradient clipping

/// Scales every gradient by maxNorm / ||g|| when the global norm ||g|| (over all parameters together) exceeds
/// maxNorm, so a rare huge gradient cannot throw the parameters far; returns the norm before clipping.
/// PyTorch's clip_grad_norm_.
@discardableResult
public func clipGradNorm<Scalar: TensorScalar>(_ parameters: [Tensor<Scalar>], maxNorm: Double) -> Double {
  // Each parameter's sum of squares on its own, the parameters shared out across the cores, then the sums added
  // in order: the same numbers, added in the same order, as one loop over the parameters.
  var sums = [Double](repeating: 0, count: parameters.count)
  sums.withUnsafeMutableBufferPointer { sums in
    Parallel.forEach(parameters.count, grain: 1) { range in
      for i in range {
        sums[i] = parameters[i].gradStorage?.withUnsafeBufferPointer { sumOfSquares($0.start, count: $0.count) } ?? 0
      }
    }
  }
  let norm = sums.reduce(0, +).squareRoot()
  let scale = Scalar(maxNorm / (norm + 1e-6))
  if scale < 1 {
    for p in parameters where p.gradStorage != nil {
      p.gradStorage!.withUnsafeMutableBufferPointer { g in Kernels.scale(g.start, count: g.count, by: scale) }
    }
  }
  return norm
}
