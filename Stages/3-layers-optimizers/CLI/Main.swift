import ArgumentParser
import Datasets
import Foundation
import GradCheck
import Kernels
import Plotting
import Support

/// The command line of stage 3: `stage3` trains (the default), `compare` races the optimizers, `graph` draws a
/// computation graph, `gradcheck` runs the golden gradient checks, `bench` measures speed.
@main
struct Stage3Command: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "stage3",
    abstract: "Stage 3: layers, losses, optimizers, schedules, checkpoints, and a real training loop.",
    subcommands: [TrainCommand.self, CompareCommand.self, GraphCommand.self, GradcheckCommand.self, BenchCommand.self],
    defaultSubcommand: TrainCommand.self)

  /// Runs the command; a mistake in the input ends with one line on stderr and a non-zero exit, never a trace.
  static func main() {
    restartIfBLASFellBackToGenericKernels()
    keepFreedMemoryForReuse()
    do {
      var command = try parseAsRoot()
      try command.run()
      try finishStandardOutput()  // a full disk or a closed pipe is an error, not exit 0
    } catch {
      let code = exitCode(for: error)
      if code == .success {  // --help, --version
        print(fullMessage(for: error))
      } else {
        closeProgressLine()
        FileHandle.standardError.write(Data("stage3: error: \(message(for: error))\n".utf8))
      }
      Foundation.exit(code.rawValue)
    }
  }
}

extension OptimizerKind: ExpressibleByArgument {}
extension ScheduleKind: ExpressibleByArgument {}
extension GraphExample: ExpressibleByArgument {}
extension KernelChoice: ExpressibleByArgument {}

/// `--kernels`: the fast loops of Shared/Kernels (the default) or the plain references beside them, for the whole
/// run. Both give the same results within float noise; `bench --kernels reference` shows what the fast ones buy.
struct KernelOptions: ParsableArguments {
  @Option(help: "The kernels to run on: fast, or reference (the plain loops beside them).")
  var kernels = KernelChoice.fast

  func apply() { KernelChoice.current = kernels }
}

/// Layer widths written as "128" or "256,128". A type of its own, so that `--help` shows the default as one
/// types it; the values are checked in `validate()`, so that "-4" gets a message of its own.
struct Widths: ExpressibleByArgument, Sendable {
  var values: [Int]

  init(_ values: [Int]) { self.values = values }

  init?(argument: String) {
    let parts = argument.split(separator: ",", omittingEmptySubsequences: false)
    let values = parts.map { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard values.allSatisfy({ $0 != nil }) else { return nil }
    self.values = values.map { $0! }
  }

  var defaultValueDescription: String { values.map(String.init).joined(separator: ",") }
}

/// Reads the digits, or says in one line why it cannot.
func loadDigits(_ path: String?) throws -> DigitsSplits {
  try DigitsSplits(try Digits(path: path ?? Digits.defaultPath))
}

/// The training history as a chart: train and validation loss, validation accuracy on the right axis.
func historyChart(_ history: [EpochRecord], title: String) -> LineChart {
  var table = Table(columns: ["epoch", "train_loss", "validation_loss", "validation_accuracy", "lr"])
  for r in history {
    table.append([Double(r.epoch), r.trainLoss, r.validationLoss, r.validationAccuracy, r.learningRate])
  }
  return LineChart(
    title: title, xLabel: "epoch", yLabel: "loss", y2Label: "validation accuracy", logY: true, table: table,
    curves: [
      Curve("train_loss", title: "train loss"), Curve("validation_loss", title: "validation loss"),
      Curve("validation_accuracy", title: "validation accuracy", rightAxis: true, percent: true),
    ])
}

/// One epoch's line of the log.
func describe(_ r: EpochRecord, of epochs: Int) -> String {
  String(
    format: "epoch %*d/%d  train loss %.4f  validation loss %.4f  accuracy %5.1f%%  lr %.2e",
    String(epochs).count, r.epoch, epochs, r.trainLoss, r.validationLoss, r.validationAccuracy * 100, r.learningRate)
}

/// Where a run writes its plots unless told otherwise: a folder git ignores, so that trying the examples never
/// touches the reference pictures committed in Plots/3-layers-optimizers, which only `make plots` redraws.
let defaultPlotDir = "Plots/runs/3-layers-optimizers"

// MARK: - train

struct TrainCommand: ResumableCommand {
  /// The line chart's files in --plot-dir: digits.csv, digits.gp, digits.png.
  static let plotName = "digits"
  static let configuration = CommandConfiguration(
    commandName: "train", abstract: "Train an MLP on the handwritten digits and report its test accuracy.",
    discussion: """
      --resume continues a run with the options its checkpoint records. A larger --epochs extends it, and the \
      learning-rate schedule is re-derived for the new total: train 20 epochs, resume to 50, and epoch 21 goes on \
      along the 50-epoch cosine (the rate climbs back from the 20-epoch curve's floor), so the result is not that \
      of a 50-epoch run. To stop and continue a long run exactly, start it with its full --epochs.
      """)

