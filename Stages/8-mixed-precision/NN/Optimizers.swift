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
    for group in groups {
      let constants = self.constants(weightDecay: group.weightDecay)
      for p in group.parameters {
        guard let grad = p.gradStorage else { continue }
        var m = takeBuffer("exp_avg", for: p)
        var v = takeBuffer("exp_avg_sq", for: p)
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

extension Adam {
  /// The numbers of step `stepCount` that are the same for every element of a group with `weightDecay` (stage 7's
  /// ZeRO updates a shard of the elements with them, and so gets the bits this optimizer would).
  public func constants(weightDecay: Double) -> AdamConstants<Scalar> {
    let t = Double(stepCount)
    let (lr, decay) = (Scalar(learningRate), Scalar(weightDecay))
    // AdamW shrinks the weight before the step; Adam adds decay * p to the gradient (coupled).
    let (shrink, coupled) = decoupledWeightDecay ? (1 - lr * decay, Scalar(0)) : (1, decay)
    return AdamConstants(
      lr: lr, beta1: Scalar(beta1), beta2: Scalar(beta2), eps: Scalar(eps),
      correction1: Scalar(1 - Double.pow(beta1, t)), correction2: Scalar(1 - Double.pow(beta2, t)), shrink: shrink,
      coupled: coupled)
  }
}

/// `body` with a pointer to the elements of `array`, or nil when there is no array.
func withOptionalPointer<Scalar>(_ array: inout [Scalar]?, _ body: (UnsafeMutablePointer<Scalar>?) -> Void) {
  if array == nil { return body(nil) }
  array!.withUnsafeMutableBufferPointer { body($0.start) }
}

// MARK: - Gradient clipping

/// Elements per block of the gradient norm's sum of squares (see `clipGradNorm`).
public let normBlock = 64

/// The sum of squares of each block of `normBlock` elements of each parameter's gradient (the last block of a
/// parameter may be shorter; a parameter without a gradient counts as zeros), parameter by parameter, in order.
/// The parameters are shared out across the cores; each block's sum is the same on any core.
public func gradientBlockSquares<Scalar: TensorScalar>(_ parameters: [Tensor<Scalar>]) -> [Double] {
  var perParameter = [[Double]](repeating: [], count: parameters.count)
  perParameter.withUnsafeMutableBufferPointer { out in
    Parallel.forEach(parameters.count, grain: 1) { range in
      for i in range {
        let p = parameters[i]
        let blocks = (p.count + normBlock - 1) / normBlock
        guard let grad = p.gradStorage else {
          out[i] = Array(repeating: 0, count: blocks)
          continue
        }
        out[i] = grad.withUnsafeBufferPointer { g in
          (0..<blocks).map { b in
            sumOfSquares(g.baseAddress! + b * normBlock, count: min(normBlock, g.count - b * normBlock))
          }
        }
      }
    }
  }
  return perParameter.flatMap { $0 }
}

/// Scales every gradient by maxNorm / ||g|| when the global norm ||g|| (over all parameters together) exceeds
/// maxNorm, so a rare huge gradient cannot throw the parameters far; returns the norm before clipping.
/// PyTorch's clip_grad_norm_.
///
/// Since stage 7 the squares are summed in blocks of `normBlock` elements (`gradientBlockSquares`), then the
/// blocks' sums in order: a rank of ZeRO that holds only some blocks of the gradient computes their sums, the
/// ranks exchange them, and every rank adds the same numbers in the same order as one process does, so the norm,
/// the clipping and the update are the same to the last bit.
@discardableResult
public func clipGradNorm<Scalar: TensorScalar>(_ parameters: [Tensor<Scalar>], maxNorm: Double) -> Double {
  let norm = gradientBlockSquares(parameters).reduce(0, +).squareRoot()
  clipGradients(parameters, norm: norm, maxNorm: maxNorm)
  return norm
}

/// Multiplies every gradient by `clipScale` when that is below 1: clipping, for a norm computed elsewhere (stage
/// 7's tensor parallelism sums it across ranks).
public func clipGradients<Scalar: TensorScalar>(_ parameters: [Tensor<Scalar>], norm: Double, maxNorm: Double) {
  let scale = clipScale(norm: norm, maxNorm: maxNorm, as: Scalar.self)
  guard scale < 1 else { return }
  for p in parameters where p.gradStorage != nil {
    p.gradStorage!.withUnsafeMutableBufferPointer { g in Kernels.scale(g.start, count: g.count, by: scale) }
  }
}

/// The factor clipping multiplies the gradients by: maxNorm / (norm + 1e-6), or 1 when that is not below 1.
public func clipScale<Scalar: TensorScalar>(norm: Double, maxNorm: Double, as: Scalar.Type) -> Scalar {
  min(1, Scalar(maxNorm / (norm + 1e-6)))
}
