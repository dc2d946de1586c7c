import Datasets
import Foundation
import Support
import Testing

@testable import Stage3

@Suite struct DataTests {
  @Test func theLoaderDealsEveryExampleOncePerEpochInANewOrder() {
    let loader = BatchLoader(count: 10, batchSize: 4)
    let random = RandomSource(seed: 1)
    let first = loader.epoch(random)
    let second = loader.epoch(random)
    #expect(first.map(\.count) == [4, 4, 2])
    #expect(Set(first.joined()) == Set(0..<10) && Set(second.joined()) == Set(0..<10))
    #expect(first != second)
    #expect(BatchLoader(count: 5, batchSize: 2, shuffle: false).epoch(random) == [[0, 1], [2, 3], [4]])
  }
}

@Suite(.serialized) struct TrainingTests {
  let splits = try! DigitsSplits(Digits())

  @Test func theSplitIsFixed() {
    let sizes: [Int] = [splits.train.count, splits.validation.count, splits.test.count]
    #expect(sizes == [1258, 270, 269])
  }

  @Test func accumulatingMicroBatchesGivesTheGradientOfTheWholeBatch() {
    var rng = SeededRNG(seed: 5)
    let model =
      makeMLP(inputs: 64, hidden: [16], outputs: 10, random: RandomSource(seed: 1), rng: &rng)
      as Sequential<Float>
    let batch = splits.train.rows(Array(0..<8))
    crossEntropyLoss(logits: model(batch.features), labels: batch.labels).backward()
    let whole = model.parameters().map { $0.gradStorage! }
    model.zeroGrad()
    for half in [Array(0..<4), Array(4..<8)] {
      let micro = splits.train.rows(half)
      (crossEntropyLoss(logits: model(micro.features), labels: micro.labels) / 2).backward()
    }
    for (p, g) in zip(model.parameters(), whole) {
      #expect(zip(p.gradStorage!, g).allSatisfy { abs($0 - $1) < 1e-6 })
    }
  }

  /// What the trainer wires up, for every optimizer: the decaying group holds exactly the matrices (rank >= 2),
  /// with the configured decay; every bias is in the group without decay; no parameter is left out or in twice.
  @Test(arguments: OptimizerKind.allCases)
  func theTrainerDecaysTheMatricesOnly(_ kind: OptimizerKind) {
    var config = TrainConfig()
    config.optimizer = kind
    config.weightDecay = 0.05
    config.hidden = [16, 8]
    let trainer = Trainer(config, data: splits)
    let groups = trainer.optimizer.groups
    let decaying = groups.filter { $0.weightDecay != 0 }.flatMap(\.parameters)
    let kept = groups.filter { $0.weightDecay == 0 }.flatMap(\.parameters)
    #expect(groups.allSatisfy { $0.weightDecay == 0 || $0.weightDecay == 0.05 })
    #expect(decaying.count == 3 && decaying.allSatisfy { $0.rank >= 2 })
    #expect(kept.count == 3 && kept.allSatisfy { $0.rank == 1 })
    let ids = Set((decaying + kept).map(ObjectIdentifier.init))
    #expect(ids == Set(trainer.parameters.map(ObjectIdentifier.init)) && ids.count == 6)
  }

  /// The first optimizer step runs at the schedule's rate for step 0. One batch holds the whole training split,
  /// so an epoch is one step: 20 steps with one of warmup, where step 0's factor is 1/2 and step 1's is 1.
  @Test func theFirstStepUsesTheSchedulesRateForStepZero() throws {
    var config = TrainConfig()
    config.epochs = 20
    config.batchSize = 2000
    config.hidden = [16]
    let trainer = Trainer(config, data: splits)
    #expect(trainer.stepsPerEpoch == 1 && trainer.schedule == .cosine(warmup: 1, total: 20, floor: 0.1))
    let first = try trainer.runEpoch()
    #expect(trainer.optimizer.stepCount == 1)
    #expect(first.learningRate == config.lr * trainer.schedule.factor(at: 0))
    #expect(abs(first.learningRate - config.lr / 2) < 1e-15)
    #expect(abs(try trainer.runEpoch().learningRate - config.lr) < 1e-15)  // step 1: the warmup is over
  }

  @Test func theDemoReaches97PercentOnTheTestSet() throws {
    let trainer = Trainer(TrainConfig(), data: splits)
    while trainer.epoch < TrainConfig().epochs { try trainer.runEpoch() }
    #expect(trainer.evaluate(splits.test).accuracy >= 0.97)
  }

  @Test func aResumedRunRetracesTheUninterruptedOneExactly() throws {
    var config = TrainConfig()
    config.epochs = 4
    config.hidden = [32]
    let straight = Trainer(config, data: splits)
    for _ in 0..<4 { try straight.runEpoch() }

    let path = NSTemporaryDirectory() + "resume-\(getpid()).safetensors"
    let first = Trainer(config, data: splits)
    try first.runEpoch()
    try first.runEpoch()
    try first.save(to: path)
    let second = Trainer(config, data: splits)  // a fresh process would start like this
    try second.resume(from: path)
    #expect(second.epoch == 2)
    try second.runEpoch()
    try second.runEpoch()
    #expect(second.history == straight.history)
    #expect(second.parameters.map(\.storage) == straight.parameters.map(\.storage))
  }

  @Test func aBadCheckpointIsRefusedAndLeavesTheRunUntouched() throws {
    var config = TrainConfig()
    config.hidden = [8]
    let trainer = Trainer(config, data: splits)
    try trainer.runEpoch()
    let path = NSTemporaryDirectory() + "bad-\(getpid()).safetensors"
    try trainer.save(to: path)
    let before = trainer.parameters.map(\.storage)

    var other = config
    other.hidden = [9]
    do {
      try Trainer(other, data: splits).resume(from: path)
      Issue.record("a checkpoint of another model was accepted")
    } catch {
      #expect("\(error)".hasSuffix("it was made with --hidden 8, this run has --hidden 9"))
    }
    let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
    try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: path))
    do {
      try trainer.resume(from: path)
      Issue.record("a truncated checkpoint was accepted")
    } catch {
      #expect("\(error)".contains("is not a valid safetensors file"))
    }
    #expect(trainer.parameters.map(\.storage) == before)
    #expect(trainer.epoch == 1)
  }
}
