import Support

/// A bottleneck adapter (Houlsby et al., 2019): a small MLP with a residual connection, inserted on the output h
/// of a sublayer of the frozen network,
///
///     adapter(h) = h + up(GELU(down(h)))
///
/// down [m, C] squeezes the width C to m = C / reduction, up [C, m] brings it back. up starts at zero (weight and
/// bias), so at first the adapter is exactly the identity and the network computes what it did before.
/// Houlsby's places one after the attention and one after the MLP of every block; Pfeiffer et al. (2020) found one
/// after the MLP about as good at half the cost. A block calls them in `Block.callAsFunction` and `Block.mlp`.
public final class BottleneckAdapter<Scalar: TensorScalar>: Module {
  public let down: Linear<Scalar>
  public let up: Linear<Scalar>
  public var isTraining = true

  /// An adapter for width `width` with a bottleneck of `bottleneck`; down drawn N(0, 0.02) as the model's weights.
  public convenience init(width: Int, bottleneck: Int, rng: inout SeededRNG) {
    self.init(
      down: Linear(width, bottleneck, bias: true, initializer: .normal(std: 0.02), rng: &rng),
      up: Linear(
        weight: Tensor.zeros([width, bottleneck], requiresGrad: true), bias: Tensor.zeros([width], requiresGrad: true)))
  }

  /// An adapter with the given projections, down [m, C] and up [C, m].
  public init(down: Linear<Scalar>, up: Linear<Scalar>) {
    precondition(
      down.weight.shape == [up.weight.shape[1], up.weight.shape[0]],
      "BottleneckAdapter: down \(down.weight.shape) and up \(up.weight.shape) do not fit")
    (self.down, self.up) = (down, up)
  }

  public func callAsFunction(_ h: Tensor<Scalar>) -> Tensor<Scalar> { h + up(down(h).gelu()) }
}
