import Foundation
import Support
import Testing

@testable import Stage8

/// Modules, layers and initialisers; the fused layers against the same maths composed from plain ops.
@Suite struct ModuleTests {
  @Test func parametersAreFoundByReflectionWithDottedNames() {
    var rng = SeededRNG(seed: 1)
    let model =
      makeMLP(
        inputs: 4, hidden: [8, 6], outputs: 3, dropout: 0.5, random: RandomSource(seed: 1), rng: &rng)
      as Sequential<Float>
    #expect(
      model.namedParameters().map(\.name) == [
        "layers.0.weight", "layers.0.bias", "layers.3.weight", "layers.3.bias", "layers.6.weight", "layers.6.bias",
      ])
    #expect(model.parameterCount == 4 * 8 + 8 + 8 * 6 + 6 + 6 * 3 + 3)
    #expect(model.namedParameters()[2].tensor.shape == [6, 8])
  }

  @Test func trainAndEvalReachEveryModule() {
    var rng = SeededRNG(seed: 1)
    let model =
      makeMLP(inputs: 2, hidden: [3], outputs: 1, dropout: 0.5, random: RandomSource(seed: 1), rng: &rng)
      as Sequential<Float>
    model.eval()
    #expect(model.modules().allSatisfy { !$0.isTraining })
    #expect(model.modules().count == 5)  // the Sequential, Linear, ReLU, Dropout, Linear
    model.train()
    #expect(model.modules().allSatisfy { $0.isTraining })
  }

  @Test func aLinearLayerWithoutBiasHasOneParameter() {
    var rng = SeededRNG(seed: 1)
    let layer = Linear<Float>(3, 2, bias: false, rng: &rng)
    #expect(layer.namedParameters().map(\.name) == ["weight"])
  }

  @Test func initialisersHaveTheirScales() {
    var rng = SeededRNG(seed: 3)
    func std(_ t: Tensor<Double>) -> Double {
      (t.storage.map { $0 * $0 }.reduce(0, +) / Double(t.count)).squareRoot()
    }
    // Bounded above and below: within the bound, reaching close to it on both sides, with the spread of U(-a, a)
    // (std a / sqrt(3)); all zeros, or a bound off by a factor, fails.
    func expectUniform(_ t: Tensor<Double>, bound: Double) {
      #expect(t.storage.allSatisfy { abs($0) <= bound })
      #expect(t.storage.max()! > 0.98 * bound && t.storage.min()! < -0.98 * bound)
      #expect(abs(std(t) - bound / 3.0.squareRoot()) < 0.02 * bound)
    }
    expectUniform(Initializer.uniformFanIn.weight([200, 100], rng: &rng), bound: 0.1)
    expectUniform(Initializer.xavierUniform.weight([200, 100], rng: &rng), bound: (6.0 / 300).squareRoot())
    let linear = Linear<Double>(400, 300, rng: &rng)  // PyTorch's bias: U(-1/sqrt(inputs), 1/sqrt(inputs))
    expectUniform(linear.weight, bound: 0.05)
    expectUniform(linear.bias!, bound: 0.05)
    #expect(Linear<Double>(4, 3, initializer: .xavierUniform, rng: &rng).bias!.storage == [0, 0, 0])
    #expect(abs(std(Initializer.kaimingNormal.weight([200, 100], rng: &rng)) - (2.0 / 100).squareRoot()) < 0.003)
    #expect(abs(std(Initializer.normal(std: 0.02).weight([200, 100], rng: &rng)) - 0.02) < 0.001)
  }

  @Test func dropoutScalesWhatItKeepsAndIsTheIdentityInEval() {
    let dropout = Dropout<Double>(0.25, random: RandomSource(seed: 4))
    let y = dropout(Tensor.ones([10_000]))
    #expect(y.storage.allSatisfy { $0 == 0 || abs($0 - 4.0 / 3) < 1e-12 })
    let kept = Double(y.storage.filter { $0 != 0 }.count) / 10_000
    #expect(abs(kept - 0.75) < 0.02)
    dropout.eval()
    #expect(dropout(Tensor.ones([5])).storage == [1, 1, 1, 1, 1])
  }

  @Test func embeddingPicksRows() {
    let table = Tensor<Double>((0..<6).map(Double.init), shape: [3, 2], requiresGrad: true)
    let rows = Embedding(weight: table)([2, 2, 0], shape: [1, 3])
    #expect(rows.shape == [1, 3, 2] && rows.storage == [4, 5, 4, 5, 0, 1])
  }
}

