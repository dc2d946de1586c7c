import RealModule

/// Scalar reverse-mode automatic differentiation: every number of a computation is a `Value` that remembers the
/// values it was computed from and how much it changes when each of them does. `backward()` then applies the chain
/// rule to the whole graph, from the output back to the inputs.

// MARK: - Value

/// A scalar node of the computation graph.
///
/// For y = f(a, b), the node of y holds y's value (`data`), its share of the final gradient (`grad`, which is
/// d output / d y after `backward()`), and one edge per parent carrying the local derivative: (a, dy/da) and
/// (b, dy/db), evaluated when y was computed. For scalars a local derivative is one number, so an op can work it
/// out at once; `backward()` needs nothing else.
public final class Value {
  /// The number this node holds.
  public var data: Double
  /// d(output)/d(self) after the last `backward()`: accumulated in leaves, recomputed in every other node.
  public var grad: Double = 0
  /// The nodes this one was computed from, with d(self)/d(parent) (empty for a leaf: an input, a parameter,
  /// a constant).
  public internal(set) var edges: [Edge]
  /// The operation that made this node ("+", "tanh", ...), for graph pictures; "" for a leaf.
  public let op: String
  /// A name for graph pictures, e.g. "w0" or "loss".
  public var label: String
  /// Set while `topologicalOrder()` runs: a flag on the node is much cheaper than a hash set of nodes.
  var visited = false

  /// A leaf: an input, a parameter or a constant.
  public init(_ data: Double, label: String = "") {
    self.data = data
    self.edges = []
    self.op = ""
    self.label = label
  }

  /// The result of operation `op`, with an edge to each operand carrying the local derivative.
  init(_ data: Double, op: String, edges: [Edge]) {
    self.data = data
    self.edges = edges
    self.op = op
    self.label = ""
  }

  /// The nodes this one was computed from (an operand used twice appears twice).
  public var parents: [Value] { edges.map(\.parent) }

  public var isLeaf: Bool { edges.isEmpty }

  /// Freeing the output of a long chain would free its parent, which frees its parent, ... one nested call per
  /// node, and a 100,000-node chain would overflow the stack. So a node hands its edges to a work list and frees
  /// the parents there, one at a time, taking over the edges of each parent that nobody else holds.
  deinit {
    var pending = edges
    edges = []
    while var edge = pending.popLast() {
      if isKnownUniquelyReferenced(&edge.parent) {
        pending.append(contentsOf: edge.parent.edges)
        edge.parent.edges = []
      }
    }
  }
}

/// One input of an operation: the operand, and the derivative of the result with respect to it.
public struct Edge {
  public internal(set) var parent: Value
  public let derivative: Double

  init(_ parent: Value, _ derivative: Double) {
    self.parent = parent
    self.derivative = derivative
  }
}

// MARK: - Backward

extension Value {
  /// Every node this one depends on, itself last, each after all of its parents (a topological order).
  ///
  /// An explicit stack instead of recursion: a depth-first search that emits a node once all its parents are
  /// emitted, and never overflows the call stack however long the chain.
  public func topologicalOrder() -> [Value] {
    var order: [Value] = []
    var stack: [(node: Value, parentsDone: Bool)] = [(self, false)]
    while let (node, parentsDone) = stack.popLast() {
      if parentsDone {
        order.append(node)
        continue
      }
      if node.visited { continue }
      node.visited = true
      stack.append((node, true))  // comes back to `node` once everything pushed after it is done
      for edge in node.edges where !edge.parent.visited {
        stack.append((edge.parent, false))
      }
    }
    for node in order { node.visited = false }  // ready for the next traversal
    return order
  }

  /// Computes d(self)/d(node) for every node of the graph by the chain rule, in reverse topological order:
  /// each node adds grad * (local derivative) to each of its parents.
  ///
  /// Gradients **accumulate into leaves** (inputs and parameters): a second `backward()` without `zeroGrad()`
  /// adds the same gradients again, so leaves then hold exactly twice the gradient, as PyTorch does with
  /// `retain_graph=True`. Every non-leaf node's grad is scratch for this pass and restarts from zero each time.
  public func backward() {
    let order = topologicalOrder()
    for node in order where !node.isLeaf { node.grad = 0 }
    grad += 1  // d self / d self; accumulates too if self is a leaf
    // Reverse order: a node passes its gradient on only once every node that uses it has added to it.
    for node in order.reversed() {
      for edge in node.edges {
        edge.parent.grad += edge.derivative * node.grad
      }
    }
  }
}

