import RealModule

/// Softmax along one axis of a row-major array seen as [outer, n, inner]: element (o, k, i) is at
/// (o * n + k) * inner + i, and the softmax runs over k.
///
/// y_k = e^(x_k - max) / sum_j e^(x_j - max). Subtracting the max changes nothing mathematically and keeps every
/// exponent <= 0, so nothing overflows. With `log`, y = log softmax(x) = x_k - max - log sum_j e^(x_j - max),
/// computed without ever taking the log of a tiny number.

/// Softmax (or log-softmax) forward. x, y: [outer, n, inner]. Fast: e^x by `fastExp`. Reference: libm's exp.
@inlinable
public func softmaxForward<S: KernelScalar>(
  _ x: UnsafePointer<S>, _ y: UnsafeMutablePointer<S>, outer: Int, n: Int, inner: Int, log: Bool
) {
  if KernelChoice.useReference {
    softmaxLoops(x, y, outer: outer, n: n, inner: inner, log: log, exp: { S.exp($0) })
  } else {
    softmaxLoops(x, y, outer: outer, n: n, inner: inner, log: log, exp: { S.fastExp($0) })
  }
}

/// The loops of `softmaxForward`, with the exponential as a parameter: the only difference between the two forms.
@inlinable @inline(__always)
public func softmaxLoops<S: KernelScalar>(
  _ x: UnsafePointer<S>, _ y: UnsafeMutablePointer<S>, outer: Int, n: Int, inner: Int, log: Bool, exp: (S) -> S
) {
  for o in 0..<outer {
    for i in 0..<inner {
      let base = o * n * inner + i
      var top = -S.infinity
      for k in 0..<n { top = Swift.max(top, x[base + k * inner]) }
      var total: S = 0
      for k in 0..<n { total += exp(x[base + k * inner] - top) }
      let logTotal = S.log(total)
      for k in 0..<n {
        let shifted = x[base + k * inner] - top
        y[base + k * inner] = log ? shifted - logTotal : exp(shifted) / total
      }
    }
  }
}

/// The backward of softmax and log-softmax along the axis, added into dx (one form: it is already plain loops):
/// softmax:     dx_k += y_k (dy_k - sum_j dy_j y_j)
/// log-softmax: dx_k += dy_k - softmax_k sum_j dy_j     (softmax_k = e^(y_k))
@inlinable
public func softmaxBackward<S: KernelScalar>(
  _ y: UnsafePointer<S>, _ dy: UnsafePointer<S>, _ dx: UnsafeMutablePointer<S>, outer: Int, n: Int, inner: Int,
  log: Bool
) {
  for o in 0..<outer {
    for i in 0..<inner {
      let base = o * n * inner + i
      var dot: S = 0
      for k in 0..<n { dot += log ? dy[base + k * inner] : dy[base + k * inner] * y[base + k * inner] }
      for k in 0..<n {
        let at = base + k * inner
        dx[at] += log ? dy[at] - S.exp(y[at]) * dot : y[at] * (dy[at] - dot)
      }
    }
  }
}
