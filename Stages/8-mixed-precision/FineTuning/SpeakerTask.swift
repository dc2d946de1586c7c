import Support

/// Task (a): which of the five most frequent speakers of the new plays says a speech. A classifier head (one Linear,
/// width -> 5) reads the mean of the model's final hidden states over the speech.

/// One speech as the classifier sees it: its text without the speaker's line, cut to the window, and who says it.
public struct SpeakerExample: Sendable, Equatable {
  public let tokens: [Int]
  public let label: Int
}

/// The speeches of the five speakers, split by speaker (stratified) into training, validation and test: 60/20/20.
public struct SpeakerTask: Sendable {
  public static let speakers = ["PETRUCHIO", "KATHARINA", "BAPTISTA", "TRANIO", "PROSPERO"]
  /// A speech is read in windows of `window` tokens, up to this many (the rest is cut off).
  public static let windowsPerSpeech = 2
  public let train: [SpeakerExample]
  public let validation: [SpeakerExample]
  public let test: [SpeakerExample]
  /// How many tokens of each speech the classifier reads.
  public let window: Int

  public init(corpus: Corpus, tokenizer: any Tokenizer, window: Int, seed: UInt64) throws {
    self.window = window
    var bySpeaker = [[SpeakerExample]](repeating: [], count: Self.speakers.count)
    for speech in playSpeeches(in: corpus.split.val) {
      guard let label = Self.speakers.firstIndex(of: speech.speaker) else { continue }
      let body = speech.text.drop { $0 != "\n" }.dropFirst()  // without "NAME:\n"
      let tokens = Array(try tokenizer.encodeOrdinary(String(body)).prefix(Self.windowsPerSpeech * window))
      if !tokens.isEmpty { bySpeaker[label].append(SpeakerExample(tokens: tokens, label: label)) }
    }
    guard bySpeaker.allSatisfy({ $0.count >= 5 }) else {
      let counts = zip(Self.speakers, bySpeaker).map { "\($0) \($1.count)" }.joined(separator: ", ")
      throw UserError(
        "'\(corpus.path)', the base's corpus: its validation split holds too few speeches of the five speakers to "
          + "split (\(counts); 5 each at least)")
    }
    var rng = SeededRNG(seed: seed)
    var (train, validation, test) = ([SpeakerExample](), [SpeakerExample](), [SpeakerExample]())
    for var examples in bySpeaker {
      rng.shuffle(&examples)
      let (a, b) = (examples.count * 3 / 5, examples.count * 4 / 5)
      train += examples[..<a]
      validation += examples[a..<b]
      test += examples[b...]
    }
    (self.train, self.validation, self.test) = (train, validation, test)
  }

  /// The accuracy of always answering the speaker most frequent in the training part.
  public var majorityAccuracy: Double {
    let counts = (0..<Self.speakers.count).map { label in train.filter { $0.label == label }.count }
    let majority = counts.indices.max { counts[$0] < counts[$1] }!
    return Double(test.filter { $0.label == majority }.count) / Double(test.count)
  }

  /// Logits [N, 5] for `examples`. Each speech is cut into windows of `window` tokens, each window a row of the
  /// batch (the last one padded with token 0 after its end, which no real position of a causal model sees); the
  /// final hidden states of all of a speech's real positions are averaged (one matrix product with the averaging
  /// weights) and go through `head`.
  public func logits(_ model: GPT<Float>, head: Linear<Float>, _ examples: ArraySlice<SpeakerExample>) -> Tensor<Float>
  {
    var tokens: [Int] = []
    var rowsOf: [Range<Int>] = []  // each example's positions in the flat [rows x window] batch
    for example in examples {
      let start = tokens.count
      tokens += example.tokens
      rowsOf.append(start..<tokens.count)
      tokens += [Int](repeating: 0, count: (window - tokens.count % window) % window)
    }
    let hidden = model.features(tokens, batch: tokens.count / window).reshape([-1, model.config.width])
    var weights = [Float](repeating: 0, count: examples.count * tokens.count)
    for (n, positions) in rowsOf.enumerated() {
      for j in positions { weights[n * tokens.count + j] = 1 / Float(positions.count) }
    }
    return head(Tensor(weights, shape: [examples.count, tokens.count]).matmul(hidden))
  }

  /// The share of `examples` whose speaker the model names.
  public func accuracy(_ model: GPT<Float>, head: Linear<Float>, _ examples: [SpeakerExample]) -> Double {
    model.eval()
    defer { model.train() }
    return noGrad {
      var right = 0
      for start in stride(from: 0, to: examples.count, by: 64) {
        let chunk = examples[start..<min(start + 64, examples.count)]
        let logits = self.logits(model, head: head, chunk).storage
        let classes = Self.speakers.count
        for (i, example) in chunk.enumerated() {
          let row = logits[(i * classes)..<((i + 1) * classes)]
          if row.indices.max(by: { row[$0] < row[$1] })! - i * classes == example.label { right += 1 }
        }
      }
      return Double(right) / Double(examples.count)
    }
  }

  /// Fine-tunes `model` (the base, not yet set up; or a fresh one, with `.full`, to train from scratch) and a new
  /// head drawn from `settings.seed` on the training part, in batches of random examples; measures the accuracy.
  public func run(
    model: GPT<Float>, tuning: FineTuningConfig, settings: FineTuneSettings, tokenizer: (any Tokenizer)? = nil,
    progress: (String) -> Void = { _ in }
  ) throws -> SpeakerResult {
    if tuning.method == .prompt && window + tuning.virtualTokens > model.config.context {
      throw UserError(
        "--virtual-tokens \(tuning.virtualTokens) leaves fewer than the \(window) positions the speeches take in the "
          + "context of \(model.config.context)")
    }
    try model.prepareFineTuning(tuning, tokenizer: tokenizer, languageModelHead: false)
    var rng = SeededRNG(seed: settings.seed)
    let head = Linear<Float>(model.config.width, Self.speakers.count, rng: &rng)
    let tuner = FineTuner(parameters: model.parameters() + head.parameters(), settings: settings)
    let clock = Stopwatch()
    model.train()
    for step in 1...settings.steps {
      let batch = (0..<settings.batchSize).map { _ in train[rng.index(below: train.count)] }
      let loss = try tuner.runStep {
        crossEntropyLoss(logits: logits(model, head: head, batch[...]), labels: batch.map(\.label))
      }
      progress(String(format: "%@ step %d/%d  loss %.4f", tuning.method.rawValue, step, settings.steps, loss))
    }
    let stepSeconds = clock.seconds / Double(settings.steps)
    return SpeakerResult(
      validationAccuracy: accuracy(model, head: head, validation),
      testAccuracy: accuracy(model, head: head, test), stepSeconds: stepSeconds)
  }
}

/// What a classification run measured.
public struct SpeakerResult: Sendable {
  public let validationAccuracy: Double
  public let testAccuracy: Double
  public let stepSeconds: Double
}
