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
        var g = decay == 0 ? grad : zip(grad, p.storage).map { $0 + decay * $1 }
        if mu != 0 {
          let first = state["momentum"]?[ObjectIdentifier(p)] == nil
          var b = takeBuffer("momentum", for: p)
          for i in b.indices { b[i] = first ? g[i] : mu * b[i] + (1 - damp) * g[i] }
          state["momentum", default: [:]][ObjectIdentifier(p)] = b
          for i in g.indices { g[i] = nesterov ? g[i] + mu * b[i] : b[i] }
        }
        p.storage.withUnsafeMutableBufferPointer { w in for i in w.indices { w[i] -= lr * g[i] } }
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
        // One pass over raw buffers, split across the cores: no bounds checks and no copy-on-write checks inside
        // the loop.
        let constants = AdamConstants(
          lr: lr, beta1: b1, beta2: b2, eps: e, correction1: correction1, correction2: correction2, shrink: shrink,
          coupled: coupled)
        p.storage.withUnsafeMutableBufferPointer { w in
          m.withUnsafeMutableBufferPointer { m in
            v.withUnsafeMutableBufferPointer { v in
              grad.withUnsafeBufferPointer { grad in
                let count = w.count  // not p.count: p.storage is being written here
                let (w, m, v, grad) = (w.baseAddress!, m.baseAddress!, v.baseAddress!, grad.baseAddress!)
                Parallel.forEach(count, grain: 4096) { range in  // most parameters are under 32k elements
                  adamUpdate(w, grad, m, v, constants, range)
                }
              }
            }
          }
        }
        state["exp_avg", default: [:]][ObjectIdentifier(p)] = m
        state["exp_avg_sq", default: [:]][ObjectIdentifier(p)] = v
      }
    }
  }
}

/// The numbers of one Adam step that are the same for every element.
struct AdamConstants<Scalar: TensorScalar> {
  var lr, beta1, beta2, eps, correction1, correction2: Scalar
  /// 1 - lr * weightDecay with decoupled decay (AdamW), else 1.
  var shrink: Scalar
  /// The weight decay added to the gradient (Adam's L2), else 0.
  var coupled: Scalar
}

/// Adam's update of elements `range`: g = grad + coupled * w; m and v move towards g and g^2;
/// w = shrink * w - lr * m_hat / (sqrt(v_hat) + eps).
@inline(never)
func adamUpdate<Scalar: TensorScalar>(
  _ w: UnsafeMutablePointer<Scalar>, _ grad: UnsafePointer<Scalar>, _ m: UnsafeMutablePointer<Scalar>,
  _ v: UnsafeMutablePointer<Scalar>, _ k: AdamConstants<Scalar>, _ range: Range<Int>
) {
  for i in range {
    let g = grad[i] + k.coupled * w[i]
    m[i] = k.beta1 * m[i] + (1 - k.beta1) * g
    v[i] = k.beta2 * v[i] + (1 - k.beta2) * g * g
    // squareRoot() is the instruction; Scalar.sqrt (swift-numerics) goes through a libm call that blocks SIMD.
    w[i] = k.shrink * w[i] - k.lr * (m[i] / k.correction1) / ((v[i] / k.correction2).squareRoot() + k.eps)
  }
}

// MARK: - Gradient clipping

/// Scales every gradient by maxNorm / ||g|| when the global norm ||g|| (over all parameters together) exceeds
/// maxNorm, so a rare huge gradient cannot throw the parameters far; returns the norm before clipping.
/// PyTorch's clip_grad_norm_.
@discardableResult
public func clipGradNorm<Scalar: TensorScalar>(_ parameters: [Tensor<Scalar>], maxNorm: Double) -> Double {
  var squares = 0.0
  for p in parameters {
    guard let grad = p.gradStorage else { continue }
    // Four running sums (in Double, as before) that the compiler can keep in SIMD lanes, instead of one long
    // chain of dependent additions.
    var partial = (0.0, 0.0, 0.0, 0.0)
    grad.withUnsafeBufferPointer { g in
      let whole = g.count / 4 * 4
      for i in stride(from: 0, to: whole, by: 4) {
        partial.0 += Double(g[i]) * Double(g[i])
        partial.1 += Double(g[i + 1]) * Double(g[i + 1])
        partial.2 += Double(g[i + 2]) * Double(g[i + 2])
        partial.3 += Double(g[i + 3]) * Double(g[i + 3])
      }
      for i in whole..<g.count { partial.0 += Double(g[i]) * Double(g[i]) }
    }
    squares += partial.0 + partial.1 + partial.2 + partial.3
  }
  let norm = squares.squareRoot()
  let scale = Scalar(maxNorm / (norm + 1e-6))
  if scale < 1 {
    for p in parameters where p.gradStorage != nil {
      p.gradStorage!.withUnsafeMutableBufferPointer { g in for i in 0..<g.count { g[i] *= scale } }
    }
  }
  return norm
}
