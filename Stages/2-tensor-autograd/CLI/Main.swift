import ArgumentParser
import Datasets
import Foundation
import GradCheck
import Kernels
import Plotting
import Support

/// The command line of stage 2: `stage2` trains (the default), `graph` draws a computation graph of tensor ops,
/// `gradcheck` runs the golden gradient checks, `bench` measures speed.
@main
struct Stage2Command: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "stage2",
    abstract: "Stage 2: tensor autograd. n-d tensors, broadcasting, BLAS matmul, and autodiff over them.",
    subcommands: [TrainCommand.self, GraphCommand.self, GradcheckCommand.self, BenchCommand.self],
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
        FileHandle.standardError.write(Data("stage2: error: \(message(for: error))\n".utf8))
      }
      Foundation.exit(code.rawValue)
    }
  }
}

extension ToyDataset: ExpressibleByArgument {}
extension GraphExample: ExpressibleByArgument {}
extension KernelChoice: ExpressibleByArgument {}

/// `--kernels`: the fast loops of Shared/Kernels (the default) or the plain references beside them, for the whole
/// run. Both give the same results within float noise; `bench --kernels reference` shows what the fast ones buy.
struct KernelOptions: ParsableArguments {
  @Option(help: "The kernels to run on: fast, or reference (the plain loops beside them).")
  var kernels = KernelChoice.fast

  func apply() { KernelChoice.current = kernels }
}

/// Layer widths written as "16,16". A type of its own, so that `--help` shows the default as one types it; the
/// values are checked in `validate()`, so that "-4" gets a message of its own.
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

/// The executable of another stage, built beside this one, if it is there.
func siblingStage(_ name: String) -> String? {
  guard let own = Bundle.main.executableURL else { return nil }
  let path = own.deletingLastPathComponent().appendingPathComponent(name).path
  return FileManager.default.isExecutableFile(atPath: path) ? path : nil
}

/// Where a run writes its plots unless told otherwise: a folder git ignores, so that trying the examples never
/// touches the reference pictures committed in Plots/2-tensor-autograd, which only `make plots` redraws.
let defaultPlotDir = "Plots/runs/2-tensor-autograd"

// MARK: - train

