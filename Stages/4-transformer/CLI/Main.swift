import ArgumentParser
import Datasets
import Foundation
import GradCheck
import Kernels
import Plotting
import Support

/// The command line of stage 4: `stage4` trains (the default), `sample` generates from a checkpoint, `graph` draws a
/// computation graph, `gradcheck` runs the golden gradient checks, `bench` measures speed.
@main
struct Stage4Command: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "stage4",
    abstract: "Stage 4: the Transformer. Attention, GPT blocks, and generation with a KV cache.",
    subcommands: [TrainCommand.self, SampleCommand.self, GraphCommand.self, GradcheckCommand.self, BenchCommand.self],
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
        FileHandle.standardError.write(Data("stage4: error: \(message(for: error))\n".utf8))
      }
      Foundation.exit(code.rawValue)
    }
  }
}

extension PositionEncoding: ExpressibleByArgument {}
extension GraphExample: ExpressibleByArgument {}
extension KernelChoice: ExpressibleByArgument {}

/// `--kernels`: the fast loops of Shared/Kernels (the default) or the plain references beside them, for the whole
/// run. Both give the same results within float noise; `bench --kernels reference` shows what the fast ones buy.
struct KernelOptions: ParsableArguments {
  @Option(help: "The kernels to run on: fast, or reference (the plain loops beside them).")
  var kernels = KernelChoice.fast

  func apply() { KernelChoice.current = kernels }
}

/// A digit string such as "31415926" as tokens, or a clear error. Only the ten ASCII digits are tokens of this
/// model: `Character.wholeNumberValue` would also read "⑪" as 11 (past the digits), "５" and "٣" as digits.
func parseDigits(_ text: String, length: Int) throws -> [Int] {
  var digits: [Int] = []
  for (position, character) in text.enumerated() {
    guard let code = character.asciiValue, (48...57).contains(code) else {
      let place = "character \(position + 1), \(describeCharacter(character))"
      throw UserError("--prompt: \(place), is not one of the model's tokens (the digits 0-9)")
    }
    digits.append(Int(code) - 48)
  }
  guard digits.count == length else {
    throw UserError("--prompt must be exactly \(length) digits, got \(digits.count) ('\(text)')")
  }
  return digits
}

/// Where a run writes its plots unless told otherwise: a folder git ignores, so that trying the examples never
/// touches the reference pictures committed in Plots/4-transformer, which only `make plots` redraws.
let defaultPlotDir = "Plots/runs/4-transformer"

/// A character as a message can show it on one line: itself in quotes with its code point, "'⑪' (U+246A)";
/// a control character or a space only by its code point.
func describeCharacter(_ character: Character) -> String {
  let codes = character.unicodeScalars.map { scalar in
    let hex = String(scalar.value, radix: 16, uppercase: true)
    return "U+" + String(repeating: "0", count: max(4 - hex.count, 0)) + hex
  }
  let code = codes.joined(separator: " ")
  let visible = character.unicodeScalars.allSatisfy {
    !$0.properties.isWhitespace && $0.value >= 0x20 && $0.value != 0x7F
  }
  return visible ? "'\(character)' (\(code))" : code
}

/// The model options `train` and `sample` share, each checked on its own so that each message names its option,
/// then together: the width splits evenly among the heads.
func checkModelOptions(layers: Int, heads: Int, width: Int) throws {
  try Check.count(layers, "--layers", in: 1...1000)
  try Check.count(heads, "--heads", in: 1...1024)
  try Check.count(width, "--width", in: 1...65_536)
  guard width % heads == 0 else {
    throw UserError("--width must be a multiple of --heads (\(heads)), got \(width)")
  }
}

// MARK: - train