@Suite struct FusedAgainstComposedTests {
  typealias T = Tensor<Double>

  /// Runs `f` on fresh copies of `inputs` and returns the output and each input's gradient for a fixed seed.
  func evaluate(_ inputs: [T], _ f: ([T]) -> T) -> (output: [Double], grads: [[Double]]) {
    let leaves = inputs.map { T($0.storage, shape: $0.shape, requiresGrad: true) }
    let y = f(leaves)
    y.backward(gradient: (0..<y.count).map { Double($0 % 5) - 1.5 })
    return (y.storage, leaves.map { $0.gradStorage ?? [] })
  }

  func expectClose(_ a: [Double], _ b: [Double]) {
    #expect(a.count == b.count)
    #expect(zip(a, b).allSatisfy { abs($0 - $1) <= 1e-12 + 1e-9 * abs($1) }, "\(a) vs \(b)")
  }

  @Test func linearEqualsMatmulWithTheTransposePlusBias() {
    var rng = SeededRNG(seed: 1)
    let inputs = [T.normal([2, 3, 4], rng: &rng), T.normal([5, 4], rng: &rng), T.normal([5], rng: &rng)]
    let fused = evaluate(inputs) { $0[0].linear($0[1], $0[2]) }
    let composed = evaluate(inputs) { $0[0].matmul($0[1].transposed()) + $0[2] }
    expectClose(fused.output, composed.output)
    for (a, b) in zip(fused.grads, composed.grads) { expectClose(a, b) }
  }

  @Test func linearIsXTimesWTransposedPlusBiasByHand() {
    let x = T([1, 2, -1, 0.5], shape: [2, 2], requiresGrad: true)
    let w = T([1, 2, 3, 4, 5, 6], shape: [3, 2], requiresGrad: true)
    let b = T([0.5, -1, 0], shape: [3], requiresGrad: true)
    let y = Linear(weight: w, bias: b)(x)
    #expect(y.shape == [2, 3] && y.storage == [5.5, 10, 17, 0.5, -2, -2])
    y.sum().backward()
    #expect(x.gradStorage! == [9, 12, 9, 12])  // each row: the column sums of W
    #expect(w.gradStorage! == [0, 2.5, 0, 2.5, 0, 2.5])  // each row: the sum of the rows of x
    #expect(b.gradStorage! == [2, 2, 2])
  }

  /// LayerNorm's values from its definition, y = (x - mean) / sqrt(var + eps) * gamma + beta with the biased
  /// variance, worked out here number by number. The second row's variance (2.5e-5) is close to eps (1e-5), so
  /// eps outside the square root (/ (sqrt(var) + eps)) is off by 18% there, not by float noise: the tolerance
  /// 1e-12 catches it by eleven orders of magnitude (and a missing eps, or the unbiased variance, as well).
  @Test func layerNormMatchesItsDefinitionByHand() {
    let rows: [[Double]] = [[1, 2, 3, 4], [0, 0.01, 0, 0.01]]
    let (gamma, beta, eps): ([Double], [Double], Double) = ([1, 2, 1, 0.5], [0, 0, 1, -1], 1e-5)
    var expected: [Double] = []
    for row in rows {
      let mean = row.reduce(0, +) / 4
      let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 4
      for (i, value) in row.enumerated() {
        expected.append((value - mean) / (variance + eps).squareRoot() * gamma[i] + beta[i])
      }
    }
    // Row 1: mean 2.5, variance 1.25; row 2: mean 0.005, variance 2.5e-5, so x - mean = -+0.005.
    #expect(abs(expected[0] - (-1.5 / 1.25001.squareRoot())) < 1e-12)
    #expect(abs(expected[5] - (2 * 0.005 / 0.000035.squareRoot())) < 1e-12)
    let x = T(rows.flatMap { $0 }, shape: [2, 4])
    let fused = x.layerNorm(T(gamma, shape: [4]), T(beta, shape: [4]), eps: eps)
    #expect(zip(fused.storage, expected).allSatisfy { abs($0 - $1) <= 1e-12 * max(1, abs($1)) }, "\(fused.storage)")
    let module = LayerNorm<Double>(4, eps: eps)
    module.gamma!.storage = gamma
    module.beta!.storage = beta
    #expect(zip(module(x).storage, expected).allSatisfy { abs($0 - $1) <= 1e-12 * max(1, abs($1)) })
  }

