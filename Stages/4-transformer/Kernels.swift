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

/// term(0) + term(1) + ... + term(n - 1) in eight running sums, added together at the end. One running sum is a
/// chain of additions that each wait for the one before (floating-point addition is not reassociated by the
/// compiler, since that changes the rounding); eight independent ones run side by side in one SIMD register.
/// The rounding differs from a left-to-right sum, and is the same on every run.
@inline(__always)
func sum8<Scalar: TensorScalar>(_ n: Int, _ term: (Int) -> Scalar) -> Scalar {
  var s: (Scalar, Scalar, Scalar, Scalar, Scalar, Scalar, Scalar, Scalar) = (0, 0, 0, 0, 0, 0, 0, 0)
  var i = 0
  while i + 8 <= n {
    s.0 += term(i)
    s.1 += term(i + 1)
    s.2 += term(i + 2)
    s.3 += term(i + 3)
    s.4 += term(i + 4)
    s.5 += term(i + 5)
    s.6 += term(i + 6)
    s.7 += term(i + 7)
    i += 8
  }
  var total = ((s.0 + s.1) + (s.2 + s.3)) + ((s.4 + s.5) + (s.6 + s.7))
  while i < n {
    total += term(i)
    i += 1
  }
  return total
}

/// The largest of x[0..<n] (n >= 1), in eight running maxima like `sum8`.
@inline(__always)
func max8<Scalar: TensorScalar>(_ x: UnsafePointer<Scalar>, _ n: Int) -> Scalar {
  var m = (x[0], x[0], x[0], x[0], x[0], x[0], x[0], x[0])
  var i = 0
  while i + 8 <= n {
    m.0 = Swift.max(m.0, x[i])
    m.1 = Swift.max(m.1, x[i + 1])
    m.2 = Swift.max(m.2, x[i + 2])
    m.3 = Swift.max(m.3, x[i + 3])
    m.4 = Swift.max(m.4, x[i + 4])
    m.5 = Swift.max(m.5, x[i + 5])
    m.6 = Swift.max(m.6, x[i + 6])
    m.7 = Swift.max(m.7, x[i + 7])
    i += 8
  }
  var top = Swift.max(
    Swift.max(Swift.max(m.0, m.1), Swift.max(m.2, m.3)), Swift.max(Swift.max(m.4, m.5), Swift.max(m.6, m.7)))
  while i < n {
    top = Swift.max(top, x[i])
    i += 1
  }
  return top
}

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

// MARK: - Layer norm

/// Forward of layer norm over rows of n: x [rows, n] -> y [rows, n], with each row's mean and
/// rstd = 1 / sqrt(var + eps) kept for backward. No gamma means 1, no beta 0. Rows are independent, so they are
/// split across the cores.
func layerNormKernel<Scalar: TensorScalar>(
  _ x: [Scalar], n: Int, gamma: [Scalar]?, beta: [Scalar]?, eps: Scalar
) -> (y: [Scalar], mean: [Scalar], rstd: [Scalar]) {
  let rows = x.count / n
  let (gamma, beta) = (gamma ?? [Scalar](repeating: 1, count: n), beta ?? [Scalar](repeating: 0, count: n))
  var y: [Scalar] = uninitializedArray(x.count)
  var mean: [Scalar] = uninitializedArray(rows)
  var rstd: [Scalar] = uninitializedArray(rows)
  x.withUnsafeBufferPointer { x in
    gamma.withUnsafeBufferPointer { gamma in
      beta.withUnsafeBufferPointer { beta in
        y.withUnsafeMutableBufferPointer { y in
          mean.withUnsafeMutableBufferPointer { mean in
            rstd.withUnsafeMutableBufferPointer { rstd in
              let (x, gamma, beta) = (x.baseAddress!, gamma.baseAddress!, beta.baseAddress!)
              let (y, mean, rstd) = (y.baseAddress!, mean.baseAddress!, rstd.baseAddress!)
              Parallel.forEach(rows, grain: Swift.max(1, elementwiseGrain / n)) { range in
                layerNormRows(x, gamma, beta, y, mean, rstd, n: n, eps: eps, rows: range)
              }
            }
          }
        }
      }
    }
  }
  return (y, mean, rstd)
}

@inline(never)
func layerNormRows<Scalar: TensorScalar>(
  _ x: UnsafePointer<Scalar>, _ gamma: UnsafePointer<Scalar>, _ beta: UnsafePointer<Scalar>,
  _ y: UnsafeMutablePointer<Scalar>, _ mean: UnsafeMutablePointer<Scalar>, _ rstd: UnsafeMutablePointer<Scalar>,
  n: Int, eps: Scalar, rows: Range<Int>
) {
  for r in rows {
    let (row, out) = (x + r * n, y + r * n)
    let m = sum8(n) { row[$0] } / Scalar(n)
    let squares = sum8(n) { (row[$0] - m) * (row[$0] - m) }
    let s = 1 / (squares / Scalar(n) + eps).squareRoot()
    for j in 0..<n { out[j] = (row[j] - m) * s * gamma[j] + beta[j] }
    mean[r] = m
    rstd[r] = s
  }
}

/// Rows per block of layer norm's backward: each block sums its own dgamma and dbeta, and the blocks' sums are
/// added in block order, so the result does not depend on how many cores took part.
let layerNormBlock = 32

