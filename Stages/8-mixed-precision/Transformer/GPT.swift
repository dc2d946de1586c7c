import Support

/// GPT, as GPT-2 (and nanoGPT, minGPT) build it: token and position embeddings, a stack of pre-LayerNorm
/// Transformer blocks, a final LayerNorm, and a language-model head that shares its matrix with the token
/// embedding.

// MARK: - Configuration

/// Where a token's position comes from.
public enum PositionEncoding: String, CaseIterable, Sendable {
  /// A learned vector per position (GPT-2).
  case learned
  /// Fixed sines and cosines of the position at geometrically spaced frequencies (the original Transformer).
  case sinusoidal
}

/// Where a block's LayerNorms stand.
public enum NormPlacement: String, CaseIterable, Sendable {
  /// On the input of each branch, x + f(norm(x)): GPT-2's order, and the one deep stacks train without warmup tricks.
  case pre
  /// On each sum, norm(x + f(x)): the original Transformer's order, and BERT's.
  case post
}

/// Which GELU a block's MLP uses.
public enum GELUForm: String, CaseIterable, Sendable {
  /// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))): GPT-2's (Hugging Face's "gelu_new").
  case tanh
  /// x Phi(x) with erf: BERT's in Hugging Face (its "gelu").
  case erf
}

/// The shape of a GPT.
public struct GPTConfig: Sendable, Equatable {
  public var vocabulary: Int
  public var context: Int
  public var layers: Int
  public var heads: Int
  public var width: Int
  public var dropout = 0.0
  public var bias = true
  public var positions = PositionEncoding.learned
  /// Causal (a language model, each position sees only the past) or bidirectional (an encoder, as BERT).
  public var causal = true
  public var norm = NormPlacement.pre
  public var activation = GELUForm.tanh
  /// The LayerNorms' epsilon: 1e-5 in GPT-2, 1e-12 in BERT.
  public var layerNormEps = 1e-5

  public init(vocabulary: Int, context: Int, layers: Int, heads: Int, width: Int) {
    self.vocabulary = vocabulary
    self.context = context
    self.layers = layers
    self.heads = heads
    self.width = width
  }

  /// nanoGPT's CPU configuration for Tiny Shakespeare: 4 layers, 4 heads, width 128, context 64, no bias.
  public static var nanoGPTCPU: GPTConfig {
    var config = GPTConfig(vocabulary: 65, context: 64, layers: 4, heads: 4, width: 128)
    config.bias = false
    return config
  }
}

/// What a parameter is, which decides how GPT-2 initialises it.
public enum ParameterRole: Sendable {
  /// A weight matrix or an embedding: N(0, 0.02).
  case weight
  /// The output projection of a residual branch: N(0, 0.02 / sqrt(2 * layers)), because the residual stream
  /// adds two branches per layer and their variances add up.
  case residualProjection
  /// A bias or a LayerNorm shift: 0.
  case zero
  /// A LayerNorm gain: 1.
  case one
}

/// Makes each parameter as it is needed: name, shape, role -> tensor.
public typealias ParameterSource<Scalar: TensorScalar> = (String, [Int], ParameterRole) -> Tensor<Scalar>

/// GPT-2's initialisation, drawn from `rng`.
public func gpt2Initialization<Scalar: TensorScalar>(layers: Int, rng: SeededRNG) -> ParameterSource<Scalar> {
  var rng = rng
  return { _, shape, role in
    let count = elementCount(shape)
    let std = role == .residualProjection ? 0.02 / (2 * Double(layers)).squareRoot() : 0.02
    switch role {
    case .weight, .residualProjection:
      return Tensor((0..<count).map { _ in Scalar(rng.normal(std: std)) }, shape: shape, requiresGrad: true)
    case .zero: return Tensor.zeros(shape, requiresGrad: true)
    case .one: return Tensor.ones(shape, requiresGrad: true)
    }
  }
}

// MARK: - Block

