import Support

/// Neural networks out of tensors. Stage 1's neuron-by-neuron network becomes one matrix product per layer:
/// a layer's neurons are the columns of its weight matrix, and a batch of inputs is the rows of x.

// MARK: - Module

/// Anything with trainable parameters.
public protocol Module {
  associatedtype Scalar: TensorScalar
  /// Every trainable tensor of the module, in a fixed order.
  func parameters() -> [Tensor<Scalar>]
}

extension Module {
  /// Forgets every parameter's gradient (before the next `backward()`, since gradients accumulate).
  public func zeroGrad() {
    for p in parameters() { p.zeroGrad() }
  }

  /// How many scalars the module trains.
  public var parameterCount: Int { parameters().reduce(0) { $0 + $1.count } }
}

/// The nonlinearity after a layer's affine map.
public enum Activation: String, CaseIterable, Sendable {
  case relu, tanh, linear

  func callAsFunction<Scalar>(_ x: Tensor<Scalar>) -> Tensor<Scalar> {
    switch self {
    case .relu: return x.relu()
    case .tanh: return x.tanh()
    case .linear: return x
    }
  }
}

// MARK: - Layer, MLP

/// activation(x @ W + b) for a batch x [batch, inputs]: W is [inputs, outputs], b is [outputs].
/// Column j of W holds the weights of stage 1's neuron j.
public final class Layer<Scalar: TensorScalar>: Module {
  public let weight: Tensor<Scalar>
  public let bias: Tensor<Scalar>
  public let activation: Activation

  /// Weights drawn uniformly from [-1, 1] in stage 1's order (neuron by neuron), bias 0, so that the same seed
  /// gives stage 1's network.
  public init(inputs: Int, outputs: Int, activation: Activation, rng: inout SeededRNG) {
    var w = [Scalar](repeating: 0, count: inputs * outputs)
    for j in 0..<outputs {
      for i in 0..<inputs { w[i * outputs + j] = Scalar(rng.uniform(-1, 1)) }
    }
    weight = Tensor(w, shape: [inputs, outputs], requiresGrad: true)
    bias = Tensor.zeros([outputs], requiresGrad: true)
    self.activation = activation
  }

  /// A layer with the given weight [inputs, outputs] and bias [outputs] (which may be results of other ops).
  public init(weight: Tensor<Scalar>, bias: Tensor<Scalar>, activation: Activation) {
    precondition(
      weight.rank == 2 && bias.shape == [weight.shape[1]], "Layer: weight \(weight.shape), bias \(bias.shape)")
    self.weight = weight
    self.bias = bias
    self.activation = activation
  }

  /// x [batch, inputs] -> [batch, outputs].
  public func callAsFunction(_ x: Tensor<Scalar>) -> Tensor<Scalar> {
    activation(x.matmul(weight) + bias)
  }

  public func parameters() -> [Tensor<Scalar>] { [weight, bias] }
}

/// A multi-layer perceptron: hidden layers with `activation`, then a linear output layer.
public final class MLP<Scalar: TensorScalar>: Module {
  public let layers: [Layer<Scalar>]

  /// MLP(inputs: 2, sizes: [16, 16, 1]) is micrograd's 2-16-16-1 network.
  public init(inputs: Int, sizes: [Int], activation: Activation = .relu, rng: inout SeededRNG) {
    precondition(!sizes.isEmpty && sizes.allSatisfy { $0 > 0 }, "MLP: layer sizes \(sizes)")
    let widths = [inputs] + sizes
    var layers: [Layer<Scalar>] = []
    for k in sizes.indices {
      let last = k == sizes.count - 1
      layers.append(
        Layer(inputs: widths[k], outputs: widths[k + 1], activation: last ? .linear : activation, rng: &rng))
    }
    self.layers = layers
  }

  /// An MLP of the given layers.
  public init(layers: [Layer<Scalar>]) { self.layers = layers }

  /// x [batch, inputs] -> [batch, outputs].
  public func callAsFunction(_ x: Tensor<Scalar>) -> Tensor<Scalar> {
    layers.reduce(x) { input, layer in layer(input) }
  }

  public func parameters() -> [Tensor<Scalar>] { layers.flatMap { $0.parameters() } }
}
