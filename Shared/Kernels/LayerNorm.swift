import RealModule
import Support

/// Layer normalisation over rows of n: y = (x - mean) * rstd * gamma + beta, rstd = 1 / sqrt(var + eps), var the
/// biased variance (dividing by n). Backward, with xhat = (x - mean) * rstd and g = dy * gamma (the gradient
/// reaching xhat):
///   dx = rstd * (g - mean(g) - xhat * mean(g * xhat))     per row,
///   dgamma = sum over rows of dy * xhat,  dbeta = sum over rows of dy.
/// The two means are the gradient flowing through the row's mean and variance, which every element shares.

/// Forward: x [rows, n] -> y [rows, n], with each row's mean and rstd [rows] kept for backward; gamma, beta [n].
/// Fast: rows split across the cores, sums in eight lanes (`sum8`). Reference: `layerNormForwardReference`.
@inlinable
public func layerNormForward<S: KernelScalar>(
  _ x: UnsafePointer<S>, gamma: UnsafePointer<S>, beta: UnsafePointer<S>, _ y: UnsafeMutablePointer<S>,
  mean: UnsafeMutablePointer<S>, rstd: UnsafeMutablePointer<S>, rows: Int, n: Int, eps: S
) {
  if KernelChoice.useReference {
    return layerNormForwardReference(x, gamma: gamma, beta: beta, y, mean: mean, rstd: rstd, rows: rows, n: n, eps: eps)
  }
  Parallel.forEach(rows, grain: Swift.max(1, elementwiseGrain / Swift.max(1, n))) { range in
    layerNormRows(x, gamma, beta, y, mean, rstd, n: n, eps: eps, rows: range)
  }
}

@inlinable @inline(never)
public func layerNormRows<S: KernelScalar>(
  _ x: UnsafePointer<S>, _ gamma: UnsafePointer<S>, _ beta: UnsafePointer<S>, _ y: UnsafeMutablePointer<S>,
  _ mean: UnsafeMutablePointer<S>, _ rstd: UnsafeMutablePointer<S>, n: Int, eps: S, rows: Range<Int>
) {
  for r in rows {
    let (row, out) = (x + r * n, y + r * n)
    let m = sum8(n) { row[$0] } / S(n)
    let squares = sum8(n) { (row[$0] - m) * (row[$0] - m) }
    let s = 1 / (squares / S(n) + eps).squareRoot()
    for j in 0..<n { out[j] = (row[j] - m) * s * gamma[j] + beta[j] }
    mean[r] = m
    rstd[r] = s
  }
}

/// The reference of `layerNormForward`: the definition, row by row, left-to-right sums.
@inlinable
public func layerNormForwardReference<S: KernelScalar>(
  _ x: UnsafePointer<S>, gamma: UnsafePointer<S>, beta: UnsafePointer<S>, _ y: UnsafeMutablePointer<S>,
  mean: UnsafeMutablePointer<S>, rstd: UnsafeMutablePointer<S>, rows: Int, n: Int, eps: S
) {
  for r in 0..<rows {
    var m: S = 0
    for j in 0..<n { m += x[r * n + j] }
    m /= S(n)
    var variance: S = 0
    for j in 0..<n { variance += (x[r * n + j] - m) * (x[r * n + j] - m) }
    variance /= S(n)
    let s = 1 / S.sqrt(variance + eps)
    for j in 0..<n { y[r * n + j] = (x[r * n + j] - m) * s * gamma[j] + beta[j] }
    mean[r] = m
    rstd[r] = s
  }
}

/// Rows per block of layer norm's backward: each block sums its own dgamma and dbeta, and the blocks' sums are
/// added in block order, so the result does not depend on how many cores took part.
public let layerNormBlock = 32

