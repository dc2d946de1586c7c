import ArgumentParser
import Foundation
import Plotting
import Support

/// `stage8 mlm`: pretrain a BERT with masked-LM and next-sentence prediction, then report on held-out pairs how
/// often it recovers a masked token (against always guessing the most frequent one) and tells a true next segment
/// from a random one (against a coin).
struct MaskedLMCommand: ResumableCommand {
  /// The line chart's files in --plot-dir: mlm.csv, mlm.gp, mlm.png.
  static let plotName = "mlm"
  /// A character tokenizer for BERT has its four special tokens after the characters.
  static let charSpecials = ["[PAD]", "[CLS]", "[SEP]", "[MASK]"]
  /// The defaults are `MaskedLMConfig`'s.
  static let defaults = MaskedLMConfig()
  static let configuration = CommandConfiguration(
    commandName: "mlm",
    abstract: "Pretrain a BERT encoder with masked-LM and next-sentence prediction (default: Tiny Shakespeare).",
    discussion: """
      Lines are sentences and speeches (text between blank lines) are documents. Each input is [CLS] A [SEP] B \
      [SEP]: B follows A in half of them and comes from another speech in the other half. 15% of the tokens are \
      chosen (at most --max-predictions a row); of those 80% become [MASK], 10% a random token, 10% stay. The \
      held-out pairs come from the validation split (the last 10% of the corpus).
      """)

  @Option(help: "The text to pretrain on (any UTF-8 file).") var corpus = defaultCorpus
  @Option(help: "Tokenizer: char (one id per character) or bpe (byte-level BPE trained on the train split).")
  var tokenizer = defaults.tokenizer
  @Option(parsing: .unconditional, help: "Ids of the BPE tokenizer, special tokens included.") var vocab = defaults
    .vocabulary
  @Option(help: "Where the token files go (default: Plots/runs/8-mixed-precision/data-TOKENIZER-bert).") var dataDir:
    String?
  @Option(parsing: .unconditional, help: "Tokens per input, [CLS] and [SEP]s included.") var context = defaults.context
  @Option(parsing: .unconditional, help: "Transformer blocks.") var layers = defaults.layers
  @Option(parsing: .unconditional, help: "Attention heads per block.") var heads = defaults.heads
  @Option(parsing: .unconditional, help: "Model width (a multiple of --heads).") var width = defaults.width
  @Option(parsing: .unconditional, help: "Dropout on embeddings, attention weights and residual branches.")
  var dropout = defaults.dropout
  @Option(parsing: .unconditional, help: "Pairs per micro-batch.") var batchSize = defaults.batchSize
  @Option(parsing: .unconditional, help: "Micro-batches per optimizer step (gradient accumulation).")
  var accumulation = defaults.accumulation
  @Option(parsing: .unconditional, help: "Optimizer steps (AdamW, warmup then cosine).") var steps = defaults.steps
  @Option(parsing: .unconditional, help: "Peak learning rate.") var lr = defaults.learningRate
  @Option(parsing: .unconditional, help: "Learning rate at the end of the cosine.") var minLr = defaults.minLearningRate
  @Option(parsing: .unconditional, help: "Warmup steps.") var warmup = defaults.warmup
  @Option(parsing: .unconditional, help: "Steps between evaluations.") var evalEvery = defaults.evalEvery
  @Option(parsing: .unconditional, help: "Batches of training pairs in each evaluation's training loss.")
  var evalBatches = defaults.evalBatches
  @Option(parsing: .unconditional, help: "Seed of the initial weights, the pairs, the masks and dropout.")
  var seed = defaults.seed
  @Option(parsing: .unconditional, help: "Share of the tokens chosen for prediction.") var maskRate = defaults.maskRate
  @Option(parsing: .unconditional, help: "At most this many predictions per input.") var maxPredictions = defaults
    .maxPredictions
  @Option(help: "Next-sentence prediction: on (BERT) or off (one segment per input, as RoBERTa).") var nsp =
    Switch.on
  @Option(help: "LayerNorm placement: post (BERT) or pre (GPT-2).") var norm = defaults.norm
  @Flag(inversion: .prefixedNo, help: "Mask afresh each time an input is used (RoBERTa), not once per copy (BERT).")
  var dynamicMasking = false
  @Flag(inversion: .prefixedNo, help: "Mask whole words: all pieces of a word together.") var wholeWord = false
  @Option(parsing: .unconditional, help: "Copies of the training data, each cut and masked anew (BERT's dupe_factor).")
  var duplication = defaults.duplication
  @Option(help: "Save a checkpoint (safetensors) here at each evaluation that beats the best held-out loss.")
  var checkpoint: String?
  @Option(help: "Continue from this checkpoint, with the options it records (only --steps may change).")
  var resume: String?
  @Option(help: "Where the curves go.") var plotDir = defaultPlotDir
  @OptionGroup var kernelOptions: KernelOptions

