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

/// The graphs `stage8 graph` can draw.
public enum GraphExample: String, CaseIterable, Sendable {
  /// One pre-LayerNorm Transformer block (width 8, 2 heads) on 3 tokens, summed.
  case block
  /// One fused causal attention op on 2 heads of 3 positions.
  case attention

  /// Builds the expression, runs backward, and returns its output.
  public func build() -> Tensor<Double> {
    var rng = SeededRNG(seed: 7)
    switch self {
    case .block:
      let config = GPTConfig(vocabulary: 5, context: 3, layers: 1, heads: 2, width: 8)
      let block = Block<Double>(
        config, name: "block", random: RandomSource(seed: 1),
        source: gpt2Initialization(layers: 1, rng: SeededRNG(seed: 2)))
      for (name, p) in block.namedParameters() { p.label = name }
      let x = Tensor<Double>.normal([1, 3, 8], rng: &rng).requiringGrad()
      x.label = "x"
      let y = block(x, keyPadding: nil, cache: nil).sum()
      y.label = "sum"
      backwardKeepingEveryGradient(y)
      return y
    case .attention:
      let (q, k, v) = (
        Tensor<Double>.normal([1, 2, 3, 4], rng: &rng).requiringGrad(),
        Tensor<Double>.normal([1, 2, 3, 4], rng: &rng).requiringGrad(),
        Tensor<Double>.normal([1, 2, 3, 4], rng: &rng).requiringGrad()
      )
      (q.label, k.label, v.label) = ("q", "k", "v")
      let y = Tensor.attention(q, k, v, causal: true).pow(2).sum()
      y.label = "sum of squares"
      backwardKeepingEveryGradient(y)
      return y
    }
  }
}

/// Backward with every gradient of the graph kept, for a picture that shows them all (backward frees the
/// gradients of results once passed on; `retainGrad` keeps one).
func backwardKeepingEveryGradient<Scalar>(_ y: Tensor<Scalar>) {
  for node in y.topologicalOrder() { node.retainGrad() }
  y.backward()
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
