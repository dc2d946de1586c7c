import Support

/// The hot loops, as plain functions over buffers with the shapes in a comment (llm.c's style). Ops.swift builds
/// the differentiable operations out of them.

// MARK: - Shapes and strides

/// Row-major strides: how far apart neighbours are along each axis. [2, 3, 4] -> [12, 4, 1].
func contiguousStrides(_ shape: [Int]) -> [Int] {
  var strides = [Int](repeating: 1, count: shape.count)
  var step = 1
  for axis in shape.indices.reversed() {
    strides[axis] = step
    step *= shape[axis]
  }
  return strides
}

/// The shape two operands broadcast to, by NumPy's rule: align the shapes at the right; along each axis the
/// sizes must be equal or one of them 1 (a missing axis counts as 1). Nil when they do not fit.
func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int]? {
  let rank = max(a.count, b.count)
  var shape = [Int](repeating: 1, count: rank)
  for k in 0..<rank {
    let x = k < rank - a.count ? 1 : a[k - (rank - a.count)]
    let y = k < rank - b.count ? 1 : b[k - (rank - b.count)]
    guard x == y || x == 1 || y == 1 else { return nil }
    shape[k] = x == 1 ? y : x
  }
  return shape
}

/// Strides that read an operand of `shape` as if it had the larger shape `target`: 0 along every axis where
/// the operand has size 1 or no axis at all, so the same element is read again and again. That is broadcasting:
/// no copy is made.
func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
  let own = contiguousStrides(shape)
  let offset = target.count - shape.count
  return target.indices.map { k in
    k < offset || shape[k - offset] == 1 ? 0 : own[k - offset]
  }
}

/// The axes a reduction runs over, made non-negative and checked (-1 is the last axis).
func normalizedAxes(_ axes: [Int], rank: Int, op: String) -> [Int] {
  let result = axes.map { $0 < 0 ? $0 + rank : $0 }
  precondition(result.allSatisfy { (0..<rank).contains($0) }, "\(op): axes \(axes) out of range for rank \(rank)")
  precondition(Set(result).count == result.count, "\(op): repeated axis in \(axes)")
  return result.sorted()
}

// MARK: - Iteration

/// Visits every element of a row-major array of `shape` in order, with the matching offsets into two operands
/// read with strides `sa` and `sb` (from `broadcastStrides`): body(out, a, b).
///
/// Forward broadcasting reads a[a-offset]; backward writes gradient into the same a-offset, and since a
/// broadcast element is visited once for each copy, its gradient is the sum over the copies. That sum over
/// the broadcast axes, "unbroadcasting", needs no separate step.
@inline(__always)
func forEachOffset(_ shape: [Int], _ sa: [Int], _ sb: [Int], _ body: (_ out: Int, _ a: Int, _ b: Int) -> Void) {
  let rank = shape.count
  if rank == 0 {
    body(0, 0, 0)
    return
  }
  let inner = shape[rank - 1]
  let total = shape.reduce(1, *)
  if total == 0 { return }
  let (ia, ib) = (sa[rank - 1], sb[rank - 1])
  var index = [Int](repeating: 0, count: rank)
  var (a, b, out) = (0, 0, 0)
  while out < total {
    for j in 0..<inner { body(out + j, a + j * ia, b + j * ib) }
    out += inner
    // Step the outer axes like an odometer.
    var axis = rank - 2
    while axis >= 0 {
      index[axis] += 1
      a += sa[axis]
      b += sb[axis]
      if index[axis] < shape[axis] { break }
      a -= sa[axis] * shape[axis]
      b -= sb[axis] * shape[axis]
      index[axis] = 0
      axis -= 1
    }
  }
}