struct TrainCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train",
    abstract: "Without --dataset: stage 1's moons demo vectorised, then 3-class spirals. With it: one run.")

  @Option(
    help: "One data set instead of the two demos: \(ToyDataset.allCases.map(\.rawValue).joined(separator: ", ")).")
  var dataset: ToyDataset?
  // Each option left out keeps the demo's own value; `.unconditional` takes "-5" as the value it is.
  @Option(parsing: .unconditional, help: "How many points (demos: 100 moons, 300 spirals).") var points: Int?
  @Option(parsing: .unconditional, help: "Standard deviation of the noise (demos: 0.1).") var noise: Double?
  @Option(parsing: .unconditional, help: "Full-batch SGD steps (demos: 100 moons, 1000 spirals).") var steps: Int?
  @Option(parsing: .unconditional, help: "Initial learning rate, decaying linearly to a tenth (demos: 1, 0.3).")
  var lr: Double?
  @Option(parsing: .unconditional, help: "Hidden layer widths, comma-separated (demos: 16,16 and 64,64).")
  var hidden: Widths?
  @Option(parsing: .unconditional, help: "Seed of the data and the initial weights.") var seed: UInt64 = 1337
  @Option(help: "Where the curves and pictures go.") var plotDir = defaultPlotDir
  @OptionGroup var kernelOptions: KernelOptions

  func validate() throws {
    try Check.count(points, "--points", in: 3...10_000_000)
    try Check.number(noise, "--noise", in: Bounds(0, 100))
    try Check.count(steps, "--steps", in: 1...10_000_000)
    try Check.number(lr, "--lr", in: .positive)
    if let hidden { try Check.widths(hidden.values, "--hidden", in: 1...1_000_000) }
    for config in [configure(TrainConfig()), configure(TrainConfig.spirals)] {
      let what = "this model on \(config.points) points"
      try Check.memory(bytes: config.estimatedBytes, what: what, options: "--hidden or --points")
    }
  }

  /// A preset with the user's options applied.
  func configure(_ preset: TrainConfig) -> TrainConfig {
    var config = preset
    config.points = points ?? config.points
    config.noise = noise ?? config.noise
    config.steps = steps ?? config.steps
    config.learningRate = lr ?? config.learningRate
    config.hidden = hidden?.values ?? config.hidden
    config.seed = seed
    return config
  }

  func run() throws {
    kernelOptions.apply()
    try prepareOutputDirectory(plotDir)  // fail before training, not after
    var runs: [TrainConfig] = []
    if let dataset {
      var preset = dataset == .spirals ? TrainConfig.spirals : TrainConfig()
      preset.dataset = dataset
      runs = [configure(preset)]
    } else {
      runs = [configure(TrainConfig()), configure(TrainConfig.spirals)]
    }
    for (k, config) in runs.enumerated() {
      if k > 0 { print("") }
      let seconds = try trainAndPlot(config)
      if config.classes == 2 { compareWithStage1(config, seconds: seconds) }
    }
  }

  /// One training run with its progress, result line and plots; returns the training time in seconds.
  func trainAndPlot(_ config: TrainConfig) throws -> Double {
    let name = config.dataset.rawValue
    let sizes = ([2] + config.hidden + [config.outputs]).map(String.init).joined(separator: "-")
    let lossName = config.classes == 2 ? "hinge loss" : "softmax cross-entropy"
    print(
      """
      stage 2, tensor autograd: MLP \(sizes) (\(makeModel(config).parameterCount) parameters) on \(name) \
      (\(config.points) points, \(config.classes) classes, noise \(config.noise), seed \(config.seed))
      \(lossName) + \(config.alpha) * L2, full-batch SGD in Float, lr \(config.learningRate) decaying linearly to \
      \(config.learningRate * config.finalLearningRateFraction) over \(config.steps) steps
      """)
    let progress = Progress(total: config.steps)
    let clock = Stopwatch()
    let result = try train(config) { record in
      progress.update(
        step: record.step,
        "loss \(String(format: "%.4f", record.loss))  accuracy \(String(format: "%5.1f", record.accuracy * 100))%")
    }
    let seconds = clock.seconds
    let (finalLoss, finalScores) = noGrad { lossAndScores(result.model, Batch(result.data), config: config) }
    // The last update can be the one that breaks the weights; no plot of them is worth drawing.
    let what = "the loss after the last step"
    try Check.finiteLoss(Double(finalLoss.item), step: config.steps, learningRate: config.learningRate, what: what)
    let finalAccuracy = accuracy(finalScores, result.data.labels)
    print(
      "after \(config.steps) steps: loss \(String(format: "%.4f", finalLoss.item)), training accuracy "
        + "\(String(format: "%.1f", finalAccuracy * 100))% "
        + "(\(Int((finalAccuracy * Double(config.points)).rounded()))/\(config.points)) "
        + "in \(String(format: "%.3f", seconds)) s")

    var table = Table(columns: ["step", "loss", "accuracy", "lr"])
    for r in result.history { table.append([Double(r.step), r.loss, r.accuracy, r.learningRate]) }
    let chart = LineChart(
      title: "Stage 2: MLP \(sizes) on \(name), \(lossName) + L2", xLabel: "step", yLabel: "loss",
      y2Label: "training accuracy", logY: config.classes > 2, table: table,
      curves: [Curve("loss"), Curve("accuracy", title: "training accuracy", rightAxis: true, percent: true)])
    if let picture = terminalPlot(chart) { print(picture) }
    var report = try writeLineChart(chart, name: "\(name)-loss", directory: plotDir)
    let grid = scoreGrid(result.model, result.data)
    let boundary = DecisionBoundary(
      title: "Stage 2: decision regions on \(name) (\(String(format: "%.0f", finalAccuracy * 100))% train)",
      xs: grid.xs, ys: grid.ys, values: grid.values,
      points: zip(result.data.points, result.data.labels).map { ($0[0], $0[1], $1) },
      coloring: config.classes == 2 ? .score(limit: 2) : .classes(config.classes), xLabel: "input x1",
      yLabel: "input x2")
    report.merge(try writeDecisionBoundary(boundary, name: "\(name)-boundary", directory: plotDir))
    print("wrote " + report.written.joined(separator: ", "))
    for note in report.notes { print("note: " + note) }
    return seconds
  }

  /// Runs stage 1's executable on the same configuration and compares: the same model on the same data, one
  /// Value per number there, one tensor per layer here.
  func compareWithStage1(_ config: TrainConfig, seconds: Double) {
    guard let stage1 = siblingStage("stage1") else {
      print("(build stage 1 too, `swift build -c release`, to compare with it in this run)")
      return
    }
    let scratch = NSTemporaryDirectory() + "stage1-compare-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: scratch) }
    guard let run = try? runTool(stage1, config.stage1Arguments(plotDir: scratch)), run.status == 0,
      let line = run.output.split(separator: "\n").first(where: { $0.hasPrefix("after ") }),
      let timeText = line.split(separator: " ").dropLast().last, let stage1Seconds = Double(timeText)
    else {
      print("note: could not run \(stage1) for the comparison")
      return
    }
    print("stage 1 on the same data and seed (scalar Values, Double): " + line)
    // A run of a few milliseconds has no speed to compare: its times are mostly start-up and rounding.
    guard stage1Seconds >= 0.05, seconds > 0 else {
      print("(both runs took under 0.05 s: too short to compare their speeds)")
      return
    }
    print("stage 2 trained the same network \(String(format: "%.0f", stage1Seconds / seconds))x faster")
  }
}

extension TrainConfig {
  /// Stage 1's `train` command line for this configuration: the same network, data, seed and steps.
  func stage1Arguments(plotDir: String) -> [String] {
    [
      "train", "--dataset", dataset.rawValue, "--points", "\(points)", "--noise", "\(noise)", "--steps", "\(steps)",
      "--lr", "\(learningRate)", "--hidden", hidden.map(String.init).joined(separator: ","), "--seed", "\(seed)",
      "--plot-dir", plotDir,
    ]
  }
}

// MARK: - graph

struct GraphCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "graph", abstract: "Draw the computation graph of tensor operations, with shapes and gradients.")

  @Option(help: "The graph: layer (tanh(x @ W + b) on 3 points) or mlp (a 2-4-1 MLP with the hinge loss).")
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
    let problems = coverageProblems(of: adapter, stage: 2)
    let results = checkStage(2, adapter: adapter)
    print(formatTable(results))
    let failed = results.filter { !$0.passed }
    for result in failed { for mismatch in result.mismatches.prefix(3) { print("  " + mismatch.description) } }
    for problem in problems { print("  " + problem) }
    print("\(results.count - failed.count) passed, \(failed.count) failed")
    if !failed.isEmpty || !problems.isEmpty { throw ExitCode.failure }
  }
}
