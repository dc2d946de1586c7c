import Support

/// The fine-tuning methods, each as what it freezes and what it adds to a pretrained GPT. A frozen parameter is a
/// leaf that no longer requires grad: backward computes no gradient for it (`addToGrad` skips it, and the matmul
/// that would make it is not run), `namedParameters()` leaves it out, so the optimizer never sees it and keeps no
/// state for it. That is where the memory of parameter-efficient fine-tuning is saved.

// MARK: - Methods

/// Every method of the stage, by the name the command line uses.
public enum FineTuningMethod: String, CaseIterable, Sendable {
  /// Every parameter trains.
  case full
  /// Only the head: the final LayerNorm and the output matrix (which, tied, is also the token embedding).
  case head
  /// The last k blocks and the head.
  case lastK = "last-k"
  /// BitFit (Ben Zaken et al., 2022): only the biases (of the Linears and of the LayerNorms).
  case bitfit
  /// Only the LayerNorms' gains and biases.
  case layernorm
  /// LoRA on the chosen projections (LoRA.swift).
  case lora
  /// Houlsby's adapters, after the attention and after the MLP of every block (Adapters.swift).
  case houlsby
  /// Pfeiffer's adapter, after the MLP of every block only.
  case pfeiffer
  /// Prefix tuning: learned keys and values in every layer (Prompts.swift).
  case prefix
  /// Prompt tuning: learned input embeddings before the tokens (Prompts.swift).
  case prompt
  /// IA3 (Liu et al., 2022): learned scales of the keys, the values and the MLP's hidden activation, from ones.
  case ia3
}

extension FineTuningMethod {
  /// The peak learning rate `finetune` uses unless told otherwise: the middle of `compare`'s sweep, which found
  /// it best or close on this model. Methods that train few numbers far from their start need larger steps.
  public var defaultLearningRate: Double {
    switch self {
    case .full, .lastK: 1e-3
    case .head, .lora, .houlsby, .pfeiffer, .prefix, .prompt: 1e-2
    case .bitfit, .layernorm, .ia3: 3e-2
    }
  }
}

/// The projections LoRA can adapt, by the names of the block's layers.
public enum LoRATarget: String, CaseIterable, Sendable {
  /// The attention's query-key-value projection (GPT-2's c_attn).
  case qkv
  /// The attention's output projection (c_proj).
  case proj
  /// The MLP's first layer, C -> 4C (c_fc).
  case expand
  /// The MLP's second layer, 4C -> C (the MLP's c_proj).
  case contract
}

/// A method and its settings (those of other methods are ignored).
public struct FineTuningConfig: Sendable, Equatable {
  public var method: FineTuningMethod
  /// last-k: how many blocks, counted from the top, train.
  public var lastK = 1
  /// LoRA: rank r, alpha (the update is scaled by alpha / r), dropout on its input, and the projections it adapts.
  public var rank = 8
  public var alpha = 16.0
  public var loraDropout = 0.0
  public var targets: [LoRATarget] = [.qkv, .proj]
  /// Adapters: the bottleneck is width / reduction.
  public var reduction = 16
  /// Prefix and prompt tuning: how many virtual tokens.
  public var virtualTokens = 10
  /// Prefix tuning: the hidden width of the reparametrising MLP; nil trains the table directly.
  public var prefixHidden: Int? = nil
  /// Prompt tuning: where the embeddings start, and the text for `.text`.
  public var promptInit = PromptInitialization.vocabulary
  public var promptText = ""
  /// Seed of whatever the method draws (LoRA's A, adapters' down-projections, prefix and prompt tables).
  public var seed: UInt64 = 0

  public init(method: FineTuningMethod) { self.method = method }

  /// How many tokens fit in a context of `context` beside the method's virtual tokens (prompt tuning's take
  /// positions; prefix tuning's do not).
  public func tokenWindow(context: Int) -> Int { context - (method == .prompt ? virtualTokens : 0) }
}

/// What `prepareFineTuning` did: the method, and the fingerprint of the base weights it was applied to.
public struct FineTuningSetup {
  public internal(set) var config: FineTuningConfig
  public let baseFingerprint: String
  /// The base parameters the method froze (they no longer show in `namedParameters()`).
  public let frozen: [(name: String, tensor: Tensor<Float>)]
  /// The base's parameters: their names and how many numbers they hold.
  public let baseNames: Set<String>
  public let baseWeights: Int
}