/// x + attention(ln1(x)), then x + mlp(ln2(x)): pre-LayerNorm, as GPT-2. The MLP is 4x wide with GELU.
/// Normalising the input of each branch (not the sum, as the original post-LN Transformer did) leaves the
/// residual stream untouched from embedding to output, which keeps deep stacks trainable without warmup tricks.
/// With `config.norm == .post` the block is BERT's instead: ln1(x + attention(x)), then ln2(x + mlp(x)).
/// (The model calls its blocks, attention and MLP layers by their own types, never through `any Layer`, so the
/// compiler specialises them for Float and Double without the `@_specialize` that `Sequential`'s layers need.)
public final class Block<Scalar: TensorScalar>: Module {
  public let norm1: LayerNorm<Scalar>
  public let attention: MultiHeadAttention<Scalar>
  public let norm2: LayerNorm<Scalar>
  public let expand: Linear<Scalar>
  public let contract: Linear<Scalar>
  public let dropout: Dropout<Scalar>?
  /// Bottleneck adapters on the output of the attention branch and of the MLP branch (FineTuning/Adapters.swift):
  /// Houlsby's puts both, Pfeiffer's only the second. Nil without adapters.
  public var attentionAdapter: BottleneckAdapter<Scalar>?
  public var mlpAdapter: BottleneckAdapter<Scalar>?
  /// IA3's learned scale [4C] of the MLP's hidden activation (FineTuning/Methods.swift); nil unless IA3 is on.
  public var hiddenScale: Tensor<Scalar>?
  public var isTraining = true
  let placement: NormPlacement
  let activation: GELUForm

  init(_ config: GPTConfig, name: String, random: RandomSource, source: ParameterSource<Scalar>) {
    let c = config.width
    func linear(_ part: String, _ outputs: Int, _ inputs: Int, _ role: ParameterRole) -> Linear<Scalar> {
      Linear(
        weight: source("\(name).\(part).weight", [outputs, inputs], role),
        bias: config.bias ? source("\(name).\(part).bias", [outputs], .zero) : nil)
    }
    func norm(_ part: String) -> LayerNorm<Scalar> {
      LayerNorm(
        gamma: source("\(name).\(part).gamma", [c], .one),
        beta: config.bias ? source("\(name).\(part).beta", [c], .zero) : nil, eps: Scalar(config.layerNormEps))
    }
    let drop = config.dropout > 0 ? Dropout<Scalar>(config.dropout, random: random) : nil
    norm1 = norm("norm1")
    attention = MultiHeadAttention(
      qkv: linear("attention.qkv", 3 * c, c, .weight),
      projection: linear("attention.projection", c, c, .residualProjection),
      heads: config.heads, causal: config.causal, dropout: drop)
    norm2 = norm("norm2")
    expand = linear("expand", 4 * c, c, .weight)
    contract = linear("contract", c, 4 * c, .residualProjection)
    dropout = drop
    (placement, activation) = (config.norm, config.activation)
  }

  public func callAsFunction(
    _ x: Tensor<Scalar>, keyPadding: Tensor<Scalar>?, cache: LayerCache<Scalar>?,
    prefix: (keys: Tensor<Scalar>, values: Tensor<Scalar>)? = nil
  ) -> Tensor<Scalar> {
    func attend(_ x: Tensor<Scalar>) -> Tensor<Scalar> {
      let y = attention.attend(x, keyPadding: keyPadding, cache: cache, prefix: prefix)
      return attentionAdapter.map { $0(y) } ?? y
    }
    if placement == .post {
      let x = norm1(x + attend(x))
      return norm2(x + mlp(x))
    }
    let x = x + attend(norm1(x))
    return x + mlp(norm2(x))
  }

  /// The MLP branch with its residual dropout: contract(GELU(expand(x))), then the adapter if there is one.
  func mlp(_ x: Tensor<Scalar>) -> Tensor<Scalar> {
    var hidden = expand(x).gelu(activation)
    if let hiddenScale { hidden = hidden * hiddenScale }
    var y = contract(hidden)
    if let dropout { y = dropout(y) }
    return mlpAdapter.map { $0(y) } ?? y  // as the attention branch's: on the branch's output, after its dropout
  }
}