  func validate() throws {
    try Check.count(vocab, "--vocab", in: 1...65_536)
    for (option, path) in [("--data-dir", dataDir), ("--plot-dir", plotDir), ("--corpus", corpus)] where path == "" {
      throw UserError("\(option) is an empty path")
    }
    try Check.count(context, "--context", in: (nsp == .on ? 5 : 4)...65_536)
    try checkModelOptions(layers: layers, heads: heads, width: width)
    try Check.number(dropout, "--dropout", in: Bounds(0, 1, includesHigh: false))
    try Check.count(batchSize, "--batch-size", in: 1...100_000)
    try Check.count(accumulation, "--accumulation", in: 1...100_000)
    try Check.count(steps, "--steps", in: 1...10_000_000)
    try checkSchedule(lr: lr, minLr: minLr)
    try Check.count(warmup, "--warmup", in: 0...10_000_000)
    try Check.count(evalEvery, "--eval-every", in: 1...10_000_000)
    try Check.count(evalBatches, "--eval-batches", in: 1...100_000)
    try Check.number(maskRate, "--mask-rate", in: .positive(upTo: 1))
    try Check.count(maxPredictions, "--max-predictions", in: 1...65_536)
    try Check.count(duplication, "--duplication", in: 1...1_000)
    let bytes = config.estimatedBytes(vocabulary: tokenizer == .bpe ? vocab : 256)
    try Check.memory(bytes: bytes, what: "this run", options: "--width, --layers, --context or --batch-size")
  }

  var config: MaskedLMConfig {
    var config = MaskedLMConfig()
    config.corpus = URL(fileURLWithPath: corpus).standardizedFileURL.path
    config.tokenizer = tokenizer
    config.vocabulary = vocab
    config.context = context
    config.layers = layers
    config.heads = heads
    config.width = width
    config.dropout = dropout
    config.batchSize = batchSize
    config.accumulation = accumulation
    config.steps = steps
    config.learningRate = lr
    config.minLearningRate = minLr
    config.warmup = warmup
    config.evalEvery = evalEvery
    config.evalBatches = evalBatches
    config.seed = seed
    config.maskRate = maskRate
    config.maxPredictions = maxPredictions
    config.nsp = nsp == .on
    config.norm = norm
    config.dynamicMasking = dynamicMasking
    config.wholeWord = wholeWord
    config.duplication = duplication
    return config
  }

  var recordedOptions: [(flag: String, value: String)] { config.options }

  /// The token files' folder: --data-dir, or one per tokenizer beside the run's plots (a character tokenizer with
  /// BERT's special tokens is not the causal LM's, so it has a folder of its own).
  var dataDirectory: String {
    dataDir ?? defaultPlotDir + "/data-" + (tokenizer == .char ? "char-bert" : "bpe-\(vocab)")
  }

  func run() throws {
    guard let resume else { return try train(resuming: nil) }
    let saved = try CheckpointReader(path: resume, format: MaskedLMTrainer.checkpointFormat)
    try Self.resuming(try saved.options(), source: resume, free: ["--steps"]).train(resuming: saved)
  }

  func train(resuming saved: CheckpointReader?) throws {
    kernelOptions.apply()
    try prepareOutputDirectory(plotDir)
    try reserveLineChartFiles(name: Self.plotName, directory: plotDir)
    if let checkpoint {
      try prepareOutputFile(
        checkpoint, option: "--checkpoint", replaceable: { MaskedLMTrainer.isCheckpoint(at: $0) },
        kind: "stage 8 masked-LM checkpoint")
    }
    let clock = Stopwatch()
    let text = try Corpus(path: corpus)
    let (data, reused) = try TokenizedCorpus.prepare(
      text, kind: tokenizer, vocabulary: vocab, charSpecials: Self.charSpecials, directory: dataDirectory,
      writer: "--data-dir", replacingOthers: dataDir == nil, progress: showProgressLine)
    closeProgressLine()
    let trainer = try MaskedLMTrainer(config, tokenizer: data.tokenizer, train: data.train, val: data.val)
    trainer.corpusHash = text.hash
    let resumed = try restore(trainer, from: saved, steps: steps)
    printHeader(trainer, data: data, reused: reused)
    for line in resumed { print(line) }
    let firstStep = trainer.step
    let (savedAt, last) = try trainLoop(trainer)
    try report(trainer, last: last, seconds: clock.seconds, trainedSteps: trainer.step - firstStep, savedAt: savedAt)
  }

  func printHeader(_ trainer: MaskedLMTrainer, data: TokenizedCorpus, reused: Bool) {
    let tokenizerName = tokenizer == .char ? "characters" : "byte-level BPE"
    let masks = dynamicMasking ? "dynamic masks" : "static masks, \(duplication) copies"
    let inputs = nsp == .on ? "pairs, half with a random B" : "single segments, no NSP"
    print(
      """
      stage 8, masked-LM pretraining: a BERT on '\(URL(fileURLWithPath: corpus).lastPathComponent)', \
      \(tokenizerName) (\(data.tokenizer.vocabularySize) ids)
      data: \(trainer.trainPairs.count) training inputs (\(inputs); \(masks)) and \(trainer.valPairs.count) held-out \
      (\(reused ? "token files reused from" : "tokenized into") \(data.directory))
      model: \(layers) layers, \(heads) heads, width \(width), context \(context), \(norm.rawValue)-LN, erf GELU, \
      dropout \(dropout) (\(trainer.model.parameterCount) parameters)
      objective: MLM on \(String(format: "%g", maskRate * 100))% of tokens (80/10/10, at most \(maxPredictions) an \
      input\(wholeWord ? ", whole words" : ""))\(nsp == .on ? " + NSP" : "")
      training: AdamW lr \(lr) -> \(minLr) (warmup \(warmup), cosine), batch \(batchSize) x \(accumulation) \
      inputs, \(steps) steps, clip 1.0
      """)
  }

