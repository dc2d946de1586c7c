import Support

/// The layers a network is made of, with PyTorch's names, shapes and default initialisation.

// MARK: - Initialisers

/// How a weight matrix [fanOut, fanIn] is drawn. The scale matters: too large and activations grow layer by
/// layer until they saturate or overflow; too small and they, and the gradients, shrink to nothing.
public enum Initializer: Sendable, Equatable {
  /// U(-1/sqrt(fanIn), 1/sqrt(fanIn)): PyTorch's default for Linear (weights and bias).
  case uniformFanIn
  /// U(-a, a) with a = sqrt(6 / (fanIn + fanOut)): Glorot and Bengio's, which keeps the variance of activations
  /// and of gradients about constant through tanh-like layers.
  case xavierUniform
  /// N(0, 2 / fanIn): He et al.'s, for ReLU, which zeroes half its inputs and so needs twice the variance.
  case kaimingNormal
  /// N(0, std^2), e.g. GPT-2's 0.02.
  case normal(std: Double)

  /// A weight tensor of the given shape; fanIn is the last size, fanOut the first.
  public func weight<Scalar: TensorScalar>(_ shape: [Int], rng: inout SeededRNG) -> Tensor<Scalar> {
    let (fanOut, fanIn) = (Double(shape[0]), Double(shape[shape.count - 1]))
    let count = elementCount(shape)
    let values: [Double]
    switch self {
    case .uniformFanIn:
      let bound = 1 / fanIn.squareRoot()
      values = (0..<count).map { _ in rng.uniform(-bound, bound) }
    case .xavierUniform:
      let bound = (6 / (fanIn + fanOut)).squareRoot()
      values = (0..<count).map { _ in rng.uniform(-bound, bound) }
    case .kaimingNormal:
      values = (0..<count).map { _ in rng.normal(std: (2 / fanIn).squareRoot()) }
    case .normal(let std):
      values = (0..<count).map { _ in rng.normal(std: std) }
    }
    return Tensor(values.map { Scalar($0) }, shape: shape, requiresGrad: true)
  }
}

// MARK: - Linear

/// y = x @ W^T + b, PyTorch's nn.Linear: W is [outputs, inputs], x is [..., inputs]. One fused op (`linear`).
public final class Linear<Scalar: TensorScalar>: Layer {
  public let weight: Tensor<Scalar>
  public let bias: Tensor<Scalar>?
  /// A low-rank update trained beside the frozen weight (LoRA, FineTuning/LoRA.swift); nil for a plain layer.
  public var lora: LoRA<Scalar>?
  public var isTraining = true

  /// A layer with weights from `initializer`; the bias is drawn like PyTorch's (U(+-1/sqrt(inputs))) with the
  /// default initializer, and starts at 0 with the others.
  public init(
    _ inputs: Int, _ outputs: Int, bias: Bool = true, initializer: Initializer = .uniformFanIn, rng: inout SeededRNG
  ) {
    weight = initializer.weight([outputs, inputs], rng: &rng)
    if !bias {
      self.bias = nil
    } else if initializer == .uniformFanIn {
      let bound = 1 / Double(inputs).squareRoot()
      self.bias = Tensor(
        (0..<outputs).map { _ in Scalar(rng.uniform(-bound, bound)) }, shape: [outputs], requiresGrad: true)
    } else {
      self.bias = Tensor.zeros([outputs], requiresGrad: true)
    }
  }

  /// A layer with the given weight [outputs, inputs] and bias [outputs] (either may be the result of other ops).
  public init(weight: Tensor<Scalar>, bias: Tensor<Scalar>?) {
    precondition(weight.rank == 2, "Linear: weight must be [outputs, inputs], got \(weight.shape)")
    precondition(
      bias == nil || bias!.shape == [weight.shape[0]], "Linear: bias \(bias!.shape) for weight \(weight.shape)")
    self.weight = weight
    self.bias = bias
  }

  @_specialize(where Scalar == Float)
  @_specialize(where Scalar == Double)
  public func callAsFunction(_ x: Tensor<Scalar>) -> Tensor<Scalar> {
    let y = x.linear(weight, bias)
    guard let lora, !lora.isMerged else { return y }  // merged: B A is inside the weight already
    return y + lora(x)
  }
}

