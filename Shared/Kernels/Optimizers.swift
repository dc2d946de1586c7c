import RealModule
import Support

/// The optimizers' element updates over flat buffers (PyTorch's algorithms; the stage's optimizer classes hold
/// the state and call these once per parameter).

/// Elements per piece of an optimizer update: most parameters are under 32k elements.
public let optimizerGrain = 4096

/// The numbers of one Adam step that are the same for every element.
public struct AdamConstants<S: KernelScalar> {
  public var lr, beta1, beta2, eps, correction1, correction2: S
  /// 1 - lr * weightDecay with decoupled decay (AdamW), else 1.
  public var shrink: S
  /// The weight decay added to the gradient (Adam's L2), else 0.
  public var coupled: S

  @inlinable
  public init(lr: S, beta1: S, beta2: S, eps: S, correction1: S, correction2: S, shrink: S, coupled: S) {
    (self.lr, self.beta1, self.beta2, self.eps) = (lr, beta1, beta2, eps)
    (self.correction1, self.correction2, self.shrink, self.coupled) = (correction1, correction2, shrink, coupled)
  }
}

/// Adam's update of n elements: g = grad + coupled * w; m and v move towards g and g^2;
/// w = shrink * w - lr * m_hat / (sqrt(v_hat) + eps), m_hat = m / correction1, v_hat = v / correction2.
/// Fast: pieces across the cores, SIMD in each (`adamPiece`). Reference: the same formula in one loop.
@inlinable
public func adamUpdate<S: KernelScalar>(
  _ w: UnsafeMutablePointer<S>, _ grad: UnsafePointer<S>, _ m: UnsafeMutablePointer<S>, _ v: UnsafeMutablePointer<S>,
  count n: Int, _ k: AdamConstants<S>
) {
  if KernelChoice.useReference { return adamReference(w, grad, m, v, k, 0..<n) }
  Parallel.forEach(n, grain: optimizerGrain) { range in adamPiece(w, grad, m, v, k, range) }
}

@inlinable @inline(never)
public func adamPiece<S: KernelScalar>(
  _ w: UnsafeMutablePointer<S>, _ grad: UnsafePointer<S>, _ m: UnsafeMutablePointer<S>, _ v: UnsafeMutablePointer<S>,
  _ k: AdamConstants<S>, _ range: Range<Int>
) {
  for i in range {
    let g = grad[i] + k.coupled * w[i]
    m[i] = k.beta1 * m[i] + (1 - k.beta1) * g
    v[i] = k.beta2 * v[i] + (1 - k.beta2) * g * g
    // squareRoot() is the instruction; S.sqrt (swift-numerics) goes through a libm call that blocks SIMD.
    w[i] = k.shrink * w[i] - k.lr * (m[i] / k.correction1) / ((v[i] / k.correction2).squareRoot() + k.eps)
  }
}

/// The reference of `adamUpdate`: the formula of the comment, with libm's square root.
@inlinable
public func adamReference<S: KernelScalar>(
  _ w: UnsafeMutablePointer<S>, _ grad: UnsafePointer<S>, _ m: UnsafeMutablePointer<S>, _ v: UnsafeMutablePointer<S>,
  _ k: AdamConstants<S>, _ range: Range<Int>
) {
  for i in range {
    let g = grad[i] + k.coupled * w[i]
    m[i] = k.beta1 * m[i] + (1 - k.beta1) * g
    v[i] = k.beta2 * v[i] + (1 - k.beta2) * g * g
    let mHat = m[i] / k.correction1
    let vHat = v[i] / k.correction2
    w[i] = k.shrink * w[i] - k.lr * mHat / (S.sqrt(vHat) + k.eps)
  }
}

/// SGD's update of n elements (torch.optim.SGD), with `momentum` the buffer b or nil for none:
///   g <- grad + weightDecay * w
///   b <- g on the first step, else momentum * b + (1 - dampening) * g
///   g <- g + momentum * b (Nesterov) or g <- b
///   w <- w - lr * g
/// Fast: pieces across the cores, one pass with no temporary array. Reference: the same in one loop.
@inlinable
public func sgdUpdate<S: KernelScalar>(
  _ w: UnsafeMutablePointer<S>, _ grad: UnsafePointer<S>, momentumBuffer b: UnsafeMutablePointer<S>?, count n: Int,
  lr: S, weightDecay: S, momentum: S, dampening: S, nesterov: Bool, firstStep: Bool
) {
  let piece = { (range: Range<Int>) in
    sgdPiece(
      w, grad, b, lr: lr, weightDecay: weightDecay, momentum: momentum, dampening: dampening, nesterov: nesterov,
      firstStep: firstStep, range)
  }
  if KernelChoice.useReference { return piece(0..<n) }
  Parallel.forEach(n, grain: optimizerGrain, piece)
}

/// The loop of `sgdUpdate` over one piece; it is also the reference.
@inlinable @inline(never)
public func sgdPiece<S: KernelScalar>(
  _ w: UnsafeMutablePointer<S>, _ grad: UnsafePointer<S>, _ b: UnsafeMutablePointer<S>?, lr: S, weightDecay: S,
  momentum: S, dampening: S, nesterov: Bool, firstStep: Bool, _ range: Range<Int>
) {
  for i in range {
    var g = weightDecay == 0 ? grad[i] : grad[i] + weightDecay * w[i]
    if let b {
      b[i] = firstStep ? g : momentum * b[i] + (1 - dampening) * g
      g = nesterov ? g + momentum * b[i] : b[i]
    }
    w[i] -= lr * g
  }
}