extension GPT where Scalar == Float {
  /// Turns this pretrained model into `tuning.method`'s: freezes what the method does not train and adds what it
  /// trains. Before any update the model computes exactly what it did (every addition starts as the identity).
  /// Returns the parameters that train, by name; `tokenizer` is needed for prompt tuning's `.text` start only.
  /// A setting the model cannot take is refused before anything is frozen.
  ///
  /// With `languageModelHead` false the model feeds a task's own head (a classifier): then `head` trains nothing
  /// of the base (a linear probe) and `last-k` trains the blocks and the final LayerNorm, not the token embedding.
  ///
  /// With `startingValues` false the added tensors are only made in their shapes (zeros where a start would have to
  /// be computed): what loading an adapter file needs, which sets every value after.
  @discardableResult
  public func prepareFineTuning(
    _ tuning: FineTuningConfig, tokenizer: (any Tokenizer)? = nil, languageModelHead: Bool = true,
    startingValues: Bool = true
  ) throws -> [(name: String, tensor: Tensor<Float>)] {
    guard fineTuning == nil else {
      throw UserError("the model is set up for \(fineTuning!.config.method.rawValue) already")
    }
    let base = namedParameters()
    let fingerprint = weightFingerprint(base)
    var rng = SeededRNG(seed: tuning.seed)
    let random = RandomSource(seed: tuning.seed &+ 1)
    let (c, layers) = (config.width, config.layers)
    /// The language model's head: the final LayerNorm and the output matrix (the tied token embedding). A
    /// classifier brings a head of its own, so then there is none here.
    func isHead(_ name: String) -> Bool {
      languageModelHead && (name.hasPrefix("finalNorm.") || name == "tokenEmbedding.weight")
    }
    /// Freezes every base parameter whose name `trains` rejects.
    func train(only trains: (String) -> Bool) {
      for (name, p) in base where !trains(name) { p.requiringGrad(false) }
    }
    switch tuning.method {
    case .full: break
    case .head: train { isHead($0) }
    case .lastK:
      guard (1...layers).contains(tuning.lastK) else {
        throw UserError("--last-k must be between 1 and the model's \(layers) blocks, got \(tuning.lastK)")
      }
      let blocks = ((layers - tuning.lastK)..<layers).map { "blocks.\($0)." }
      train { name in isHead(name) || name.hasPrefix("finalNorm.") || blocks.contains { name.hasPrefix($0) } }
    case .bitfit:
      guard base.contains(where: { isBias($0.name) }) else {
        throw UserError("bitfit: the base model has no biases to train (it was pretrained with --bias off)")
      }
      train(only: isBias)
    case .layernorm: train { $0.hasSuffix(".gamma") || $0.hasSuffix(".beta") }
    case .lora:
      guard (1...c).contains(tuning.rank) else {
        throw UserError("--rank \(tuning.rank) is above the width \(c): B A could not have a rank above \(c)")
      }
      train { _ in false }
      for block in blocks {
        for target in tuning.targets {
          let layer = block.layer(target)
          layer.lora = LoRA(
            inputs: layer.weight.shape[1], outputs: layer.weight.shape[0], rank: tuning.rank, alpha: tuning.alpha,
            dropout: tuning.loraDropout, rng: &rng, random: random)
        }
      }
    case .houlsby, .pfeiffer:
      train { _ in false }
      let bottleneck = max(1, c / tuning.reduction)
      for block in blocks {
        if tuning.method == .houlsby {
          block.attentionAdapter = BottleneckAdapter(width: c, bottleneck: bottleneck, rng: &rng)
        }
        block.mlpAdapter = BottleneckAdapter(width: c, bottleneck: bottleneck, rng: &rng)
      }
    case .prefix:
      if let hidden = tuning.prefixHidden {
        prefix = PrefixTuning(config, length: tuning.virtualTokens, hidden: hidden, rng: &rng)
      } else if !startingValues {
        let shape = [tuning.virtualTokens, config.layers * 2 * c]
        prefix = PrefixTuning(config, table: Tensor.zeros(shape, requiresGrad: true))
      } else {
        guard tuning.virtualTokens <= config.context else {
          throw UserError(
            "--virtual-tokens \(tuning.virtualTokens): a prefix that starts as real tokens' keys and values is at most "
              + "the context (\(config.context)) long; a longer one needs --prefix-hidden")
        }
        prefix = PrefixTuning(config, table: realKeysAndValues(tuning.virtualTokens, rng: &rng))
      }
      train { _ in false }
    case .prompt:
      guard tuning.virtualTokens < config.context else {
        throw UserError(
          "--virtual-tokens \(tuning.virtualTokens) leaves no room for a token in the context of \(config.context)")
      }
      let start = startingValues ? try promptStart(tuning, tokenizer: tokenizer, rng: &rng) : nil
      prompt = PromptTuning(embeddings: start ?? Tensor.zeros([tuning.virtualTokens, c], requiresGrad: true))
      train { _ in false }
    case .ia3:
      train { _ in false }
      for block in blocks {
        block.attention.keyScale = Tensor.ones([c], requiresGrad: true)
        block.attention.valueScale = Tensor.ones([c], requiresGrad: true)
        block.hiddenScale = Tensor.ones([4 * c], requiresGrad: true)
      }
    }
    fineTuning = FineTuningSetup(
      config: tuning, baseFingerprint: fingerprint, frozen: base.filter { !$0.tensor.requiresGrad },
      baseNames: Set(base.map(\.name)),
      baseWeights: base.reduce(0) { $0 + $1.tensor.count })
    return namedParameters()
  }

