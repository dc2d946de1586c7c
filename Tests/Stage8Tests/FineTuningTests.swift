import Foundation
import Support
import Testing

@testable import Stage8

/// The invariants of fine-tuning that Hugging Face PEFT's users report broken: every method starts exactly at the
/// pretrained model, frozen weights never move, merged LoRA is the same model, the virtual tokens of prefix and
/// prompt tuning survive the KV cache, and an adapter file rebuilds the fine-tuned model on its base and only there.
@Suite struct FineTuningTests {
  static let vocabulary = 11

  /// A small pretrained-looking GPT with biases (so that BitFit has something to train).
  static func base(bias: Bool = true, seed: UInt64 = 7) -> GPT<Float> {
    var config = GPTConfig(vocabulary: vocabulary, context: 8, layers: 2, heads: 2, width: 16)
    config.bias = bias
    return GPT(config, seed: seed, random: RandomSource(seed: seed))
  }

  /// Every method, with settings that exercise it (LoRA on all four projections, the prefix reparametrised too).
  static func methods(virtualTokens: Int = 3) -> [FineTuningConfig] {
    FineTuningMethod.allCases.map { method in
      var config = FineTuningConfig(method: method)
      config.lastK = 1
      config.rank = 2
      config.alpha = 4
      config.targets = LoRATarget.allCases
      config.reduction = 4
      config.virtualTokens = virtualTokens
      config.seed = 3
      return config
    } + [
      {
        var config = FineTuningConfig(method: .prefix)
        config.virtualTokens = virtualTokens
        config.prefixHidden = 8
        return config
      }()
    ]
  }

