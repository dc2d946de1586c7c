import Support

/// Task (b): fine-tune on half of the new plays' speeches as a language model, measure on the other half.

/// The task's data, as token ids of the base model's tokenizer.
public struct LanguageModelTask: Sendable {
  public let plays: NewPlays
  public let train: [Int]
  public let validation: [Int]
  public let heldOut: [Int]
  /// Characters per token of the held-out half: 1 for a character model (bits per character = bits per token / this).
  public let charactersPerToken: Double
  /// The first 16,384 characters of the pretraining text: forgetting is the change of the loss on them.
  public let pretrainingSample: [Int]

  public init(corpus: Corpus, tokenizer: any Tokenizer, seed: UInt64) throws {
    do {
      plays = try NewPlays(validationText: corpus.split.val, seed: seed)
    } catch let error as UserError {
      throw UserError("'\(corpus.path)', the base's corpus: \(error)")
    }
    train = try tokenizer.encodeOrdinary(plays.train)
    validation = try tokenizer.encodeOrdinary(plays.validation)
    heldOut = try tokenizer.encodeOrdinary(plays.heldOut)
    charactersPerToken = Double(plays.heldOut.count) / Double(max(heldOut.count, 1))
    pretrainingSample = try tokenizer.encodeOrdinary(String(corpus.split.train.prefix(16_384)))
  }

  /// The base model's losses the fine-tuned ones are compared with, at windows of `window` tokens.
  public struct Baseline: Sendable {
    public let heldOut: Double
    public let sample: Double
  }

  /// `model`'s losses on the held-out half and on the pretraining sample.
  public func baseline(_ model: GPT<Float>, window: Int) -> Baseline {
    Baseline(
      heldOut: languageModelLoss(model, tokens: heldOut, window: window),
      sample: languageModelLoss(model, tokens: pretrainingSample, window: window))
  }

  /// Fine-tunes `model` (the base, not yet set up) with `tuning` and measures its loss on the validation tenth;
  /// with `baseline` (the base's losses, which `baseline(_:window:)` measures when nil) also on the held-out half
  /// and the pretraining sample, before and after. `compare` leaves the last two out (`measure: false`) for the
  /// runs of its sweep, and measures only the one it keeps (`measure(_:model:)`).
  public func run(
    model: GPT<Float>, tuning: FineTuningConfig, settings: FineTuneSettings, tokenizer: (any Tokenizer)? = nil,
    baseline: Baseline? = nil, measure: Bool = true, progress: (String) -> Void = { _ in }
  ) throws -> LanguageModelResult {
    // Prompt tuning's virtual tokens take positions: its windows, and the base's to compare, are that much shorter.
    let window = tuning.tokenWindow(context: model.config.context)
    guard window >= 1 else {
      throw UserError("--virtual-tokens \(tuning.virtualTokens) leaves no room in the context \(model.config.context)")
    }
    let parts = [
      ("the training part of the new plays", train), ("the validation part of the new plays", validation),
      ("the held-out part of the new plays", heldOut), ("the pretraining sample", pretrainingSample),
    ]
    for (name, tokens) in parts where tokens.count <= window {
      throw UserError("\(name) has \(tokens.count) tokens, fewer than one window of \(window + 1)")
    }
    let before = measure ? baseline ?? self.baseline(model, window: window) : nil
    try model.prepareFineTuning(tuning, tokenizer: tokenizer)
    let tuner = FineTuner(parameters: model.parameters(), settings: settings)
    // Random windows of as many tokens as fit beside the virtual ones.
    let sampler = WindowSampler(
      tokens: TokenFile(train), context: model.tokenWindow, batchSize: settings.batchSize, order: .random,
      seed: settings.seed)
    let vocabulary = model.config.vocabulary
    var curve: [(step: Int, loss: Double)] = []
    let clock = Stopwatch()
    model.train()
    for step in 1...settings.steps {
      let loss = try tuner.runStep {
        let (inputs, targets) = sampler.nextBatch()
        let logits = model(inputs, batch: settings.batchSize).reshape([-1, vocabulary])
        return crossEntropyLoss(logits: logits, labels: targets)
      }
      curve.append((step, loss))
      let eta = clock.seconds / Double(step) * Double(settings.steps - step)
      progress(
        String(
          format: "%@ step %d/%d  loss %.4f  ETA %.0f s", tuning.method.rawValue, step, settings.steps, loss, eta))
    }
    var result = LanguageModelResult(
      trainable: tuner.parameters.reduce(0) { $0 + $1.count }, total: model.allWeightCount,
      ledger: tuner.ledger(weights: model.allWeightCount), stepSeconds: clock.seconds / Double(settings.steps),
      window: window, validationAfter: languageModelLoss(model, tokens: validation, window: window),
      charactersPerToken: charactersPerToken, curve: curve)
    if let before { self.measure(&result, model: model, baseline: before) }
    return result
  }

  /// Fills in `result`'s held-out and forgetting figures: `model`'s losses now, against the base's `baseline`.
  public func measure(_ result: inout LanguageModelResult, model: GPT<Float>, baseline: Baseline) {
    result.heldOutBefore = baseline.heldOut
    result.sampleBefore = baseline.sample
    result.heldOutAfter = languageModelLoss(model, tokens: heldOut, window: result.window)
    result.sampleAfter = languageModelLoss(model, tokens: pretrainingSample, window: result.window)
  }
}

/// What a language-model fine-tuning run measured. Losses in nats per token.
public struct LanguageModelResult: Sendable {
  public let trainable: Int
  public let total: Int
  public let ledger: MemoryLedger
  public let stepSeconds: Double
  /// The tokens per window its losses are measured on.
  public let window: Int
  /// The loss on the validation tenth of the training half (what `compare` chooses a learning rate by).
  public let validationAfter: Double
  public let charactersPerToken: Double
  public let curve: [(step: Int, loss: Double)]
  /// The held-out half's loss and the pretraining sample's, before and after (NaN until measured).
  public var heldOutBefore = Double.nan
  public var heldOutAfter = Double.nan
  public var sampleBefore = Double.nan
  public var sampleAfter = Double.nan

  /// Nats per token as bits per character.
  public func bitsPerCharacter(_ loss: Double) -> Double { loss / Double.log(2) / charactersPerToken }

  /// The run in a few lines.
  public func report(method: FineTuningMethod) -> String {
    func mb(_ bytes: Int) -> String { String(format: "%.2f MB", Double(bytes) / 1e6) }
    return [
      String(
        format: "%@: %d of %d parameters trained (%.2f%%), %.1f ms per step", method.rawValue, trainable, total,
        100 * Double(trainable) / Double(total), stepSeconds * 1e3),
      String(
        format: "held-out half of the new plays: %.4f -> %.4f bits per character", bitsPerCharacter(heldOutBefore),
        bitsPerCharacter(heldOutAfter)),
      String(
        format: "forgetting, loss on 16384 characters of the pretraining text: %.4f -> %.4f nats (%+.4f)",
        sampleBefore, sampleAfter, sampleAfter - sampleBefore),
      "memory: parameters \(mb(ledger.parameters)), gradients \(mb(ledger.gradients)), AdamW moments "
        + "\(mb(ledger.optimizer)), activations kept for backward \(mb(ledger.activations)); in all \(mb(ledger.total))",
    ].joined(separator: "\n")
  }
}
