import Support

/// The computation graph as a picture: Graphviz DOT, one box per tensor (its label, shape, and its first values
/// and gradients) and one ellipse per operation, edges pointing from inputs to outputs.

// MARK: - DOT

/// The graph behind `root` in Graphviz's DOT language, left to right.
public func dotGraph<Scalar>(of root: Tensor<Scalar>) -> String {
  let order = root.topologicalOrder()
  var ids: [ObjectIdentifier: Int] = [:]
  for (k, node) in order.enumerated() { ids[ObjectIdentifier(node)] = k }
  var lines = ["digraph G {", "  rankdir=LR;", "  node [fontname=\"Helvetica\", fontsize=11];"]
  for (k, node) in order.enumerated() {
    let fields =
      (node.label.isEmpty ? [] : [node.label])
      + ["shape \(node.shape)", "data \(preview(node.storage))", "grad \(node.gradStorage.map(preview) ?? "-")"]
    lines.append("  v\(k) [shape=record, label=\"{ \(fields.map(escape).joined(separator: " | ")) }\"];")
    if !node.isLeaf {
      lines.append("  op\(k) [shape=ellipse, label=\"\(escape(node.op))\"];")
      lines.append("  op\(k) -> v\(k);")
      for parent in node.parents { lines.append("  v\(ids[ObjectIdentifier(parent)]!) -> op\(k);") }
    }
  }
  lines.append("}")
  return lines.joined(separator: "\n") + "\n"
}

/// The first three elements to four decimals, and "..." if there are more.
func preview<Scalar: TensorScalar>(_ values: [Scalar]) -> String {
  let shown = values.prefix(3).map { x -> String in
    let rounded = (Double(x) * 10_000).rounded() / 10_000
    return "\(rounded == 0 ? 0 : rounded)"
  }
  return shown.joined(separator: " ") + (values.count > 3 ? " ..." : "")
}

private func escape(_ text: String) -> String {
  var result = ""
  for character in text {
    if "{}|<>\"\\".contains(character) { result.append("\\") }
    result.append(character)
  }
  return result
}

// MARK: - Examples

/// The graphs `stage3 graph` can draw.
public enum GraphExample: String, CaseIterable, Sendable {
  /// A small classifier's training graph: Linear, ReLU, LayerNorm, Linear, cross-entropy on three examples.
  case mlp
  /// One LayerNorm: a single fused node where stage 2 would need a dozen.
  case layernorm

  /// Builds the expression, runs backward, and returns its output.
  public func build() -> Tensor<Double> {
    var rng = SeededRNG(seed: 7)
    let x = Tensor<Double>([2, 0, -1, 0.5, 0.3, 1], shape: [3, 2])
    x.label = "x"
    switch self {
    case .mlp:
      let model = Sequential<Double>([Linear(2, 4, rng: &rng), ReLU(), LayerNorm(4), Linear(4, 3, rng: &rng)])
      for (name, p) in model.namedParameters() { p.label = name }
      let loss = crossEntropyLoss(logits: model(x), labels: [0, 2, 1])
      loss.label = "loss"
      loss.backward()
      return loss
    case .layernorm:
      let norm = LayerNorm<Double>(2)
      norm.gamma!.label = "gamma"
      norm.beta!.label = "beta"
      x.requiringGrad()
      let y = norm(x).pow(2).sum()
      y.label = "sum of squares"
      y.backward()
      return y
    }
  }
}

/// micrograd's first test expression, on tensors: z = 2x + 2 + x; q = relu(z) + z x; h = relu(z z); y = h + q + q x.
public func microgradSanity<Scalar>(_ x: Tensor<Scalar>) -> Tensor<Scalar> {
  let z = 2 * x + 2 + x
  let q = z.relu() + z * x
  let h = (z * z).relu()
  return h + q + q * x
}

/// micrograd's second test expression, on tensors, with inputs a and b; returns g.
public func microgradMoreOps<Scalar>(_ a: Tensor<Scalar>, _ b: Tensor<Scalar>) -> Tensor<Scalar> {
  var c = a + b
  var d = a * b + b.pow(3)
  c += c + 1
  c += 1 + c + (-a)
  d += d * 2 + (b + a).relu()
  d += 3 * d + (b - a).relu()
  let e = c - d
  let f = e.pow(2)
  var g = f / 2.0
  g += 10.0 / f
  return g
}
