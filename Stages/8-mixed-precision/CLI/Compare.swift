import ArgumentParser
import Datasets
import Foundation
import Plotting
import Support

/// `stage8` (= `stage8 compare`): stage 5's character GPT trained for the same steps, from the same weights and
/// batches, in each number format: what each one costs in accuracy, what it saves in memory, and, for the runs set
/// up to fail, the counters that show how.
struct CompareCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "compare",
    abstract: "Stage 5's character GPT trained in fp32, bf16, fp16 (with and without loss scaling), pure bf16 and fp8.",
    discussion: """
      Every run starts from the same weights and sees the same batches (nanoGPT's CPU configuration of \
      shakespeare_char, its schedule shortened to --steps). The table: the exact validation loss over the whole \
      validation split and its difference from fp32's; steps skipped for an inf or NaN gradient; the share of \
      non-zero gradient elements that storing them in the run's format turned into zero (underflow) or into \
      subnormals, and that overflowed; without master weights, the share of updates rounding erased; the bytes \
      each part of training holds, as its buffers are stored; and the time of a step.
      """)

  /// The runs, in the table's order.
  enum Run: String, CaseIterable, ExpressibleByArgument {
    case fp32, bf16, fp16
    case fp16Unscaled = "fp16-unscaled"
    case bf16Pure = "bf16-pure"
    case fp8

    var precision: PrecisionConfig {
      switch self {
      case .fp32: PrecisionConfig(.fp32)
      case .bf16: PrecisionConfig(.bf16)
      case .fp16: PrecisionConfig(.fp16, lossScale: "dynamic")
      case .fp16Unscaled: PrecisionConfig(.fp16, lossScale: "none")
      case .bf16Pure: PrecisionConfig(.bf16, masterWeights: false)
      case .fp8: PrecisionConfig(.fp8)
      }
    }

    var description: String {
      switch self {
      case .fp32: "fp32 throughout"
      case .bf16: "bf16, fp32 master weights"
      case .fp16: "fp16, fp32 master weights, dynamic loss scaling"
      case .fp16Unscaled: "fp16, fp32 master weights, no loss scaling"
      case .bf16Pure: "bf16 weights updated in bf16 (no master weights)"
      case .fp8: "fp8 products (E4M3/E5M2, delayed scaling), bf16 elsewhere, fp32 masters"
      }
    }
  }

  @Option(parsing: .unconditional, help: "Optimizer steps per run (the cosine schedule ends there).") var steps = 1000
  @Option(parsing: .unconditional, help: "Steps between validation estimates.") var evalEvery = 100
  @Option(help: "The runs, comma-separated (default: all).")
  var runs = Run.allCases.map(\.rawValue).joined(separator: ",")
  @Option(parsing: .unconditional, help: "Seed of the weights and the batches (the same for every run).")
  var seed: UInt64 = 1337
  @Option(help: "The text to train on (any UTF-8 file).") var corpus = defaultCorpus
  @Option(help: "Where compare-val.png, compare-scale.png and compare-exponents.png go.") var plotDir = defaultPlotDir

  func validate() throws {
    try Check.count(steps, "--steps", in: 1...1_000_000)
    try Check.count(evalEvery, "--eval-every", in: 1...1_000_000)
    _ = try chosenRuns()
    for (option, path) in [("--plot-dir", plotDir), ("--corpus", corpus)] where path == "" {
      throw UserError("\(option) is an empty path")
    }
  }

  func chosenRuns() throws -> [Run] {
    let names = runs.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
    var chosen: [Run] = []
    for name in names {
      guard let run = Run(rawValue: name) else {
        throw UserError(
          "--runs: '\(name)' is not one of \(Run.allCases.map(\.rawValue).joined(separator: ", "))")
      }
      guard !chosen.contains(run) else { throw UserError("--runs names \(name) twice") }
      chosen.append(run)
    }
    return chosen
  }

  /// What one run measured.
  struct Result {
    let run: Run
    var evaluations: [(step: Int, val: Double)] = []
    var exactVal = Double.nan
    var skipped = 0
    /// Per step: the loss scale and the census's shares.
    var scales: [Double] = []
    var underflow: [Double] = []
    var subnormal: [Double] = []
    var overflow: [Double] = []
    var lostUpdates: [Double] = []
    /// fp16's runs: how many gradient elements had each binary exponent (`GradientCensus.exponents`).
    var exponents: [Int] = []
    var stepSeconds = 0.0
    var memory = FormatLedger(weights: 0, masters: 0, gradients: 0, optimizer: 0, activations: 0)

    static func mean(_ values: [Double]) -> Double { values.isEmpty ? 0 : values.reduce(0, +) / Double(values.count) }
  }

  func run() throws {
    let chosen = try chosenRuns()
    try prepareOutputDirectory(plotDir)
    for name in ["compare-val", "compare-scale", "compare-exponents"] {
      try reserveLineChartFiles(name: name, directory: plotDir)
    }
    let text = try Corpus(path: corpus)
    let (data, _) = try TokenizedCorpus.prepare(
      text, kind: .char, vocabulary: 0, directory: defaultPlotDir + "/data-char", writer: "--plot-dir",
      replacingOthers: true, progress: showProgressLine)
    closeProgressLine()
    var config = TrainConfig()
    config.corpus = corpus
    config.steps = steps
    config.warmup = min(config.warmup, steps / 10)
    config.evalEvery = evalEvery
    config.seed = seed
    print(
      """
      stage 8, mixed precision: nanoGPT's CPU configuration of shakespeare_char (4 layers, 4 heads, width 128, \
      context 64, batch 12), \(steps) steps of AdamW \(config.learningRate) -> \(config.minLearningRate) \
      (warmup \(config.warmup)), the same weights and batches in every run
      """)
    var results: [Result] = []
    for run in chosen {
      var runConfig = config
      runConfig.precision = run.precision
      results.append(try train(run, config: runConfig, data: data))
    }
    printTable(results)
    try writePlots(results)
  }

  /// One run: `steps` steps with the counters read after each, an estimate every --eval-every, the exact
  /// validation loss at the end.
  func train(_ run: Run, config: TrainConfig, data: TokenizedCorpus) throws -> Result {
    let trainer = Trainer(config, tokenizer: data.tokenizer, train: data.train, val: data.val)
    var result = Result(run: run)
    // Measured on a model of its own: a forward with gradients would add to fp8's amax histories.
    result.memory = FormatLedger.measure(Trainer(config, tokenizer: data.tokenizer, train: data.train, val: data.val))
    if trainer.mixedPrecision?.format == .fp16 { trainer.mixedPrecision!.census.recordsExponents = true }
    let clock = Stopwatch()
    var stepping = 0.0
    for step in 0..<steps {
      let started = Stopwatch()
      try trainer.runStep()
      stepping += started.seconds
      if let mixed = trainer.mixedPrecision {
        result.scales.append(mixed.scaler.scale)
        result.underflow.append(mixed.lastCensus.underflowShare)
        result.subnormal.append(mixed.lastCensus.subnormalShare)
        result.overflow.append(mixed.lastCensus.overflowShare)
        if !mixed.config.masterWeights { result.lostUpdates.append(mixed.lastLostUpdates) }
        result.skipped = mixed.scaler.skippedSteps
      }
      if (step + 1) % evalEvery == 0 || step + 1 == steps {
        let estimate = trainer.estimateLoss(data.val, name: "val")
        result.evaluations.append((step + 1, estimate))
        showProgressLine("\(run.rawValue): step \(step + 1)/\(steps), validation estimate \(fixed(estimate, 4))")
      }
    }
    closeProgressLine()
    result.stepSeconds = stepping / Double(steps)
    if let census = trainer.mixedPrecision?.census, census.recordsExponents { result.exponents = census.exponents }
    result.exactVal = trainer.exactLoss(data.val).loss
    print(
      "\(run.rawValue.padding(toLength: 14, withPad: " ", startingAt: 0)) \(run.description): validation loss "
        + "\(fixed(result.exactVal, 4)) (\(fixed(clock.seconds, 1)) s)")
    return result
  }

  func printTable(_ results: [Result]) {
    let reference = results.first { $0.run == .fp32 }?.exactVal
    print(
      "\nrun             val loss  vs fp32  skipped  underflow  subnormal  overflow  lost updates   weights  "
        + "gradients  optimizer  activations  ms/step")
    for r in results {
      let delta = reference.map { r.exactVal - $0 }
      let cells = [
        fixed(r.exactVal, 4).leftPadded(8),
        (delta.map { (r.run == .fp32 ? " " : $0 >= 0 ? "+" : "") + fixed($0, 4) } ?? "-").leftPadded(8),
        String(r.skipped).leftPadded(8),
        (r.run == .fp32 ? "-" : percent(Result.mean(r.underflow))).leftPadded(10),
        (r.run == .fp32 ? "-" : percent(Result.mean(r.subnormal))).leftPadded(10),
        (r.run == .fp32 ? "-" : percent(Result.mean(r.overflow))).leftPadded(9),
        (r.lostUpdates.isEmpty ? "-" : percent(Result.mean(r.lostUpdates))).leftPadded(13),
        megabytes(r.memory.weights + r.memory.masters).leftPadded(9),
        megabytes(r.memory.gradients).leftPadded(10), megabytes(r.memory.optimizer).leftPadded(10),
        megabytes(r.memory.activations).leftPadded(12), fixed(r.stepSeconds * 1000, 1).leftPadded(8),
      ]
      print(r.run.rawValue.padding(toLength: 14, withPad: " ", startingAt: 0) + cells.joined(separator: " "))
    }
    print(
      """
      (underflow, subnormal, overflow: shares of the non-zero gradient elements stored in the run's format, the mean \
      over steps; memory: the buffers as stored, 16-bit ones at 2 bytes an element; weights include the fp32 \
      masters; gradients are fp32 buffers; activations: what one micro-batch's graph keeps for backward)
      """)
  }

  func writePlots(_ results: [Result]) throws {
    var val = Table(columns: ["step"] + results.map(\.run.rawValue))
    for (i, evaluation) in (results.first?.evaluations ?? []).enumerated() {
      val.append([Double(evaluation.step)] + results.map { $0.evaluations[i].val })
    }
    let valChart = LineChart(
      title: "Stage 8: validation loss in each format", xLabel: "step", yLabel: "validation loss (nats per character)",
      table: val, curves: results.map { Curve($0.run.rawValue) })
    var written = try writeLineChart(valChart, name: "compare-val", directory: plotDir).written
    let fp16 = results.filter { $0.run == .fp16 || $0.run == .fp16Unscaled }
    if !fp16.isEmpty {
      var columns = ["step"]
      var curves: [Curve] = []
      for r in fp16 {
        if r.run == .fp16 {
          columns.append("loss scale")
          curves.append(Curve("loss scale"))
        }
        columns.append("below normal \(r.run.rawValue)")
        curves.append(Curve("below normal \(r.run.rawValue)", rightAxis: true, percent: true))
      }
      var scale = Table(columns: columns)
      for step in 0..<steps {
        var row = [Double(step + 1)]
        for r in fp16 {
          if r.run == .fp16 { row.append(r.scales[step]) }
          row.append(r.underflow[step] + r.subnormal[step])
        }
        scale.append(row)
      }
      let chart = LineChart(
        title: "Stage 8: fp16's loss scale, and the gradients stored below fp16's normal range", xLabel: "step",
        yLabel: "loss scale", y2Label: "non-zero gradient elements stored as 0 or subnormal",
        logY: fp16.contains { $0.run == .fp16 },
        table: scale, curves: curves)
      written += try writeLineChart(chart, name: "compare-scale", directory: plotDir).written
    }
    let histograms = results.filter { !$0.exponents.isEmpty }
    if !histograms.isEmpty {
      var table = Table(columns: ["log2 |gradient|"] + histograms.map(\.run.rawValue))
      let totals = histograms.map { Double(max($0.exponents.reduce(0, +), 1)) }
      for (i, exponent) in GradientCensus.exponentRange.enumerated() {
        table.append([Double(exponent)] + zip(histograms, totals).map { Double($0.exponents[i]) / $1 })
      }
      let chart = LineChart(
        title: "Stage 8: gradient elements by binary exponent, against fp16 (subnormal from -24, normal from -14)",
        xLabel: "floor(log2 |gradient|), before rounding to fp16 (the ends collect everything beyond)",
        yLabel: "share of the run's non-zero gradient elements", table: table,
        curves: histograms.map { Curve($0.run.rawValue) })
      written += try writeLineChart(chart, name: "compare-exponents", directory: plotDir).written
    }
    print("wrote " + written.joined(separator: ", "))
  }
}