  @Option(help: "The optimizer: \(OptimizerKind.allCases.map(\.rawValue).joined(separator: ", ")).")
  var optimizer = OptimizerKind.adamw
  // `.unconditional` takes "-5" as the value it is, so that the checks below can say what is wrong with it.
  @Option(parsing: .unconditional, help: "Peak learning rate (default: sgd 0.2, momentum 0.05, adam and adamw 0.003).")
  var lr: Double?
  @Option(help: "Learning-rate schedule: \(ScheduleKind.allCases.map(\.rawValue).joined(separator: ", ")).")
  var schedule = ScheduleKind.cosine
  @Option(parsing: .unconditional, help: "Passes over the training set.") var epochs = 50
  @Option(parsing: .unconditional, help: "Examples per batch.") var batchSize = 32
  @Option(parsing: .unconditional, help: "Batches whose gradients add up before each optimizer step.")
  var accumulation = 1
  @Option(parsing: .unconditional, help: "Hidden layer widths, comma-separated.") var hidden = Widths([512])
  @Option(parsing: .unconditional, help: "Dropout probability after each hidden layer.") var dropout = 0.2
  @Option(parsing: .unconditional, help: "Weight decay of the weight matrices (default: 0.01 for adamw, else 0).")
  var weightDecay: Double?
  @Option(parsing: .unconditional, help: "Clip the gradients' global norm to this (0: off).") var clip = 1.0
  @Option(parsing: .unconditional, help: "Seed of the initial weights, the batch order and dropout.")
  var seed: UInt64 = 1337
  @Option(help: "Save a checkpoint (safetensors) here after every epoch.") var checkpoint: String?
  @Option(help: "Continue from this checkpoint, with the options it records (only --epochs may change).")
  var resume: String?
  @Option(help: "The digits CSV (default: the copy in Shared/Datasets/Data).") var data: String?
  @Option(help: "Where the curves go.") var plotDir = defaultPlotDir
  @OptionGroup var kernelOptions: KernelOptions

  func validate() throws {
    try Check.number(lr, "--lr", in: .positive)
    try Check.count(epochs, "--epochs", in: 1...100_000)
    try Check.count(batchSize, "--batch-size", in: 1...1_000_000)
    try Check.count(accumulation, "--accumulation", in: 1...10_000)
    try Check.widths(hidden.values, "--hidden", in: 1...1_000_000)
    try Check.number(dropout, "--dropout", in: Bounds(0, 1, includesHigh: false))
    try Check.number(weightDecay, "--weight-decay", in: Bounds(0, 100))
    try Check.number(clip, "--clip", in: Bounds(0, 1e6))
  }

  var config: TrainConfig {
    var config = TrainConfig()
    config.optimizer = optimizer
    config.learningRate = lr
    config.weightDecay = weightDecay
    config.schedule = schedule
    config.epochs = epochs
    config.batchSize = batchSize
    config.accumulation = accumulation
    config.hidden = hidden.values
    config.dropout = dropout
    config.clip = clip
    config.seed = seed
    return config
  }

  var recordedOptions: [(flag: String, value: String)] { config.options }

  func run() throws {
    guard let resume else { return try train(resuming: nil) }
    let saved = try CheckpointReader(path: resume, format: Trainer.checkpointFormat)
    try Self.resuming(try saved.options(), source: resume, free: ["--epochs"]).train(resuming: saved)
  }