  /// Cross-entropy by hand: row 0 has p(label) = 1/2, row 1 has 1/4 (logits ln 3 and 0, label 1), row 2 is
  /// ignored. The mean is over the two counted rows only: (ln 2 + ln 4) / 2; the gradient is (p - onehot) / 2 on
  /// the counted rows and 0 on the ignored one.
  @Test func crossEntropyAveragesOverTheCountedRowsOnlyByHand() {
    let logits = T([0, 0, Foundation.log(3), 0, 5, -5], shape: [3, 2], requiresGrad: true)
    let loss = crossEntropyLoss(logits: logits, labels: [0, 1, -100])
    #expect(abs(loss.item - 1.5 * Foundation.log(2)) < 1e-12)
    loss.backward()
    let expected: [Double] = [-0.25, 0.25, 0.375, -0.375, 0, 0]
    #expect(zip(logits.gradStorage!, expected).allSatisfy { abs($0 - $1) < 1e-12 }, "\(logits.gradStorage!)")
    let allIgnored = crossEntropyLoss(logits: T([1, 2], shape: [1, 2]), labels: [-100])
    #expect(allIgnored.item.isNaN)  // 0 / 0, as in PyTorch
  }

  @Test func layerNormEqualsItsDefinitionInPlainOps() {
    var rng = SeededRNG(seed: 2)
    let inputs = [T.normal([3, 6], rng: &rng), T.normal([6], mean: 1, rng: &rng), T.normal([6], rng: &rng)]
    let fused = evaluate(inputs) { $0[0].layerNorm($0[1], $0[2], eps: 1e-5) }
    let composed = evaluate(inputs) { $0[0].layerNormComposed($0[1], $0[2], eps: 1e-5) }
    expectClose(fused.output, composed.output)
    for (a, b) in zip(fused.grads, composed.grads) { expectClose(a, b) }
  }

  @Test func crossEntropyEqualsLogSoftmaxAgainstTheTargetDistribution() {
    var rng = SeededRNG(seed: 3)
    let logits = T.normal([5, 4], std: 2, rng: &rng)
    let labels = [3, -100, 0, 2, -100]
    let fused = evaluate([logits]) { crossEntropyLoss(logits: $0[0], labels: labels, labelSmoothing: 0.2) }
    // q = 0.8 one-hot + 0.05 everywhere on the three counted rows; ignored rows get q = 0.
    var q = [Double](repeating: 0, count: 20)
    for (row, label) in labels.enumerated() where label >= 0 {
      for c in 0..<4 { q[row * 4 + c] = (c == label ? 0.8 : 0) + 0.05 }
    }
    let composed = evaluate([logits]) { -($0[0].logSoftmax(axis: 1) * T(q, shape: [5, 4])).sum() / 3 }
    expectClose(fused.output, composed.output)
    expectClose(fused.grads[0], composed.grads[0])
    let stageComposed = evaluate([logits]) {
      crossEntropyLossComposed(logits: $0[0], labels: labels, labelSmoothing: 0.2)
    }
    expectClose(fused.output, stageComposed.output)
    expectClose(fused.grads[0], stageComposed.grads[0])
  }
}
