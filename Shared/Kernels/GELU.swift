import RealModule
import Support

/// GELU in GPT-2's tanh form: y = 0.5 x (1 + t), t = tanh(u), u = sqrt(2/pi) (x + 0.044715 x^3).
/// Backward: dx = dy * (0.5 (1 + t) + 0.5 x (1 - t^2) du/dx), du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2).

@usableFromInline let geluScale = 0.797_884_560_802_865_4  // sqrt(2/pi)
@usableFromInline let geluCubic = 0.044_715

/// GELU forward over n elements: y and t (kept for backward) from x. x, y, t: [n]. Fast: one pass with no call per
/// element (`fastTanh`), so it runs in SIMD lanes, split across the cores. Reference: libm's tanh, one loop.
@inlinable
public func geluForward<S: KernelScalar>(
  _ x: UnsafePointer<S>, _ y: UnsafeMutablePointer<S>, _ t: UnsafeMutablePointer<S>, count n: Int
) {
  if KernelChoice.useReference { return geluForwardReference(x, y, t, 0..<n) }
  Parallel.forEach(n, grain: elementwiseGrain) { range in geluForwardPiece(x, y, t, range) }
}

/// The loop of `geluForward` over one piece. It is a function of its own because inside the closure that
/// `Parallel` runs, the compiler does not turn a loop into SIMD code (it cannot rule out that the stores change
/// the captured pointers); with the pointers as plain arguments it does.
@inlinable @inline(never)
public func geluForwardPiece<S: KernelScalar>(
  _ x: UnsafePointer<S>, _ y: UnsafeMutablePointer<S>, _ t: UnsafeMutablePointer<S>, _ range: Range<Int>
) {
  let (a, c) = (S(geluScale), S(geluCubic))
  for i in range {
    let v = x[i]
    let tanh = fastTanh(a * (v + c * v * v * v))
    t[i] = tanh
    y[i] = 0.5 * v * (1 + tanh)
  }
}

/// The reference of `geluForward`: the formula, with libm's tanh.
@inlinable
public func geluForwardReference<S: KernelScalar>(
  _ x: UnsafePointer<S>, _ y: UnsafeMutablePointer<S>, _ t: UnsafeMutablePointer<S>, _ range: Range<Int>
) {
  for i in range {
    let v = x[i]
    t[i] = S.tanh(S(geluScale) * (v + S(geluCubic) * v * v * v))
    y[i] = 0.5 * v * (1 + t[i])
  }
}

/// GELU backward over n elements: dx from x, t (forward's tanh) and dy. x, t, dy, dx: [n]. Fast: split across the
/// cores, SIMD in each piece. Reference: the same formula in one loop.
@inlinable
public func geluBackward<S: KernelScalar>(
  _ x: UnsafePointer<S>, _ t: UnsafePointer<S>, _ dy: UnsafePointer<S>, _ dx: UnsafeMutablePointer<S>, count n: Int
) {
  if KernelChoice.useReference { return geluBackwardPiece(x, t, dy, dx, 0..<n) }
  Parallel.forEach(n, grain: elementwiseGrain) { range in geluBackwardPiece(x, t, dy, dx, range) }
}

/// The loop of `geluBackward` over one piece; it is also the reference (the formula, nothing more).
@inlinable @inline(never)
public func geluBackwardPiece<S: KernelScalar>(
  _ x: UnsafePointer<S>, _ t: UnsafePointer<S>, _ dy: UnsafePointer<S>, _ dx: UnsafeMutablePointer<S>,
  _ range: Range<Int>
) {
  let (a, c) = (S(geluScale), S(geluCubic))
  for i in range {
    let (v, tanh) = (x[i], t[i])
    let du: S = a * (1 + 3 * c * v * v)
    let slope: S = 0.5 * (1 + tanh) + 0.5 * v * (1 - tanh * tanh) * du
    dx[i] = dy[i] * slope
  }
}

// MARK: - The exact form

/// GELU in its exact form (BERT's): y = x Phi(x), Phi(x) = 0.5 (1 + erf(x / sqrt 2)) the standard normal's
/// distribution function. Backward: dx = dy * (Phi(x) + x phi(x)), phi(x) = e^(-x^2 / 2) / sqrt(2 pi) its density.

@usableFromInline let inverseSqrt2 = 0.707_106_781_186_547_6
@usableFromInline let inverseSqrt2Pi = 0.398_942_280_401_432_7

/// Exact GELU forward over n elements: y and Phi(x) (kept for backward) from x. x, y, cdf: [n]. Fast: `fastErf`, no
/// call per element, split across the cores. Reference: libm's erf, one loop.
@inlinable
public func geluErfForward<S: KernelScalar>(
  _ x: UnsafePointer<S>, _ y: UnsafeMutablePointer<S>, _ cdf: UnsafeMutablePointer<S>, count n: Int
) {
  if KernelChoice.useReference { return geluErfForwardReference(x, y, cdf, 0..<n) }
  Parallel.forEach(n, grain: elementwiseGrain) { range in geluErfForwardPiece(x, y, cdf, range) }
}

/// The loop of `geluErfForward` over one piece (a function of its own for the reason `geluForwardPiece` gives).
@inlinable @inline(never)
public func geluErfForwardPiece<S: KernelScalar>(
  _ x: UnsafePointer<S>, _ y: UnsafeMutablePointer<S>, _ cdf: UnsafeMutablePointer<S>, _ range: Range<Int>
) {
  for i in range {
    let v = x[i]
    let phi = 0.5 * (1 + fastErf(v * S(inverseSqrt2)))
    cdf[i] = phi
    y[i] = v * phi
  }
}

/// The reference of `geluErfForward`: the formula, with libm's erf.
@inlinable
public func geluErfForwardReference<S: KernelScalar>(
  _ x: UnsafePointer<S>, _ y: UnsafeMutablePointer<S>, _ cdf: UnsafeMutablePointer<S>, _ range: Range<Int>
) {
  for i in range {
    cdf[i] = 0.5 * (1 + S.erf(x[i] * S(inverseSqrt2)))
    y[i] = x[i] * cdf[i]
  }
}

/// Exact GELU backward over n elements: dx from x, Phi(x) (forward's) and dy. Fast: split across the cores, with
/// `fastExp`. Reference: the same formula in one loop, with libm's exp.
@inlinable
public func geluErfBackward<S: KernelScalar>(
  _ x: UnsafePointer<S>, _ cdf: UnsafePointer<S>, _ dy: UnsafePointer<S>, _ dx: UnsafeMutablePointer<S>, count n: Int
) {
  if KernelChoice.useReference {
    for i in 0..<n { dx[i] = dy[i] * (cdf[i] + x[i] * S.exp(-0.5 * x[i] * x[i]) * S(inverseSqrt2Pi)) }
    return
  }
  Parallel.forEach(n, grain: elementwiseGrain) { range in geluErfBackwardPiece(x, cdf, dy, dx, range) }
}

/// The loop of `geluErfBackward` over one piece.
@inlinable @inline(never)
public func geluErfBackwardPiece<S: KernelScalar>(
  _ x: UnsafePointer<S>, _ cdf: UnsafePointer<S>, _ dy: UnsafePointer<S>, _ dx: UnsafeMutablePointer<S>,
  _ range: Range<Int>
) {
  for i in range {
    let v = x[i]
    dx[i] = dy[i] * (cdf[i] + v * S.fastExp(-0.5 * v * v) * S(inverseSqrt2Pi))
  }
}