  func train(resuming saved: CheckpointReader?) throws {
    kernelOptions.apply()
    try prepareOutputDirectory(plotDir)  // fail before training, not after
    let splits = try loadDigits(data)  // small; the memory the run needs depends on it
    let bytes = config.estimatedBytes(data: splits)
    try Check.memory(bytes: bytes, what: "this run", options: "--hidden or --batch-size")
    try reserveLineChartFiles(name: Self.plotName, directory: plotDir)
    if let checkpoint {
      try prepareOutputFile(
        checkpoint, option: "--checkpoint", replaceable: looksLikeSafetensors, kind: "safetensors checkpoint")
    }
    let trainer = Trainer(config, data: splits)
    var planned = epochs
    if let saved {
      planned = try saved.options().first { $0.flag == "--epochs" }.flatMap { Int($0.value) } ?? epochs
      try trainer.restore(from: saved)
      guard trainer.epoch < epochs else {
        throw UserError(
          "'\(resume ?? "")' is at epoch \(trainer.epoch) already: --epochs \(epochs) leaves nothing to train (ask for more)"
        )
      }
    }
    let sizes = (["64"] + hidden.values.map(String.init) + ["10"]).joined(separator: "-")
    print(
      """
      stage 3, layers and optimizers: MLP \(sizes) (\(trainer.model.parameterCount) parameters, dropout \(dropout)) \
      on the digits (\(trainer.data.train.count) train, \(trainer.data.validation.count) validation, \
      \(trainer.data.test.count) test)
      \(optimizer.rawValue), lr \(config.lr), weight decay \(config.decay), \(schedule.rawValue) schedule, batch \
      \(batchSize) x \(accumulation), clip \(clip), \(epochs) epochs of \(trainer.stepsPerEpoch) steps, seed \(seed)
      """)
    if let resume { print("resumed from \(resume) after epoch \(trainer.epoch)") }
    if planned != epochs && (schedule == .cosine || schedule == .linear) {
      print(
        "note: the \(schedule.rawValue) schedule is re-derived for \(epochs) epochs (the checkpoint's run planned "
          + "\(planned)): this is not the run --epochs \(epochs) makes from the start")
    }
    let clock = Stopwatch()
    while trainer.epoch < epochs {
      print(describe(try trainer.runEpoch(), of: epochs))
      if let checkpoint { try trainer.save(to: checkpoint) }
    }
    let (testLoss, testAccuracy) = trainer.evaluate(trainer.data.test)
    print(
      String(
        format: "test: loss %.4f, accuracy %.2f%% (%d/%d) after %.1f s of training", testLoss, testAccuracy * 100,
        Int((testAccuracy * Double(trainer.data.test.count)).rounded()), trainer.data.test.count, clock.seconds))
    if let checkpoint { print("checkpoint: \(checkpoint)") }
    let chart = historyChart(trainer.history, title: "Stage 3: MLP \(sizes) on the digits, \(optimizer.rawValue)")
    let report = try writeLineChart(chart, name: Self.plotName, directory: plotDir)
    print("wrote " + report.written.joined(separator: ", "))
    for note in report.notes { print("note: " + note) }
  }
}

// MARK: - compare

struct CompareCommand: ParsableCommand {
  /// The line chart's files in --plot-dir: compare.csv, compare.gp, compare.png.
  static let plotName = "compare"
  static let configuration = CommandConfiguration(
    commandName: "compare", abstract: "Train the same MLP with every optimizer; one plot, one table.")

  @Option(parsing: .unconditional, help: "Epochs for each optimizer.") var epochs = 50
  @Option(parsing: .unconditional, help: "Seed of the initial weights, the batch order and dropout.")
  var seed: UInt64 = 1337
  @Option(help: "The digits CSV (default: the copy in Shared/Datasets/Data).") var data: String?
  @Option(help: "Where the plot goes.") var plotDir = defaultPlotDir
  @OptionGroup var kernelOptions: KernelOptions

  func validate() throws {
    try Check.count(epochs, "--epochs", in: 1...100_000)
  }

