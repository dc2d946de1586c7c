/// Losses: one number that says how wrong the model is, whose gradient says how to make it less wrong.

// MARK: - Reductions

/// The mean of some values.
public func mean(_ values: [Value]) -> Value {
  Value.sum(values) / Double(values.count)
}

// MARK: - Losses

/// micrograd's max-margin ("SVM") loss: mean over i of relu(1 - y_i * s_i), labels y_i in {-1, +1}.
/// Zero once every point is on the right side of the boundary by a margin of 1.
public func hingeLoss(scores: [Value], labels: [Double]) -> Value {
  precondition(scores.count == labels.count, "hingeLoss: \(scores.count) scores, \(labels.count) labels")
  return mean(zip(scores, labels).map { s, y in (1 - y * s).relu() })
}

/// Mean squared error: mean over i of (p_i - t_i)^2.
public func mseLoss(_ predictions: [Value], _ targets: [Value]) -> Value {
  precondition(predictions.count == targets.count, "mseLoss: \(predictions.count) vs \(targets.count) values")
  return mean(zip(predictions, targets).map { p, t in (p - t).pow(2) })
}

/// Binary cross-entropy of sigmoid(logits) against labels in {0, 1}, averaged: see `binaryCrossEntropy(label:)`.
public func bceWithLogitsLoss(logits: [Value], labels: [Double]) -> Value {
  precondition(logits.count == labels.count, "bceWithLogitsLoss: \(logits.count) logits, \(labels.count) labels")
  return mean(zip(logits, labels).map { z, y in z.binaryCrossEntropy(label: y) })
}

/// alpha * sum of p^2 over the parameters: L2 regularisation written as part of the loss.
public func l2Penalty(_ parameters: [Value], alpha: Double) -> Value {
  alpha * Value.sum(parameters.map { $0 * $0 })
}

extension Value {
  /// -[y log s + (1 - y) log(1 - s)] with s = sigmoid(self), as one operation.
  ///
  /// Written naively it overflows: log(sigmoid(-40)) is log(0). The same quantity in the stable form is
  /// max(z, 0) - z y + log(1 + e^(-|z|)), where the exponent is never positive. Its derivative is simply
  /// sigmoid(z) - y, so this is one op with that derivative instead of a graph of five nodes.
  public func binaryCrossEntropy(label y: Double) -> Value {
    let z = data
    let loss = max(z, 0) - z * y + Double.log(onePlus: Double.exp(-abs(z)))
    return Value(loss, op: "bce", edges: [Edge(self, logistic(z) - y)])
  }
}
