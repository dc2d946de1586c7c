import Foundation
import Support
import Testing

@testable import Stage8

/// Stage 7's communicator and data parallelism (with ZeRO), each against what one process computes.
@Suite struct CommunicatorTests {
  /// Values whose sums are exact in Float, so that every result has one right answer.
  static func values(rank: Int, count: Int) -> [Float] { (0..<count).map { Float(($0 * 7 + rank * 13) % 101) } }

  @Test(arguments: [1, 2, 3, 4]) func collectivesGiveTheirDefinitions(ranks: Int) throws {
    let count = 10
    let results = try runOnThreads(ranks: ranks, timeout: 30) { comm -> [[Float]] in
      var sum = Self.values(rank: comm.rank, count: count)
      try comm.allReduce(&sum)
      var average = Self.values(rank: comm.rank, count: count)
      try average.withUnsafeMutableBufferPointer { try comm.allReduce($0, .average) }
      var scattered = Self.values(rank: comm.rank, count: count)
      let bounds = comm.evenBounds(count)
      try scattered.withUnsafeMutableBufferPointer { try comm.reduceScatter($0, bounds: bounds) }
      var gathered = [Float](repeating: -1, count: count)
      for i in bounds[comm.rank]..<bounds[comm.rank + 1] { gathered[i] = Float(comm.rank * 100 + i) }
      try gathered.withUnsafeMutableBufferPointer { try comm.allGather($0, bounds: bounds) }
      var broadcast = comm.rank == ranks - 1 ? [Float(1), 2, 3] : [0, 0, 0]
      try comm.broadcast(&broadcast, root: ranks - 1)
      let ranksSeen = try comm.gather(Float(comm.rank))
      try comm.barrier()
      return [
        sum, average, Array(scattered[bounds[comm.rank]..<bounds[comm.rank + 1]]), gathered, broadcast, ranksSeen,
      ]
    }
    let expected = (0..<count).map { i in (0..<ranks).reduce(Float(0)) { $0 + Self.values(rank: $1, count: count)[i] } }
    let bounds = (0...ranks).map { count * $0 / ranks }
    for (rank, result) in results.enumerated() {
      #expect(result[0] == expected)
      #expect(result[1] == expected.map { $0 / Float(ranks) })
      #expect(result[2] == Array(expected[bounds[rank]..<bounds[rank + 1]]))
      let owners: [Int] = (0..<count).map { i in (0..<ranks).first { bounds[$0 + 1] > i }! }
      let gathered: [Float] = (0..<count).map { i in Float(owners[i] * 100 + i) }
      #expect(result[3] == gathered)
      #expect(result[4] == [1, 2, 3])
      #expect(result[5] == (0..<ranks).map(Float.init))
    }
  }

  /// The ring's promise: each rank sends 2 (p - 1) / p of the buffer in an all-reduce, however many ranks.
  @Test(arguments: [2, 4]) func ringAllReduceSendsTwiceTheShareOfTheBuffer(ranks: Int) throws {
    let count = 4096
    let sent = try runOnThreads(ranks: ranks, timeout: 30) { comm -> Int in
      var values = [Float](repeating: 1, count: count)
      try comm.allReduce(&values)
      #expect(values.allSatisfy { $0 == Float(ranks) })
      return comm.bytesSent
    }
    #expect(sent == Array(repeating: 2 * (ranks - 1) * count / ranks * 4, count: ranks))
  }