/// A copy of `x` (shape `shape`) broadcast to `target`.
func expand<Scalar: TensorScalar>(_ x: [Scalar], _ shape: [Int], to target: [Int]) -> [Scalar] {
  if shape == target { return x }
  let strides = broadcastStrides(shape, to: target)
  var out = [Scalar](repeating: 0, count: target.reduce(1, *))
  out.withUnsafeMutableBufferPointer { o in
    x.withUnsafeBufferPointer { xp in forEachOffset(target, strides, strides) { i, s, _ in o[i] = xp[s] } }
  }
  return out
}

// MARK: - Elementwise

/// An array of `count` elements whose memory is not cleared first: for a result that a kernel or a BLAS call
/// with beta = 0 writes in full before anything reads it. Filling with zeros only to overwrite them is a pass
/// over memory for nothing.
@inline(__always)
func uninitializedArray<Scalar: TensorScalar>(_ count: Int) -> [Scalar] {
  [Scalar](unsafeUninitializedCapacity: count) { _, written in written = count }
}

/// y[i] = f(x[i]) into a fresh array, written once (no zero fill first). x, y: [n].
@inline(__always)
func mapKernel<Scalar>(_ x: [Scalar], _ f: (Scalar) -> Scalar) -> [Scalar] {
  [Scalar](unsafeUninitializedCapacity: x.count) { y, written in
    x.withUnsafeBufferPointer { xp in
      for i in 0..<xp.count { y[i] = f(xp[i]) }
    }
    written = x.count
  }
}

/// y[i] = f(a[i], b[i]) into a fresh array. a, b, y: [n].
@inline(__always)
func zipKernel<Scalar>(_ a: [Scalar], _ b: [Scalar], _ f: (Scalar, Scalar) -> Scalar) -> [Scalar] {
  [Scalar](unsafeUninitializedCapacity: a.count) { y, written in
    a.withUnsafeBufferPointer { ap in
      b.withUnsafeBufferPointer { bp in
        for i in 0..<ap.count { y[i] = f(ap[i], bp[i]) }
      }
    }
    written = a.count
  }
}

// MARK: - GELU

/// GELU's constants: u = sqrt(2/pi) (x + 0.044715 x^3).
private let geluScale = 0.797_884_560_802_865_4  // sqrt(2/pi)
private let geluCubic = 0.044_715

/// tanh(u) = sign(u) (1 - e) / (1 + e) with e = e^(-2|u|) <= 1: one exp instead of libm's tanh (several times
/// slower, and a call the compiler cannot vectorise), and no overflow for large |u|. The absolute error is a few
/// ulps of 1, which is what GELU's 1 + tanh(u) can resolve anyway (the relative error near u = 0 is larger, so
/// this is not a general-purpose tanh).
@inline(__always)
func fastTanh<Scalar: TensorScalar>(_ u: Scalar) -> Scalar {
  let e = Scalar.kernelExp(-2 * abs(u))
  let magnitude = (1 - e) / (1 + e)
  return u < 0 ? -magnitude : magnitude
}

/// Elements per thread below which an elementwise loop stays on one core.
let elementwiseGrain = 32_768

/// GELU forward: y = 0.5 x (1 + t), t = tanh(u(x)), and t kept for backward. x, y, t: [n]. One pass with no call
/// per element, so it runs in SIMD lanes, split across the cores.
func geluKernel<Scalar: TensorScalar>(_ x: [Scalar]) -> (y: [Scalar], t: [Scalar]) {
  var t: [Scalar] = uninitializedArray(x.count)
  let y = [Scalar](unsafeUninitializedCapacity: x.count) { y, written in
    t.withUnsafeMutableBufferPointer { t in
      x.withUnsafeBufferPointer { x in
        let (xp, tp, yp) = (x.baseAddress!, t.baseAddress!, y.baseAddress!)
        Parallel.forEach(x.count, grain: elementwiseGrain) { range in geluPiece(xp, yp, tp, range) }
      }
    }
    written = x.count
  }
  return (y, t)
}