  static let inputs = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3]
  static let targets = [1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3, 2]

  /// `steps` AdamW steps of the next-token loss on four fixed rows of 4 tokens (room for 3 virtual tokens and
  /// more in the context of 8); returns the optimizer.
  @discardableResult
  static func train(_ model: GPT<Float>, steps: Int = 3, learningRate: Double = 0.05) -> Adam<Float> {
    let optimizer = Adam(
      [ParameterGroup(model.parameters(), weightDecay: 0)], learningRate: learningRate, beta1: 0.9, beta2: 0.99,
      decoupledWeightDecay: true)
    for _ in 0..<steps {
      let logits = model(inputs, batch: 4).reshape([-1, vocabulary])
      crossEntropyLoss(logits: logits, labels: targets).backward()
      optimizer.step()
      optimizer.zeroGrad()
    }
    return optimizer
  }

  static func logits(_ model: GPT<Float>) -> [Float] { noGrad { model(inputs, batch: 4).storage } }

  @Test(arguments: methods(virtualTokens: 0))
  func everyMethodStartsExactlyAtThePretrainedLogits(_ tuning: FineTuningConfig) throws {
    let model = Self.base()
    let before = Self.logits(model)
    try model.prepareFineTuning(tuning)
    #expect(Self.logits(model) == before, "\(tuning.method)")
  }

  @Test func virtualTokensDoChangeTheLogits() throws {
    for method in [FineTuningMethod.prefix, .prompt] {
      let model = Self.base()
      let before = Self.logits(model)
      var tuning = FineTuningConfig(method: method)
      tuning.virtualTokens = 2
      try model.prepareFineTuning(tuning)
      #expect(Self.logits(model) != before, "\(method)")
    }
  }

  @Test(arguments: methods())
  func frozenWeightsStayBitwiseTheSameAndGetNoGradientNorState(_ tuning: FineTuningConfig) throws {
    let model = Self.base()
    let base = model.namedParameters().map { (name: $0.name, tensor: $0.tensor, values: $0.tensor.storage) }
    let trainable = try model.prepareFineTuning(tuning)
    let names = Set(trainable.map(\.name))
    let optimizer = Self.train(model)
    for (name, tensor, values) in base where !names.contains(name) {
      #expect(tensor.storage == values, "\(tuning.method): \(name) moved")
      #expect(tensor.gradStorage == nil && !tensor.requiresGrad, "\(tuning.method): \(name) has a gradient")
    }
    // The optimizer is handed model.parameters(): none of them may be frozen, so none gets a state.
    let frozen = Set(base.filter { !names.contains($0.name) }.map { ObjectIdentifier($0.tensor) })
    #expect(model.parameters().allSatisfy { !frozen.contains(ObjectIdentifier($0)) }, "\(tuning.method)")
    #expect(optimizer.state["exp_avg"]?.count == trainable.count, "\(tuning.method)")
    // Training moved something: every method's trainable parameters include one that changed.
    let start = Self.base()
    try start.prepareFineTuning(tuning)
    let moved = zip(trainable, start.namedParameters()).contains { $0.tensor.storage != $1.tensor.storage }
    #expect(moved, "\(tuning.method)")
  }

  /// The trainable counts, derived by hand for width 16, 2 blocks, vocabulary 11, context 8, with biases.
  @Test func eachMethodTrainsTheParametersItShould() throws {
    let (c, layers) = (16, 2)
    let block = 2 * (2 * c) + (3 * c * c + 3 * c) + (c * c + c) + (4 * c * c + 4 * c) + (4 * c * c + c)
    let expected: [FineTuningMethod: Int] = [
      .full: 11 * c + 8 * c + layers * block + 2 * c,
      .head: 11 * c + 2 * c,
      .lastK: 11 * c + 2 * c + block,
      .bitfit: layers * (2 * c + 3 * c + c + 4 * c + c) + c,  // norms' betas, then the four Linears' biases
      .layernorm: layers * 4 * c + 2 * c,
      .lora: layers * 2 * ((c + 3 * c) + (c + c) + (c + 4 * c) + (4 * c + c)),  // r (inputs + outputs), r = 2
      .houlsby: layers * 2 * (c * 4 + 4 + 4 * c + c),  // bottleneck 16 / 4 = 4
      .pfeiffer: layers * (c * 4 + 4 + 4 * c + c),
      .prefix: 3 * layers * 2 * c,
      .prompt: 3 * c,
      .ia3: layers * (c + c + 4 * c),
    ]
    for tuning in Self.methods() where tuning.prefixHidden == nil {
      let model = Self.base()
      let trainable = try model.prepareFineTuning(tuning)
      #expect(trainable.reduce(0) { $0 + $1.tensor.count } == expected[tuning.method], "\(tuning.method)")
    }
  }

  @Test func mergedLoRAIsTheSameModelAndUnmergingRestoresTheBase() throws {
    let model = Self.base()
    var tuning = FineTuningConfig(method: .lora)
    tuning.targets = LoRATarget.allCases
    try model.prepareFineTuning(tuning)
    Self.train(model)
    #expect(model.loraLayers.allSatisfy { $0.lora!.b.storage.contains { $0 != 0 } })
    let unmerged = Self.logits(model)
    try model.mergeLoRA()
    let merged = Self.logits(model)
    #expect(zip(unmerged, merged).allSatisfy { abs($0 - $1) <= 1e-5 })
    #expect(throws: UserError.self) { try model.mergeLoRA() }
    try model.unmergeLoRA()
    let weights = model.blocks.flatMap { b in LoRATarget.allCases.map { b.layer($0).weight.storage } }
    let original = Self.base().blocks.flatMap { b in LoRATarget.allCases.map { b.layer($0).weight.storage } }
    for (w, o) in zip(weights, original) { #expect(zip(w, o).allSatisfy { abs($0 - $1) <= 1e-6 }) }
    #expect(zip(Self.logits(model), unmerged).allSatisfy { abs($0 - $1) <= 1e-5 })  // the LoRA path runs again
    #expect(throws: UserError.self) { try model.unmergeLoRA() }
  }

  @Test(arguments: methods().filter { $0.method == .prefix || $0.method == .prompt })
  func virtualTokensDecodeTheSameWithAndWithoutTheCache(_ tuning: FineTuningConfig) throws {
    let model = Self.base()
    try model.prepareFineTuning(tuning)
    Self.train(model, steps: 2)
    let window = model.tokenWindow
    #expect(window == (tuning.method == .prompt ? 8 - 3 : 8))
    for length in 1...window {
      let prompt = Array(Self.inputs.prefix(length))
      let count = window - length + 3  // past the end of the context, where the window slides
      let cached = model.generate(prompt, count: count, sampling: Sampling(temperature: 0), seed: 1, useCache: true)
      let plain = model.generate(prompt, count: count, sampling: Sampling(temperature: 0), seed: 1, useCache: false)
      #expect(cached == plain, "\(tuning.method), prompt of \(length)")
    }
    // And the logits, token by token against the whole window at once.
    let tokens = Array(Self.inputs.prefix(window))
    let whole = noGrad { model(tokens).storage }
    let caches = model.makeCaches()
    var stepwise: [Float] = []
    noGrad { for token in tokens { stepwise += model([token], caches: caches).storage } }
    #expect(zip(whole, stepwise).allSatisfy { abs($0 - $1) <= 1e-5 })
  }

  @Test(arguments: methods())
  func anAdapterFileRebuildsTheFineTunedModelOnItsBaseOnly(_ tuning: FineTuningConfig) throws {
    let model = Self.base()
    try model.prepareFineTuning(tuning)
    Self.train(model, steps: 2)
    let tuned = Self.logits(model)
    let path =
      NSTemporaryDirectory() + "adapter-\(tuning.method.rawValue)-\(UInt64.random(in: 0...UInt64.max)).safetensors"
    defer { try? FileManager.default.removeItem(atPath: path) }
    try AdapterFile.save(model, to: path)
    #expect(Self.logits(model) == tuned)  // folding a reparametrised prefix changes nothing
    let loaded = Self.base()
    let config = try AdapterFile.load(path, onto: loaded)
    #expect(config.method == tuning.method)
    #expect(Self.logits(loaded) == tuned, "\(tuning.method)")
    // One weight of the base one ulp away: refused, and the model is left as it was.
    let other = Self.base()
    other.blocks[1].norm2.gamma!.storage[3] = other.blocks[1].norm2.gamma!.storage[3].nextUp
    let before = Self.logits(other)
    #expect {
      try AdapterFile.load(path, onto: other)
    } throws: { error in
      "\(error)".contains("was trained on another base model")
    }
    #expect(other.fineTuning == nil && Self.logits(other) == before)
  }

  @Test func theLedgerCountsWhatTrainingHolds() throws {
    // A reshape shares its input's buffer: counted once.
    let a = Tensor<Float>([1, 2, 3, 4], shape: [4], requiresGrad: true)
    #expect(keptBytes((a * 2).reshape([2, 2])) == 16)
    #expect(keptBytes(((a * 2).reshape([2, 2]) + 1).sum()) == 16 + 16 + 4)
    // LoRA: every weight, 4 bytes; gradients and AdamW's two moments of the trainable ones, 4 + 8 bytes.
    let model = Self.base()
    var tuning = FineTuningConfig(method: .lora)
    tuning.rank = 2
    let trainable = try model.prepareFineTuning(tuning).reduce(0) { $0 + $1.tensor.count }
    #expect(model.allWeightCount == Self.base().parameterCount + trainable)
    let tuner = FineTuner(parameters: model.parameters(), settings: FineTuneSettings())
    try tuner.runStep {
      crossEntropyLoss(logits: model(Self.inputs, batch: 4).reshape([-1, 11]), labels: Self.targets)
    }
    let ledger = tuner.ledger(weights: model.allWeightCount)
    #expect(ledger.parameters == 4 * model.allWeightCount)
    #expect(ledger.gradients == 4 * trainable && ledger.optimizer == 8 * trainable)
    #expect(ledger.activations > 0 && ledger.activations == tuner.activationBytes)
    // Head only with a classifier's head: nothing of the base trains, so the graph keeps nothing of it.
    let probe = Self.base()
    try probe.prepareFineTuning(FineTuningConfig(method: .head), languageModelHead: false)
    #expect(probe.parameters().isEmpty)
  }

  @Test func badSetupsAreRefusedWithTheirReason() throws {
    func message(_ tuning: FineTuningConfig, _ model: GPT<Float> = Self.base()) -> String {
      do {
        try model.prepareFineTuning(tuning)
        return ""
      } catch { return "\(error)" }
    }
    #expect(message(FineTuningConfig(method: .bitfit), Self.base(bias: false)).contains("has no biases"))
    var lastK = FineTuningConfig(method: .lastK)
    lastK.lastK = 3
    #expect(message(lastK).contains("--last-k must be between 1 and the model's 2 blocks, got 3"))
    var prompt = FineTuningConfig(method: .prompt)
    prompt.virtualTokens = 8
    #expect(message(prompt).contains("leaves no room for a token in the context of 8"))
    var lora = FineTuningConfig(method: .lora)
    lora.rank = 17
    #expect(message(lora).contains("--rank 17 is above the width 16"))
    // A refused setting leaves the model as it was: nothing frozen, nothing added.
    let untouched = Self.base()
    let count = untouched.parameters().count
    _ = message(prompt, untouched)
    #expect(untouched.parameters().count == count && untouched.prompt == nil && untouched.fineTuning == nil)
    let twice = Self.base()
    try twice.prepareFineTuning(FineTuningConfig(method: .ia3))
    #expect(message(FineTuningConfig(method: .lora), twice).contains("set up for ia3 already"))
  }
}

extension FineTuningConfig: CustomTestStringConvertible {
  public var testDescription: String { method.rawValue + (prefixHidden.map { " (MLP \($0))" } ?? "") }
}