// MARK: - GPT

/// The whole model: tokens [B, T] -> logits [B, T, vocabulary].
public final class GPT<Scalar: TensorScalar>: Module {
  public let config: GPTConfig
  public let tokenEmbedding: Embedding<Scalar>
  public let positionEmbedding: Embedding<Scalar>?
  public let blocks: [Block<Scalar>]
  public let finalNorm: LayerNorm<Scalar>
  /// The sinusoidal table [context, width], a constant (not a parameter), when positions are sinusoidal.
  let sinusoids: Tensor<Scalar>?
  let embeddingDropout: Dropout<Scalar>?
  /// Prompt tuning's learned input embeddings, read before the tokens (FineTuning/Prompts.swift); nil without.
  public var prompt: PromptTuning<Scalar>?
  /// Prefix tuning's learned keys and values for every layer (FineTuning/Prompts.swift); nil without.
  public var prefix: PrefixTuning<Scalar>?
  /// The fine-tuning method the model is set up for (`prepareFineTuning`), nil for the pretrained model.
  public internal(set) var fineTuning: FineTuningSetup?
  public var isTraining = true
  /// A hook around each block's forward, given the block's index, its input and the block itself: ZeRO 3 gathers
  /// the block's weights from the ranks before it runs and lets them go after (Parallel/DataParallel.swift).
  /// Nil: each block just runs.
  public var aroundBlock: ((Int, Tensor<Scalar>, (Tensor<Scalar>) -> Tensor<Scalar>) -> Tensor<Scalar>)?

  /// A GPT whose parameters come from `source`, in this order: the token embedding, the position embedding
  /// (learned positions only), then for each block norm1, attention.qkv, attention.projection, norm2, expand,
  /// contract (weight then bias; gamma then beta), then the final norm. The head is the token embedding.
  public init(_ config: GPTConfig, random: RandomSource, source: ParameterSource<Scalar>) {
    precondition(
      config.width % config.heads == 0, "GPT: width \(config.width) is not a multiple of \(config.heads) heads")
    self.config = config
    tokenEmbedding = Embedding(weight: source("tokenEmbedding", [config.vocabulary, config.width], .weight))
    positionEmbedding =
      config.positions == .learned
      ? Embedding(weight: source("positionEmbedding", [config.context, config.width], .weight)) : nil
    sinusoids = config.positions == .sinusoidal ? sinusoidalTable(config.context, config.width) : nil
    embeddingDropout = config.dropout > 0 ? Dropout(config.dropout, random: random) : nil
    blocks = (0..<config.layers).map { Block(config, name: "blocks.\($0)", random: random, source: source) }
    finalNorm = LayerNorm(
      gamma: source("finalNorm.gamma", [config.width], .one),
      beta: config.bias ? source("finalNorm.beta", [config.width], .zero) : nil, eps: Scalar(config.layerNormEps))
  }

  /// A GPT with GPT-2's initialisation from a seed.
  public convenience init(_ config: GPTConfig, seed: UInt64, random: RandomSource) {
    self.init(config, random: random, source: gpt2Initialization(layers: config.layers, rng: SeededRNG(seed: seed)))
  }

  /// Logits [B, T, vocabulary] for tokens [B * T] in `batch` rows. With caches (one per block), the tokens are
  /// the next positions after those cached. `keyPadding` [B, T] marks padding tokens (1) no position may attend to.
  ///
  /// Prompt and prefix tuning add virtual tokens, which go in with the first call (no cache, or empty caches) and
  /// stay in the caches after it. Prompt tuning's P rows stand before the tokens and take positions 0..<P, so the
  /// tokens start at position P; their logits are not returned. Prefix tuning's keys and values take no position:
  /// every layer's queries see them as if they came before position 0.
  public func callAsFunction(
    _ tokens: [Int], batch: Int = 1, keyPadding: Tensor<Scalar>? = nil, caches: [LayerCache<Scalar>]? = nil
  ) -> Tensor<Scalar> {
    // The head is the embedding matrix read the other way: logits = h @ E^T (weight tying, as GPT-2).
    features(tokens, batch: batch, keyPadding: keyPadding, caches: caches).linear(tokenEmbedding.weight, nil)
  }

