import Datasets
import Testing

@testable import Stage1

@Suite struct TrainingTests {
  @Test func theDefaultDemoReaches100PercentTrainingAccuracyOnMoons() throws {
    let result = try train(TrainConfig())
    let (loss, scores) = lossAndScores(result.model, result.data, alpha: TrainConfig().alpha)
    #expect(accuracy(scores, result.data.labels) == 1)
    #expect(loss.data < 0.05)
    #expect(result.history.count == 100)
    #expect(result.history.last!.loss < result.history.first!.loss / 10)
  }

  @Test func aRunIsReproducibleFromItsSeed() throws {
    var config = TrainConfig()
    config.steps = 3
    config.hidden = [4]
    let a = try train(config).history.map(\.loss)
    let b = try train(config).history.map(\.loss)
    config.seed += 1
    let c = try train(config).history.map(\.loss)
    #expect(a == b)
    #expect(a != c)
  }

  @Test func theScoreGridCoversTheDataWithAMargin() throws {
    var config = TrainConfig()
    config.steps = 1
    config.hidden = [4]
    let result = try train(config)
    let grid = scoreGrid(result.model, result.data, resolution: 10)
    #expect(grid.xs.count == 10 && grid.ys.count == 10 && grid.values.count == 10)
    #expect(grid.xs.first! < result.data.points.map { $0[0] }.min()!)
    #expect(grid.ys.last! > result.data.points.map { $0[1] }.max()!)
  }
}