struct TrainCommand: ResumableCommand {
  /// The line chart's files in --plot-dir: reverse.csv, reverse.gp, reverse.png.
  static let plotName = "reverse"
  static let configuration = CommandConfiguration(
    commandName: "train", abstract: "Train a tiny GPT to reverse 8-digit sequences; report held-out exact match.",
    discussion: """
      --resume continues a run with the options its checkpoint records. A larger --steps extends it, and the \
      cosine schedule is re-derived for the new total: train 200 steps, resume to 500, and step 201 goes on along \
      the 500-step curve (the rate climbs back from the 200-step curve's floor), so the result is not that of a \
      500-step run. To stop and continue a long run exactly, start it with its full --steps.
      """)

  // `.unconditional` takes "-5" as the value it is, so that the checks below can say what is wrong with it.
  @Option(parsing: .unconditional, help: "Optimizer steps (AdamW, cosine schedule with warmup).") var steps = 500
  @Option(parsing: .unconditional, help: "Sequences per step.") var batchSize = 64
  @Option(parsing: .unconditional, help: "Peak learning rate.") var lr = 3e-3
  @Option(parsing: .unconditional, help: "Transformer blocks.") var layers = 2
  @Option(parsing: .unconditional, help: "Attention heads per block.") var heads = 4
  @Option(parsing: .unconditional, help: "Model width (a multiple of --heads).") var width = 64
  @Option(parsing: .unconditional, help: "Dropout on embeddings, attention weights and residual branches.")
  var dropout = 0.0
  @Option(help: "Position encoding: learned or sinusoidal.") var positions = PositionEncoding.learned
  @Option(parsing: .unconditional, help: "Seed of the initial weights, the training sequences and dropout.")
  var seed: UInt64 = 1337
  @Option(help: "Save a checkpoint (safetensors) here at every evaluation.") var checkpoint: String?
  @Option(help: "Continue from this checkpoint, with the options it records (only --steps may change).")
  var resume: String?
  @Option(help: "Where the curves go.") var plotDir = defaultPlotDir
  @OptionGroup var kernelOptions: KernelOptions

  func validate() throws {
    try Check.count(steps, "--steps", in: 1...10_000_000)
    try Check.count(batchSize, "--batch-size", in: 1...100_000)
    try Check.number(lr, "--lr", in: .positive)
    try checkModelOptions(layers: layers, heads: heads, width: width)
    try Check.number(dropout, "--dropout", in: Bounds(0, 1, includesHigh: false))
    let memory = "--width, --layers or --batch-size"
    try Check.memory(bytes: config.estimatedBytes(), what: "this run", options: memory)
  }

  var config: TrainConfig {
    var config = TrainConfig()
    config.steps = steps
    config.batchSize = batchSize
    config.learningRate = lr
    config.layers = layers
    config.heads = heads
    config.width = width
    config.dropout = dropout
    config.positions = positions
    config.seed = seed
    return config
  }

  var recordedOptions: [(flag: String, value: String)] { config.options }

  func run() throws {
    guard let resume else { return try train(resuming: nil) }
    let saved = try CheckpointReader(path: resume, format: Trainer.checkpointFormat)
    try Self.resuming(try saved.options(), source: resume, free: ["--steps"]).train(resuming: saved)
  }

