import Foundation
import Support

/// Checkpoints: everything a training run needs to continue exactly where it stopped, in one safetensors file.
/// "model.NAME" holds each parameter, "optimizer.KIND.NAME" each optimizer buffer, "rng" the dropout generator's
/// four words and "sampler_rng" the batch sampler's; the metadata holds the step, the optimizer's step count, the
/// sampler's epoch and position, the options the run was started with, the history so far, the best validation
/// loss, and the tokenizer itself (its file, so that the checkpoint alone can turn text into ids and back). A
/// resumed run then draws the same batches and dropout masks and makes the same updates as the run that was never
/// interrupted. `stage8 sample` reads the model and the tokenizer from the same file, and `stage8 fill` a masked-LM
/// run's encoder.

// MARK: - What a checkpoint saves

/// A pretraining run a checkpoint can save and restore: the causal LM's `Trainer` and the masked LM's
/// `MaskedLMTrainer` alike. Each says what its history's columns are and where its sampler stands; the rest is
/// common, and written once below.
protocol CheckpointedRun: AnyObject {
  associatedtype Model: Module where Model.Scalar == Float
  /// The metadata "format" of this kind of run's checkpoints.
  static var checkpointFormat: String { get }
  /// The history's columns after the step (the first, the validation loss, is what "best" means).
  static var historyColumns: [String] { get }
  var model: Model { get }
  var optimizer: any Optimizer<Float> { get }
  var random: RandomSource { get }
  var tokenizer: any Tokenizer { get }
  var train: TokenFile { get }
  var corpusHash: String { get }
  var step: Int { get set }
  var bestValLoss: Double { get set }
  /// The options the run was made with, as `--flag value` pairs.
  var recordedOptions: [(flag: String, value: String)] { get }
  /// The evaluations so far, one row each: the step, then one value per `historyColumns`.
  var historyRows: [[Double]] { get set }
  /// The index in a history row of the loss that decides the best checkpoint.
  static var bestColumn: Int { get }
  /// The sampler's generator, epoch and position, and the largest position an epoch has.
  var samplerState: (rng: SeededRNG, epoch: Int, position: Int) { get }
  var samplerPositions: Int { get }
  func restoreSampler(rng: SeededRNG, epoch: Int, position: Int)
  /// The low format's machinery, whose masters the checkpoint saves as the weights (stage 8); nil for fp32.
  var mixedPrecision: MixedPrecision? { get }
}

extension CheckpointedRun {
  var mixedPrecision: MixedPrecision? { nil }
}

extension Trainer: CheckpointedRun {
  /// The metadata "format" of this stage's causal-LM checkpoints.
  public static let checkpointFormat = "stage8-checkpoint"
  static let historyColumns = ["train loss", "validation loss"]
  static let bestColumn = 2
  var recordedOptions: [(flag: String, value: String)] { config.options }
  var historyRows: [[Double]] {
    get { history.map { [Double($0.step), $0.trainLoss, $0.valLoss] } }
    set { history = newValue.map { StepRecord(step: Int($0[0]), trainLoss: $0[1], valLoss: $0[2]) } }
  }
  var samplerState: (rng: SeededRNG, epoch: Int, position: Int) { (sampler.rng, sampler.epoch, sampler.position) }
  var samplerPositions: Int { sampler.windowsPerEpoch }
  func restoreSampler(rng: SeededRNG, epoch: Int, position: Int) {
    sampler.restore(rng: rng, epoch: epoch, position: position)
  }
}

extension MaskedLMTrainer: CheckpointedRun {
  /// The metadata "format" of this stage's masked-LM checkpoints.
  public static let checkpointFormat = "stage8-mlm-checkpoint"
  static let historyColumns = ["train loss", "validation loss", "MLM loss", "MLM accuracy", "NSP accuracy"]
  static let bestColumn = 2
  var recordedOptions: [(flag: String, value: String)] { config.options }
  var historyRows: [[Double]] {
    get { history.map(\.row) }
    set { history = newValue.map(MaskedLMRecord.init(row:)) }
  }
  /// The masking generator (dynamic masks) stands in the sampler's place.
  var samplerState: (rng: SeededRNG, epoch: Int, position: Int) { (maskingRNG, sampler.epoch, sampler.position) }
  var samplerPositions: Int { sampler.count }
  func restoreSampler(rng: SeededRNG, epoch: Int, position: Int) {
    maskingRNG = rng
    sampler.restore(epoch: epoch, position: position)
  }
}

// MARK: - Save

extension CheckpointedRun {
  /// Whether `path` holds a checkpoint of this kind (which a new one may replace), by its format metadata.
  static func isCheckpoint(at path: String) -> Bool {
    (try? CheckpointReader(path: path, format: checkpointFormat)) != nil
  }

  /// Writes the checkpoint atomically: an interrupted save leaves the previous file whole.
  func save(to path: String) throws {
    try writeAtomically(Data(checkpointBytes()), to: path, as: "--checkpoint")
  }

