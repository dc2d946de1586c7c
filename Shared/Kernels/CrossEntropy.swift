import RealModule
import Support

/// Softmax cross-entropy over rows, fused: logits [rows, classes], one target class per row (rows whose target is
/// `ignoreIndex` count for nothing). The target distribution is q = (1 - s) one-hot + s / classes (label
/// smoothing s). Per counted row: loss = -sum_c q_c log p_c with p = softmax(logits), and
/// d(loss)/d(logits) = p - q; on ignored rows both are 0.

/// Writes each row's loss into rowLoss [rows] and the gradient into dlogits [rows, classes]; returns the rows'
/// losses added in row order (however the rows were shared out) and how many rows counted. Fast: rows across the
/// cores, eight-lane max and sums, `fastExp`. Reference: `crossEntropyReference`.
@inlinable
public func crossEntropy<S: KernelScalar>(
  _ logits: UnsafePointer<S>, targets: UnsafePointer<Int>, rows: Int, classes: Int, ignoreIndex: Int, smoothing: S,
  rowLoss: UnsafeMutablePointer<S>, dlogits: UnsafeMutablePointer<S>
) -> (loss: S, counted: Int) {
  if KernelChoice.useReference {
    return crossEntropyReference(
      logits, targets: targets, rows: rows, classes: classes, ignoreIndex: ignoreIndex, smoothing: smoothing,
      rowLoss: rowLoss, dlogits: dlogits)
  }
  Parallel.forEach(rows, grain: Swift.max(1, elementwiseGrain / Swift.max(1, classes))) { range in
    for r in range {
      if targets[r] == ignoreIndex {
        rowLoss[r] = 0
        (dlogits + r * classes).initialize(repeating: 0, count: classes)
      } else {
        rowLoss[r] = crossEntropyRow(
          logits + r * classes, dlogits + r * classes, classes: classes, target: targets[r], smoothing: smoothing)
      }
    }
  }
  var (total, counted): (S, Int) = (0, 0)
  for r in 0..<rows where targets[r] != ignoreIndex {
    total += rowLoss[r]
    counted += 1
  }
  return (total, counted)
}

/// One row of `crossEntropy`: returns -sum_c q_c log p_c and writes p - q into d.
@inlinable @inline(__always)
public func crossEntropyRow<S: KernelScalar>(
  _ logits: UnsafePointer<S>, _ d: UnsafeMutablePointer<S>, classes: Int, target: Int, smoothing: S
) -> S {
  let offTarget = smoothing / S(classes)
  let top = max8(logits, classes)
  let logTotal = S.log(sum8(classes) { S.fastExp(logits[$0] - top) }) + top  // log sum_c e^(logit_c)
  // With q = off-target everywhere plus (1 - s) on the target: -sum q_c (logit_c - logTotal).
  let loss = -(offTarget * sum8(classes) { logits[$0] - logTotal } + (1 - smoothing) * (logits[target] - logTotal))
  for c in 0..<classes { d[c] = S.fastExp(logits[c] - logTotal) - offTarget }
  d[target] -= 1 - smoothing
  return loss
}

/// The reference of `crossEntropy`: log p_c = logit_c - log sum_j e^(logit_j) (shifted by the max), then the sums
/// of the definition, row by row, with libm's exp and left-to-right sums.
@inlinable
public func crossEntropyReference<S: KernelScalar>(
  _ logits: UnsafePointer<S>, targets: UnsafePointer<Int>, rows: Int, classes: Int, ignoreIndex: Int, smoothing: S,
  rowLoss: UnsafeMutablePointer<S>, dlogits: UnsafeMutablePointer<S>
) -> (loss: S, counted: Int) {
  var (total, counted): (S, Int) = (0, 0)
  for r in 0..<rows {
    let (x, d) = (logits + r * classes, dlogits + r * classes)
    guard targets[r] != ignoreIndex else {
      rowLoss[r] = 0
      for c in 0..<classes { d[c] = 0 }
      continue
    }
    let top = maxReference(x, classes)
    var sum: S = 0
    for c in 0..<classes { sum += S.exp(x[c] - top) }
    let logTotal = S.log(sum) + top
    var loss: S = 0
    for c in 0..<classes {
      let q = (c == targets[r] ? 1 - smoothing : 0) + smoothing / S(classes)
      loss -= q * (x[c] - logTotal)
      d[c] = S.exp(x[c] - logTotal) - q
    }
    rowLoss[r] = loss
    total += loss
    counted += 1
  }
  return (total, counted)
}
