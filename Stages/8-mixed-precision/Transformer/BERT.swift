import Support

/// BERT (Devlin et al., 2018) as Hugging Face's BertForPreTraining builds it: the same Transformer blocks as GPT,
/// but bidirectional (every position sees every other, only padding hidden), with three embeddings summed and
/// normalised (token, position, and segment: which of the two sentences a token belongs to), post-LayerNorm blocks
/// and the exact GELU by default, and two heads: one guesses the masked tokens, one says whether the second sentence
/// follows the first.

// MARK: - Configuration

/// The shape of a BERT. The defaults are BERT's own choices; `norm: .pre` and `activation: .tanh` give GPT-2's.
public struct BERTConfig: Sendable, Equatable {
  public var vocabulary: Int
  /// Positions the model has embeddings for: the longest input, [CLS] and [SEP]s included.
  public var context: Int
  public var layers: Int
  public var heads: Int
  public var width: Int
  /// Segment (token type) ids: 0 for [CLS] A [SEP], 1 for B [SEP].
  public var segments = 2
  public var dropout = 0.0
  public var norm = NormPlacement.post
  public var activation = GELUForm.erf
  public var layerNormEps = 1e-12

  public init(vocabulary: Int, context: Int, layers: Int, heads: Int, width: Int) {
    self.vocabulary = vocabulary
    self.context = context
    self.layers = layers
    self.heads = heads
    self.width = width
  }

  /// The blocks' configuration: GPT's blocks, bidirectional, with biases.
  var blocks: GPTConfig {
    var config = GPTConfig(vocabulary: vocabulary, context: context, layers: layers, heads: heads, width: width)
    config.causal = false
    config.dropout = dropout
    config.norm = norm
    config.activation = activation
    config.layerNormEps = layerNormEps
    return config
  }
}

/// BERT's initialisation: every weight N(0, 0.02) (the residual projections are not scaled down, unlike GPT-2's),
/// biases 0, LayerNorm gains 1.
public func bertInitialization<Scalar: TensorScalar>(rng: SeededRNG) -> ParameterSource<Scalar> {
  let gpt2: ParameterSource<Scalar> = gpt2Initialization(layers: 1, rng: rng)
  return { name, shape, role in gpt2(name, shape, role == .residualProjection ? .weight : role) }
}

extension Tensor {
  /// GELU in the given form.
  public func gelu(_ form: GELUForm) -> Tensor { form == .tanh ? gelu() : geluErf() }
}

// MARK: - The model

/// The encoder and both pretraining heads: tokens [B, T] and segments [B, T] -> hidden states [B, T, C]; the MLM
/// head reads chosen positions of them, the NSP head the first ([CLS]) of each row.
public final class BERT<Scalar: TensorScalar>: Module {
  public let config: BERTConfig
  public let tokenEmbedding: Embedding<Scalar>
  public let positionEmbedding: Embedding<Scalar>
  public let segmentEmbedding: Embedding<Scalar>
  public let embeddingNorm: LayerNorm<Scalar>
  public let blocks: [Block<Scalar>]
  /// Pre-LayerNorm blocks leave their last sum unnormalised, so a final LayerNorm follows them (as in GPT-2);
  /// post-LayerNorm blocks end normalised and have none.
  public let finalNorm: LayerNorm<Scalar>?
  /// The MLM head: a dense layer, GELU and LayerNorm ("transform"), then the token embedding read backwards (tied)
  /// plus a bias of its own per token.
  public let transform: Linear<Scalar>
  public let transformNorm: LayerNorm<Scalar>
  public let decoderBias: Tensor<Scalar>
  /// The NSP head: tanh(dense) on [CLS] (the pooler), then a 2-way classifier (0: B follows A; 1: B is random).
  public let pooler: Linear<Scalar>
  public let classifier: Linear<Scalar>
  let embeddingDropout: Dropout<Scalar>?
  public var isTraining = true