  /// The checkpoint as the bytes of a safetensors file. A sharded run's (Parallel/ShardedCheckpoint.swift)
  /// leaves out the tensors its shards hold, and adds the metadata that names them.
  func checkpointBytes(
    leavingOut shardTensors: Set<String> = [], metadata extra: [String: String] = [:]
  ) throws
    -> [UInt8]
  {
    var tensors: [String: SafeTensor] = [:]
    let named = model.namedParameters()
    for (name, p) in named where !shardTensors.contains("model." + name) {
      tensors["model." + name] = try SafeTensor(mixedPrecision?.master(of: p) ?? p.storage, shape: p.shape)
    }
    for (kind, buffers) in optimizer.state {
      for (name, p) in named where !shardTensors.contains("optimizer.\(kind).\(name)") {
        if let values = buffers[ObjectIdentifier(p)] {
          tensors["optimizer.\(kind).\(name)"] = try SafeTensor(values, shape: p.shape)
        }
      }
    }
    var fp8Names: [String: String] = [:]
    if let (scales, names) = try mixedPrecision?.fp8Checkpoint(named) {
      tensors.merge(scales) { $1 }
      fp8Names["fp8_weights"] = names
    }
    let sampler = samplerState
    for (name, generator) in [("rng", random.rng), ("sampler_rng", sampler.rng)] {
      let s = generator.state
      tensors[name] = try SafeTensor([s.0, s.1, s.2, s.3], shape: [4])
    }
    let metadata: [String: String] = [
      "format": Self.checkpointFormat, "step": String(step), "optimizer_steps": String(optimizer.stepCount),
      "options": optionsLine(recordedOptions), "history": historyCSV, "sampler_epoch": String(sampler.epoch),
      "sampler_position": String(sampler.position), "best_val_loss": String(bestValLoss),
      "tokenizer": String(decoding: try tokenizer.fileContents(), as: UTF8.self), "train_tokens": String(train.count),
      "corpus_hash": corpusHash,
    ].merging(mixedPrecision?.checkpointMetadata ?? [:]) { $1 }.merging(fp8Names) { $1 }.merging(extra) { $1 }
    return encodeSafetensors(tensors, metadata: metadata)
  }

  /// The evaluations so far as CSV lines (the step, then each of `historyColumns`).
  var historyCSV: String {
    historyRows.map { $0.map { "\($0)" }.joined(separator: ",") }.joined(separator: "\n")
  }
}

// MARK: - Load

extension CheckpointedRun {
  /// Restores the checkpoint at `path` (see `restore(from:)`).
  func resume(from path: String) throws {
    try restore(from: openCheckpoint(path, format: Self.checkpointFormat))
  }

  /// Restores a checkpoint into this trainer, which must have the options the checkpoint records (but for
  /// --steps: a run may be extended). Every field is checked before anything changes; a missing, extra,
  /// mis-shaped, non-finite or inconsistent one is a `UserError` naming it, and the trainer is left as it was.
  func restore(from reader: CheckpointReader) throws {
    let planned = try reader.requireOptions(recordedOptions, length: "--steps")
    let step = try reader.integer("step", in: 0...Int(Int32.max))
    guard step <= planned else {
      throw reader.error("metadata 'step' is \(step), past the end of the run it records (--steps \(planned))")
    }
    let records = try readHistory(reader, step: step)
    let steps = try reader.integer("optimizer_steps", in: 0...Int(Int32.max))
    // Stage 8: a step the loss scaler skipped made no update.
    let scaler = try mixedPrecision?.readScaler(reader, step: step)
    let skipped = scaler?.skippedSteps ?? 0
    guard steps + skipped == step else {
      throw reader.error(
        "metadata 'optimizer_steps' is \(steps), but metadata 'step' is \(step) (one update a step"
          + (scaler == nil ? ")" : ", less the \(skipped) skipped)"))
    }
    // The data: the same tokenizer, and a training split of the same length (another corpus is another run).
    guard try reader.text("tokenizer") == String(decoding: try tokenizer.fileContents(), as: UTF8.self) else {
      throw reader.error("metadata 'tokenizer' is not this run's tokenizer (\(tokenizer.fingerprint))")
    }
    let tokens = try reader.integer("train_tokens", in: 0...Int(Int32.max))
    guard tokens == train.count else {
      throw reader.error(
        "metadata 'train_tokens' is \(tokens), but this run's training split has \(train.count) (another corpus?)")
    }
    let hash = try reader.text("corpus_hash")
    guard hash == corpusHash else {
      throw reader.error(
        "metadata 'corpus_hash' is '\(hash)', not this corpus's '\(corpusHash)': it was trained on another text (the "
          + "file changed since?)")
    }
    let epoch = try reader.integer("sampler_epoch", in: 0...Int(Int32.max))
    let position = try reader.integer("sampler_position", in: 0...samplerPositions)
    let best = try readBest(reader, records)

    let named = model.namedParameters()  // reflection once, not once per tensor of the file
    let parameters = try named.map { name, p in try reader.floats("model." + name, shape: p.shape) }
    // Each kind of optimizer state exists for every parameter once the first step is taken, and not before.
    var state: [String: [ObjectIdentifier: [Float]]] = [:]
    for kind in steps > 0 ? optimizer.stateKinds : [] {
      for (name, p) in named {
        // Adam divides by the square root of exp_avg_sq, a running mean of squares: never negative.
        let values = try reader.floats(
          "optimizer.\(kind).\(name)", shape: p.shape, nonNegative: kind == "exp_avg_sq")
        state[kind, default: [:]][ObjectIdentifier(p)] = values
      }
    }
    let rng = try reader.generatorState("rng")
    let samplerRNG = try reader.generatorState("sampler_rng")
    let restoreFP8 = try mixedPrecision?.readFP8(reader, steps: steps, named: named)
    try reader.finish()

    for ((_, p), values) in zip(named, parameters) {
      if let mixedPrecision { mixedPrecision.load(values, into: p) } else { p.storage = values }
    }
    if let scaler { mixedPrecision?.scaler = scaler }
    restoreFP8?()
    optimizer.state = state
    optimizer.stepCount = steps
    random.rng = SeededRNG(state: rng)
    restoreSampler(rng: SeededRNG(state: samplerRNG), epoch: epoch, position: position)
    self.step = step
    historyRows = records
    bestValLoss = best
  }