/// Backward: dx [rows, n] (written), dgamma and dbeta [n] (written) from x, dy [rows, n], gamma [n] and forward's
/// mean and rstd [rows]. Fast: blocks of rows across the cores, each with its own partial dgamma and dbeta.
/// Reference: `layerNormBackwardReference`.
@inlinable
public func layerNormBackward<S: KernelScalar>(
  _ x: UnsafePointer<S>, _ dy: UnsafePointer<S>, gamma: UnsafePointer<S>, mean: UnsafePointer<S>,
  rstd: UnsafePointer<S>, _ dx: UnsafeMutablePointer<S>, dgamma: UnsafeMutablePointer<S>,
  dbeta: UnsafeMutablePointer<S>, rows: Int, n: Int
) {
  if KernelChoice.useReference {
    return layerNormBackwardReference(
      x, dy, gamma: gamma, mean: mean, rstd: rstd, dx, dgamma: dgamma, dbeta: dbeta, rows: rows, n: n)
  }
  let blocks = (rows + layerNormBlock - 1) / layerNormBlock
  withUnsafeTemporaryAllocation(of: S.self, capacity: blocks * 2 * n) { buffer in
    let partial = buffer.baseAddress!  // per block: dgamma, then dbeta
    partial.initialize(repeating: 0, count: blocks * 2 * n)
    Parallel.forEach(blocks, grain: Swift.max(1, elementwiseGrain / Swift.max(1, n * layerNormBlock))) { range in
      for block in range {
        let rowRange = (block * layerNormBlock)..<Swift.min(rows, (block + 1) * layerNormBlock)
        let sums = partial + block * 2 * n
        layerNormBackwardRows(x, dy, gamma, mean, rstd, dx, sums, sums + n, n: n, rows: rowRange)
      }
    }
    for j in 0..<n {
      dgamma[j] = 0
      dbeta[j] = 0
    }
    for block in 0..<blocks {
      for j in 0..<n {
        dgamma[j] += partial[block * 2 * n + j]
        dbeta[j] += partial[block * 2 * n + n + j]
      }
    }
  }
}

@inlinable @inline(never)
public func layerNormBackwardRows<S: KernelScalar>(
  _ x: UnsafePointer<S>, _ dy: UnsafePointer<S>, _ gamma: UnsafePointer<S>, _ mean: UnsafePointer<S>,
  _ rstd: UnsafePointer<S>, _ dx: UnsafeMutablePointer<S>, _ dgamma: UnsafeMutablePointer<S>,
  _ dbeta: UnsafeMutablePointer<S>, n: Int, rows: Range<Int>
) {
  for r in rows {
    let (row, dyRow, dxRow) = (x + r * n, dy + r * n, dx + r * n)
    let (m, s) = (mean[r], rstd[r])
    let meanG = sum8(n) { dyRow[$0] * gamma[$0] } / S(n)
    let meanGX = sum8(n) { dyRow[$0] * gamma[$0] * (row[$0] - m) * s } / S(n)
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

/// The reference of `layerNormBackward`: the formulas, row by row, every sum left to right.
@inlinable
public func layerNormBackwardReference<S: KernelScalar>(
  _ x: UnsafePointer<S>, _ dy: UnsafePointer<S>, gamma: UnsafePointer<S>, mean: UnsafePointer<S>,
  rstd: UnsafePointer<S>, _ dx: UnsafeMutablePointer<S>, dgamma: UnsafeMutablePointer<S>,
  dbeta: UnsafeMutablePointer<S>, rows: Int, n: Int
) {
  for j in 0..<n {
    dgamma[j] = 0
    dbeta[j] = 0
  }
  for r in 0..<rows {
    var (meanG, meanGX): (S, S) = (0, 0)
    for j in 0..<n {
      let xhat = (x[r * n + j] - mean[r]) * rstd[r]
      let g = dy[r * n + j] * gamma[j]
      meanG += g
      meanGX += g * xhat
      dgamma[j] += dy[r * n + j] * xhat
      dbeta[j] += dy[r * n + j]
    }
    (meanG, meanGX) = (meanG / S(n), meanGX / S(n))
    for j in 0..<n {
      let xhat = (x[r * n + j] - mean[r]) * rstd[r]
      dx[r * n + j] = rstd[r] * (dy[r * n + j] * gamma[j] - meanG - xhat * meanGX)
    }
  }
}