/// The loop of `geluKernel` over one piece. It is a function of its own because inside the closure that
/// `Parallel` runs, the compiler does not turn a loop into SIMD code (it cannot rule out that the stores change
/// the captured pointers); with the pointers as plain arguments it does.
@inline(never)
func geluPiece<Scalar: TensorScalar>(
  _ x: UnsafePointer<Scalar>, _ y: UnsafeMutablePointer<Scalar>, _ t: UnsafeMutablePointer<Scalar>, _ range: Range<Int>
) {
  let (a, c) = (Scalar(geluScale), Scalar(geluCubic))
  for i in range {
    let v = x[i]
    let tanh = fastTanh(a * (v + c * v * v * v))
    t[i] = tanh
    y[i] = 0.5 * v * (1 + tanh)
  }
}

/// GELU backward: dx = dy * (0.5 (1 + t) + 0.5 x (1 - t^2) du/dx), du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2).
func geluBackwardKernel<Scalar: TensorScalar>(_ x: [Scalar], _ t: [Scalar], _ dy: [Scalar]) -> [Scalar] {
  [Scalar](unsafeUninitializedCapacity: x.count) { dx, written in
    x.withUnsafeBufferPointer { x in
      t.withUnsafeBufferPointer { t in
        dy.withUnsafeBufferPointer { dy in
          let (xp, tp, dyp, dxp) = (x.baseAddress!, t.baseAddress!, dy.baseAddress!, dx.baseAddress!)
          Parallel.forEach(x.count, grain: elementwiseGrain) { range in geluBackwardPiece(xp, tp, dyp, dxp, range) }
        }
      }
    }
    written = x.count
  }
}

@inline(never)
func geluBackwardPiece<Scalar: TensorScalar>(
  _ x: UnsafePointer<Scalar>, _ t: UnsafePointer<Scalar>, _ dy: UnsafePointer<Scalar>,
  _ dx: UnsafeMutablePointer<Scalar>, _ range: Range<Int>
) {
  let (a, c) = (Scalar(geluScale), Scalar(geluCubic))
  for i in range {
    let (v, tanh) = (x[i], t[i])
    let du: Scalar = a * (1 + 3 * c * v * v)
    let slope: Scalar = 0.5 * (1 + tanh) + 0.5 * v * (1 - tanh * tanh) * du
    dx[i] = dy[i] * slope
  }
}

// MARK: - Reductions

/// The shape of a reduction over `axes` of `shape`: those axes become 1 (keepDims) or disappear.
func reducedShape(_ shape: [Int], axes: [Int], keepDims: Bool) -> [Int] {
  keepDims
    ? shape.indices.map { axes.contains($0) ? 1 : shape[$0] }
    : shape.indices.filter { !axes.contains($0) }.map { shape[$0] }
}

/// out[o] = sum of x over the reduced axes. x: `shape`; out: `shape` with `axes` set to 1, row-major.
func sumKernel<Scalar: TensorScalar>(_ x: [Scalar], _ shape: [Int], axes: [Int]) -> [Scalar] {
  let kept = reducedShape(shape, axes: axes, keepDims: true)
  var out = [Scalar](repeating: 0, count: kept.reduce(1, *))
  let read = contiguousStrides(shape)
  let write = broadcastStrides(kept, to: shape)
  out.withUnsafeMutableBufferPointer { o in
    x.withUnsafeBufferPointer { xp in forEachOffset(shape, read, write) { _, i, w in o[w] += xp[i] } }
  }
  return out
}

/// out[o] = max of x over the reduced axes, and the index in x of the first maximum (for backward).
func maxKernel<Scalar: TensorScalar>(
  _ x: [Scalar], _ shape: [Int], axes: [Int]
) -> (
  values: [Scalar], argmax: [Int]
) {
  let kept = reducedShape(shape, axes: axes, keepDims: true)
  var values = [Scalar](repeating: -Scalar.infinity, count: kept.reduce(1, *))
  var argmax = [Int](repeating: -1, count: values.count)
  let read = contiguousStrides(shape)
  let write = broadcastStrides(kept, to: shape)
  x.withUnsafeBufferPointer { xp in
    forEachOffset(shape, read, write) { _, i, w in
      if xp[i] > values[w] || argmax[w] < 0 {
        values[w] = xp[i]
        argmax[w] = i
      }
    }
  }
  return (values, argmax)
}