  func train(resuming saved: CheckpointReader?) throws {
    kernelOptions.apply()
    try prepareOutputDirectory(plotDir)
    try reserveLineChartFiles(name: Self.plotName, directory: plotDir)
    if let checkpoint {
      try prepareOutputFile(
        checkpoint, option: "--checkpoint", replaceable: looksLikeSafetensors, kind: "safetensors checkpoint")
    }
    let trainer = Trainer(config)
    var planned = steps
    if let saved {
      planned = try saved.options().first { $0.flag == "--steps" }.flatMap { Int($0.value) } ?? steps
      try trainer.restore(from: saved)
      guard trainer.step < steps else {
        throw UserError(
          "'\(resume ?? "")' is at step \(trainer.step) already: --steps \(steps) leaves nothing to train (ask for more)"
        )
      }
    }
    let model = config.model
    print(
      """
      stage 4, the Transformer: GPT with \(layers) layers, \(heads) heads, width \(width), context \(model.context), \
      \(positions.rawValue) positions, tied head (\(trainer.model.parameterCount) parameters)
      task: reverse \(config.task.length) digits ("31415926|62951413"); AdamW lr \(lr) cosine, batch \(batchSize), \
      \(steps) steps; exact match on \(trainer.heldOut.count) held-out sequences never trained on
      """)
    if let resume { print("resumed from \(resume) after step \(trainer.step)") }
    if planned != steps {
      print(
        "note: the cosine schedule is re-derived for \(steps) steps (the checkpoint's run planned \(planned)): "
          + "this is not the run --steps \(steps) makes from the start")
    }
    let clock = Stopwatch()
    let firstStep = trainer.step  // steps/s counts this run's steps, not those before a resume
    let every = max(steps / 10, 1)
    var recent: [Double] = []
    while trainer.step < steps {
      recent.append(try trainer.runStep())
      // Every tenth of the run, and five times as often in the first tenth, where the learning happens.
      let early = trainer.step <= every && trainer.step % max(every / 5, 1) == 0
      if trainer.step % every == 0 || trainer.step == steps || early {
        let r = try trainer.record(trainLoss: recent.reduce(0, +) / Double(recent.count))
        recent = []
        print(
          String(
            format: "step %*d/%d  loss %.4f  held-out exact match %5.1f%%  %.0f steps/s", String(steps).count, r.step,
            steps, r.loss, r.exactMatch * 100, Double(trainer.step - firstStep) / clock.seconds))
        if let checkpoint { try trainer.save(to: checkpoint) }
      }
    }
    let final = trainer.history.last!
    print(
      String(
        format: "held-out exact match %.1f%% (%d/%d) after %.1f s", final.exactMatch * 100,
        Int((final.exactMatch * Double(trainer.heldOut.count)).rounded()), trainer.heldOut.count, clock.seconds))
    print("a few held-out sequences, generated greedily token by token with the KV cache:")
    for example in trainer.heldOut.prefix(4) {
      let prompt = Array(example.prefix(config.task.length + 1))
      let answer = trainer.model.generate(
        prompt, count: config.task.length, sampling: Sampling(temperature: 0), seed: 0, useCache: true)
      let text = { (tokens: [Int]) in tokens.map { $0 == ReversalTask.separator ? "|" : String($0) }.joined() }
      print(
        "  \(text(prompt)) -> \(text(answer))  \(answer == Array(example.suffix(config.task.length)) ? "right" : "WRONG")"
      )
    }
    if let checkpoint { print("checkpoint: \(checkpoint)") }

    var table = Table(columns: ["step", "train_loss", "exact_match"])
    for r in trainer.history { table.append([Double(r.step), r.loss, r.exactMatch]) }
    let chart = LineChart(
      title: "Stage 4: a \(layers)-layer GPT learns to reverse \(config.task.length) digits", xLabel: "step",
      yLabel: "train loss", y2Label: "held-out exact match", logY: true, table: table,
      curves: [
        Curve("train_loss", title: "train loss"),
        Curve("exact_match", title: "held-out exact match", rightAxis: true, percent: true),
      ])
    let report = try writeLineChart(chart, name: Self.plotName, directory: plotDir)
    print("wrote " + report.written.joined(separator: ", "))
    for note in report.notes { print("note: " + note) }
  }
}

// MARK: - sample

