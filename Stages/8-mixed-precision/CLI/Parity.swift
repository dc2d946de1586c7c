import ArgumentParser
import Foundation
import Plotting
import Support

/// `stage8` (= `stage8 parity`): every kind of parallelism on the same character GPT, each beside the one process
/// it must equal, in one table; then the pipeline's bubble and the pictures of what ran when.
struct ParityCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "parity",
    abstract:
      "Data, ZeRO, tensor and pipeline parallelism beside one process: the differences, the bubble, the timelines.",
    discussion: """
      The model is stage 5's default (nanoGPT's CPU configuration of shakespeare_char: 4 layers, 4 heads, width \
      128, context 64, batch 12). Data parallelism trains --steps steps on the ranks, beside one process doing the \
      same micro-batches as gradient accumulation and one process on the whole batch; ZeRO 1, 2 and 3, tensor and \
      pipeline parallelism train the first 20 steps. With 4 ranks, data x tensor and data x pipeline (2 x 2) too. \
      Under MPI: mpiexec -n 2 stage8 parity --backend mpi.
      """)

  @OptionGroup var launch: LaunchOptions
  @Option(parsing: .unconditional, help: "Steps of the data-parallel run (the others run min(20, steps)).")
  var steps = 200
  @Option(parsing: .unconditional, help: "Micro-batches of the pipeline (a divisor of the batch, 12).")
  var microbatches = 4
  @Option(parsing: .unconditional, help: "Megabytes per gradient bucket of data parallelism.") var bucketMb = 1.0
  @Option(help: "Where the timelines go.") var plotDir = defaultPlotDir
  @Option(parsing: .unconditional, help: "Transformer blocks (pipeline parallelism needs one per rank).")
  var layers = 4
  @Option(parsing: .unconditional, help: "Attention heads (tensor parallelism needs a multiple of the ranks).")
  var heads = 4
  @Option(parsing: .unconditional, help: "Model width (a multiple of --heads).") var width = 128
  @Option(parsing: .unconditional, help: "Context: tokens per window.") var context = 64

  func validate() throws {
    try launch.check()
    try Check.count(steps, "--steps", in: 1...100_000)
    try Check.count(microbatches, "--microbatches", in: 1...12)
    guard 12 % microbatches == 0 else {
      throw UserError("--microbatches must divide the batch of 12 windows, got \(microbatches)")
    }
    try Check.number(bucketMb, "--bucket-mb", in: Bounds(0, 1024, includesLow: false))
    if plotDir == "" { throw UserError("--plot-dir is an empty path") }
    try Check.count(context, "--context", in: 1...1024)
    try checkModelOptions(layers: layers, heads: heads, width: width)
    // Every thread rank holds a model (and rank 0 the references too): the estimate times the ranks, plus one.
    let copies = Double((launch.backend == .threads ? launch.ranks ?? 2 : 1) + 1)
    try Check.memory(
      bytes: config.estimatedBytes(vocabulary: 65) * copies, what: "this run", options: "--width, --layers or --context"
    )
  }

  /// The demo's model and schedule: stage 5's defaults, the schedule shortened to --steps.
  var config: TrainConfig {
    var config = TrainConfig()
    config.steps = steps
    config.warmup = max(1, steps / 10)
    (config.layers, config.heads, config.width, config.context) = (layers, heads, width, context)
    return config
  }

  func run() throws {
    let ranks = try launch.worldSize()
    guard 12 % ranks == 0 else { throw UserError("--ranks must divide the batch of 12 windows, got \(ranks)") }
    guard heads % ranks == 0 else {
      throw UserError("tensor parallelism on \(ranks) ranks needs --heads a multiple of \(ranks), got \(heads)")
    }
    guard layers >= ranks else {
      throw UserError("a pipeline of \(ranks) stages needs --layers at least \(ranks), got \(layers)")
    }
    if launch.isReporter { try prepareOutputDirectory(plotDir) }
    let data = try Self.demoData()
    let config = self.config
    let short = min(20, steps)
    let (micro, bucketBytes) = (microbatches, Int(bucketMb * 1_048_576))
    let clock = Stopwatch()
    guard
      let run = try onRanks(
        launch.backend, ranks: ranks, timeout: launch.timeout,
        { comm in
          try ParityRun(comm: comm, config: config, data: data, short: short, micro: micro, bucketBytes: bucketBytes)
        })
    else { return }
    let parallelSeconds = clock.seconds
    if launch.backend == .threads {
      let share = max(1, Parallel.cores / ranks)
      print(
        "ranks: \(ranks) threads of this process, "
          + (ranks <= Parallel.cores ? "\(share) core\(share == 1 ? "" : "s") each" : "sharing \(Parallel.cores) cores")
      )
    } else {
      print("ranks: \(ranks) MPI processes")
    }
    print(
      "model: stage 5's character GPT (\(run.parameterCount) parameters), batch 12 x \(context) tokens; data parallel "
        + "\(steps) steps, the others \(short); \(String(format: "%.1f", parallelSeconds)) s on the ranks")
    try report(run, ranks: ranks, config: config, data: data, short: short)
  }

  /// Tiny Shakespeare, characters, 90/10, in memory (every process of an MPI run makes the same).
  static func demoData() throws -> SharedData {
    let corpus = try Corpus(path: defaultCorpus)
    let tokenizer = CharTokenizer(corpus: corpus.text)
    return SharedData(
      tokenizer: tokenizer, train: TokenFile(try tokenizer.encode(corpus.split.train)),
      val: TokenFile(try tokenizer.encode(corpus.split.val)))
  }

  /// The references (one process, here), the table, the bubble and the pictures.
  func report(_ run: ParityRun, ranks: Int, config: TrainConfig, data: SharedData, short: Int) throws {
    let oneProcess = { (pieces: Int, steps: Int) throws -> (weights: [Float], losses: [Double]) in
      let trainer = Trainer(config, tokenizer: data.tokenizer, train: data.train, val: data.val)
      let losses = try (0..<steps).map { _ in try accumulatedStep(trainer, ranks: pieces) }
      return (trainer.parameters.flatMap(\.storage), losses)
    }
    let accumulated = try oneProcess(ranks, steps)
    let whole = Trainer(config, tokenizer: data.tokenizer, train: data.train, val: data.val)
    let wholeLosses = try (0..<steps).map { _ in try whole.runStep() }
    var rows: [(String, String, String, String)] = []
    func row(_ name: String, _ against: String, _ promise: String, _ difference: Double) {
      rows.append((name, against, promise, difference == 0 ? "0 (same bits)" : String(format: "%.2e", difference)))
    }
    func largest(_ a: [Double], _ b: [Double], relative: Bool = false) -> Double {
      zip(a, b).map { abs($0 - $1) / (relative ? abs($1) : 1) }.max() ?? 0
    }
    func largest(_ a: [Float], _ b: [Float]) -> Double { Double(zip(a, b).map { abs($0 - $1) }.max() ?? 0) }
    // On 2 ranks the ring adds a + b, the same bits as one process's a + b. On more, chunk c's sum starts at rank
    // c + 1 (see `reduceScatter`): the same terms in another order, so float noise, as with NCCL.
    let ring = ranks <= 2 ? "bit for bit" : "float noise (ring order)"
    row(
      "data parallel: losses", "one process, accumulating the ranks' pieces", ring,
      largest(run.dpLosses, accumulated.losses))
    row(
      "data parallel: weights", "one process, accumulating the ranks' pieces", ring,
      largest(run.dpWeights, accumulated.weights))
    row("data parallel: ranks' weights", "rank 0's", "bit for bit", run.dpRanksDiffer)
    // Against the whole batch the sums are in another order: the first loss agrees within 1e-6, and the curves
    // drift apart as training amplifies the last bits (a chaotic system, as any two float orders show).
    func close(_ name: String, _ losses: [Double], _ reference: [Double]) {
      row(
        name + ": first loss", "one process on the whole batch", "1e-6 relative",
        largest(Array(losses.prefix(1)), reference, relative: true))
      row(
        name + ": losses", "one process on the whole batch", "float noise, growing",
        largest(losses, reference, relative: true))
    }
    close("data parallel, whole batch", run.dpLosses, wholeLosses)
    for (zero, weights) in run.zeroWeights {
      let byUnit = zero == .parameters ? run.dpWeightsByUnit : nil
      row(
        "ZeRO \(zero.rawValue): weights after \(short)",
        byUnit == nil ? "data parallel's" : "data parallel's, bucketed by unit", "bit for bit",
        largest(weights, byUnit ?? run.dpWeightsShort))
    }
    close("tensor parallel", run.tpLosses, Array(wholeLosses.prefix(short)))
    let pipelined = try oneProcess(microbatches, short)
    for (schedule, result) in run.pipeline {
      row(
        "pipeline \(schedule.rawValue), \(microbatches) micro: weights", "one process, accumulating \(microbatches)",
        "bit for bit", largest(result.weights, pipelined.weights))
    }
    if let grid = run.dataTimesTensor {
      close("data x tensor (2 x 2)", grid, Array(wholeLosses.prefix(short)))
    }
    if let grid = run.dataTimesPipeline {
      let reference = try oneProcess(2, short)
      row(
        "data x pipeline (2 x 2): weights", "one process, accumulating 2", "bit for bit",
        largest(grid, reference.weights))
    }
    let widths = [0, 1, 2].map { column in rows.map { [$0.0, $0.1, $0.2][column].count }.max()! }
    func pad(_ text: String, _ width: Int) -> String {
      text + String(repeating: " ", count: max(0, width - text.count))
    }
    print("")
    print(
      pad("run", widths[0]) + "  " + pad("against", widths[1]) + "  " + pad("promise", widths[2])
        + "  largest difference")
    for (a, b, c, d) in rows {
      print(pad(a, widths[0]) + "  " + pad(b, widths[1]) + "  " + pad(c, widths[2]) + "  " + d)
    }
    print("")
    print(
      "memory per rank after backward (ZeRO's formulas for fp32 Adam: 16, 8 + 8/N, 4 + 12/N, 16/N bytes per "
        + "parameter):")
    for (zero, ledger) in run.ledgers {
      let paper = DataParallel.paperBytesPerParameter(zero, ranks: ranks) * Double(run.parameterCount)
      let mb = { (bytes: Double) in String(format: "%.2f MB", bytes / 1e6) }
      print(
        "  ZeRO \(zero.rawValue): weights \(mb(Double(ledger.weights))), gradients \(mb(Double(ledger.gradients))), "
          + "Adam \(mb(Double(ledger.optimizer))): \(mb(Double(ledger.total))) (the formula: \(mb(paper)))"
          + (zero == .parameters
            ? "; during the step, at most \(mb(Double(ledger.gatheredPeak))) of whole units gathered besides" : ""))
    }
    print("")
    print("the pipeline's bubble (1F1B on \(ranks) stages, the last of 3 steps; idle share of each rank's step):")
    printBubble(run.bubble, ranks: ranks)
    try drawTimelines(run)
  }

  func drawTimelines(_ run: ParityRun) throws {
    var written: [String] = []
    for (schedule, result) in run.pipeline {
      let ranks = Set(result.spans.map(\.rank)).count
      let timeline = Timeline(
        title:
          "Pipeline, \(schedule == .gpipe ? "GPipe" : "1F1B"), \(ranks) stages, \(microbatches) micro-batches (one step as it ran)",
        rows: (0..<ranks).map { "rank \($0)" }, kinds: ["forward", "backward"],
        boxes: result.spans.map {
          .init(
            row: $0.rank, start: $0.start * 1000, end: $0.end * 1000, kind: $0.forward ? 0 : 1, label: String($0.micro))
        })
      written += try writeTimeline(timeline, name: "pipeline-\(schedule.rawValue)", directory: plotDir).written
    }
    let overlap = run.overlap
    let start = overlap.map(\.start).min() ?? 0
    let timeline = Timeline(
      title: "Data parallelism: rank 0's backward and its buckets' all-reduce (the last step)",
      rows: ["backward", "communication"], kinds: ["backward", "all-reduce"],
      boxes: overlap.map {
        .init(
          row: $0.label == "backward" ? 0 : 1, start: ($0.start - start) * 1000, end: ($0.end - start) * 1000,
          kind: $0.label == "backward" ? 0 : 1, label: $0.label == "backward" ? "" : String($0.label.dropFirst(7)))
      })
    written += try writeTimeline(timeline, name: "ddp-overlap", directory: plotDir).written
    print("wrote " + written.filter { $0.hasSuffix(".png") }.joined(separator: ", "))
  }
}

