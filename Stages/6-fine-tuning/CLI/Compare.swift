import ArgumentParser
import Foundation
import Plotting
import Support

/// `stage6` (= `stage6 compare`): every method on the same pretrained model, data, budget and seeds, in one table.
struct CompareCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "compare",
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
  @Option(help: "Where compare.csv and compare.png go.") var plotDir = defaultPlotDir

  func validate() throws {
    _ = try chosenMethods()
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
    try prepareOutputDirectory(plotDir)
    try reserveLineChartFiles(name: "compare", directory: plotDir)
    let clock = Stopwatch()
    let (makeModel, tokenizer, corpus) = try baseOptions.loader()
    let base = try makeModel()
    let (c, context) = (base.config.width, base.config.context)
    let lm = try LanguageModelTask(corpus: corpus, tokenizer: tokenizer, seed: 1)
    let window = context - 10  // room for 10 virtual tokens of prompt tuning: every method reads the same
    let speakers = try (0..<seeds).map {
      try SpeakerTask(corpus: corpus, tokenizer: tokenizer, window: window, seed: UInt64($0 + 1))
    }
    print(
      """
      base: \(baseOptions.base), \(base.parameterCount) parameters (\(base.config.layers) layers, width \(c), \
      context \(context))
      (b) the new plays as a language model: \(lm.train.count) characters to train on, \(lm.validation.count) to \
      choose the learning rate, \(lm.heldOut.count) held out; \(lmSteps) steps of \(batchSize) windows
      (a) speakers \(SpeakerTask.speakers.joined(separator: ", ")): \(speakers[0].train.count) / \
      \(speakers[0].validation.count) / \(speakers[0].test.count) speeches (train / validation / test), first \
      \(window) characters; \(clsSteps) steps of \(batchSize), \(seeds) seeds
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
        let result = try lm.run(
          model: model, tuning: tuning, settings: settings(lr, steps: lmSteps, seed: 1), tokenizer: tokenizer,
          measure: false
        ) { showProgressLine("(b) lr \(String(format: "%.0e", lr)): " + $0) }
        row.sweep.append((lr, result.validationAfter))
        if best == nil || result.validationAfter < best!.result.validationAfter { best = (result, model, lr) }
      }
      var (result, model, lr) = best!
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
        let result = try speakers[0].run(
          model: model, tuning: tuning, settings: settings(lr, steps: clsSteps, seed: 1), tokenizer: tokenizer
        ) { showProgressLine("(a) seed 1, lr \(String(format: "%.0e", lr)): " + $0) }
        row.clsSweep.append((lr, result.validationAccuracy))
        if first == nil || result.validationAccuracy > first!.result.validationAccuracy { first = (result, model, lr) }
      }
      row.clsLearningRate = first!.lr
      row.accuracies.append(first!.result.testAccuracy)
      row.clsForgetting =
        languageModelLoss(first!.model, tokens: lm.pretrainingSample, window: result.window) - before.sample
      for (k, task) in speakers.enumerated().dropFirst() {
        let result = try task.run(
          model: try makeModel(), tuning: tuning, settings: settings(first!.lr, steps: clsSteps, seed: UInt64(k + 1)),
          tokenizer: tokenizer
        ) { showProgressLine("(a) seed \(k + 1): " + $0) }
        row.accuracies.append(result.testAccuracy)
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

  /// The table as text: one row per method, then the baselines.
  func table(_ rows: [Row]) -> String {
    func cell(_ text: String, _ width: Int) -> String {
      String(repeating: " ", count: max(0, width - text.count)) + text
    }
    func number(_ value: Double, _ format: String) -> String { value.isNaN ? "-" : String(format: format, value) }
    var lines = [
      "method                   trained      %   memory  adapter  ms/step  lr (b)  sweep (b): val loss at lr/3 lr 3lr"
        + "   (b) bits/char  forget (b)  lr (a)  sweep (a): val   (a) accuracy  forget (a)"
    ]
    for row in rows {
      let sweep = row.sweep.map { String(format: $0.lr == row.learningRate ? "%.3f*" : "%.3f", $0.validation) }
      lines.append(
        row.method.padding(toLength: 20, withPad: " ", startingAt: 0)
          + cell(row.trainable == 0 ? "-" : String(row.trainable), 11)
          + cell(row.total == 0 ? "-" : String(format: "%.2f", 100 * Double(row.trainable) / Double(row.total)), 7)
          + cell(row.memory == 0 ? "-" : formatBytes(row.memory), 9)
          + cell(row.adapterBytes == 0 ? "-" : formatBytes(row.adapterBytes), 9)
          + cell(row.stepSeconds == 0 ? "-" : String(format: "%.1f", row.stepSeconds * 1e3), 9)
          + cell(row.learningRate == 0 ? "-" : String(format: "%.0e", row.learningRate), 8)
          + "  " + sweep.joined(separator: " ").padding(toLength: 35, withPad: " ", startingAt: 0)
          + cell(number(row.bitsPerCharacter, "%.4f"), 15) + cell(number(row.lmForgetting, "%+.4f"), 12)
          + cell(row.clsLearningRate == 0 ? "-" : String(format: "%.0e", row.clsLearningRate), 8) + "  "
          + row.clsSweep.map {
            String(format: $0.lr == row.clsLearningRate ? "%.0f%%*" : "%.0f%%", 100 * $0.validation)
          }
          .joined(separator: " ").padding(toLength: 16, withPad: " ", startingAt: 0)
          + cell(
            row.accuracies.isEmpty
              ? "-" : String(format: "%.1f%% ± %.1f", 100 * row.meanAccuracy, 100 * row.accuracySpread), 14)
          + cell(number(row.clsForgetting, "%+.4f"), 12))
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
          row.method, String(row.trainable), String(row.total), String(row.memory), String(row.adapterBytes),
          String(row.stepSeconds), String(row.learningRate), String(row.bitsPerCharacter), String(row.lmForgetting),
        ]
        + seedCells + [String(row.clsForgetting)]).joined(separator: ",") + "\n"
    }
    try writeAtomically(Data(csv.utf8), to: plotDir + "/compare-table.csv")
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
      title: "Stage 6: fine-tuning on two new plays, every method (training loss, mean of the last 10 steps)",
      xLabel: "step", yLabel: "loss (nats per character)", table: table,
      curves: curves.map { Curve($0.method, title: $0.method) })
    let written = try writeLineChart(chart, name: "compare", directory: plotDir)
    print("wrote \(plotDir)/compare-table.csv, " + written.written.joined(separator: ", "))
    for note in written.notes { print("note: " + note) }
  }

  func settings(_ lr: Double, steps: Int, seed: UInt64) -> FineTuneSettings {
    var settings = FineTuneSettings()
    (settings.learningRate, settings.steps, settings.batchSize, settings.seed) = (lr, steps, batchSize, seed)
    settings.warmup = steps / 10
    return settings
  }
}
