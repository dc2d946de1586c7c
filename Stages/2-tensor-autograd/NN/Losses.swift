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

/// Cross-entropy of softmax(logits) against class labels, averaged over the batch: logits [batch, classes],
/// labels class indices. -log softmax(logits)[i, label_i] picked out by multiplying with a one-hot matrix.
public func crossEntropyLoss<Scalar>(logits: Tensor<Scalar>, labels: [Int]) -> Tensor<Scalar> {
  precondition(
    logits.rank == 2 && logits.shape[0] == labels.count,
    "crossEntropyLoss: logits \(logits.shape), \(labels.count) labels")
  let classes = logits.shape[1]
  var oneHot = [Scalar](repeating: 0, count: logits.count)
  for (i, label) in labels.enumerated() {
    precondition((0..<classes).contains(label), "crossEntropyLoss: label \(label) out of range for \(classes) classes")
    oneHot[i * classes + label] = 1
  }
  let picked = logits.logSoftmax(axis: 1) * Tensor(oneHot, shape: logits.shape)
  return -picked.sum() / Scalar(labels.count)
}

/// alpha * sum of p^2 over the parameters: L2 regularisation written as part of the loss.
public func l2Penalty<Scalar>(_ parameters: [Tensor<Scalar>], alpha: Scalar) -> Tensor<Scalar> {
  let squares = parameters.map { ($0 * $0).sum() }
  return alpha * squares.dropFirst().reduce(squares[0], +)
}
