import Support

/// LoRA (Hu et al., 2021): the pretrained weight W [outputs, inputs] stays frozen, and the layer learns a
/// low-rank change of it instead, W + (alpha / r) B A with A [r, inputs] and B [outputs, r]:
///
///     y = x W^T + b + (alpha / r) (dropout(x) A^T) B^T
///
/// r (the rank) is small (4 to 64), so A and B hold r (inputs + outputs) numbers where W holds inputs x outputs.
/// B starts at zero, so before the first update the layer computes exactly what the pretrained one did; A starts
/// random (as PEFT draws it: U(-1/sqrt(inputs), 1/sqrt(inputs))), or B would never get a gradient. alpha / r
/// scales the update so that changing r does not change how far a learning rate moves the output.
///
/// After training, B A can be added into W (`merge`): the layer is a plain Linear again and costs nothing extra at
/// inference; `unmerge` takes it out again.
public final class LoRA<Scalar: TensorScalar>: Module {
  /// A [r, inputs], the down-projection.
  public let a: Tensor<Scalar>
  /// B [outputs, r], the up-projection, zeros at the start.
  public let b: Tensor<Scalar>
  /// alpha / r.
  public let scale: Scalar
  let dropout: Dropout<Scalar>?
  /// Whether B A is inside the layer's weight (then the layer skips this module).
  public private(set) var isMerged = false
  public var isTraining = true

  /// A LoRA of rank `rank` for a weight [outputs, inputs]: A drawn from `rng`, B zeros.
  public convenience init(
    inputs: Int, outputs: Int, rank: Int, alpha: Double, dropout: Double, rng: inout SeededRNG, random: RandomSource
  ) {
    let bound = 1 / Double(inputs).squareRoot()
    let a = Tensor<Scalar>(
      (0..<(rank * inputs)).map { _ in Scalar(rng.uniform(-bound, bound)) }, shape: [rank, inputs],
      requiresGrad: true)
    self.init(
      a: a, b: Tensor.zeros([outputs, rank], requiresGrad: true), alpha: alpha, dropout: dropout, random: random)
  }

  /// A LoRA with the given A [r, inputs] and B [outputs, r].
  public init(a: Tensor<Scalar>, b: Tensor<Scalar>, alpha: Double, dropout: Double, random: RandomSource) {
    precondition(
      a.rank == 2 && b.rank == 2 && b.shape[1] == a.shape[0], "LoRA: A \(a.shape) and B \(b.shape) do not fit")
    (self.a, self.b) = (a, b)
    scale = Scalar(alpha / Double(a.shape[0]))
    self.dropout = dropout > 0 ? Dropout(dropout, random: random) : nil
  }

  /// (alpha / r) (dropout(x) A^T) B^T: [..., inputs] -> [..., outputs].
  public func callAsFunction(_ x: Tensor<Scalar>) -> Tensor<Scalar> {
    let input = dropout.map { $0(x) } ?? x
    return input.linear(a, nil).linear(b, nil) * scale
  }

  /// (alpha / r) B A [outputs, inputs], the change LoRA makes to the weight, summed in Double.
  public func delta() -> [Scalar] {
    let (outputs, rank, inputs) = (b.shape[0], a.shape[0], a.shape[1])
    var result = [Scalar](repeating: 0, count: outputs * inputs)
    let (a, b) = (a.storage, b.storage)
    for o in 0..<outputs {
      for i in 0..<inputs {
        var sum = 0.0
        for k in 0..<rank { sum += Double(b[o * rank + k]) * Double(a[k * inputs + i]) }
        result[o * inputs + i] = Scalar(sum * Double(scale))
      }
    }
    return result
  }

  /// Adds B A into `layer`'s weight, W <- W + (alpha / r) B A; the layer then runs as a plain Linear.
  /// Merging a LoRA that is merged already would add it twice, so it is refused.
  public func merge(into layer: Linear<Scalar>) throws {
    guard !isMerged else { throw UserError("LoRA: this update is merged into its weight already") }
    let d = delta()
    for i in 0..<d.count { layer.weight.storage[i] += d[i] }
    isMerged = true
  }

  /// Takes B A out of `layer`'s weight again, W <- W - (alpha / r) B A (within Float rounding of the original).
  public func unmerge(from layer: Linear<Scalar>) throws {
    guard isMerged else { throw UserError("LoRA: this update is not merged, so there is nothing to take out") }
    let d = delta()
    for i in 0..<d.count { layer.weight.storage[i] -= d[i] }
    isMerged = false
  }
}

extension GPT {
  /// Every Linear of the blocks that carries a LoRA.
  var loraLayers: [Linear<Scalar>] {
    blocks.flatMap { block in LoRATarget.allCases.map { block.layer($0) }.filter { $0.lora != nil } }
  }

  /// Merges every LoRA into its weight: the model is the plain GPT again, as fast as the pretrained one.
  public func mergeLoRA() throws {
    let layers = loraLayers
    guard !layers.isEmpty else { throw UserError("merge: the model has no LoRA to merge") }
    guard layers.allSatisfy({ !$0.lora!.isMerged }) else {
      throw UserError("merge: the model's LoRA is merged into its weights already")
    }
    for layer in layers { try layer.lora!.merge(into: layer) }
  }

  /// Takes every LoRA out of its weight again.
  public func unmergeLoRA() throws {
    let layers = loraLayers
    guard !layers.isEmpty, layers.allSatisfy({ $0.lora!.isMerged }) else {
      throw UserError("unmerge: the model has no merged LoRA to take out")
    }
    for layer in layers { try layer.lora!.unmerge(from: layer) }
  }
}

extension GPT where Scalar == Float {
  /// PEFT's merge_and_unload: merges every LoRA into its weight, removes them, and unfreezes the base, which leaves
  /// the plain GPT the fine-tuning made (a Hugging Face folder, `export`'s, can hold it).
  public func mergeAndUnload() throws {
    guard let setup = fineTuning, setup.config.method == .lora else {
      throw UserError(
        "merge: only LoRA's updates merge into the weights; this model is set up for "
          + (fineTuning?.config.method.rawValue ?? "no fine-tuning"))
    }
    try mergeLoRA()
    for layer in loraLayers { layer.lora = nil }
    for (_, tensor) in setup.frozen { tensor.requiringGrad() }
    fineTuning = nil
  }
}