  /// A prefix table [P, layers x 2 x C] that starts as the keys and values this model computes for P tokens drawn
  /// from the vocabulary: Li and Liang found a prefix started from real activations trains far better than a random
  /// one, whose keys and values the network has never seen the like of.
  private func realKeysAndValues(_ p: Int, rng: inout SeededRNG) -> Tensor<Float> {
    let ids = (0..<p).map { _ in rng.index(below: config.vocabulary) }
    let caches = makeCaches()
    eval()  // the keys and values without dropout
    defer { train() }
    noGrad { _ = self(ids, caches: caches) }
    let (c, h) = (config.width, config.heads)
    let d = c / h
    var table = [Float](repeating: 0, count: p * config.layers * 2 * c)
    for (layer, cache) in caches.enumerated() {
      for (kind, values) in [cache.keys, cache.values].enumerated() {  // each [1, H, P, D]
        for head in 0..<h {
          for position in 0..<p {
            for i in 0..<d {
              table[position * config.layers * 2 * c + (layer * 2 + kind) * c + head * d + i] =
                values[(head * p + position) * d + i]
            }
          }
        }
      }
    }
    return Tensor(table, shape: [p, config.layers * 2 * c], requiresGrad: true)
  }

  /// A Linear's bias or a LayerNorm's shift.
  private func isBias(_ name: String) -> Bool { name.hasSuffix(".bias") || name.hasSuffix(".beta") }

  /// Prompt tuning's first embeddings [P, C].
  private func promptStart(
    _ tuning: FineTuningConfig, tokenizer: (any Tokenizer)?, rng: inout SeededRNG
  ) throws -> Tensor<Float> {
    let (p, c) = (tuning.virtualTokens, config.width)
    let table = tokenEmbedding.weight.storage
    func rows(_ ids: [Int]) -> Tensor<Float> {
      Tensor(ids.flatMap { table[($0 * c)..<(($0 + 1) * c)] }, shape: [p, c], requiresGrad: true)
    }
    switch tuning.promptInit {
    case .random:
      let mean = table.reduce(0.0) { $0 + Double($1) } / Double(table.count)
      let variance = table.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / Double(table.count)
      return Tensor.normal([p, c], std: Float(variance.squareRoot()), rng: &rng, requiresGrad: true)
    case .vocabulary:
      return rows((0..<p).map { _ in rng.index(below: config.vocabulary) })
    case .text:
      guard let tokenizer else { throw UserError("--prompt-init text needs the base model's tokenizer") }
      let ids: [Int]
      do {
        ids = try tokenizer.encodeOrdinary(tuning.promptText)
      } catch let error as UserError {
        throw UserError("--prompt-text: \(error)")
      }
      guard !ids.isEmpty else { throw UserError("--prompt-init text needs a --prompt-text that is not empty") }
      return rows((0..<p).map { ids[$0 % ids.count] })
    }
  }
}

extension Block {
  /// The Linear a LoRA target names.
  func layer(_ target: LoRATarget) -> Linear<Scalar> {
    switch target {
    case .qkv: attention.qkv
    case .proj: attention.projection
    case .expand: expand
    case .contract: contract
    }
  }
}

/// A fingerprint of weights: FNV-1a over every name, shape and value's bits, as 16 hex digits. An adapter file
/// records its base's, and loading it onto a model whose weights differ in a single bit is refused.
public func weightFingerprint(_ weights: [(name: String, tensor: Tensor<Float>)]) -> String {
  var hash: UInt64 = 0xCBF2_9CE4_8422_2325
  func mix(_ byte: UInt8) {
    hash ^= UInt64(byte)
    hash = hash &* 0x0000_0100_0000_01B3
  }
  for (name, tensor) in weights {
    for byte in "\(name) \(tensor.shape)".utf8 { mix(byte) }
    for value in tensor.storage {
      var bits = value.bitPattern
      for _ in 0..<4 {
        mix(UInt8(truncatingIfNeeded: bits))
        bits >>= 8
      }
    }
  }
  return String(hash, radix: 16).leftPadded(to: 16)
}

extension String {
  fileprivate func leftPadded(to length: Int) -> String {
    String(repeating: "0", count: max(0, length - count)) + self
  }
}
