import Datasets
import Testing

@testable import Stage1

@Suite struct TrainingTests {
  @Test func theDefaultDemoReaches100PercentTrainingAccuracyOnMoons() {
    let result = train(TrainConfig())
    let (loss, scores) = lossAndScores(result.model, result.data, alpha: TrainConfig().alpha)
    #expect(accuracy(scores, result.data.labels) == 1)
    #expect(loss.data < 0.05)
    #expect(result.history.count == 100)
    #expect(result.history.last!.loss < result.history.first!.loss / 10)
  }

  @Test func aRunIsReproducibleFromItsSeed() {
    var config = TrainConfig()
    config.steps = 3
    config.hidden = [4]
    let a = train(config).history.map(\.loss)
    let b = train(config).history.map(\.loss)
    config.seed += 1
    let c = train(config).history.map(\.loss)
    #expect(a == b)
    #expect(a != c)
  }

  @Test func theScoreGridCoversTheDataWithAMargin() {
    var config = TrainConfig()
    config.steps = 1
    config.hidden = [4]
    let result = train(config)
    let grid = scoreGrid(result.model, result.data, resolution: 10)
    #expect(grid.xs.count == 10 && grid.ys.count == 10 && grid.values.count == 10)
    #expect(grid.xs.first! < result.data.points.map { $0[0] }.min()!)
    #expect(grid.ys.last! > result.data.points.map { $0[1] }.max()!)
  }
}