  /// Evaluates at the start, every --eval-every steps and at the end; saves on a new best. Returns the step of
  /// the last save, if any, and the last evaluation's scores.
  func trainLoop(_ trainer: MaskedLMTrainer) throws -> (savedAt: Int?, last: MaskedLMScore) {
    var savedAt: Int? = nil
    let clock = Stopwatch()
    let firstStep = trainer.step
    let progress = isatty(STDOUT_FILENO) == 1 ? Progress(total: steps) : nil
    var last = MaskedLMScore()
    func evaluate() throws {
      let (r, score) = try trainer.evaluate()
      last = score
      let done = Double(trainer.step - firstStep)
      let eta = done > 0 ? clock.seconds / done * Double(steps - trainer.step) : Double.nan
      closeProgressLine()
      let nspText = nsp == .on ? String(format: "  NSP %.1f%%", 100 * r.nspAccuracy) : ""
      print(
        String(
          format: "step %*d/%d  train %.4f  val %.4f  MLM %.4f  masked %.1f%%%@  ETA %@", String(steps).count,
          r.step, steps, r.trainLoss, r.valLoss, r.mlmLoss, 100 * r.mlmAccuracy, nspText, clockTime(eta)))
      fflush(nil)
      if trainer.lastEvaluationIsBest && trainer.step > 0, let checkpoint {
        try trainer.save(to: checkpoint)
        savedAt = trainer.step
      }
    }
    if trainer.history.last?.step != trainer.step { try evaluate() }
    while trainer.step < steps {
      let loss = try trainer.runStep()
      progress?.update(step: trainer.step, String(format: "loss %.4f", loss))
      if trainer.step % evalEvery == 0 || trainer.step == steps { try evaluate() }
    }
    return (savedAt, last)
  }

  /// The held-out scores against their baselines, speed, memory and the curves.
  func report(
    _ trainer: MaskedLMTrainer, last: MaskedLMScore, seconds: Double, trainedSteps: Int, savedAt: Int?
  )
    throws
  {
    let guess = visible(trainer.tokenizer, trainer.mostFrequent)
    print(
      String(
        format: "held out: masked-token accuracy %.1f%% over %d masked positions (always guessing %@: %.1f%%), "
          + "MLM loss %.4f nats", 100 * last.mlmAccuracy, last.predictions, guess, 100 * last.baselineAccuracy,
        last.mlmLoss))
    if nsp == .on {
      print(
        String(format: "held out: NSP accuracy %.1f%% over %d pairs (chance: 50%%)", 100 * last.nspAccuracy, last.pairs)
      )
    }
    print(
      String(
        format: "%.1f s in all, %.1f inputs/s of training, peak resident memory %.0f MB", seconds,
        Double(trainedSteps * batchSize * accumulation) / seconds, Double(peakResidentBytes()) / 1e6))
    if let checkpoint {
      print(
        savedAt.map { "checkpoint (the best held-out loss, at step \($0)): \(checkpoint)" }
          ?? "no checkpoint written: no evaluation in this run beat the held-out loss before it")
    }
    var table = Table(columns: ["step", "train_loss", "val_loss", "mlm_loss", "mlm_accuracy", "nsp_accuracy"])
    for r in trainer.history { table.append(r.row) }
    var curves = [
      Curve("train_loss", title: "train loss"), Curve("val_loss", title: "held-out loss"),
      Curve("mlm_loss", title: "held-out MLM loss"),
      Curve("mlm_accuracy", title: "masked-token accuracy", rightAxis: true, percent: true),
    ]
    if nsp == .on { curves.append(Curve("nsp_accuracy", title: "NSP accuracy", rightAxis: true, percent: true)) }
    let chart = LineChart(
      title:
        "Stage 8: masked-LM pretraining on \(URL(fileURLWithPath: corpus).lastPathComponent) (\(tokenizer.rawValue))",
      xLabel: "step", yLabel: "loss (nats)", y2Label: "accuracy", table: table, curves: curves)
    let written = try writeLineChart(chart, name: Self.plotName, directory: plotDir)
    print("wrote " + written.written.joined(separator: ", "))
    for note in written.notes { print("note: " + note) }
  }
}

/// on or off, for options that name a part of a run.
enum Switch: String, CaseIterable, ExpressibleByArgument {
  case on, off
}

/// A token as a reader can see it: in quotes, with a newline, tab or space written out.
func visible(_ token: String) -> String {
  let names: [Character: String] = ["\n": "\\n", "\t": "\\t"]
  return "'" + token.map { names[$0] ?? String($0) }.joined() + "'"
}