// MARK: - Arithmetic

extension Value {
  public static func + (a: Value, b: Value) -> Value {
    Value(a.data + b.data, op: "+", edges: [Edge(a, 1), Edge(b, 1)])
  }

  public static func - (a: Value, b: Value) -> Value {
    Value(a.data - b.data, op: "-", edges: [Edge(a, 1), Edge(b, -1)])
  }

  /// a * b: d/da = b, d/db = a.
  public static func * (a: Value, b: Value) -> Value {
    Value(a.data * b.data, op: "*", edges: [Edge(a, b.data), Edge(b, a.data)])
  }

  /// a / b: d/da = 1 / b, d/db = -a / b^2.
  public static func / (a: Value, b: Value) -> Value {
    Value(a.data / b.data, op: "/", edges: [Edge(a, 1 / b.data), Edge(b, -a.data / (b.data * b.data))])
  }

  public static prefix func - (a: Value) -> Value {
    Value(-a.data, op: "neg", edges: [Edge(a, -1)])
  }

  /// The sum of many values as one node: d(sum)/d(each) = 1. Cheaper than a chain of `+` nodes.
  public static func sum(_ values: [Value]) -> Value {
    precondition(!values.isEmpty, "Value.sum of no values")
    return Value(values.reduce(0) { $0 + $1.data }, op: "sum", edges: values.map { Edge($0, 1) })
  }

  // A plain number on either side becomes a constant leaf of the graph.
  public static func + (a: Value, b: Double) -> Value { a + Value(b) }
  public static func + (a: Double, b: Value) -> Value { Value(a) + b }
  public static func - (a: Value, b: Double) -> Value { a - Value(b) }
  public static func - (a: Double, b: Value) -> Value { Value(a) - b }
  public static func * (a: Value, b: Double) -> Value { a * Value(b) }
  public static func * (a: Double, b: Value) -> Value { Value(a) * b }
  public static func / (a: Value, b: Double) -> Value { a / Value(b) }
  public static func / (a: Double, b: Value) -> Value { Value(a) / b }

  public static func += (a: inout Value, b: Value) { a = a + b }
  public static func += (a: inout Value, b: Double) { a = a + b }
}

// MARK: - Functions

extension Value {
  /// self^p: d/dx = p * x^(p-1). A whole-number exponent is defined for negative x too (x^3 of -2 is -8);
  /// a fractional one only for x > 0.
  public func pow(_ p: Double) -> Value {
    Value(power(data, p), op: "pow \(p)", edges: [Edge(self, p * power(data, p - 1))])
  }

  /// e^x: its own derivative.
  public func exp() -> Value {
    let e = Double.exp(data)
    return Value(e, op: "exp", edges: [Edge(self, e)])
  }

  /// The natural logarithm: d/dx = 1 / x.
  public func log() -> Value {
    Value(Double.log(data), op: "log", edges: [Edge(self, 1 / data)])
  }

  /// tanh(x): d/dx = 1 - tanh(x)^2.
  public func tanh() -> Value {
    let t = Double.tanh(data)
    return Value(t, op: "tanh", edges: [Edge(self, 1 - t * t)])
  }

  /// max(x, 0): d/dx = 1 where x > 0, else 0 (at exactly 0 we take 0, as PyTorch does).
  public func relu() -> Value {
    Value(max(data, 0), op: "relu", edges: [Edge(self, data > 0 ? 1 : 0)])
  }

  /// 1 / (1 + e^-x): d/dx = s(1 - s).
  public func sigmoid() -> Value {
    let s = logistic(data)
    return Value(s, op: "sigmoid", edges: [Edge(self, s * (1 - s))])
  }
}

/// x^p, through the integer power when p is a whole number (RealModule's real `pow` is NaN for x < 0).
func power(_ x: Double, _ p: Double) -> Double {
  if p == p.rounded(), abs(p) < 0x1p30 { return Double.pow(x, Int(p)) }
  return Double.pow(x, p)
}

/// The logistic sigmoid, written so that e^(-x) never overflows: for x < 0 use e^x / (1 + e^x).
func logistic(_ x: Double) -> Double {
  if x >= 0 { return 1 / (1 + Double.exp(-x)) }
  let e = Double.exp(x)
  return e / (1 + e)
}

// MARK: - Printing

extension Value: CustomStringConvertible {
  public var description: String { "Value(data: \(data), grad: \(grad))" }
}