  /// The best validation loss: the lowest of the history's (infinity before the first evaluation).
  func readBest(_ reader: CheckpointReader, _ records: [[Double]]) throws -> Double {
    let text = try reader.text("best_val_loss")
    let lowest = records.map { $0[Self.bestColumn] }.min() ?? .infinity
    guard let value = Double(text), value == lowest else {
      throw reader.error("metadata 'best_val_loss' is '\(text)', not the lowest validation loss of the history")
    }
    return value
  }

  /// A loss is finite and at most the largest Float, the type training computes it in (so not 1e300).
  var largestLoss: Double { Double(Float.greatestFiniteMagnitude) }

  /// The history: the evaluations at steps 0 to `step`, in order, with losses a run can produce (accuracies
  /// between 0 and 1). The command line evaluates at step 0 and saves only after an evaluation, so a checkpoint's
  /// history is never empty.
  func readHistory(_ reader: CheckpointReader, step: Int) throws -> [[Double]] {
    let columns: [CheckpointReader.Column] =
      [.init("step", 0...1e9)]
      + Self.historyColumns.map { .init($0, 0...($0.hasSuffix("accuracy") ? 1 : largestLoss)) }
    let rows = try reader.table("history", columns: columns)
    guard !rows.isEmpty else { throw reader.error("metadata 'history' is empty; a checkpoint follows an evaluation") }
    for (index, row) in rows.enumerated() {
      let line = "metadata 'history' line \(index + 1) is for step \(String(format: "%g", row[0]))"
      guard row[0] == row[0].rounded(), index == 0 || row[0] > rows[index - 1][0] else {
        throw reader.error(line + ", not a whole step after the line before")
      }
      guard row[0] <= Double(step) else { throw reader.error(line + ", past metadata 'step' \(step)") }
    }
    return rows
  }
}

// MARK: - The model alone

extension Module where Scalar == Float {
  /// Sets every parameter from the checkpoint's "model.NAME" tensors, each checked as `restore` checks it before
  /// any is set. The optimizer state and the rest are not read: using a model needs neither them nor the data.
  func loadParameters(from reader: CheckpointReader) throws {
    let named = namedParameters()
    let values = try named.map { name, p in try reader.floats("model." + name, shape: p.shape) }
    for ((_, p), v) in zip(named, values) { p.storage = v }
  }
}

extension Trainer {
  /// The model and the tokenizer a checkpoint holds, for sampling: the model built with `config` (the options
  /// the checkpoint records) and its weights.
  public static func pretrainedModel(
    from reader: CheckpointReader, config: TrainConfig
  ) throws -> (model: GPT<Float>, tokenizer: any Tokenizer) {
    let tokenizer = try parseTokenizer(Data(try reader.text("tokenizer").utf8), source: reader.source)
    let model = GPT<Float>(
      config.model(vocabulary: tokenizer.vocabularySize), seed: config.seed, random: RandomSource(seed: 0))
    try model.loadParameters(from: reader)
    return (model, tokenizer)
  }
}

extension MaskedLMTrainer {
  /// The encoder and the tokenizer a masked-LM checkpoint holds, for `fill`.
  public static func pretrainedModel(
    from reader: CheckpointReader, config: MaskedLMConfig
  ) throws -> (model: BERT<Float>, tokenizer: any Tokenizer) {
    let tokenizer = try parseTokenizer(Data(try reader.text("tokenizer").utf8), source: reader.source)
    let model = BERT<Float>(
      config.model(vocabulary: tokenizer.vocabularySize), seed: config.seed, random: RandomSource(seed: 0))
    try model.loadParameters(from: reader)
    return (model, tokenizer)
  }
}
