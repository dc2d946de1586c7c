import Support

/// Prompt tuning and prefix tuning: the pretrained network stays frozen, and what is learned is a few virtual
/// tokens it reads before the real ones. `GPT.callAsFunction` puts them in; `LayerCache` keeps them while decoding.

// MARK: - Prompt tuning

/// Prompt tuning (Lester et al., 2021): P learned input embeddings [P, C] stand before the embeddings of the
/// tokens, at positions 0..<P, so the tokens start at position P (and P fewer of them fit in the context). Only the
/// first layer reads them directly; every later layer sees their effect through attention.
public final class PromptTuning<Scalar: TensorScalar>: Module {
  /// [P, C].
  public let embeddings: Tensor<Scalar>
  public var isTraining = true

  public init(embeddings: Tensor<Scalar>) {
    precondition(embeddings.rank == 2, "PromptTuning: embeddings must be [P, C], got \(embeddings.shape)")
    self.embeddings = embeddings
  }

  /// P, the virtual tokens.
  public var length: Int { embeddings.shape[0] }

  /// The embeddings repeated for each of `batch` rows: [B, P, C] (the broadcast sums their gradient over B).
  func rows(batch: Int) -> Tensor<Scalar> {
    Tensor<Scalar>.ones([batch, 1, 1]) * embeddings.reshape([1, length, embeddings.shape[1]])
  }
}

/// Where prompt tuning's embeddings start (PEFT's prompt_tuning_init).
public enum PromptInitialization: String, CaseIterable, Sendable {
  /// N(0, s^2), s the standard deviation of the token embedding matrix (a scale the network is used to).
  case random
  /// Copies of P token embeddings drawn at random from the vocabulary.
  case vocabulary
  /// The embeddings of a text's first P tokens (repeated when it is shorter), such as a description of the task.
  case text
}

// MARK: - Prefix tuning

/// Prefix tuning (Li and Liang, 2021): in every layer, P learned keys and values stand before those of the tokens,
/// so every query can attend to them. Unlike prompt tuning they take no position, and each layer has its own.
///
/// They are a table [P, layers x 2 x C] (for each virtual position, every layer's keys then values). Trained
/// directly it is unstable, so Li and Liang reparametrise it during training: a smaller table [P, C] goes through
/// an MLP, Linear(C, hidden), tanh, Linear(hidden, layers x 2 x C), as PEFT's prefix_projection. After training
/// the MLP's output is all that matters: `fold` computes it once and keeps only the table.
public final class PrefixTuning<Scalar: TensorScalar>: Module {
  public let layers: Int
  public let heads: Int
  public let width: Int
  public let length: Int
  /// The keys and values [P, layers x 2 x C], when trained directly (or once folded).
  public private(set) var table: Tensor<Scalar>?
  /// The reparametrisation: the smaller table [P, C] and the MLP that makes the keys and values from it.
  public private(set) var seed: Tensor<Scalar>?
  public private(set) var encoderIn: Linear<Scalar>?
  public private(set) var encoderOut: Linear<Scalar>?
  public var isTraining = true

  /// A reparametrised prefix of `length` positions for a GPT of `config`: the small table N(0, 1) as PEFT's
  /// embedding, and the MLP (hidden width `hidden`) drawn as PyTorch's Linear, from `rng`.
  public init(_ config: GPTConfig, length: Int, hidden: Int, rng: inout SeededRNG) {
    (layers, heads, width, self.length) = (config.layers, config.heads, config.width, length)
    seed = Tensor.normal([length, width], rng: &rng, requiresGrad: true)
    encoderIn = Linear(width, hidden, rng: &rng)
    encoderOut = Linear(hidden, layers * 2 * width, rng: &rng)
  }

  /// A prefix whose table is given (an adapter file's, or the keys and values of real tokens).
  public init(_ config: GPTConfig, table: Tensor<Scalar>) {
    (layers, heads, width, length) = (config.layers, config.heads, config.width, table.shape[0])
    precondition(table.shape == [length, layers * 2 * width], "PrefixTuning: table \(table.shape)")
    self.table = table
  }

  /// Whether the keys and values still come from the MLP.
  public var isReparametrised: Bool { table == nil }

  /// The keys and values of every layer, [P, layers x 2 x C].
  public func keysAndValuesTable() -> Tensor<Scalar> {
    if let table { return table }
    return encoderOut!(encoderIn!(seed!).tanh())
  }

  /// Each layer's keys and values, [B, H, P, D] each, repeated for each of `batch` rows.
  func keysAndValues(batch: Int) -> [(keys: Tensor<Scalar>, values: Tensor<Scalar>)] {
    let d = width / heads
    // [P, L x 2 x C] -> [P, L x 2, H, D] -> [L x 2, H, P, D], one [1, H, P, D] piece per layer and kind
    let parts = keysAndValuesTable().reshape([length, layers * 2, heads, d]).permute([1, 2, 0, 3])
      .split([Int](repeating: 1, count: layers * 2), axis: 0)
    let ones = Tensor<Scalar>.ones([batch, 1, 1, 1])
    return (0..<layers).map { (keys: ones * parts[2 * $0], values: ones * parts[2 * $0 + 1]) }
  }

  /// Replaces the MLP by the table it computes: the same keys and values, and nothing left to reparametrise.
  public func fold() {
    guard isReparametrised else { return }
    table = noGrad { keysAndValuesTable() }.detach().requiringGrad()
    (seed, encoderIn, encoderOut) = (nil, nil, nil)
  }
}