// MARK: - Embedding

/// A table of learned vectors, one row per id: PyTorch's nn.Embedding, initialised N(0, 1).
public final class Embedding<Scalar: TensorScalar>: Module {
  public let weight: Tensor<Scalar>
  public var isTraining = true

  public init(count: Int, dimension: Int, initializer: Initializer = .normal(std: 1), rng: inout SeededRNG) {
    weight = initializer.weight([count, dimension], rng: &rng)
  }

  /// An embedding with the given table [count, dimension].
  public init(weight: Tensor<Scalar>) {
    precondition(weight.rank == 2, "Embedding: the table must be [count, dimension], got \(weight.shape)")
    self.weight = weight
  }

  /// The rows for `ids`, shaped [idShape..., dimension]; the gradient of a row used twice adds up.
  @_specialize(where Scalar == Float)
  @_specialize(where Scalar == Double)
  public func callAsFunction(_ ids: [Int], shape: [Int]? = nil) -> Tensor<Scalar> {
    weight.gatherRows(ids, indexShape: shape)
  }
}

// MARK: - LayerNorm

/// Normalises each vector along the last axis to mean 0 and variance 1, then scales by gamma and shifts by beta
/// (when `affine`): PyTorch's nn.LayerNorm. One fused op with a hand-written backward (`layerNorm`).
public final class LayerNorm<Scalar: TensorScalar>: Layer {
  public let gamma: Tensor<Scalar>?
  public let beta: Tensor<Scalar>?
  public let eps: Scalar
  public var isTraining = true

  public init(_ dimension: Int, eps: Scalar = 1e-5, affine: Bool = true) {
    gamma = affine ? Tensor.ones([dimension], requiresGrad: true) : nil
    beta = affine ? Tensor.zeros([dimension], requiresGrad: true) : nil
    self.eps = eps
  }

  /// A LayerNorm with the given gain and shift [n] (either may be the result of other ops).
  public init(gamma: Tensor<Scalar>?, beta: Tensor<Scalar>?, eps: Scalar = 1e-5) {
    self.gamma = gamma
    self.beta = beta
    self.eps = eps
  }

  @_specialize(where Scalar == Float)
  @_specialize(where Scalar == Double)
  public func callAsFunction(_ x: Tensor<Scalar>) -> Tensor<Scalar> { x.layerNorm(gamma, beta, eps: eps) }
}

// MARK: - Dropout

/// In training, zeroes each element with probability p and scales the rest by 1 / (1 - p), so that the expected
/// value is unchanged; in evaluation, the identity. Draws come from the shared training generator.
public final class Dropout<Scalar: TensorScalar>: Layer {
  public let p: Double
  public var isTraining = true
  let random: RandomSource

  public init(_ p: Double, random: RandomSource) {
    precondition((0..<1).contains(p), "Dropout: p must be in [0, 1), got \(p)")
    self.p = p
    self.random = random
  }

  @_specialize(where Scalar == Float)
  @_specialize(where Scalar == Double)
  public func callAsFunction(_ x: Tensor<Scalar>) -> Tensor<Scalar> {
    guard isTraining && p > 0 else { return x }
    let keep = (0..<x.count).map { _ in random.rng.unit() >= p ? Scalar(1) : 0 }
    return x.dropout(mask: Tensor(keep, shape: x.shape), p: p)
  }
}

// MARK: - MLP

/// A multi-layer perceptron as a Sequential: Linear, activation (and dropout) for each hidden width, then a
/// Linear to the outputs.
public func makeMLP<Scalar: TensorScalar>(
  inputs: Int, hidden: [Int], outputs: Int, activation: @escaping () -> any Layer<Scalar> = { ReLU() },
  dropout: Double = 0, random: RandomSource, rng: inout SeededRNG
) -> Sequential<Scalar> {
  var layers: [any Layer<Scalar>] = []
  var width = inputs
  for size in hidden {
    layers.append(Linear(width, size, rng: &rng))
    layers.append(activation())
    if dropout > 0 { layers.append(Dropout(dropout, random: random)) }
    width = size
  }
  layers.append(Linear(width, outputs, rng: &rng))
  return Sequential(layers)
}
