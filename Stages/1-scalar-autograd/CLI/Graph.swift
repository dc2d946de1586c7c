/// The computation graph as a picture: Graphviz DOT, one box per value (its label, data and grad) and one
/// ellipse per operation, edges pointing from inputs to outputs.

// MARK: - DOT

/// The graph behind `root` in Graphviz's DOT language, left to right.
public func dotGraph(of root: Value) -> String {
  let order = root.topologicalOrder()
  var ids: [ObjectIdentifier: Int] = [:]
  for (k, node) in order.enumerated() { ids[ObjectIdentifier(node)] = k }
  var lines = ["digraph G {", "  rankdir=LR;", "  node [fontname=\"Helvetica\", fontsize=11];"]
  for (k, node) in order.enumerated() {
    let fields = (node.label.isEmpty ? [] : [node.label]) + ["data \(fixed(node.data))", "grad \(fixed(node.grad))"]
    lines.append("  v\(k) [shape=record, label=\"{ \(fields.map(escape).joined(separator: " | ")) }\"];")
    if !node.isLeaf {
      // The operation gets its own ellipse, fed by the parents, feeding the value.
      lines.append("  op\(k) [shape=ellipse, label=\"\(escape(node.op))\"];")
      lines.append("  op\(k) -> v\(k);")
      for parent in node.parents { lines.append("  v\(ids[ObjectIdentifier(parent)]!) -> op\(k);") }
    }
  }
  lines.append("}")
  return lines.joined(separator: "\n") + "\n"
}

/// Four decimals, as the pictures in micrograd's notebooks show them.
private func fixed(_ x: Double) -> String {
  let scaled = (x * 10_000).rounded() / 10_000
  return "\(scaled == 0 ? 0 : scaled)"
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

/// The graphs `stage1 graph` can draw.
public enum GraphExample: String, CaseIterable, Sendable {
  /// One neuron with two inputs, tanh(x1 w1 + x2 w2 + b), with the numbers of micrograd's video lecture.
  case neuron
  /// micrograd's first test expression at x = -4.
  case micrograd

  /// Builds the expression, runs backward, and returns its output node.
  public func build() -> Value {
    switch self {
    case .neuron:
      let x1 = Value(2, label: "x1")
      let x2 = Value(0, label: "x2")
      let w1 = Value(-3, label: "w1")
      let w2 = Value(1, label: "w2")
      let b = Value(6.881_373_587_019_543_2, label: "b")
      let x1w1 = x1 * w1
      x1w1.label = "x1*w1"
      let x2w2 = x2 * w2
      x2w2.label = "x2*w2"
      let n = x1w1 + x2w2 + b
      n.label = "n"
      let o = n.tanh()
      o.label = "o"
      o.backward()
      return o
    case .micrograd:
      let x = Value(-4, label: "x")
      let y = microgradSanity(x)
      y.label = "y"
      y.backward()
      return y
    }
  }
}

/// micrograd's first test expression: z = 2x + 2 + x; q = relu(z) + z x; h = relu(z z); y = h + q + q x.
public func microgradSanity(_ x: Value) -> Value {
  let z = 2 * x + 2 + x
  let q = z.relu() + z * x
  let h = (z * z).relu()
  return h + q + q * x
}

/// micrograd's second test expression, with inputs a and b; returns g.
public func microgradMoreOps(_ a: Value, _ b: Value) -> Value {
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