  /// The same inputs give the same bits, run after run, though the threads' timing differs.
  @Test func sumsAreTheSameBitsEveryRun() throws {
    func run() throws -> [[Float]] {
      try runOnThreads(ranks: 4, timeout: 30) { comm -> [Float] in
        var rng = SeededRNG(seed: UInt64(comm.rank) + 1)
        var values = (0..<1000).map { _ in Float(rng.uniform(-1e3, 1e3)) }
        try comm.allReduce(&values)
        return values
      }
    }
    let first = try run()
    for _ in 0..<3 { #expect(try run() == first) }
    for result in first { #expect(result == first[0]) }
  }

  /// Sub-groups: four ranks as a 2 x 2 grid, rows and columns each reducing on their own.
  @Test func splitMakesIndependentGroups() throws {
    let results = try runOnThreads(ranks: 4, timeout: 30) { comm -> [Float] in
      let row = try comm.split(color: comm.rank / 2, key: comm.rank)
      let column = try comm.split(color: comm.rank % 2, key: -comm.rank)  // numbered backwards
      var rowSum = [Float(comm.rank)]
      var columnSum = [Float(comm.rank)]
      try column.allReduce(&columnSum)
      try row.allReduce(&rowSum)
      return [rowSum[0], columnSum[0], Float(row.rank), Float(column.rank), Float(row.size)]
    }
    #expect(results[0] == [1, 2, 0, 1, 2])
    #expect(results[1] == [1, 4, 1, 1, 2])
    #expect(results[2] == [5, 2, 0, 0, 2])
    #expect(results[3] == [5, 4, 1, 0, 2])
  }

  @Test func aRankThatFailsStopsEveryRankAndIsNamed() throws {
    let clock = Stopwatch()
    do {
      _ = try runOnThreads(ranks: 3, timeout: 60) { comm -> Int in
        if comm.rank == 1 { throw UserError("out of data") }
        var values: [Float] = [1]
        try comm.allReduce(&values)
        return 0
      }
      Issue.record("no error")
    } catch let error as ParallelError {
      #expect(error.rank == 1)
      #expect(error.description == "rank 1 failed: out of data")
    }
    #expect(clock.seconds < 10)
  }

  @Test func aRankThatStopsAnsweringIsNamedWithinTheTimeout() throws {
    let clock = Stopwatch()
    do {
      _ = try runOnThreads(ranks: 2, timeout: 0.5) { comm -> Int in
        if comm.rank == 0 { Thread.sleep(forTimeInterval: 3) }  // alive, but silent past the timeout
        var values: [Float] = [1]
        try comm.allReduce(&values)
        return 0
      }
      Issue.record("no error")
    } catch let error as ParallelError {
      #expect(error.rank == 0)
      #expect(error.description.hasPrefix("rank 0 did not answer rank 1 within 0.5 s"), "\(error)")
    }
    #expect(clock.seconds < 10)
  }

  @Test func aRankThatEndsEarlyIsNamedAtOnce() throws {
    let clock = Stopwatch()
    do {
      _ = try runOnThreads(ranks: 2, timeout: 60) { comm -> Int in
        if comm.rank == 1 { return 1 }  // leaves without taking part
        var values: [Float] = [1]
        try comm.allReduce(&values)
        return 0
      }
      Issue.record("no error")
    } catch let error as ParallelError {
      #expect(error.rank == 1)
      #expect(error.description.hasPrefix("rank 1 has stopped without sending what rank 0 waits for"), "\(error)")
    }
    #expect(clock.seconds < 10)
  }
}

/// Data parallelism and ZeRO on a tiny GPT, against one process.
@Suite struct DataParallelTests {
  static let data: SharedData = {
    let splits = shakespeareSplits(characters: 20_000)
    return SharedData(tokenizer: splits.tokenizer, train: splits.train, val: splits.val)
  }()

  static func config(batch: Int = 4, accumulation: Int = 1) -> TrainConfig {
    var config = TrainConfig()
    config.layers = 2
    config.heads = 2
    config.width = 16
    config.context = 16
    config.batchSize = batch
    config.accumulation = accumulation
    config.steps = 10
    config.warmup = 2
    config.learningRate = 3e-3
    return config
  }

  /// The weights after `steps` data-parallel steps on each rank, and the losses of rank 0.
  static func parallelRun(
    ranks: Int, zero: ZeroStage, steps: Int, config: TrainConfig, bucketBytes: Int = 4096, byUnit: Bool = false
  ) throws -> (weights: [[[Float]]], losses: [Double], ledger: ParallelLedger) {
    let data = Self.data
    let results = try runOnThreads(ranks: ranks, timeout: 120) { comm in
      let run = try DataParallelTrainer(
        config, data: data, communicator: comm,
        options: .init(zero: zero, bucketBytes: bucketBytes, bucketsByUnit: byUnit))
      var losses: [Double] = []
      var ledger = ParallelLedger()
      for _ in 0..<steps {
        losses.append(try run.runStep())
        ledger = run.parallel.ledgerAfterBackward
      }
      try run.parallel.gatherParameters()  // ZeRO 3 holds chunks only
      return (run.trainer.parameters.map(\.storage), losses, ledger)
    }
    return (results.map(\.0), results[0].1, results[0].2)
  }

  /// One process of one core, as the ranks are, doing the same micro-batches in the same order.
  static func accumulatedRun(
    ranks: Int, steps: Int, config: TrainConfig
  ) throws -> (weights: [[Float]], losses: [Double]) {
    var result: (weights: [[Float]], losses: [Double]) = ([], [])
    var failure: (any Error)?
    Parallel.withShare(max(1, Parallel.cores / ranks)) {
      let trainer = Trainer(config, tokenizer: data.tokenizer, train: data.train, val: data.val)
      do {
        let losses = try (0..<steps).map { _ in try accumulatedStep(trainer, ranks: ranks) }
        result = (trainer.parameters.map(\.storage), losses)
      } catch { failure = error }
    }
    if let failure { throw failure }
    return result
  }

  @Test func dataParallelEqualsGradientAccumulationBitForBit() throws {
    let config = Self.config()
    let single = try Self.accumulatedRun(ranks: 2, steps: 4, config: config)
    let parallel = try Self.parallelRun(ranks: 2, zero: .none, steps: 4, config: config)
    for weights in parallel.weights { #expect(weights == single.weights) }
    #expect(parallel.losses == single.losses)
  }

  /// ZeRO 3's buckets are the model's units. A chunk's sum is added up in an order that depends on the chunk's
  /// index (the ring starts at the next rank), so on 4 ranks it is compared with DDP cut the same way; on 2
  /// ranks a sum is of two numbers, and any cut gives the same bits.
  @Test(arguments: [ZeroStage.optimizer, .gradients, .parameters])
  func zeroEqualsDataParallelBitForBit(zero: ZeroStage) throws {
    for ranks in [2, 4] {
      let config = Self.config(batch: 4)
      let byUnit = zero == .parameters && ranks > 2
      let ddp = try Self.parallelRun(ranks: ranks, zero: .none, steps: 3, config: config, byUnit: byUnit)
      let sharded = try Self.parallelRun(ranks: ranks, zero: zero, steps: 3, config: config)
      let same = sharded.weights == ddp.weights  // (not inside #expect, which would print every weight)
      #expect(same, "ZeRO \(zero.rawValue) on \(ranks) ranks")
      #expect(sharded.losses == ddp.losses)
    }
  }

  /// With gradient accumulation, FSDP's no_sync keeps each rank's whole gradients until the last micro-batch,
  /// so ZeRO 3 adds them up as DDP does: the same bits.
  @Test func zero3WithAccumulationEqualsDataParallelBitForBit() throws {
    let config = Self.config(batch: 4, accumulation: 2)
    let ddp = try Self.parallelRun(ranks: 2, zero: .none, steps: 2, config: config)
    let sharded = try Self.parallelRun(ranks: 2, zero: .parameters, steps: 2, config: config)
    let same = sharded.weights == ddp.weights
    #expect(same)
    #expect(sharded.losses == ddp.losses)
  }

  /// Between steps a ZeRO 3 rank holds no whole weights, only its chunks (half the model on 2 ranks); during a
  /// step, at most the root unit and one block at a time.
  @Test func zero3HoldsItsChunksAndOneUnitAtATime() throws {
    let config = Self.config(batch: 4)
    let data = Self.data
    let results = try runOnThreads(ranks: 2, timeout: 60) { comm in
      let run = try DataParallelTrainer(config, data: data, communicator: comm, options: .init(zero: .parameters))
      try run.runStep()
      let blocks = run.trainer.model.blocks.map { $0.parameters().reduce(0) { $0 + $1.shape.reduce(1, *) } }
      let model = run.trainer.parameters.reduce(0) { $0 + $1.shape.reduce(1, *) }
      let empty = run.trainer.parameters.allSatisfy(\.storage.isEmpty)
      return (empty, run.parallel.ledgerAfterBackward, run.parallel.ledger, blocks, model)
    }
    for (empty, afterBackward, now, blocks, model) in results {
      #expect(empty)
      let root = model - blocks.reduce(0, +)
      #expect(afterBackward.gatheredPeak == 4 * (root + blocks.max()!))
      // Half the model's 4 bytes each, give or take the cut of each unit at a norm block (64 values).
      let slack = 64 * 4 * (blocks.count + 1)
      #expect(abs(now.weights - 2 * model) <= slack, "\(now.weights) bytes for \(model) parameters")
    }
  }

  /// Against one process on the whole batch (no cutting into micro-batches): the same gradients up to the order
  /// of the sums, within 1e-6 of their size.
  @Test func dataParallelGradientsEqualTheWholeBatchsWithin1e6() throws {
    let config = Self.config(batch: 4)
    let data = Self.data
    let reduced = try runOnThreads(ranks: 2, timeout: 60) { comm -> [[Float]] in
      let run = try DataParallelTrainer(config, data: data, communicator: comm, options: .init(bucketBytes: 4096))
      let (inputs, targets) = run.trainer.sampler.nextBatch(rank: comm.rank, ranks: 2)
      try run.parallel.backward(run.trainer.loss(inputs, targets) / 2)
      return run.trainer.parameters.map { $0.gradStorage! }
    }
    let whole = Trainer(config, tokenizer: data.tokenizer, train: data.train, val: data.val)
    let (inputs, targets) = whole.sampler.nextBatch()
    whole.loss(inputs, targets).backward()
    for (p, (a, b)) in zip(reduced[0], whole.parameters.map { $0.gradStorage! }).enumerated() {
      let size = b.map(abs).max()!
      let difference = zip(a, b).map { abs($0 - $1) }.max()!
      #expect(difference <= 1e-6 * size, "parameter \(p): \(difference) against \(size)")
    }
    #expect(reduced[0] == reduced[1])
  }

  /// Gradient accumulation inside data parallelism (no_sync for the first micro-batches): the sums associate
  /// differently from one process's (each rank's own pieces first), so within float noise, not bit for bit.
  @Test func accumulationOnEachRankStaysCloseToOneProcess() throws {
    let config = Self.config(batch: 4, accumulation: 2)
    let single = try Self.accumulatedRun(ranks: 2, steps: 2, config: config)
    let parallel = try Self.parallelRun(ranks: 2, zero: .none, steps: 2, config: config)
    for (a, b) in zip(parallel.weights[0], single.weights) {
      let difference = zip(a, b).map { abs($0 - $1) }.max()!
      #expect(difference < 1e-5)
    }
    #expect(parallel.weights[0] == parallel.weights[1])
  }

  @Test func theLedgerFollowsTheZeroPapersFormulas() throws {
    let config = Self.config(batch: 4)
    let count = Double(
      Trainer(config, tokenizer: Self.data.tokenizer, train: Self.data.train, val: Self.data.val).parameters.reduce(0) {
        $0 + $1.count
      })
    for zero in ZeroStage.allCases {
      let ledger = try Self.parallelRun(ranks: 2, zero: zero, steps: 2, config: config).ledger
      let paper = DataParallel.paperBytesPerParameter(zero, ranks: 2) * count
      // Chunks are cut at norm blocks, so a rank's share is near half, not exactly half.
      #expect(abs(Double(ledger.total) - paper) <= 0.05 * paper, "ZeRO \(zero.rawValue): \(ledger) against \(paper)")
      if zero != .parameters { #expect(ledger.weights == Int(count) * 4) }
    }
  }

  @Test func bucketsComeInReverseOrderAndChunksStartAtNormBlocks() {
    let counts = [192, 16, 128, 5]
    let layout = GradientLayout<Float>(counts: counts, bucketBytes: 133 * 4, ranks: 2)
    #expect(layout.buckets.map(\.parameters) == [[3, 2], [1], [0]])
    #expect(layout.buckets[0].bounds == [0, 69, 133])  // 66 is nearest the 128's second block (5 + 64)
    #expect(layout.buckets[1].bounds == [0, 0, 16])  // one block: all of it to one rank
    #expect(layout.buckets[2].bounds == [0, 64, 192])  // a tie (32 either way) goes to the lower start
    #expect(layout.firstBlock == [0, 3, 4, 6])
  }
}

/// Megatron's tensor parallelism on a tiny GPT, against the whole model in one process.
@Suite struct TensorParallelTests {
  static func config(heads: Int = 4) -> TrainConfig {
    var config = DataParallelTests.config(batch: 4)
    config.heads = heads
    return config
  }

  /// The whole model's gradients on one batch, cut as rank `rank` of `ranks` cuts the model.
  static func expectedGradients(config: TrainConfig, group: TensorParallelGroup) throws -> [[Float]] {
    let data = DataParallelTests.data
    let whole = Trainer(config, tokenizer: data.tokenizer, train: data.train, val: data.val)
    let (inputs, targets) = whole.sampler.nextBatch()
    whole.loss(inputs, targets).backward()
    for p in whole.parameters { p.storage = p.gradStorage! }  // the gradients in the weights' places, to cut alike
    return try TensorParallelGPT(slicing: whole.model, group: group).parameters().map(\.storage)
  }

  @Test(arguments: [2, 4]) func gradientsEqualTheWholeModelsWithin1e6(ranks: Int) throws {
    let config = Self.config()
    let data = DataParallelTests.data
    let results = try runOnThreads(ranks: ranks, timeout: 60) { comm -> [String] in
      let run = try TensorParallelTrainer(config, data: data, tensor: comm, data: nil)
      let (inputs, targets) = run.sampler.nextBatch()
      try run.model.loss(inputs, targets, batch: 4).backward()
      try run.model.group.check()
      let expected = try Self.expectedGradients(config: config, group: TensorParallelGroup(comm))
      var problems: [String] = []
      for ((name, p), want) in zip(run.model.namedParameters(), expected) {
        let got = p.gradStorage!
        let size = want.map(abs).max()!
        let difference = zip(got, want).map { abs($0 - $1) }.max()!
        if difference > 1e-6 * size { problems.append("rank \(comm.rank) \(name): \(difference) against \(size)") }
      }
      return problems
    }
    #expect(results.flatMap { $0 } == [])
  }

  @Test func vocabularyIsPaddedAndHeadsMustDivide() throws {
    let data = DataParallelTests.data
    let padded = try runOnThreads(ranks: 4, timeout: 60) { comm -> Int in
      try TensorParallelTrainer(Self.config(), data: data, tensor: comm, data: nil).model.paddedVocabulary
    }
    let vocabulary = data.tokenizer.vocabularySize
    #expect(vocabulary % 4 != 0 && padded == Array(repeating: (vocabulary + 3) / 4 * 4, count: 4))
    do {
      _ = try runOnThreads(ranks: 4, timeout: 60) { comm in
        try TensorParallelTrainer(Self.config(heads: 2), data: data, tensor: comm, data: nil)
      }
      Issue.record("accepted 2 heads on 4 ranks")
    } catch let error as ParallelError {
      #expect(error.description == "rank 0 failed: --tp 4 does not divide the 2 heads: each rank must hold whole heads")
    }
  }

  /// Three steps of training: tensor parallel on 2 ranks, and data x tensor on 4 (2 x 2), against one process on
  /// the whole batch.
  @Test func trainingFollowsOneProcess() throws {
    let config = Self.config()
    let data = DataParallelTests.data
    let whole = Trainer(config, tokenizer: data.tokenizer, train: data.train, val: data.val)
    let expected = try (0..<3).map { _ in try whole.runStep() }
    let tensor = try runOnThreads(ranks: 2, timeout: 60) { comm -> [Double] in
      let run = try TensorParallelTrainer(config, data: data, tensor: comm, data: nil)
      return try (0..<3).map { _ in try run.runStep() }
    }
    let grid = try runOnThreads(ranks: 4, timeout: 60) { comm -> [Double] in
      let tensorGroup = try comm.split(color: comm.rank / 2, key: comm.rank)
      let dataGroup = try comm.split(color: comm.rank % 2, key: comm.rank)
      let run = try TensorParallelTrainer(config, data: data, tensor: tensorGroup, data: dataGroup)
      return try (0..<3).map { _ in try run.runStep() }
    }
    for losses in tensor + grid {
      for (a, b) in zip(losses, expected) { #expect(abs(a - b) <= 1e-5 * b, "\(losses) against \(expected)") }
    }
  }
}

/// Pipeline parallelism: the schedules' orders, and training equal to one process's gradient accumulation.
@Suite struct PipelineTests {
  @Test func oneForwardOneBackwardWarmsUpThenAlternates() {
    let order = PipelineSchedule.oneForwardOneBackward.order(stage: 0, stages: 2, micro: 4)
    #expect(
      order.map { ($0.forward ? "F" : "B") + String($0.micro) } == ["F0", "F1", "B0", "F2", "B1", "F3", "B2", "B3"])
    let last = PipelineSchedule.oneForwardOneBackward.order(stage: 1, stages: 2, micro: 4)
    #expect(
      last.map { ($0.forward ? "F" : "B") + String($0.micro) } == ["F0", "B0", "F1", "B1", "F2", "B2", "F3", "B3"])
    let gpipe = PipelineSchedule.gpipe.order(stage: 0, stages: 2, micro: 2)
    #expect(gpipe.map { ($0.forward ? "F" : "B") + String($0.micro) } == ["F0", "F1", "B0", "B1"])
  }

  static func run(
    ranks: Int, micro: Int, schedule: PipelineSchedule, steps: Int, config: TrainConfig
  ) throws -> [(weights: [[Float]], losses: [Double], peak: Int)] {
    let data = DataParallelTests.data
    return try runOnThreads(ranks: ranks, timeout: 60) { comm in
      let stage = try PipelineStage(config, data: data, communicator: comm)
      let losses = try (0..<steps).map { _ in try stage.runStep(micro: micro, schedule: schedule) }
      return (stage.parameters.map(\.storage), losses, stage.peakInFlight)
    }
  }

  @Test(arguments: PipelineSchedule.allCases) func pipelineEqualsGradientAccumulationBitForBit(
    schedule: PipelineSchedule
  ) throws {
    for (ranks, layers) in [(2, 2), (4, 4)] {
      var config = DataParallelTests.config(batch: 4)
      config.layers = layers
      let single = try DataParallelTests.accumulatedRun(ranks: 4, steps: 3, config: config)
      let stages = try Self.run(ranks: ranks, micro: 4, schedule: schedule, steps: 3, config: config)
      // The stages' parameters laid end to end are the model's, in its order (the head is the first stage's table).
      #expect(stages.flatMap(\.weights) == single.weights, "\(schedule) on \(ranks) stages")
      for stage in stages {
        for (a, b) in zip(stage.losses, single.losses) { #expect(abs(a - b) <= 1e-12 * b) }
      }
      let peaks = stages.map(\.peak)
      #expect(peaks == (0..<ranks).map { schedule == .gpipe ? 4 : min(4, ranks - $0) }, "\(schedule): \(peaks)")
    }
  }

  @Test func dataTimesPipelineOnFourRanksFollowsOneProcess() throws {
    let config = DataParallelTests.config(batch: 4)
    let data = DataParallelTests.data
    let single = try DataParallelTests.accumulatedRun(ranks: 2, steps: 3, config: config)
    let grid = try runOnThreads(ranks: 4, timeout: 60) { comm -> (weights: [[Float]], losses: [Double]) in
      let (copy, stageIndex) = comm.rank.quotientAndRemainder(dividingBy: 2)
      let pipeline = try comm.split(color: copy, key: stageIndex)
      let copies = try comm.split(color: stageIndex, key: copy)
      let stage = try PipelineStage(config, data: data, communicator: pipeline)
      let losses = try (0..<3).map { _ in
        try stage.runStep(micro: 1, schedule: .oneForwardOneBackward, copy: copy, copies: 2, dataGroup: copies)
      }
      return (stage.parameters.map(\.storage), losses)
    }
    // Each copy of the pipeline runs one micro-batch, the copies' sums are one process's two micro-batches.
    #expect(grid[0].weights + grid[1].weights == single.weights)
    #expect(grid[2].weights + grid[3].weights == single.weights)
    for (a, b) in zip(grid[0].losses, single.losses) { #expect(abs(a - b) <= 1e-12 * b) }
  }

  @Test func moreStagesThanBlocksIsRefused() throws {
    let data = DataParallelTests.data
    do {
      _ = try runOnThreads(ranks: 4, timeout: 60) { comm in
        try PipelineStage(DataParallelTests.config(), data: data, communicator: comm)
      }
      Issue.record("accepted")
    } catch let error as ParallelError {
      #expect(error.description == "rank 0 failed: --pp 4 needs at least 4 blocks, one per stage; the model has 2")
    }
  }
}
