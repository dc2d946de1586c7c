import Kernels
import Support

/// Losses: one number that says how wrong the model is, whose gradient says how to make it less wrong.
/// Each takes a batch at once and returns a tensor of shape [].

// MARK: - Losses

/// micrograd's max-margin loss: mean over i of relu(1 - y_i * s_i), labels y_i in {-1, +1}.
public func hingeLoss<Scalar>(scores: Tensor<Scalar>, labels: Tensor<Scalar>) -> Tensor<Scalar> {
  precondition(scores.shape == labels.shape, "hingeLoss: scores \(scores.shape), labels \(labels.shape)")
  return (1 - labels * scores).relu().mean()
}

/// Mean squared error: mean over i of (p_i - t_i)^2.
public func mseLoss<Scalar>(_ predictions: Tensor<Scalar>, _ targets: Tensor<Scalar>) -> Tensor<Scalar> {
  precondition(predictions.shape == targets.shape, "mseLoss: \(predictions.shape) vs \(targets.shape)")
  return (predictions - targets).pow(2).mean()
}

/// Binary cross-entropy of sigmoid(logits) against labels in {0, 1}, averaged, in the stable form
/// max(z, 0) - z y + log(1 + e^(-|z|)) with the derivative sigmoid(z) - y (see stage 1).
public func bceWithLogitsLoss<Scalar>(logits: Tensor<Scalar>, labels: Tensor<Scalar>) -> Tensor<Scalar> {
  precondition(logits.shape == labels.shape, "bceWithLogitsLoss: logits \(logits.shape), labels \(labels.shape)")
  let (z, y) = (logits.storage, labels.storage)
  let loss = zip(z, y).map { z, y in Swift.max(z, 0) - z * y + Scalar.log(onePlus: Scalar.exp(-abs(z))) }
  let perElement = Tensor(loss, shape: logits.shape, op: "bce", parents: [logits]) { out in
    let dy = out.gradStorage!
    logits.addToGrad { g in for i in g.indices { g[i] += dy[i] * (logistic(z[i]) - y[i]) } }
  }
  return perElement.mean()
}

/// Cross-entropy of softmax(logits) against class labels, averaged over the counted rows: PyTorch's
/// F.cross_entropy. logits [rows, classes]; a row whose label is `ignoreIndex` counts for nothing (padding);
/// `labelSmoothing` s trains against (1 - s) on the label plus s spread evenly over all classes.
///
/// One fused op: the loss is computed stably from log-sum-exp, and the gradient is simply
/// (softmax - target distribution) / counted rows, never going through a log of a probability.
public func crossEntropyLoss<Scalar>(
  logits: Tensor<Scalar>, labels: [Int], ignoreIndex: Int = -100, labelSmoothing: Double = 0
) -> Tensor<Scalar> {
  precondition(
    logits.rank == 2 && logits.shape[0] == labels.count,
    "crossEntropyLoss: logits \(logits.shape), \(labels.count) labels")
  let classes = logits.shape[1]
  for label in labels where label != ignoreIndex && !(0..<classes).contains(label) {
    preconditionFailure("crossEntropyLoss: label \(label) out of range for \(classes) classes")
  }
  let rows = labels.count
  var rowLoss = [Scalar](repeating: 0, count: rows)
  var sums: (loss: Scalar, counted: Int) = (0, 0)
  let dlogits: [Scalar] = makeArray(logits.count) { dlogits in
    withPointers(logits.storage, labels) { logits, labels in
      rowLoss.withUnsafeMutableBufferPointer { rowLoss in
        sums = crossEntropy(
          logits, targets: labels, rows: rows, classes: classes, ignoreIndex: ignoreIndex,
          smoothing: Scalar(labelSmoothing), rowLoss: rowLoss.start, dlogits: dlogits)
      }
    }
  }
  let scale = 1 / Scalar(sums.counted)  // no counted row: 0/0, NaN, as in PyTorch
  let loss = Tensor([sums.loss * scale], shape: [], op: "crossEntropy", parents: [logits]) { out in
    let dy = out.gradStorage![0] * scale
    logits.addToGrad { g in for i in g.indices { g[i] += dy * dlogits[i] } }
  }
  loss.savedBytes = dlogits.count * MemoryLayout<Scalar>.size
  return loss
}

/// `crossEntropyLoss` composed from plain ops, its definition: the mean over the counted rows of
/// -sum_c q_c log softmax(logits)_c, with q the (smoothed) target distribution.
public func crossEntropyLossComposed<Scalar>(
  logits: Tensor<Scalar>, labels: [Int], ignoreIndex: Int = -100, labelSmoothing: Double = 0
) -> Tensor<Scalar> {
  let classes = logits.shape[1]
  var q = [Scalar](repeating: 0, count: logits.count)
  for (row, label) in labels.enumerated() where label != ignoreIndex {
    for c in 0..<classes { q[row * classes + c] = Scalar(labelSmoothing / Double(classes)) }
    q[row * classes + label] += Scalar(1 - labelSmoothing)
  }
  let counted = labels.count { $0 != ignoreIndex }
  return -(logits.logSoftmax(axis: 1) * Tensor(q, shape: logits.shape)).sum() / Scalar(counted)
}

/// alpha * sum of p^2 over the parameters: L2 regularisation written as part of the loss.
public func l2Penalty<Scalar>(_ parameters: [Tensor<Scalar>], alpha: Scalar) -> Tensor<Scalar> {
  let squares = parameters.map { ($0 * $0).sum() }
  return alpha * squares.dropFirst().reduce(squares[0], +)
}
