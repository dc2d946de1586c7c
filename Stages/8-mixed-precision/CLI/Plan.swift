import ArgumentParser
import Foundation
import Support

/// `stage8 plan`: the cost model at sizes this machine cannot run: every layout of the ranks into data x tensor x
/// pipeline parallelism (with ZeRO's stages), its memory per rank and its predicted step time, with every
/// assumption printed.
struct PlanCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "plan",
    abstract: "Predict memory per rank and step time of DP, ZeRO, TP, PP and their combinations for a big model.",
    discussion: """
      The formulas are those `stage8 bench` checks against this machine's collectives: alpha + bytes / beta per \
      message, 2 (p - 1) messages of 1/p of the data for a ring all-reduce, the bubble (p - 1) / (m + p - 1). \
      Compute is 6 x parameters x tokens at --tflops per rank; data parallelism's all-reduce hides behind \
      backward (two thirds of the compute) and only its excess counts.
      """)

  @Option(help: "The model: \(PlanModel.all.map(\.name).joined(separator: ", ")).") var model = "gpt2-medium"
  @Option(parsing: .unconditional, help: "Ranks (GPUs) in all.") var ranks = 64
  @Option(parsing: .unconditional, help: "Ranks per machine: tensor parallelism stays inside one.")
  var ranksPerMachine = 8
  @Option(parsing: .unconditional, help: "Sequences per optimizer step, all ranks together.") var batch = 512
  @Option(parsing: .unconditional, help: "Micro-batches of a pipeline.") var microbatches = 8
  @Option(parsing: .unconditional, help: "Sustained TFLOP/s of one rank.") var tflops = 100.0
  @Option(parsing: .unconditional, help: "GB/s of one rank's link between machines.") var bandwidth = 12.5
  @Option(parsing: .unconditional, help: "Microseconds of a message between machines.") var latency = 10.0
  @Option(parsing: .unconditional, help: "GB/s between the ranks of one machine.") var localBandwidth = 150.0
  @Option(parsing: .unconditional, help: "Microseconds of a message inside a machine.") var localLatency = 3.0
  @Option(parsing: .unconditional, help: "GB of memory per rank: layouts that need more are marked.")
  var memory = 80.0
  @Option(parsing: .unconditional, help: "Rows of the table (the fastest that fit, then the rest).") var rows = 12

  func validate() throws {
    guard PlanModel.all.contains(where: { $0.name == model }) else {
      throw UserError("--model must be one of \(PlanModel.all.map(\.name).joined(separator: ", ")), got '\(model)'")
    }
    try Check.count(ranks, "--ranks", in: 1...1_000_000)
    try Check.count(ranksPerMachine, "--ranks-per-machine", in: 1...1024)
    try Check.count(batch, "--batch", in: 1...100_000_000)
    try Check.count(microbatches, "--microbatches", in: 1...100_000)
    try Check.count(rows, "--rows", in: 1...10_000)
    for (value, option) in [
      (tflops, "--tflops"), (bandwidth, "--bandwidth"), (latency, "--latency"), (localBandwidth, "--local-bandwidth"),
      (localLatency, "--local-latency"), (memory, "--memory"),
    ] {
      try Check.number(value, option, in: .positive(upTo: 1e9))
    }
  }

  func run() throws {
    let shape = PlanModel.all.first { $0.name == model }!
    let plan = Plan(
      model: shape, ranks: ranks, ranksPerMachine: ranksPerMachine, batch: batch, micro: microbatches,
      flops: tflops * 1e12, network: CostModel(alpha: latency * 1e-6, beta: bandwidth * 1e9),
      local: CostModel(alpha: localLatency * 1e-6, beta: localBandwidth * 1e9))
    print(
      String(
        format: "%@: %.0fM parameters (%d layers, width %d, %d heads, vocabulary %d, context %d); %d ranks, %d per "
          + "machine; %d sequences per step, %d micro-batches in a pipeline", model, shape.parameters / 1e6,
        shape.layers, shape.width, shape.heads, shape.vocabulary, shape.context, ranks, ranksPerMachine, batch,
        microbatches))
    print(
      String(
        format: "assumed: %.0f TFLOP/s per rank; between machines %.0f us + bytes / %.1f GB/s; inside one %.0f us + "
          + "bytes / %.0f GB/s; fp32 Adam (16 bytes per parameter), activations kept (no recomputation); %.0f GB per rank",
        tflops, latency, bandwidth, localLatency, localBandwidth, memory))
    let all = plan.rows()
    guard !all.isEmpty else {
      throw UserError(
        "no layout of \(ranks) ranks fits: --batch \(batch) must divide by the data-parallel ranks and by --microbatches"
      )
    }
    let fits = all.filter { $0.bytesPerRank <= memory * 1e9 }.sorted { $0.stepSeconds < $1.stepSeconds }
    let others = all.filter { $0.bytesPerRank > memory * 1e9 }.sorted { $0.bytesPerRank < $1.bytesPerRank }
    print("")
    print("layout                        memory/rank   compute  communication   bubble      step")
    for row in (fits + others).prefix(rows) {
      print(
        String(
          format: "%-28@ %9.1f GB %8.3f s %12.3f s %7.3f s %8.3f s%@", row.layout as NSString, row.bytesPerRank / 1e9,
          row.computeSeconds, row.communicationSeconds, row.bubbleSeconds, row.stepSeconds,
          row.bytesPerRank > memory * 1e9 ? "  does not fit" : ""))
    }
    if all.count > rows { print("(\(all.count - rows) more layouts; --rows shows them)") }
  }
}
