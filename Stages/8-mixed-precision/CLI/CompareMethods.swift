import ArgumentParser
import Foundation
import Plotting
import Support

/// `stage8 methods` (stage 6 and 7's `compare`): every method on the same pretrained model, data, budget and seeds, in one table.
struct MethodsCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "methods",
    abstract: "Every fine-tuning method on both tasks of the new plays, with the same budget: one table.",
    discussion: """
      (b) language modelling: each method trains --lm-steps steps at three learning rates (a third of its default, \
      the default, three times it), the one with the lowest loss on a validation tenth of the training half is \
      kept, and its held-out bits per character, forgetting, memory and step time go in the table. (a) speakers: \
      --cls-steps steps with a new classifier head; the first seeded split at 1e-3, 3e-3 and 1e-2, the rate with \
      the best validation accuracy kept for the other --seeds splits; the test accuracy's mean and spread.
      """)

  @OptionGroup var baseOptions: BaseOptions
  @Option(help: "The methods, comma-separated (default: all).") var methods = FineTuningMethod.allCases.map(\.rawValue)
    .joined(separator: ",")
  @Option(parsing: .unconditional, help: "(b): optimizer steps per run.") var lmSteps = 150
  @Option(parsing: .unconditional, help: "(a): optimizer steps per run.") var clsSteps = 80
  @Option(parsing: .unconditional, help: "Windows (b) or speeches (a) per batch.") var batchSize = 8
  @Option(parsing: .unconditional, help: "(a): seeds of the split and the head.") var seeds = 3
  @Option(parsing: .unconditional, help: "(a): one learning rate for every method instead of the sweep.")
  var clsLr: Double?

  /// (a)'s sweep, the same for every method: the classifier head is new, whatever the method.
  static let classificationRates = [1e-3, 3e-3, 1e-2]
  @Option(help: "Where methods.csv and methods.png go.") var plotDir = defaultPlotDir

  func validate() throws {
    let chosen = try chosenMethods()
    if let twice = chosen.first(where: { method in chosen.filter { $0 == method }.count > 1 }) {
      throw UserError("--methods names \(twice.rawValue) twice")
    }
    try Check.count(lmSteps, "--lm-steps", in: 1...1_000_000)
    try Check.count(clsSteps, "--cls-steps", in: 1...1_000_000)
    try Check.count(batchSize, "--batch-size", in: 1...100_000)
    try Check.count(seeds, "--seeds", in: 1...1000)
    if let clsLr { try Check.number(clsLr, "--cls-lr", in: .positive) }
  }

  func chosenMethods() throws -> [FineTuningMethod] {
    try methods.split(separator: ",", omittingEmptySubsequences: false).map {
      try parseMethod(String($0), option: "--methods")
    }
  }

  /// One row of the table.
  struct Row {
    let method: String
    var trainable = 0
    var total = 0
    var memory = 0
    var adapterBytes = 0
    var stepSeconds = 0.0
    var learningRate = 0.0
    var sweep: [(lr: Double, validation: Double)] = []
    var bitsPerCharacter = Double.nan
    var lmForgetting = Double.nan
    var clsLearningRate = 0.0
    var clsSweep: [(lr: Double, validation: Double)] = []
    var accuracies: [Double] = []
    var clsForgetting = Double.nan
    var curve: [(step: Int, loss: Double)] = []

    var meanAccuracy: Double { accuracies.isEmpty ? .nan : accuracies.reduce(0, +) / Double(accuracies.count) }
    var accuracySpread: Double {
      guard accuracies.count > 1 else { return 0 }
      let mean = meanAccuracy
      return (accuracies.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(accuracies.count - 1)).squareRoot()
    }
  }

  func run() throws {
    let chosen = try chosenMethods()
    do {
      try prepareOutputDirectory(plotDir)
    } catch let error as UserError {
      throw UserError("--plot-dir: \(error)")
    }
    try reserveLineChartFiles(name: "methods", directory: plotDir)
    let clock = Stopwatch()
    let (makeModel, tokenizer, corpus) = try baseOptions.loader()
    let base = try makeModel()
    let (c, context) = (base.config.width, base.config.context)
    guard context > 10 else {
      throw UserError(
        "the base '\(baseOptions.base)' has a context of \(context); methods needs more than 10 (prompt tuning's 10 "
          + "virtual tokens and at least one character)")
    }
    let lm = try LanguageModelTask(corpus: corpus, tokenizer: tokenizer, seed: 1)
    let window = context - 10  // room for 10 virtual tokens of prompt tuning: every method reads the same
    let speakers = try (0..<seeds).map {
      try SpeakerTask(corpus: corpus, tokenizer: tokenizer, window: window, seed: UInt64($0 + 1))
    }
    print(
      """
      base: \(baseOptions.base), \(base.parameterCount) parameters (\(base.config.layers) layers, width \(c), \
      context \(context))
      (b) the new plays as a language model: \(lm.plays.train.count) characters to train on, \
      \(lm.plays.validation.count) to choose the learning rate, \(lm.plays.heldOut.count) held out; \(lmSteps) steps \
      of \(batchSize) windows
      (a) speakers \(SpeakerTask.speakers.joined(separator: ", ")): \(speakers[0].train.count) / \
      \(speakers[0].validation.count) / \(speakers[0].test.count) speeches (train / validation / test), at most \
      \(SpeakerTask.windowsPerSpeech) windows of \(window) tokens each; \(clsSteps) steps of \(batchSize), \(seeds) \
      seeds
      """)
    var rows: [Row] = []
    // The base's losses, measured once for each window length the methods use.
    var baselines: [Int: LanguageModelTask.Baseline] = [:]
    func baseline(_ window: Int) -> LanguageModelTask.Baseline {
      if let known = baselines[window] { return known }
      let measured = lm.baseline(base, window: window)
      baselines[window] = measured
      return measured
    }
    for method in chosen {
      var tuning = FineTuningConfig(method: method)
      tuning.seed = 1
      var row = Row(method: method.rawValue)
      // (b): the sweep, then the run whose validation loss is lowest, measured on the held-out half.
      var best: (result: LanguageModelResult, model: GPT<Float>, lr: Double)?
      for factor in [1.0 / 3, 1, 3] {
        let lr = method.defaultLearningRate * factor
        let model = try makeModel()
        let run = try Self.unlessDiverged {
          try lm.run(
            model: model, tuning: tuning, settings: settings(lr, steps: lmSteps, seed: 1), tokenizer: tokenizer,
            measure: false
          ) { showProgressLine("(b) lr \(String(format: "%.0e", lr)): " + $0) }
        }
        row.sweep.append((lr, run?.validationAfter ?? .nan))
        if let run, best == nil || run.validationAfter < best!.result.validationAfter { best = (run, model, lr) }
      }
      guard let best else {
        throw UserError("(b) \(method.rawValue): training diverged at every learning rate of the sweep")
      }
      var result = best.result
      let (model, lr) = (best.model, best.lr)
      let before = baseline(result.window)
      lm.measure(&result, model: model, baseline: before)
      (row.trainable, row.total, row.memory) = (result.trainable, result.total, result.ledger.total)
      (row.stepSeconds, row.learningRate, row.curve) = (result.stepSeconds, lr, result.curve)
      row.bitsPerCharacter = result.bitsPerCharacter(result.heldOutAfter)
      row.lmForgetting = result.sampleAfter - result.sampleBefore
      row.adapterBytes = try AdapterFile.bytes(model).count
      // (a): the first seed at each rate of the sweep, the rest at the one with the best validation accuracy.
      var first: (result: SpeakerResult, model: GPT<Float>, lr: Double)?
      for lr in clsLr.map({ [$0] }) ?? Self.classificationRates {
        let model = try makeModel()
        let run = try Self.unlessDiverged(clsLr == nil) {
          try speakers[0].run(
            model: model, tuning: tuning, settings: settings(lr, steps: clsSteps, seed: 1), tokenizer: tokenizer
          ) { showProgressLine("(a) seed 1, lr \(String(format: "%.0e", lr)): " + $0) }
        }
        row.clsSweep.append((lr, run?.validationAccuracy ?? .nan))
        if let run, first == nil || run.validationAccuracy > first!.result.validationAccuracy {
          first = (run, model, lr)
        }
      }
      guard let first else {
        throw UserError("(a) \(method.rawValue): training diverged at every learning rate of the sweep")
      }
      row.clsLearningRate = first.lr
      row.accuracies.append(first.result.testAccuracy)
      row.clsForgetting =
        languageModelLoss(first.model, tokens: lm.pretrainingSample, window: result.window) - before.sample
      for (k, task) in speakers.enumerated().dropFirst() {
        let run = try Self.unlessDiverged(clsLr == nil) {
          try task.run(
            model: try makeModel(), tuning: tuning, settings: settings(first.lr, steps: clsSteps, seed: UInt64(k + 1)),
            tokenizer: tokenizer
          ) { showProgressLine("(a) seed \(k + 1): " + $0) }
        }
        if let run { row.accuracies.append(run.testAccuracy) }  // a seed that diverged is left out of the mean
      }
      closeProgressLine()
      rows.append(row)
      print(line(row))
    }
    // (a)'s baselines: the majority speaker, and the same network trained from scratch (every weight, lr 1e-3).
    var scratch = Row(method: "from scratch")
    for (k, task) in speakers.enumerated() {
      let fresh = GPT<Float>(base.config, seed: 99, random: RandomSource(seed: 99))
      let result = try task.run(
        model: fresh, tuning: FineTuningConfig(method: .full),
        settings: settings(1e-3, steps: clsSteps, seed: UInt64(k + 1))
      ) { showProgressLine("(a) from scratch, seed \(k + 1): " + $0) }
      scratch.accuracies.append(result.testAccuracy)
    }
    closeProgressLine()
    var pretrained = Row(method: "pretrained, not tuned")
    pretrained.bitsPerCharacter = baseline(context).heldOut / Double.log(2) / lm.charactersPerToken
    var majority = Row(method: "majority speaker")
    majority.accuracies = speakers.map(\.majorityAccuracy)
    print()
    print(table(rows + [pretrained, scratch, majority]))
    if let window = baselines.keys.filter({ $0 < context }).min() {
      print(
        "(b): prompt tuning reads windows of \(window) tokens beside its virtual ones; the pretrained model on such "
          + String(
            format: "windows: %.4f bits per character", baseline(window).heldOut / Double.log(2) / lm.charactersPerToken
          ))
    }
    let ranked = rows.filter { !$0.accuracies.isEmpty }.sorted { $0.meanAccuracy > $1.meanAccuracy }
    if let top = ranked.first {
      let tied = ranked.dropFirst().filter {
        top.meanAccuracy - $0.meanAccuracy <= top.accuracySpread + $0.accuracySpread
      }
      print(
        "(a): the test split holds \(speakers[0].test.count) speeches, so one speech is "
          + String(format: "%.1f", 100 / Double(speakers[0].test.count)) + " points; the best mean is \(top.method)'s, "
          + (tied.isEmpty
            ? "and no other method is within the two spreads of it"
            : "and within the two spreads (one standard deviation each) of it, the seeds cannot tell it from: "
              + tied.map(\.method).joined(separator: ", ")))
    }
    let peak = peakResidentBytes()
    let largest = rows.map(\.memory).max() ?? 0
    print(
      "memory: the largest ledger (parameters, gradients, AdamW moments, activations) "
        + String(
          format: "%.1f MB; the process's peak resident memory %.1f MB ", Double(largest) / 1e6, Double(peak) / 1e6)
        + "(the ledger plus the program, its libraries, the corpus and the batches in flight)")
    try write(rows + [pretrained, scratch, majority])
    print(String(format: "%.0f s in all", clock.seconds))
  }

  /// The progress line of one finished method.
  func line(_ row: Row) -> String {
    String(
      format: "%@: lr %.0e, (b) %.4f bits per character, (a) %.1f%% ± %.1f", row.method, row.learningRate,
      row.bitsPerCharacter, 100 * row.meanAccuracy, 100 * row.accuracySpread)
  }

  /// The table as text: one row per method, then the baselines. A sweep lists the validation figure at each rate
  /// it tried, the chosen one starred.
  func table(_ rows: [Row]) -> String {
    func right(_ text: String, _ width: Int) -> String {
      String(repeating: " ", count: max(0, width - text.count)) + text
    }
    func left(_ text: String, _ width: Int) -> String { text.padding(toLength: width, withPad: " ", startingAt: 0) }
    func number(_ value: Double, _ format: String) -> String { value.isNaN ? "-" : String(format: format, value) }
    func rate(_ value: Double) -> String { value == 0 ? "-" : String(format: "%.0e", value) }
    func line(_ cells: [String]) -> String {
      left(cells[0], 22) + right(cells[1], 9) + right(cells[2], 7) + right(cells[3], 9) + right(cells[4], 10)
        + right(cells[5], 8) + right(cells[6], 8) + "  " + left(cells[7], 20) + right(cells[8], 9)
        + right(cells[9], 11) + right(cells[10], 8) + "  " + left(cells[11], 14) + right(cells[12], 13)
        + right(cells[13], 11)
    }
    var lines = [
      line([
        "method", "trained", "%", "memory", "adapter", "ms/step", "lr (b)", "sweep (b): val loss", "bits/char",
        "forget (b)", "lr (a)", "sweep (a): val", "accuracy (a)", "forget (a)",
      ])
    ]
    for row in rows {
      let sweep = row.sweep.map {
        $0.validation.isNaN ? "-" : String(format: $0.lr == row.learningRate ? "%.3f*" : "%.3f", $0.validation)
      }
      let clsSweep = row.clsSweep.map {
        $0.validation.isNaN
          ? "-" : String(format: $0.lr == row.clsLearningRate ? "%.0f%%*" : "%.0f%%", 100 * $0.validation)
      }
      lines.append(
        line([
          row.method, row.trainable == 0 ? "-" : String(row.trainable),
          row.total == 0 ? "-" : String(format: "%.2f", 100 * Double(row.trainable) / Double(row.total)),
          row.memory == 0 ? "-" : formatBytes(row.memory), row.adapterBytes == 0 ? "-" : formatBytes(row.adapterBytes),
          row.stepSeconds == 0 ? "-" : String(format: "%.1f", row.stepSeconds * 1e3), rate(row.learningRate),
          sweep.joined(separator: " "), number(row.bitsPerCharacter, "%.4f"), number(row.lmForgetting, "%+.4f"),
          rate(row.clsLearningRate), clsSweep.joined(separator: " "),
          row.accuracies.isEmpty
            ? "-" : String(format: "%.1f%% ± %.1f", 100 * row.meanAccuracy, 100 * row.accuracySpread),
          number(row.clsForgetting, "%+.4f"),
        ]))
    }
    return lines.joined(separator: "\n")
  }

  /// compare.csv (the table, every seed's accuracy in its own column) and compare.png (the (b) training curves).
  func write(_ rows: [Row]) throws {
    var csv = "method,trainable,total,memory_bytes,adapter_bytes,step_seconds,lr,bits_per_character,lm_forgetting,"
    csv += (1...seeds).map { "accuracy_seed\($0)" }.joined(separator: ",") + ",cls_forgetting\n"
    for row in rows {
      let seedCells = (0..<seeds).map { $0 < row.accuracies.count ? String(row.accuracies[$0]) : "" }
      csv +=
        ([
          "\"\(row.method)\"", String(row.trainable), String(row.total), String(row.memory), String(row.adapterBytes),
          String(row.stepSeconds), String(row.learningRate), String(row.bitsPerCharacter), String(row.lmForgetting),
        ]
        + seedCells + [String(row.clsForgetting)]).joined(separator: ",") + "\n"
    }
    try writeAtomically(Data(csv.utf8), to: plotDir + "/methods-table.csv")
    let curves = rows.filter { !$0.curve.isEmpty }
    var table = Table(columns: ["step"] + curves.map(\.method))
    for step in 0..<lmSteps {
      // Each curve smoothed over the last 10 steps: single batches of 8 windows are noisy.
      table.append(
        [Double(step + 1)]
          + curves.map { row in
            let window = row.curve[max(0, step - 9)...step]
            return window.reduce(0) { $0 + $1.loss } / Double(window.count)
          })
    }
    let chart = LineChart(
      title: "Stage 8: fine-tuning on two new plays, every method (training loss, mean of the last 10 steps)",
      xLabel: "step", yLabel: "loss (nats per token)", table: table,
      curves: curves.map { Curve($0.method, title: $0.method) })
    let written = try writeLineChart(chart, name: "methods", directory: plotDir)
    print("wrote \(plotDir)/methods-table.csv, " + written.written.joined(separator: ", "))
    for note in written.notes { print("note: " + note) }
  }

  func settings(_ lr: Double, steps: Int, seed: UInt64) -> FineTuneSettings {
    var settings = FineTuneSettings()
    (settings.learningRate, settings.steps, settings.batchSize, settings.seed) = (lr, steps, batchSize, seed)
    settings.warmup = steps / 10
    settings.learningRateOption = "--cls-lr"  // the only rate of compare's that the command line sets
    return settings
  }

  /// The run, or nil when its loss stopped being a number (`Check.finiteLoss`): a sweep tries rates that may be too
  /// large, and one that diverges is a result ("-" in the table), not the end of the comparison. With `tolerated`
  /// false (a rate the user gave) the divergence is the error it is.
  static func unlessDiverged<Result>(_ tolerated: Bool = true, _ body: () throws -> Result) throws -> Result? {
    do {
      return try body()
    } catch let error as UserError where tolerated && error.description.hasPrefix("training diverged") {
      return nil
    }
  }
}
