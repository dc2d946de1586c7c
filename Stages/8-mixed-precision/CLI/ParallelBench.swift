import Foundation
import Support

/// `stage8 bench --parallel`: data parallelism's scaling on this machine's cores (the overlap of its buckets with
/// backward shown), the collectives against the alpha-beta cost model fitted to this backend, and the pipeline's
/// bubble against its formula.
struct ParallelBench {
  let launch: LaunchOptions
  let seconds: Double

  /// What rank 0 measured.
  struct Figures {
    var pingPong: [(bytes: Int, seconds: Double)] = []
    var allReduce: [(bytes: Int, seconds: Double)] = []
    var single = 0.0
    var parallel = 0.0
    var hidden = 0.0
    var bubble: [(Int, [Double])] = []
  }

  func run() throws {
    let ranks = try launch.worldSize()
    guard ranks >= 2 && 12 % ranks == 0 else {
      throw UserError("bench --parallel needs 2, 3, 4, 6 or 12 ranks (a divisor of the batch of 12), got \(ranks)")
    }
    let seconds = self.seconds
    let data = try ParityCommand.demoData()
    guard
      let figures = try onRanks(
        launch.backend, ranks: ranks, timeout: launch.timeout,
        { comm in
          try Self.measure(comm, seconds: seconds, data: data)
        })
    else { return }
    report(figures, ranks: ranks)
  }

  static func measure(_ comm: any Communicator, seconds: Double, data: SharedData) throws -> Figures {
    var figures = Figures()
    // Ping-pong between ranks 0 and 1: half a round trip is one message.
    for bytes in [8, 65_536, 1 << 20, 8 << 20] {
      var buffer = [UInt8](repeating: 1, count: bytes)
      let times = try timedCollectively(comm, seconds: seconds / 4) {
        try buffer.withUnsafeMutableBufferPointer { b in
          if comm.rank == 0 {
            try comm.send(UnsafeBufferPointer(b), to: 1)
            try comm.receive(b, from: 1)
          } else if comm.rank == 1 {
            try comm.receive(b, from: 0)
            try comm.send(UnsafeBufferPointer(b), to: 0)
          }
        }
      }
      figures.pingPong.append((bytes, median(times) / 2))
    }
    for bytes in [4096, 262_144, 4 << 20] {
      var values = [Float](repeating: 1, count: bytes / 4)
      let times = try timedCollectively(comm, seconds: seconds / 3) { try comm.allReduce(&values) }
      figures.allReduce.append((bytes, median(times)))
    }
    // Data parallelism: one rank of one core on a batch of 12, then every rank on 12 each.
    var config = TrainConfig()
    config.steps = 1_000_000
    if comm.rank == 0 {
      let trainer = Trainer(config, tokenizer: data.tokenizer, train: data.train, val: data.val)
      var error: (any Error)?
      Parallel.withShare(1) {
        do { figures.single = median(try timed(seconds: seconds) { try trainer.runStep() }) } catch let e { error = e }
      }
      if let error { throw error }
    }
    try comm.barrier()
    config.batchSize = 12 * comm.size
    let run = try DataParallelTrainer(config, data: data, communicator: comm, options: .init())
    let times = try timedCollectively(comm, seconds: seconds) { try run.runStep() }
    figures.parallel = median(times)
    // The overlap of the last step: the all-reduce time that ran while backward was still running.
    let backward = run.parallel.lastBackward
    let spans = run.parallel.takeBucketSpans().filter { $0.start >= backward.start }
    let total = spans.reduce(0) { $0 + $1.end - $1.start }
    let hidden = spans.reduce(0) { $0 + max(0, min($1.end, backward.end) - $1.start) }
    figures.hidden = total > 0 ? hidden / total : 0
    config.batchSize = 12
    config.steps = 100
    figures.bubble = try PipelineStage.bubbleTable(config, data: data, communicator: comm) ?? []
    return figures
  }

  /// Times `body` on every rank together (a barrier before each call) for about `seconds`, after one warm-up
  /// call; rank 0 decides when to stop and tells the others.
  static func timedCollectively(_ comm: any Communicator, seconds: Double, _ body: () throws -> Void) throws -> [Double]
  {
    try body()
    var times: [Double] = []
    let clock = Stopwatch()
    while true {
      var go: [Float] = [comm.rank == 0 && (clock.seconds < seconds || times.count < 3) ? 1 : 0]
      try comm.broadcast(&go, root: 0)
      if go[0] == 0 { return times }
      try comm.barrier()
      let start = Stopwatch()
      try body()
      times.append(start.seconds)
    }
  }

  static func timed(seconds: Double, _ body: () throws -> Void) throws -> [Double] {
    try body()
    var times: [Double] = []
    let clock = Stopwatch()
    while clock.seconds < seconds || times.count < 3 {
      let start = Stopwatch()
      try body()
      times.append(start.seconds)
    }
    return times
  }

  func report(_ figures: Figures, ranks: Int) {
    let backend = launch.backend == .threads ? "threads" : "MPI processes"
    // alpha: the smallest message; beta: the largest, less alpha.
    let alpha = figures.pingPong.first!.seconds
    let largest = figures.pingPong.last!
    let model = CostModel(alpha: alpha, beta: Double(largest.bytes) / max(largest.seconds - alpha, 1e-12))
    print(
      String(
        format: "%d ranks (%@). Messages between two ranks (ping-pong, half the round trip): alpha = %.1f us, beta = "
          + "%.2f GB/s", ranks, backend, alpha * 1e6, model.beta / 1e9))
    for (bytes, time) in figures.pingPong {
      print(
        String(
          format: "  %9d bytes: %9.1f us measured, %9.1f us predicted", bytes, time * 1e6,
          model.message(Double(bytes)) * 1e6))
    }
    print("all-reduce on \(ranks) ranks (the ring: 2 (p-1) messages of 1/p; a tree would send 2 log2 p whole ones):")
    for (bytes, time) in figures.allReduce {
      print(
        String(
          format: "  %9d bytes: %9.1f us measured, ring %9.1f us predicted, tree %9.1f us", bytes, time * 1e6,
          model.ringAllReduce(Double(bytes), ranks: ranks) * 1e6, model.treeAllReduce(Double(bytes), ranks: ranks) * 1e6
        ))
    }
    let tokensSingle = 12.0 * 64 / figures.single
    let tokensParallel = 12.0 * 64 * Double(ranks) / figures.parallel
    print(
      String(
        format: "data parallel, stage 5's GPT, 12 windows per rank: one rank of one core %.1f ms/step (%.0f tokens/s); "
          + "%d ranks %.1f ms/step (%.0f tokens/s): scaling efficiency %.2f; %.0f%% of the all-reduce ran during backward",
        figures.single * 1e3, tokensSingle, ranks, figures.parallel * 1e3, tokensParallel,
        tokensParallel / (Double(ranks) * tokensSingle), figures.hidden * 100))
    print("the pipeline's bubble (1F1B, \(ranks) stages; idle share of each rank's step):")
    printBubble(figures.bubble, ranks: ranks)
  }
}