struct SampleCommand: ResumableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sample", abstract: "Generate from a trained checkpoint: the model's answer to a digit prompt.")

  @Option(help: "The checkpoint `stage4 train --checkpoint` wrote.") var checkpoint: String
  @Option(parsing: .unconditional, help: "The digits to reverse (8 of them).") var prompt = "31415926"
  @Option(parsing: .unconditional, help: "0 is greedy; below 1 sharper, above 1 flatter.") var temperature = 0.0
  @Option(parsing: .unconditional, help: "Sample among the k most likely tokens only.") var topK: Int?
  @Option(parsing: .unconditional, help: "Sample among the most likely tokens whose probabilities reach p.") var topP:
    Double?
  @Option(parsing: .unconditional, help: "Seed of the sampling.") var seed: UInt64 = 0
  @Option(parsing: .unconditional, help: "How many samples.") var count = 1
  @Flag(inversion: .prefixedNo, help: "Decode with the key/value cache.") var kvCache = true
  // The checkpoint decides the model's shape; given here, it must agree (the defaults are the train command's).
  @Option(parsing: .unconditional, help: "Transformer blocks of the checkpoint's model.") var layers = 2
  @Option(parsing: .unconditional, help: "Attention heads of the checkpoint's model.") var heads = 4
  @Option(parsing: .unconditional, help: "Width of the checkpoint's model.") var width = 64
  @Option(help: "Position encoding of the checkpoint's model.") var positions = PositionEncoding.learned

  func validate() throws {
    try Check.number(temperature, "--temperature", in: Bounds(0, 100))
    try Check.count(topK, "--top-k", in: 1...1_000_000)
    try Check.number(topP, "--top-p", in: .positive(upTo: 1))
    try Check.count(count, "--count", in: 1...100_000)
    try checkModelOptions(layers: layers, heads: heads, width: width)
    var config = TrainConfig()
    (config.layers, config.heads, config.width, config.batchSize) = (layers, heads, width, 1)
    let bytes = config.estimatedBytes(evaluationRows: 0)
    try Check.memory(bytes: bytes, what: "this model", options: "--width or --layers")
  }

  /// The model's shape, which the checkpoint decides.
  var recordedOptions: [(flag: String, value: String)] {
    let shape: [(flag: String, value: String)] = [
      ("--layers", String(layers)), ("--heads", String(heads)), ("--width", String(width)),
      ("--positions", positions.rawValue),
    ]
    return shape
  }

  func run() throws {
    let digits = try parseDigits(prompt, length: TrainConfig().task.length)
    // The model is the one the checkpoint's options describe; a shape given here must agree with it.
    let saved = try CheckpointReader(path: checkpoint, format: Trainer.checkpointFormat)
    let options = try saved.options()
    let shape = options.filter { option in recordedOptions.contains { $0.flag == option.flag } }
    _ = try Self.resuming(shape, source: checkpoint, required: ["--checkpoint", checkpoint])
    let config = try TrainCommand.resuming(options, source: checkpoint, arguments: []).config
    let trainer = Trainer(config, heldOutCount: 0)
    try trainer.restore(from: saved)
    let sampling = Sampling(temperature: temperature, topK: topK, topP: topP)
    let clock = Stopwatch()
    for k in 0..<count {
      let answer = trainer.model.generate(
        digits + [ReversalTask.separator], count: config.task.length, sampling: sampling, seed: seed &+ UInt64(k),
        useCache: kvCache)
      print(prompt + "|" + answer.map { $0 == ReversalTask.separator ? "|" : String($0) }.joined())
    }
    let tokens = Double(count * config.task.length)
    print(
      String(format: "(%d tokens in %.3f s, %@ the KV cache)", Int(tokens), clock.seconds, kvCache ? "with" : "without")
    )
  }
}

// MARK: - graph

struct GraphCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "graph", abstract: "Draw the computation graph of tensor operations, with shapes and gradients.")

  @Option(help: "The graph: block (one Transformer block on 3 tokens) or attention (one fused attention op).")
  var example = GraphExample.block
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
    let problems = coverageProblems(of: adapter, stage: 4)
    let results = checkStage(4, adapter: adapter)
    print(formatTable(results))
    let failed = results.filter { !$0.passed }
    for result in failed { for mismatch in result.mismatches.prefix(3) { print("  " + mismatch.description) } }
    for problem in problems { print("  " + problem) }
    print("\(results.count - failed.count) passed, \(failed.count) failed")
    if !failed.isEmpty || !problems.isEmpty { throw ExitCode.failure }
  }
}
