import ArgumentParser
import Datasets
import Foundation
import GradCheck
import Plotting
import Support

/// The command line of stage 1: `stage1` trains (the default), `graph` draws a computation graph,
/// `gradcheck` runs the golden gradient checks, `bench` measures speed.
@main
struct Stage1Command: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "stage1",
    abstract: "Stage 1: scalar autograd. A graph of Values, backward(), and an MLP trained with it.",
    subcommands: [TrainCommand.self, GraphCommand.self, GradcheckCommand.self, BenchCommand.self],
    defaultSubcommand: TrainCommand.self)

  /// Runs the command; a mistake in the input ends with one line on stderr and a non-zero exit, never a trace.
  static func main() {
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
        FileHandle.standardError.write(Data("stage1: error: \(message(for: error))\n".utf8))
      }
      Foundation.exit(code.rawValue)
    }
  }
}

extension ToyDataset: ExpressibleByArgument {}
extension GraphExample: ExpressibleByArgument {}

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

/// Where a run writes its plots unless told otherwise: a folder git ignores, so that trying the examples never
/// touches the reference pictures committed in Plots/1-scalar-autograd, which only `make plots` redraws.
let defaultPlotDir = "Plots/runs/1-scalar-autograd"

// MARK: - train

struct TrainCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train", abstract: "Train an MLP on a 2-D toy set and plot its loss and decision boundary.")

  @Option(help: "The data set: \(ToyDataset.allCases.map(\.rawValue).joined(separator: ", ")).")
  var dataset = ToyDataset.moons
  // `.unconditional` takes "-5" as the value it is, so that the check below can say what is wrong with it.
  @Option(parsing: .unconditional, help: "How many points.") var points = 100
  @Option(parsing: .unconditional, help: "Standard deviation of the noise added to the points.") var noise = 0.1
  @Option(parsing: .unconditional, help: "Full-batch SGD steps.") var steps = 100
  @Option(parsing: .unconditional, help: "Initial learning rate; it decays linearly to a tenth of itself.")
  var lr = 1.0
  @Option(parsing: .unconditional, help: "Hidden layer widths, comma-separated.") var hidden = Widths([16, 16])
  @Option(parsing: .unconditional, help: "Seed of the data and the initial weights.") var seed: UInt64 = 1337
  @Option(help: "Where the curves and pictures go.") var plotDir = defaultPlotDir

  func validate() throws {
    try Check.count(points, "--points", in: 2...10_000_000)
    try Check.number(noise, "--noise", in: Bounds(0, 100))
    try Check.count(steps, "--steps", in: 1...10_000_000)
    try Check.number(lr, "--lr", in: .positive)
    try Check.widths(hidden.values, "--hidden", in: 1...100_000)
    let bytes = estimatedBytes(points: points, hidden: hidden.values)
    try Check.memory(bytes: bytes, what: "this model on \(points) points", options: "--hidden or --points")
  }

  func run() throws {
    try prepareOutputDirectory(plotDir)  // fail before training, not after
    var config = TrainConfig()
    config.dataset = dataset
    config.points = points
    config.noise = noise
    config.hidden = hidden.values
    config.steps = steps
    config.learningRate = lr
    config.seed = seed

    let sizes = ([2] + config.hidden + [1]).map(String.init).joined(separator: "-")
    print(
      """
      stage 1, scalar autograd: MLP \(sizes) (\(makeModel(config).parameterCount) parameters) on \(dataset.rawValue) \
      (\(points) points, noise \(noise), seed \(seed))
      hinge loss + \(config.alpha) * L2, full-batch SGD, lr \(lr) decaying linearly to \(lr * 0.1) over \(steps) steps
      """)
    let progress = Progress(total: steps)
    let clock = Stopwatch()
    let result = try train(config) { record in
      progress.update(
        step: record.step,
        "loss \(String(format: "%.4f", record.loss))  accuracy \(String(format: "%5.1f", record.accuracy * 100))%")
    }
    let seconds = clock.seconds
    let (finalLoss, finalScores) = lossAndScores(result.model, result.data, alpha: config.alpha)
    // The last update can be the one that breaks the weights; no plot of them is worth drawing.
    try Check.finiteLoss(finalLoss.data, step: steps, learningRate: lr, what: "the loss after the last step")
    let finalAccuracy = accuracy(finalScores, result.data.labels)
    print(
      "after \(steps) steps: loss \(String(format: "%.4f", finalLoss.data)), training accuracy "
        + "\(String(format: "%.1f", finalAccuracy * 100))% (\(Int((finalAccuracy * Double(points)).rounded()))/\(points)) "
        + "in \(String(format: "%.2f", seconds)) s")

    var table = Table(columns: ["step", "loss", "accuracy", "lr"])
    for r in result.history { table.append([Double(r.step), r.loss, r.accuracy, r.learningRate]) }
    let chart = LineChart(
      title: "Stage 1: MLP \(sizes) on \(dataset.rawValue), hinge loss + L2", xLabel: "step", yLabel: "loss",
      y2Label: "training accuracy", table: table,
      curves: [Curve("loss"), Curve("accuracy", title: "training accuracy", rightAxis: true, percent: true)])
    if let picture = terminalPlot(chart) { print(picture) }
    var report = try writeLineChart(chart, name: "loss", directory: plotDir)
    let grid = scoreGrid(result.model, result.data)
    let boundary = DecisionBoundary(
      title:
        "Stage 1: decision boundary on \(dataset.rawValue) (\(String(format: "%.0f", finalAccuracy * 100))% train)",
      xs: grid.xs, ys: grid.ys, values: grid.values,
      points: zip(result.data.points, result.data.labels).map { ($0[0], $0[1], $1) }, coloring: .score(limit: 2),
      xLabel: "input x1", yLabel: "input x2")
    report.merge(try writeDecisionBoundary(boundary, name: "boundary", directory: plotDir))
    print("wrote " + report.written.joined(separator: ", "))
    for note in report.notes { print("note: " + note) }
  }
}

// MARK: - graph

struct GraphCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "graph", abstract: "Draw the computation graph of a small expression, with data and gradients.")

  @Option(help: "The expression: neuron (tanh(x1 w1 + x2 w2 + b)) or micrograd (its first test, at x = -4).")
  var example = GraphExample.neuron
  @Option(help: "Where graph-EXAMPLE.dot (and .svg, .png when Graphviz is installed) go.")
  var plotDir = defaultPlotDir

  func run() throws {
    try prepareOutputDirectory(plotDir)
    let output = example.build()
    let order = output.topologicalOrder()
    print("\(example.rawValue): \(order.count) nodes; after backward(), in topological order:")
    for node in order {
      let name = node.label.isEmpty ? (node.isLeaf ? "const" : "") : node.label
      let op = node.isLeaf ? "leaf" : node.op
      print(
        "  \(name.padding(toLength: 6, withPad: " ", startingAt: 0)) \(op.padding(toLength: 6, withPad: " ", startingAt: 0)) "
          + "data \(String(format: "%9.4f", node.data))  grad \(String(format: "%9.4f", node.grad))")
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
    let problems = coverageProblems(of: goldenAdapter, stage: 1)
    let results = checkStage(1, adapter: goldenAdapter)
    print(formatTable(results))
    let failed = results.filter { !$0.passed }
    for result in failed { for mismatch in result.mismatches.prefix(3) { print("  " + mismatch.description) } }
    for problem in problems { print("  " + problem) }
    print("\(results.count - failed.count) passed, \(failed.count) failed")
    if !failed.isEmpty || !problems.isEmpty { throw ExitCode.failure }
  }
}