/// Bytes each part of a training run takes, as its buffers are stored: the weights' working copy (2 bytes an
/// element packed in 16 bits), the fp32 masters, the gradients (fp32 buffers: the parameters' gradients hold
/// what the micro-batches add up, as Megatron's main_grad does), AdamW's two fp32 moments, and what one
/// micro-batch's graph keeps for backward (`keptBytes`).
struct FormatLedger {
  let weights: Int
  let masters: Int
  let gradients: Int
  let optimizer: Int
  let activations: Int

  static func measure(_ trainer: Trainer) -> FormatLedger {
    let count = trainer.parameters.reduce(0) { $0 + $1.count }
    let mixed = trainer.mixedPrecision
    // One forward of a training batch, its graph walked and dropped (the sampler's stream is not touched).
    let sampler = WindowSampler(
      tokens: trainer.train, context: trainer.config.context, batchSize: trainer.config.batchSize, order: .random,
      seed: 0)
    let (inputs, targets) = sampler.nextBatch()
    return FormatLedger(
      weights: trainer.parameters.reduce(0) { $0 + $1.storageBytes },
      masters: mixed?.config.masterWeights == true ? count * 4 : 0, gradients: count * 4, optimizer: count * 8,
      activations: keptBytes(trainer.loss(inputs, targets)))
  }
}

extension String {
  func leftPadded(_ width: Int) -> String { String(repeating: " ", count: max(0, width - count)) + self }
}

func megabytes(_ bytes: Int) -> String { String(format: "%.2f MB", Double(bytes) / 1_000_000) }
func percent(_ fraction: Double) -> String { String(format: "%.2f%%", fraction * 100) }
func fixed(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }
