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

/// The graphs `stage2 graph` can draw.
public enum GraphExample: String, CaseIterable, Sendable {
  /// One layer, tanh(x @ W + b), on a batch of three points: stage 1's neuron graph, four neurons at once.
  case layer
  /// A 2-4-1 MLP with the hinge loss on three points: the whole training graph of a step.
  case mlp

  /// Builds the expression, runs backward, and returns its output.
  public func build() -> Tensor<Double> {
    var rng = SeededRNG(seed: 7)
    let x = Tensor<Double>([2, 0, -1, 0.5, 0.3, 1], shape: [3, 2])
    x.label = "x"
    switch self {
    case .layer:
      let layer = Layer<Double>(inputs: 2, outputs: 4, activation: .tanh, rng: &rng)
      layer.weight.label = "W"
      layer.bias.label = "b"
      let y = layer(x).sum()
      y.label = "sum"
      y.backward()
      return y
    case .mlp:
      let model = MLP<Double>(inputs: 2, sizes: [4, 1], rng: &rng)
      for (k, layer) in model.layers.enumerated() {
        layer.weight.label = "W\(k + 1)"
        layer.bias.label = "b\(k + 1)"
      }
      let labels = Tensor<Double>([1, -1, 1], shape: [3])
      labels.label = "labels"
      let loss = hingeLoss(scores: model(x).reshape([-1]), labels: labels)
      loss.label = "loss"
      loss.backward()
      return loss
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
