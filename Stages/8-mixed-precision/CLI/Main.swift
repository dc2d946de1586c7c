import ArgumentParser
import Datasets
import Foundation
import GradCheck
import Kernels
import Plotting
import Support

/// The command line of stage 8: `stage8` trains the same GPT in every number format side by side (the default,
/// `compare`), `train --precision` runs one, `formats` prints what each format keeps and loses, `bench` measures
/// the step in each format; stage 7's commands stay: `parity` runs every kind of parallelism beside one process,
/// `plan` predicts big runs, `methods` (stage 6's `compare`) runs every fine-tuning method, `finetune` runs one,
/// `merge` folds a LoRA into its base, `digits` is the seeds' MLP example; `sample` generates from a checkpoint,
/// `tokenize` trains a BPE and writes token files, `mlm` pretrains a BERT, `fill` guesses its [MASK]s, `export` writes
/// a checkpoint as a Hugging Face folder, `graph` draws a computation graph, `gradcheck` runs the golden gradient
/// checks.
@main
struct Stage8Command: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "stage8",
    abstract:
      "Stage 8: mixed precision. 16-bit storage with fp32 accumulation, master weights, loss scaling and fp8.",
    subcommands: [
      CompareCommand.self, FormatsCommand.self, ParityCommand.self, PlanCommand.self, MethodsCommand.self,
      FineTuneCommand.self, MergeCommand.self,
      DigitsCommand.self,
      TrainCommand.self,
      SampleCommand.self, TokenizeCommand.self, MaskedLMCommand.self, FillCommand.self,
      ExportCommand.self, GraphCommand.self, GradcheckCommand.self, BenchCommand.self,
    ],
    defaultSubcommand: CompareCommand.self)

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
        // Under mpiexec every process meets a bad option alike: rank 0 alone says so (MPICH and Open MPI name
        // the rank in the environment before MPI starts).
        let environment = ProcessInfo.processInfo.environment
        if (environment["PMI_RANK"] ?? environment["OMPI_COMM_WORLD_RANK"] ?? "0") == "0" {
          FileHandle.standardError.write(Data("stage8: error: \(message(for: error))\n".utf8))
        }
      }
      Foundation.exit(code.rawValue)
    }
  }
}

extension PositionEncoding: ExpressibleByArgument {}
extension TokenizerKind: ExpressibleByArgument {}
extension WindowOrder: ExpressibleByArgument {}
extension PipelineSchedule: ExpressibleByArgument {}
extension NormPlacement: ExpressibleByArgument {}
extension GraphExample: ExpressibleByArgument {}
extension KernelChoice: ExpressibleByArgument {}
extension Precision: ExpressibleByArgument {}

/// `--kernels`: the fast loops of Shared/Kernels (the default) or the plain references beside them, for the whole
/// run. Both give the same results within float noise; `bench --kernels reference` shows what the fast ones buy.
struct KernelOptions: ParsableArguments {
  @Option(help: "The kernels to run on: fast, or reference (the plain loops beside them).")
  var kernels = KernelChoice.fast

  func apply() { KernelChoice.current = kernels }
}

/// Where a run writes its plots unless told otherwise: a folder git ignores, so that trying the examples never
/// touches the reference pictures committed in Plots/8-mixed-precision, which only `make plots` redraws. Token files go
/// beside them, one folder per tokenizer (`data-char`, `data-bpe-512`), unless `--data-dir` says otherwise.
let defaultPlotDir = "Plots/runs/8-mixed-precision"

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

/// --lr and --min-lr of a warmup-and-cosine schedule: a peak above 0, and an end between 0 and the peak. An end
/// above the peak is named as that (it may be the default --min-lr against a small --lr the user gave).
func checkSchedule(lr: Double, minLr: Double) throws {
  try Check.number(lr, "--lr", in: .positive)
  if minLr.isFinite && minLr > lr {
    throw UserError(
      "--min-lr \(minLr) is above --lr \(lr): the cosine would end higher than it starts (give a --min-lr of at "
        + "most \(lr))")
  }
  try Check.number(minLr, "--min-lr", in: Bounds(0, lr))
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
    let problems = coverageProblems(of: adapter, stage: 8)
    let results = checkStage(8, adapter: adapter)
    print(formatTable(results))
    let failed = results.filter { !$0.passed }
    for result in failed { for mismatch in result.mismatches.prefix(3) { print("  " + mismatch.description) } }
    for problem in problems { print("  " + problem) }
    print("\(results.count - failed.count) passed, \(failed.count) failed")
    if !failed.isEmpty || !problems.isEmpty { throw ExitCode.failure }
  }
}