// MARK: - Softmax along one axis

/// A shape seen as [outer, n, inner] around `axis`: element (o, k, i) is at (o * n + k) * inner + i.
func splitAround(_ shape: [Int], axis: Int) -> (outer: Int, n: Int, inner: Int) {
  (shape[..<axis].reduce(1, *), shape[axis], shape[(axis + 1)...].reduce(1, *))
}

/// y = softmax(x) along the axis: y_k = e^(x_k - max) / sum_j e^(x_j - max). Subtracting the max changes nothing
/// mathematically and keeps every exponent <= 0, so nothing overflows. With `log`, y = log softmax(x) =
/// x_k - max - log sum_j e^(x_j - max), computed without ever taking the log of a tiny number.
func softmaxKernel<Scalar: TensorScalar>(_ x: [Scalar], _ shape: [Int], axis: Int, log: Bool) -> [Scalar] {
  let (outer, n, inner) = splitAround(shape, axis: axis)
  var y = [Scalar](repeating: 0, count: x.count)
  y.withUnsafeMutableBufferPointer { yp in
    x.withUnsafeBufferPointer { xp in
      for o in 0..<outer {
        for i in 0..<inner {
          let base = o * n * inner + i
          var top = -Scalar.infinity
          for k in 0..<n { top = max(top, xp[base + k * inner]) }
          var total: Scalar = 0
          for k in 0..<n { total += Scalar.kernelExp(xp[base + k * inner] - top) }
          let logTotal = Scalar.log(total)
          for k in 0..<n {
            let shifted = xp[base + k * inner] - top
            yp[base + k * inner] = log ? shifted - logTotal : Scalar.kernelExp(shifted) / total
          }
        }
      }
    }
  }
  return y
}

/// The backward of softmax and log-softmax along the axis, added into dx:
/// softmax:     dx_k += y_k (dy_k - sum_j dy_j y_j)
/// log-softmax: dx_k += dy_k - softmax_k sum_j dy_j     (softmax_k = e^(y_k))
func softmaxBackwardKernel<Scalar: TensorScalar>(
  _ y: [Scalar], _ dy: [Scalar], _ dx: UnsafeMutableBufferPointer<Scalar>, _ shape: [Int], axis: Int, log: Bool
) {
  let (outer, n, inner) = splitAround(shape, axis: axis)
  for o in 0..<outer {
    for i in 0..<inner {
      let base = o * n * inner + i
      var dot: Scalar = 0
      for k in 0..<n { dot += log ? dy[base + k * inner] : dy[base + k * inner] * y[base + k * inner] }
      for k in 0..<n {
        let at = base + k * inner
        dx[at] += log ? dy[at] - Scalar.exp(y[at]) * dot : y[at] * (dy[at] - dot)
      }
    }
  }
}

// MARK: - Matrix products

/// A plain triple loop, C[m, n] = A[m, k] @ B[k, n]: the textbook definition, kept as the reference the tests
/// compare BLAS against and the chapter times. Never used by the framework itself.
func naiveMatmul<Scalar: TensorScalar>(_ a: [Scalar], _ b: [Scalar], m: Int, k: Int, n: Int) -> [Scalar] {
  var c = [Scalar](repeating: 0, count: m * n)
  for i in 0..<m {
    for j in 0..<n {
      var total: Scalar = 0
      for p in 0..<k { total += a[i * k + p] * b[p * n + j] }
      c[i * n + j] = total
    }
  }
  return c
}