/// What the ranks of `parity` bring back to rank 0.
struct ParityRun {
  var parameterCount = 0
  var dpLosses: [Double] = []
  var dpWeights: [Float] = []
  var dpWeightsShort: [Float] = []
  /// More than 2 ranks: data parallelism's weights after the short run with ZeRO 3's buckets.
  var dpWeightsByUnit: [Float]?
  var dpRanksDiffer = 0.0
  var overlap: [(start: Double, end: Double, label: String)] = []
  var zeroWeights: [(ZeroStage, [Float])] = []
  var ledgers: [(ZeroStage, ParallelLedger)] = []
  var tpLosses: [Double] = []
  var pipeline: [(PipelineSchedule, (weights: [Float], spans: [PipelineSpan]))] = []
  var bubble: [(Int, [Double])] = []
  var dataTimesTensor: [Double]?
  var dataTimesPipeline: [Float]?

  /// Runs every parallel training of the demo on `comm`'s ranks; rank 0's copy holds what it needs.
  init(comm: any Communicator, config: TrainConfig, data: SharedData, short: Int, micro: Int, bucketBytes: Int) throws {
    let ranks = comm.size
    // Data parallelism (ZeRO 0), with the weights after `short` steps kept for ZeRO's comparison.
    let dp = try DataParallelTrainer(
      config, data: data, communicator: comm, options: .init(zero: .none, bucketBytes: bucketBytes))
    parameterCount = dp.trainer.parameters.reduce(0) { $0 + $1.count }
    for step in 0..<config.steps {
      if step == config.steps - 1 { _ = dp.parallel.takeBucketSpans() }
      dpLosses.append(try dp.runStep())
      if step == short - 1 { dpWeightsShort = dp.trainer.parameters.flatMap(\.storage) }
      if step == min(1, short - 1) { ledgers.append((.none, dp.parallel.ledgerAfterBackward)) }
    }
    dpWeights = dp.trainer.parameters.flatMap(\.storage)
    if let all = try comm.gatherArrays(dpWeights) {
      dpRanksDiffer = all.map { zip($0, dpWeights).map { Double(abs($0 - $1)) }.max() ?? 0 }.max() ?? 0
    }
    let backward = dp.parallel.lastBackward
    overlap = [(backward.start, backward.end, "backward")] + dp.parallel.takeBucketSpans()
    // ZeRO 1, 2 and 3 for the first steps. ZeRO 3's buckets are the model's units: on more than 2 ranks a
    // chunk's sum depends on where the chunk is cut, so it is held against data parallelism cut the same way.
    for zero in [ZeroStage.optimizer, .gradients, .parameters] {
      let run = try DataParallelTrainer(
        config, data: data, communicator: comm, options: .init(zero: zero, bucketBytes: bucketBytes))
      for step in 0..<short {
        try run.runStep()
        if step == min(1, short - 1) { ledgers.append((zero, run.parallel.ledgerAfterBackward)) }
      }
      try run.parallel.gatherParameters()
      zeroWeights.append((zero, run.trainer.parameters.flatMap(\.storage)))
    }
    if ranks > 2 {
      let run = try DataParallelTrainer(
        config, data: data, communicator: comm, options: .init(zero: .none, bucketsByUnit: true))
      for _ in 0..<short { try run.runStep() }
      dpWeightsByUnit = run.trainer.parameters.flatMap(\.storage)
    }
    // Tensor parallelism on all the ranks.
    let tensor = try TensorParallelTrainer(config, data: data, tensor: comm, data: nil)
    tpLosses = try (0..<short).map { _ in try tensor.runStep() }
    // The pipeline, both schedules, the stages' weights gathered in the model's order.
    for schedule in PipelineSchedule.allCases {
      let stage = try PipelineStage(config, data: data, communicator: comm)
      for _ in 0..<short { try stage.runStep(micro: micro, schedule: schedule) }
      let weights = try comm.gatherArrays(stage.parameters.flatMap(\.storage))?.flatMap { $0 } ?? []
      let decoded = try stage.gatherSpans() ?? []
      pipeline.append((schedule, (weights, decoded)))
    }
    // The bubble against the micro-batches.
    bubble = try PipelineStage.bubbleTable(config, data: data, communicator: comm) ?? []
    // The 2 x 2 grids.
    if ranks == 4 {
      let (row, column) = comm.rank.quotientAndRemainder(dividingBy: 2)
      let tensorGroup = try comm.split(color: row, key: column)
      let copies = try comm.split(color: column, key: row)
      let grid = try TensorParallelTrainer(config, data: data, tensor: tensorGroup, data: copies)
      dataTimesTensor = try (0..<short).map { _ in try grid.runStep() }
      let pipelineGroup = try comm.split(color: row, key: column)
      let pipelineCopies = try comm.split(color: column, key: row)
      let stage = try PipelineStage(config, data: data, communicator: pipelineGroup)
      for _ in 0..<short {
        try stage.runStep(micro: 1, schedule: .oneForwardOneBackward, copy: row, copies: 2, dataGroup: pipelineCopies)
      }
      // The first copy's stages (ranks 0 and 1) hold the model.
      let gathered = try comm.gatherArrays(stage.parameters.flatMap(\.storage))
      dataTimesPipeline = gathered.map { Array($0[0..<2].joined()) }
    }
  }
}