  /// A BERT whose parameters come from `source`, in the order they are declared above: the three embeddings, the
  /// embedding norm (gamma, beta), each block as GPT's (norm1, attention.qkv, attention.projection, norm2, expand,
  /// contract), the final norm (pre-LN only), transform, transformNorm, decoderBias, pooler, classifier.
  public init(_ config: BERTConfig, random: RandomSource, source: ParameterSource<Scalar>) {
    precondition(config.width % config.heads == 0, "BERT: width \(config.width) by \(config.heads) heads")
    let c = config.width
    let eps = Scalar(config.layerNormEps)
    func norm(_ name: String) -> LayerNorm<Scalar> {
      LayerNorm(gamma: source(name + ".gamma", [c], .one), beta: source(name + ".beta", [c], .zero), eps: eps)
    }
    func linear(_ name: String, _ outputs: Int) -> Linear<Scalar> {
      Linear(weight: source(name + ".weight", [outputs, c], .weight), bias: source(name + ".bias", [outputs], .zero))
    }
    self.config = config
    tokenEmbedding = Embedding(weight: source("tokenEmbedding", [config.vocabulary, c], .weight))
    positionEmbedding = Embedding(weight: source("positionEmbedding", [config.context, c], .weight))
    segmentEmbedding = Embedding(weight: source("segmentEmbedding", [config.segments, c], .weight))
    embeddingNorm = norm("embeddingNorm")
    blocks = (0..<config.layers).map {
      Block(config.blocks, name: "blocks.\($0)", random: random, source: source)
    }
    finalNorm = config.norm == .pre ? norm("finalNorm") : nil
    transform = linear("transform", c)
    transformNorm = norm("transformNorm")
    decoderBias = source("decoderBias", [config.vocabulary], .zero)
    pooler = linear("pooler", c)
    classifier = linear("classifier", 2)
    embeddingDropout = config.dropout > 0 ? Dropout(config.dropout, random: random) : nil
  }

  /// A BERT with BERT's initialisation from a seed.
  public convenience init(_ config: BERTConfig, seed: UInt64, random: RandomSource) {
    self.init(config, random: random, source: bertInitialization(rng: SeededRNG(seed: seed)))
  }

  /// The hidden states [B, T, C] of `tokens` [B * T] in `batch` rows, with their segment ids (0 or 1) and
  /// `keyPadding` [B, T] (1 marks padding, which no position attends to).
  public func encode(
    _ tokens: [Int], segments: [Int], batch: Int = 1, keyPadding: Tensor<Scalar>? = nil
  ) -> Tensor<Scalar> {
    let t = tokens.count / batch
    precondition(
      tokens.count == batch * t && segments.count == tokens.count && t <= config.context,
      "BERT: \(tokens.count) tokens, \(segments.count) segments in \(batch) rows for context \(config.context)")
    var x =
      tokenEmbedding(tokens, shape: [batch, t]) + segmentEmbedding(segments, shape: [batch, t])
      + positionEmbedding(Array(0..<t))
    x = embeddingNorm(x)
    if let embeddingDropout { x = embeddingDropout(x) }
    for block in blocks { x = block(x, keyPadding: keyPadding, cache: nil) }
    return finalNorm.map { $0(x) } ?? x
  }

  /// The MLM logits [n, vocabulary] at `positions`, flat indices (row * T + position) into `hidden` [B, T, C]. Only
  /// the chosen positions go through the head: the others have no target (the ignore index), so computing their
  /// logits would be work thrown away.
  public func maskedLMLogits(_ hidden: Tensor<Scalar>, at positions: [Int]) -> Tensor<Scalar> {
    let rows = hidden.reshape([-1, config.width]).gatherRows(positions)
    let h = transformNorm(transform(rows).gelu(config.activation))
    return h.linear(tokenEmbedding.weight, decoderBias)
  }

  /// The NSP logits [B, 2] from the [CLS] position of each row of `hidden` [B, T, C].
  public func nextSentenceLogits(_ hidden: Tensor<Scalar>) -> Tensor<Scalar> {
    let (b, t) = (hidden.shape[0], hidden.shape[1])
    let cls = hidden.reshape([-1, config.width]).gatherRows((0..<b).map { $0 * t })
    return classifier(pooler(cls).tanh())
  }
}
