import Support

/// Neural networks out of `Value`s, as micrograd builds them: a neuron is a weighted sum and a nonlinearity,
/// a layer is neurons side by side, an MLP is layers one after another.

// MARK: - Module

/// Anything with trainable parameters.
public protocol Module {
  /// Every trainable `Value` of the module, in a fixed order.
  func parameters() -> [Value]
}

extension Module {
  /// Sets the gradient of every parameter to zero (before the next `backward()`, since gradients accumulate).
  public func zeroGrad() {
    for p in parameters() { p.grad = 0 }
  }

  /// How many scalars the module trains.
  public var parameterCount: Int { parameters().count }
}

/// The nonlinearity after a neuron's weighted sum.
public enum Activation: String, CaseIterable, Sendable {
  case relu, tanh, linear

  func callAsFunction(_ x: Value) -> Value {
    switch self {
    case .relu: return x.relu()
    case .tanh: return x.tanh()
    case .linear: return x
    }
  }
}

// MARK: - Neuron, Layer, MLP

/// activation(w . x + b) for an input vector x.
public final class Neuron: Module {
  public let weights: [Value]
  public let bias: Value
  public let activation: Activation

  /// Weights drawn uniformly from [-1, 1] (micrograd's choice), bias 0.
  public init(inputs: Int, activation: Activation, rng: inout SeededRNG) {
    weights = (0..<inputs).map { Value(rng.uniform(-1, 1), label: "w\($0)") }
    bias = Value(0, label: "b")
    self.activation = activation
  }

  public func callAsFunction(_ x: [Value]) -> Value {
    precondition(x.count == weights.count, "Neuron: \(x.count) inputs for \(weights.count) weights")
    let products = zip(weights, x).map { w, xi in w * xi }
    return activation(Value.sum(products + [bias]))
  }

  public func parameters() -> [Value] { weights + [bias] }
}

/// Neurons that all see the same input: maps a vector of `inputs` values to `outputs` values.
public final class Layer: Module {
  public let neurons: [Neuron]

  public init(inputs: Int, outputs: Int, activation: Activation, rng: inout SeededRNG) {
    neurons = (0..<outputs).map { _ in Neuron(inputs: inputs, activation: activation, rng: &rng) }
  }

  public func callAsFunction(_ x: [Value]) -> [Value] { neurons.map { $0(x) } }

  public func parameters() -> [Value] { neurons.flatMap { $0.parameters() } }
}

/// A multi-layer perceptron: hidden layers with `activation`, then a linear output layer.
public final class MLP: Module {
  public let layers: [Layer]

  /// MLP(inputs: 2, sizes: [16, 16, 1]) is micrograd's 2-16-16-1 network.
  public init(inputs: Int, sizes: [Int], activation: Activation = .relu, rng: inout SeededRNG) {
    precondition(!sizes.isEmpty && sizes.allSatisfy { $0 > 0 }, "MLP: layer sizes \(sizes)")
    let widths = [inputs] + sizes
    var layers: [Layer] = []
    for k in sizes.indices {
      let last = k == sizes.count - 1
      layers.append(
        Layer(inputs: widths[k], outputs: widths[k + 1], activation: last ? .linear : activation, rng: &rng))
    }
    self.layers = layers
  }

  public func callAsFunction(_ x: [Value]) -> [Value] {
    layers.reduce(x) { input, layer in layer(input) }
  }

  public func parameters() -> [Value] { layers.flatMap { $0.parameters() } }
}