  func run() throws {
    kernelOptions.apply()
    try prepareOutputDirectory(plotDir)
    let splits = try loadDigits(data)
    try reserveLineChartFiles(name: Self.plotName, directory: plotDir)
    var table = Table(columns: ["epoch"] + OptimizerKind.allCases.map(\.rawValue))
    var curves: [[Double]] = []
    print("every optimizer at its default learning rate, \(epochs) epochs, the same seed, cosine schedule")
    print("optimizer  lr      decay  train loss  val loss  val acc  test acc  seconds")
    for kind in OptimizerKind.allCases {
      var config = TrainConfig()
      config.optimizer = kind
      config.epochs = epochs
      config.seed = seed
      let trainer = Trainer(config, data: splits)
      let clock = Stopwatch()
      for _ in 0..<epochs { try trainer.runEpoch() }
      let seconds = clock.seconds
      let last = trainer.history.last!
      let test = trainer.evaluate(splits.test).accuracy
      print(
        String(
          format: "%@  %-6g  %-5g  %10.4f  %8.4f  %6.1f%%  %7.1f%%  %7.2f",
          kind.rawValue.padding(toLength: 9, withPad: " ", startingAt: 0), config.lr, config.decay, last.trainLoss,
          last.validationLoss, last.validationAccuracy * 100, test * 100, seconds))
      curves.append(trainer.history.map(\.validationLoss))
    }
    for e in 0..<epochs { table.append([Double(e + 1)] + curves.map { $0[e] }) }
    let chart = LineChart(
      title: "Stage 3: validation loss of the digits MLP by optimizer", xLabel: "epoch", yLabel: "validation loss",
      logY: true, table: table, curves: OptimizerKind.allCases.map { Curve($0.rawValue) })
    let report = try writeLineChart(chart, name: Self.plotName, directory: plotDir)
    print("wrote " + report.written.joined(separator: ", "))
    for note in report.notes { print("note: " + note) }
  }
}

// MARK: - graph

struct GraphCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "graph", abstract: "Draw the computation graph of tensor operations, with shapes and gradients.")

  @Option(help: "The graph: mlp (a small classifier with its loss) or layernorm (one fused LayerNorm).")
  var example = GraphExample.mlp
  @Option(help: "Where graph-EXAMPLE.dot (and .svg, .png when Graphviz is installed) go.")
  var plotDir = defaultPlotDir

  func run() throws {
    try prepareOutputDirectory(plotDir)
    let output = example.build()
    let order = output.topologicalOrder()
    print("\(example.rawValue): \(order.count) tensors; after backward(), in topological order:")
    for node in order {
      let name = node.label.isEmpty ? (node.isLeaf ? "const" : "") : node.label
      let op = node.isLeaf ? "leaf" : node.op
      print(
        "  \(name.padding(toLength: 6, withPad: " ", startingAt: 0)) \(op.padding(toLength: 8, withPad: " ", startingAt: 0)) "
          + "\(String(describing: node.shape).padding(toLength: 7, withPad: " ", startingAt: 0)) "
          + "data \(preview(node.storage))  grad \(node.gradStorage.map(preview) ?? "-")")
    }
    let base = plotDir + "/graph-" + example.rawValue
    try writeAtomically(dotGraph(of: output), to: base + ".dot")
    var written = [base + ".dot"]
    if let dot = findExecutable("dot") {
      for format in ["svg", "png"] {
        let run = try runTool(dot, ["-T" + format, base + ".dot", "-o", base + "." + format])
        if run.status == 0 { written.append(base + "." + format) } else { print("note: dot -T\(format) failed") }
      }
    } else {
      print("note: Graphviz is not installed; render with `dot -Tsvg \(base).dot -o \(base).svg`")
    }
    print("wrote " + written.joined(separator: ", "))
  }
}

// MARK: - gradcheck

struct GradcheckCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "gradcheck", abstract: "Check every gradient of the golden catalogue against finite differences.")

  func run() throws {
    let adapter = goldenAdapter
    let problems = coverageProblems(of: adapter, stage: 3)
    let results = checkStage(3, adapter: adapter)
    print(formatTable(results))
    let failed = results.filter { !$0.passed }
    for result in failed { for mismatch in result.mismatches.prefix(3) { print("  " + mismatch.description) } }
    for problem in problems { print("  " + problem) }
    print("\(results.count - failed.count) passed, \(failed.count) failed")
    if !failed.isEmpty || !problems.isEmpty { throw ExitCode.failure }
  }
}