  /// The final hidden states [B, T, C] (after the final LayerNorm): what the head reads, and what a classifier
  /// head reads instead when the model is fine-tuned for classification.
  public func features(
    _ tokens: [Int], batch: Int = 1, keyPadding: Tensor<Scalar>? = nil, caches: [LayerCache<Scalar>]? = nil
  ) -> Tensor<Scalar> {
    let t = tokens.count / batch
    let cached = caches?.first?.count ?? 0
    let first = cached == 0  // the virtual tokens go in now
    let promptRows = first ? prompt?.length ?? 0 : 0
    let start = first ? 0 : cached - (prefix?.length ?? 0)  // the position of the first row of x
    precondition(
      tokens.count == batch * t && start + promptRows + t <= config.context,
      "GPT: \(start + promptRows + t) positions for context \(config.context)")
    var x = tokenEmbedding(tokens, shape: [batch, t])
    var keyPadding = keyPadding
    if let prompt, promptRows > 0 {
      x = Tensor.concatenate([prompt.rows(batch: batch), x], axis: 1)
      keyPadding = keyPadding.map { Tensor.concatenate([Tensor.zeros([batch, promptRows]), $0], axis: 1) }
    }
    let rows = promptRows + t
    if let positionEmbedding {
      x = x + positionEmbedding(Array(start..<(start + rows)))  // [T, C] broadcast over the batch
    } else if let sinusoids {
      x = x + sinusoids[start..<(start + rows)]
    }
    if let embeddingDropout { x = embeddingDropout(x) }
    var prefixes = first && (prefix?.length ?? 0) > 0 ? prefix?.keysAndValues(batch: batch) : nil
    if let caches, let layers = prefixes {  // the caches hold the prefix from now on
      for (cache, kv) in zip(caches, layers) { _ = cache.append(kv.keys, kv.values) }
      prefixes = nil
    }
    for (i, block) in blocks.enumerated() {
      let run = { (x: Tensor<Scalar>) in block(x, keyPadding: keyPadding, cache: caches?[i], prefix: prefixes?[i]) }
      x = aroundBlock?(i, x, run) ?? run(x)
    }
    if promptRows > 0 { x = x.split([promptRows, t], axis: 1)[1] }
    return finalNorm(x)
  }

  /// Empty key/value caches, one per block, for decoding one token at a time.
  public func makeCaches() -> [LayerCache<Scalar>] { blocks.map { _ in LayerCache() } }

  /// How many tokens fit in the context: prompt tuning's virtual tokens take positions too.
  public var tokenWindow: Int { config.context - (prompt?.length ?? 0) }

  /// How many tokens the caches hold, leaving out the virtual tokens of prompt and prefix tuning.
  func cachedTokens(_ caches: [LayerCache<Scalar>]?) -> Int? {
    guard let count = caches?.first?.count else { return nil }
    return count == 0 ? 0 : count - (prompt?.length ?? 0) - (prefix?.length ?? 0)
  }
}

/// PE[pos, 2i] = sin(pos / 10000^(2i / C)), PE[pos, 2i + 1] = cos(pos / 10000^(2i / C)) (Vaswani et al., 2017).
func sinusoidalTable<Scalar: TensorScalar>(_ positions: Int, _ width: Int) -> Tensor<Scalar> {
  var table = [Scalar](repeating: 0, count: positions * width)
  for pos in 0..<positions {
    for i in stride(from: 0, to: width, by: 2) {
      let angle = Double(pos) / Double.pow(10_000, Double(i) / Double(width))
      table[pos * width + i] = Scalar(Double.sin(angle))
      if i + 1 < width { table[pos * width + i + 1] = Scalar(Double.cos(angle)) }
    }
  }
  return Tensor(table, shape: [positions, width])
}
