import Datasets
import Foundation
import Support
import Testing

@testable import Stage2

@Suite struct TrainingTests {
  @Test func theVectorisedMoonsRunRetracesStage1() throws {
    // The same seed draws the same weights in the same order as stage 1, so the Float tensors follow the Double
    // scalars' loss curve. These are stage 1's losses (its loss.csv, 6 digits) at steps 1, 50 and 100, to 1e-4
    // relative (Float against Double drifts by at most 4e-5 over the run).
    let result = try train(TrainConfig())
    #expect(abs(result.history[0].loss - 1.40557) <= 1e-4 * 1.40557)
    #expect(abs(result.history[49].loss - 0.0434196) <= 1e-4 * 0.0434196)
    #expect(abs(result.history[99].loss - 0.0123113) <= 1e-4 * 0.0123113)
    #expect(result.history[99].accuracy == 1)
  }

  /// As the stage 2 demo does: stage 1's executable trains the same configuration in the same run, and every one
  /// of its losses (written with 6 significant digits) is matched to 2e-5 relative, step by step.
  @Test func theMoonsLossesEqualStage1sComputedInTheSameRun() throws {
    var config = TrainConfig()
    config.steps = 30
    let stage1 = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
      .appendingPathComponent("stage1").path
    let scratch = NSTemporaryDirectory() + "stage1-losses-\(getpid())"
    defer { try? FileManager.default.removeItem(atPath: scratch) }
    let run = try runTool(stage1, config.stage1Arguments(plotDir: scratch))
    #expect(run.status == 0, "\(run.errorOutput)")
    let csv = try String(contentsOfFile: scratch + "/loss.csv", encoding: .utf8)
    let expected = csv.split(separator: "\n").dropFirst().map { Double($0.split(separator: ",")[1])! }
    let losses = try train(config).history.map(\.loss)
    #expect(expected.count == 30 && losses.count == 30)
    for (step, (loss, reference)) in zip(losses, expected).enumerated() {
      #expect(abs(loss - reference) <= 2e-5 * reference, "step \(step + 1): \(loss) vs stage 1's \(reference)")
    }
  }

  @Test func spiralsReach95PercentWithCrossEntropy() throws {
    var config = TrainConfig.spirals
    config.steps = 400
    let result = try train(config)
    let scores = noGrad { result.model(Batch(result.data).inputs) }
    #expect(scores.shape == [300, 3])
    #expect(accuracy(scores, result.data.labels) >= 0.95)
  }

  @Test func predictionsAreTheSignOrTheLargestLogit() {
    #expect(predictions(Tensor([0.5, -1, 2], shape: [3, 1])) == [1, 0, 1])
    #expect(predictions(Tensor([0.1, 0.9, 0.0, 3, 1, 2], shape: [2, 3])) == [1, 0])
  }

  @Test func theScoreGridShowsClassesForMoreThanTwo() throws {
    var config = TrainConfig.spirals
    config.steps = 1
    let result = try train(config)
    let grid = scoreGrid(result.model, result.data, resolution: 10)
    #expect(grid.values.count == 10 && grid.values[0].count == 10)
    #expect(grid.values.joined().allSatisfy { [0, 1, 2].contains($0) })
  }
}

@Suite struct LayerAndLossTests {
  @Test func aLayerHoldsStage1sNeuronsAsColumns() {
    var a = SeededRNG(seed: 5)
    var b = SeededRNG(seed: 5)
    let layer = Layer<Double>(inputs: 3, outputs: 2, activation: .linear, rng: &a)
    // Stage 1 drew neuron 0's three weights, then neuron 1's.
    let draws = (0..<6).map { _ in b.uniform(-1, 1) }
    #expect(layer.weight.shape == [3, 2])
    #expect(layer.weight.storage == [draws[0], draws[3], draws[1], draws[4], draws[2], draws[5]])
  }

  @Test func micrograds2x16x16x1NetworkHas337Parameters() {
    var rng = SeededRNG(seed: 1)
    #expect(MLP<Float>(inputs: 2, sizes: [16, 16, 1], rng: &rng).parameterCount == 337)
  }

  @Test func crossEntropyIsMinusTheLogProbabilityOfTheLabel() {
    let logits = Tensor<Double>([0, 0, 0, 1, 2, 3], shape: [2, 3])
    let loss = crossEntropyLoss(logits: logits, labels: [0, 2])
    let e: (Double) -> Double = Foundation.exp
    let second: Double = -(3 - Foundation.log(e(1) + e(2) + e(3)))
    let expected: Double = (Foundation.log(3.0) + second) / 2
    #expect(abs(loss.item - expected) < 1e-12)
  }

  @Test func hingeAndBCEMatchStage1() {
    let scores = Tensor<Double>([2, 0.5, 0.25], shape: [3])
    #expect(hingeLoss(scores: scores, labels: Tensor([1, -1, 1], shape: [3])).item == 0.75)
    let z = Tensor<Double>([-1000, 1000], shape: [2])
    #expect(bceWithLogitsLoss(logits: z, labels: Tensor([1, 1], shape: [2])).item == 500)
  }

  @Test func sgdUpdatesInPlaceAndSkipsParametersWithoutGradient() {
    let p = Tensor<Float>([1, 2], shape: [2], requiresGrad: true)
    let unused = Tensor<Float>([5], shape: [1], requiresGrad: true)
    var sgd = SGD(parameters: [p, unused], learningRate: 0.5)
    (p * p).sum().backward()
    sgd.step()
    #expect(p.storage == [0, 0])
    #expect(unused.storage == [5])
  }
}