/// Backward of layer norm. With xhat = (x - mean) * rstd and g = dy * gamma (the gradient reaching xhat):
///   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))     per row,
///   dgamma = sum over rows of dy * xhat,  dbeta = sum over rows of dy.
/// The two means are the gradient flowing through the row's mean and variance, which every element shares.
func layerNormBackwardKernel<Scalar: TensorScalar>(
  _ x: [Scalar], _ dy: [Scalar], n: Int, gamma: [Scalar]?, mean: [Scalar], rstd: [Scalar]
) -> (dx: [Scalar], dgamma: [Scalar], dbeta: [Scalar]) {
  let rows = x.count / n
  let blocks = (rows + layerNormBlock - 1) / layerNormBlock
  let gamma = gamma ?? [Scalar](repeating: 1, count: n)
  var dx: [Scalar] = uninitializedArray(x.count)
  var partial = [Scalar](repeating: 0, count: blocks * 2 * n)  // per block: dgamma, then dbeta
  x.withUnsafeBufferPointer { x in
    dy.withUnsafeBufferPointer { dy in
      gamma.withUnsafeBufferPointer { gamma in
        dx.withUnsafeMutableBufferPointer { dx in
          partial.withUnsafeMutableBufferPointer { partial in
            let (x, dy, gamma, dx, partial) = (
              x.baseAddress!, dy.baseAddress!, gamma.baseAddress!, dx.baseAddress!, partial.baseAddress!
            )
            Parallel.forEach(blocks, grain: Swift.max(1, elementwiseGrain / (n * layerNormBlock))) { range in
              for block in range {
                let rowRange = (block * layerNormBlock)..<Swift.min(rows, (block + 1) * layerNormBlock)
                let sums = partial + block * 2 * n
                layerNormBackwardRows(x, dy, gamma, mean, rstd, dx, sums, sums + n, n: n, rows: rowRange)
              }
            }
          }
        }
      }
    }
  }
  var dgamma = [Scalar](repeating: 0, count: n)
  var dbeta = [Scalar](repeating: 0, count: n)
  for block in 0..<blocks {
    for j in 0..<n {
      dgamma[j] += partial[block * 2 * n + j]
      dbeta[j] += partial[block * 2 * n + n + j]
    }
  }
  return (dx, dgamma, dbeta)
}

@inline(never)
func layerNormBackwardRows<Scalar: TensorScalar>(
  _ x: UnsafePointer<Scalar>, _ dy: UnsafePointer<Scalar>, _ gamma: UnsafePointer<Scalar>, _ mean: [Scalar],
  _ rstd: [Scalar], _ dx: UnsafeMutablePointer<Scalar>, _ dgamma: UnsafeMutablePointer<Scalar>,
  _ dbeta: UnsafeMutablePointer<Scalar>, n: Int, rows: Range<Int>
) {
  for r in rows {
    let (row, dyRow, dxRow) = (x + r * n, dy + r * n, dx + r * n)
    let (m, s) = (mean[r], rstd[r])
    let meanG = sum8(n) { dyRow[$0] * gamma[$0] } / Scalar(n)
    let meanGX = sum8(n) { dyRow[$0] * gamma[$0] * (row[$0] - m) * s } / Scalar(n)
    for j in 0..<n {
      dgamma[j] += dyRow[j] * (row[j] - m) * s
      dbeta[j] += dyRow[j]
    }
    for j in 0..<n {
      let xhat = (row[j] - m) * s
      dxRow[j] = s * (dyRow[j] * gamma[j] - meanG - xhat * meanGX)
    }
  }
}

// MARK: - Cross-entropy

/// Fused softmax cross-entropy over rows: logits [rows, classes], one target class per row (rows whose target
/// is `ignoreIndex` count for nothing). The target distribution is q = (1 - s) one-hot + s / classes (label
/// smoothing s). Returns the summed loss, the number of counted rows, and d(summed loss)/d(logits) =
/// softmax - q on counted rows, 0 on ignored ones.
func crossEntropyKernel<Scalar: TensorScalar>(
  _ logits: [Scalar], classes: Int, targets: [Int], ignoreIndex: Int, smoothing: Scalar
) -> (loss: Scalar, counted: Int, dlogits: [Scalar]) {
  var dlogits = [Scalar](repeating: 0, count: logits.count)
  var rowLoss = [Scalar](repeating: 0, count: targets.count)
  logits.withUnsafeBufferPointer { logits in
    dlogits.withUnsafeMutableBufferPointer { dlogits in
      rowLoss.withUnsafeMutableBufferPointer { rowLoss in
        let (x, dx, loss) = (logits.baseAddress!, dlogits.baseAddress!, rowLoss.baseAddress!)
        Parallel.forEach(targets.count, grain: Swift.max(1, elementwiseGrain / classes)) { rows in
          for r in rows where targets[r] != ignoreIndex {
            loss[r] = crossEntropyRow(
              x + r * classes, dx + r * classes, classes: classes, target: targets[r], smoothing: smoothing)
          }
        }
      }
    }
  }
  // The rows' losses added in row order, however the rows were shared out.
  return (rowLoss.reduce(0, +), targets.count { $0 != ignoreIndex }, dlogits)
}

/// One row of `crossEntropyKernel`: returns -sum_c q_c log p_c and writes p - q into d.
@inline(__always)
func crossEntropyRow<Scalar: TensorScalar>(
  _ logits: UnsafePointer<Scalar>, _ d: UnsafeMutablePointer<Scalar>, classes: Int, target: Int, smoothing: Scalar
) -> Scalar {
  let offTarget = smoothing / Scalar(classes)
  let top = max8(logits, classes)
  let logTotal = Scalar.log(sum8(classes) { Scalar.kernelExp(logits[$0] - top) }) + top  // log sum_c e^(logit_c)
  // With q = off-target everywhere plus (1 - s) on the target: -sum q_c (logit_c - logTotal).
  let loss = -(offTarget * sum8(classes) { logits[$0] - logTotal } + (1 - smoothing) * (logits[target] - logTotal))
  for c in 0..<classes { d[c] = Scalar.kernelExp(logits[c] - logTotal) - offTarget }
  d[target] -= 1 - smoothing
  return loss
}