/// --backend, --ranks and --timeout: where the ranks run.
struct LaunchOptions: ParsableArguments {
  @Option(help: "threads (ranks in this process) or mpi (this process is one rank of `mpiexec -n N`).")
  var backend = Backend.threads
  @Option(parsing: .unconditional, help: "Ranks (threads, default 2; under MPI, mpiexec's -n decides).") var ranks: Int?
  @Option(parsing: .unconditional, help: "Seconds a rank waits for another before it stops the run.")
  var timeout = 300.0

  func check() throws {
    if let ranks { try Check.count(ranks, "--ranks", in: 1...64) }
    try Check.number(timeout, "--timeout", in: Bounds(0, 86_400, includesLow: false))
  }

  /// How many ranks the run has: --ranks on threads, the world's size under MPI.
  func worldSize() throws -> Int {
    guard backend == .mpi else { return ranks ?? 2 }
    let size = try MPICommunicator.world(timeout: timeout).size
    guard size > 1 else {
      throw UserError("--backend mpi: this process is a world of 1; start the ranks with mpiexec -n N")
    }
    if let ranks, ranks != size {
      throw UserError("--ranks \(ranks), but mpiexec started \(size) ranks: under MPI, mpiexec's -n decides")
    }
    return size
  }

  /// Whether this process prints and writes files (rank 0 under MPI; the one process on threads).
  var isReporter: Bool { backend == .threads || ((try? MPICommunicator.world(timeout: timeout).rank) ?? 0) == 0 }
}

extension Backend: ExpressibleByArgument {}

/// The measured bubble of each rank beside the formula's, one line per number of micro-batches.
func printBubble(_ table: [(Int, [Double])], ranks: Int) {
  for (micro, measured) in table {
    print(
      "  \(String(format: "%2d", micro)) micro-batches: measured "
        + measured.map { String(format: "%.2f", $0) }.joined(separator: " ")
        + String(format: "  predicted (p-1)/(m+p-1) = %.2f", PipelineStage.predictedBubble(stages: ranks, micro: micro))
    )
  }
}
