import Foundation
import Kernels
import Support
import Testing

@testable import Stage8

/// The engine on tensors: values and gradients small enough to work out by hand, and the rules of the graph.
@Suite struct EngineTests {
  typealias T = Tensor<Double>

  @Test func elementwiseArithmeticAndItsGradients() {
    let a = T([1, 2, 3], shape: [3], requiresGrad: true)
    let b = T([4, 5, 6], shape: [3], requiresGrad: true)
    let y = (a * b + a / b - b).sum()
    y.backward()
    let value: Double = 4 + 10 + 18 + 0.25 + 0.4 + 0.5 - 15
    let da: [Double] = [4.25, 5.2, 6 + 1 / 6.0]  // b + 1/b
    let db: [Double] = [1 - 1 / 16.0 - 1, 2 - 2 / 25.0 - 1, 3 - 3 / 36.0 - 1]  // a - a/b^2 - 1
    #expect(abs(y.item - value) < 1e-12)
    #expect(zip(a.gradStorage!, da).allSatisfy { abs($0 - $1) < 1e-15 })
    #expect(zip(b.gradStorage!, db).allSatisfy { abs($0 - $1) < 1e-15 })
  }

  @Test func plainNumbersMixOnEitherSide() {
    let x = T([2], shape: [1], requiresGrad: true)
    let left: T = (1 + x) * (3 - x) + 2 * x + 8 / x  // numbers on the left
    let right: T = x * 3 + x / 4  // numbers on the right
    let y = (left + right).sum()
    let value: Double = 3 + 4 + 4 + 6 + 0.5
    #expect(y.item == value)
    y.backward()
    let slope: Double = (3 - 2) - (1 + 2) + 2 - 8 / 4 + 3 + 0.25
    #expect(x.gradStorage! == [slope])
  }

  /// d/dx x^p = p x^(p-1) on both sides of zero: at a negative x an odd p - 1 gives a negative slope, so a derivative
  /// written with abs(x) fails here; and non-integer powers of positive x, with values from the definition.
  @Test func powersAndTheirDerivativesOnBothSidesOfZero() {
    let cases: [(p: Double, x: [Double], value: [Double], slope: [Double])] = [
      (2, [-1.5, 0.7], [2.25, 0.49], [-3, 1.4]),
      (3, [-1.5, 2], [-3.375, 8], [6.75, 12]),
      (-2, [-1.5, 2], [1 / 2.25, 0.25], [2 / 3.375, -0.25]),  // -2 x^-3
      (0.5, [4, 0.25], [2, 0.5], [0.25, 1]),
      (2.5, [4, 1], [32, 1], [20, 2.5]),  // 2.5 x^1.5
      (-1.5, [4, 1], [0.125, 1], [-1.5 / 32, -1.5]),  // -1.5 x^-2.5
    ]
    for (p, x, value, slope) in cases {
      let t = T(x, shape: [2], requiresGrad: true)
      let y = t.pow(p)
      y.sum().backward()
      #expect(zip(y.storage, value).allSatisfy { abs($0 - $1) <= 1e-14 * max(1, abs($1)) }, "\(x)^\(p)")
      #expect(zip(t.gradStorage!, slope).allSatisfy { abs($0 - $1) <= 1e-14 * max(1, abs($1)) }, "d/dx \(x)^\(p)")
    }
  }

  @Test func broadcastingFollowsNumPysRules() {
    #expect(broadcastShape([3, 1], [1, 4]) == [3, 4])
    #expect(broadcastShape([2, 3], [3]) == [2, 3])
    #expect(broadcastShape([2, 1, 4], [3, 1]) == [2, 3, 4])
    #expect(broadcastShape([], [2, 2]) == [2, 2])
    #expect(broadcastShape([2, 3], [2]) == nil)
    let y = T([1, 2], shape: [2, 1]) + T([10, 20, 30], shape: [3])
    #expect(y.shape == [2, 3])
    #expect(y.storage == [11, 21, 31, 12, 22, 32])
  }

  @Test func aBroadcastOperandGetsTheSumOverItsCopies() {
    let x = T.ones([2, 3], requiresGrad: true)
    let bias = T([1, 2, 3], shape: [3], requiresGrad: true)
    let y = (x * bias).sum()
    y.backward()
    #expect(bias.gradStorage! == [2, 2, 2])  // used by both rows
    #expect(x.gradStorage! == [1, 2, 3, 1, 2, 3])
  }

  @Test func reductionsOverAxes() {
    let x = T((0..<24).map(Double.init), shape: [2, 3, 4])
    #expect(x.sum(axis: 0).shape == [3, 4])
    #expect(x.sum(axis: 0)[1, 2] == 6 + 18)
    #expect(x.sum(axis: 1, keepDims: true).shape == [2, 1, 4])
    #expect(x.sum(axes: [0, 2]).storage == [60, 92, 124])  // sum over i, k of 12i + 4j + k = 32j + 60
    #expect(x.mean().item == 11.5)
    #expect(x.max(axis: 2).storage == [3, 7, 11, 15, 19, 23])
    #expect(x.max(axis: -1).storage == x.max(axis: 2).storage)
  }

  @Test func maxSendsTheGradientToTheMaximum() {
    let x = T([1, 5, 3, 7, 2, 0], shape: [2, 3], requiresGrad: true)
    x.max(axis: 1).sum().backward()
    #expect(x.gradStorage! == [0, 1, 0, 1, 0, 0])
  }

  @Test func matmulAgreesWithTheTextbookLoop() {
    var rng = SeededRNG(seed: 4)
    let a = T.uniform([5, 7], low: -1, high: 1, rng: &rng)
    let b = T.uniform([7, 3], low: -1, high: 1, rng: &rng)
    let reference = naiveMatmul(a.storage, b.storage, m: 5, k: 7, n: 3)
    #expect(zip(a.matmul(b).storage, reference).allSatisfy { abs($0 - $1) < 1e-12 })
  }

  @Test func batchedMatmulBroadcastsTheBatchAxes() {
    var rng = SeededRNG(seed: 5)
    let a = T.uniform([2, 1, 3, 4], low: -1, high: 1, rng: &rng)
    let b = T.uniform([3, 4, 2], low: -1, high: 1, rng: &rng)
    let c = a.matmul(b)
    #expect(c.shape == [2, 3, 3, 2])
    // Batch (1, 2) multiplies a's batch 1 with b's batch 2.
    let expected = naiveMatmul(Array(a.storage[12..<24]), Array(b.storage[16..<24]), m: 3, k: 4, n: 2)
    let got = Array(c.storage[(5 * 6)..<(6 * 6)])
    #expect(zip(got, expected).allSatisfy { abs($0 - $1) < 1e-12 })
  }

  @Test func softmaxIsStableForHugeInputs() {
    let x = T([1000, 1001, 1002], shape: [3])
    let p = x.softmax()
    #expect(p.storage.allSatisfy { $0.isFinite })
    #expect(abs(p.storage.reduce(0, +) - 1) < 1e-12)
    let logP = T([-1000, 0, 1000], shape: [3]).logSoftmax()
    #expect(logP.storage == [-2000, -1000, 0])
  }

  @Test func gatherAccumulatesRepeatedRows() {
    let table = T((0..<6).map(Double.init), shape: [3, 2], requiresGrad: true)
    let rows = table.gatherRows([2, 0, 2], indexShape: [1, 3])
    #expect(rows.shape == [1, 3, 2])
    #expect(rows.storage == [4, 5, 0, 1, 4, 5])
    rows.sum().backward()
    #expect(table.gradStorage! == [1, 1, 0, 0, 2, 2])
  }

  @Test func whereAndMaskedFillRouteTheGradient() {
    let a = T([1, 2, 3, 4], shape: [4], requiresGrad: true)
    let b = T([10], shape: [1], requiresGrad: true)
    let condition = T([1, 0, 1, 0], shape: [4])
    let y = Tensor.where(condition, a, b)
    #expect(y.storage == [1, 10, 3, 10])
    y.sum().backward()
    #expect(a.gradStorage! == [1, 0, 1, 0])
    #expect(b.gradStorage! == [2])
    let filled = a.maskedFill(condition, value: -.infinity)
    #expect(filled.storage == [-.infinity, 2, -.infinity, 4])
    #expect(filled.softmax().storage[0] == 0)
  }

  @Test func comparisonsGiveZerosAndOnesWithoutGradient() {
    let a = T([1, 2, 3], shape: [3], requiresGrad: true)
    let mask = a.greater(T(scalar: 1.5))
    #expect(mask.storage == [0, 1, 1])
    #expect(!mask.requiresGrad)
    #expect(a.less(T(scalar: 2)).storage == [1, 0, 0])
    #expect(a.equal(T(scalar: 2)).storage == [0, 1, 0])
  }

  @Test func aValueUsedTwiceAccumulatesBothPaths() {
    let x = T([3], shape: [1], requiresGrad: true)
    (x * x + x).sum().backward()
    #expect(x.gradStorage! == [7])
  }

  @Test func aChainOf100000OpsRunsBackwardAndIsFreedWithoutRecursion() {
    let x = T([1], shape: [1], requiresGrad: true)
    var y = x
    for _ in 0..<100_000 { y = y * 1.0 }
    y.sum().backward()
    #expect(x.gradStorage! == [1])
    y = T([0], shape: [1])  // frees the chain: a recursive deinit would overflow the stack here
    #expect(x.gradStorage! == [1])
  }

  @Test func aSecondBackwardDoublesLeafGradientsAndRecomputesTheRest() {
    let x = T([2], shape: [1], requiresGrad: true)
    let h = x * 3
    h.retainGrad()
    let y = (h * h).sum()
    y.backward()
    #expect(x.gradStorage! == [36] && h.gradStorage! == [12])
    y.backward()
    #expect(x.gradStorage! == [72])
    #expect(h.gradStorage! == [12])
    x.zeroGrad()
    #expect(x.gradStorage == nil)
    y.backward()
    #expect(x.gradStorage! == [36])
  }

  /// As PyTorch: a result's gradient is freed once backward has passed it on, unless `retainGrad()` kept it; a
  /// leaf's is kept. The values that reach the leaves are the same either way.
  @Test func backwardFreesTheGradientsOfResultsUnlessRetained() {
    let x = T([2], shape: [1], requiresGrad: true)
    let h = x * 3
    let g = h * h
    g.retainGrad()
    let y = (g + h).sum()
    y.backward()
    #expect(h.gradStorage == nil && y.gradStorage == nil)
    #expect(g.gradStorage! == [1] && x.gradStorage! == [3 * (2 * 6 + 1)])
  }

  @Test func aVectorOutputNeedsASeedAndGivesTheVectorJacobianProduct() {
    let x = T([1, 2, 3], shape: [3], requiresGrad: true)
    let y = x * x  // J = diag(2x)
    y.backward(gradient: [1, 10, 100])
    #expect(x.gradStorage! == [2, 40, 600])
  }

  @Test func noGradRecordsNothingAndNests() {
    let w = T([2], shape: [1], requiresGrad: true)
    let y = noGrad { w * 3 }
    #expect(!y.requiresGrad && y.isLeaf && y.parents.isEmpty)
    noGrad {
      #expect(!GradMode.isEnabled)
      noGrad { #expect(!GradMode.isEnabled) }
      #expect(!GradMode.isEnabled)
    }
    #expect(GradMode.isEnabled)
    #expect((w * 3).requiresGrad)
  }

  @Test func detachCutsTheGraph() {
    let w = T([2], shape: [1], requiresGrad: true)
    let h = w * 3
    let y = (h.detach() * w).sum()  // only the direct path reaches w
    y.backward()
    #expect(w.gradStorage! == [6])
    #expect(!h.detach().requiresGrad)
  }

  @Test func requiringGradTurnsALeafIntoAParameter() {
    let w = T([3], shape: [1]).requiringGrad()
    (w * w).sum().backward()
    #expect(w.gradStorage! == [6])
    w.requiringGrad(false)
    #expect(!(w * w).requiresGrad)
  }

  @Test func withoutRequiresGradThereIsNoGraph() {
    let x = T([1, 2], shape: [2])
    let y = x * 2
    #expect(!y.requiresGrad && y.parents.isEmpty)
  }

  @Test func aGradientHandedOnIsNotSharedWhenWrittenLater() {
    // a + b hands the same gradient array to both; a later backward adds into a's alone.
    let a = Tensor<Double>([1, 2, 3], shape: [3], requiresGrad: true)
    let b = Tensor<Double>([4, 5, 6], shape: [3], requiresGrad: true)
    (a + b).sum().backward()
    (a * 2).sum().backward()
    #expect(a.gradStorage == [3, 3, 3])
    #expect(b.gradStorage == [1, 1, 1])
  }

  @Test func floatGELUAgreesWithDoubleGELU() {
    let values = (0..<2001).map { Double($0) / 100 - 10 }  // -10 ... 10
    let double = Tensor<Double>(values, shape: [values.count]).gelu().storage
    let float = Tensor<Float>(values.map { Float($0) }, shape: [values.count]).gelu().storage
    for (f, d) in zip(float, double) { #expect(abs(Double(f) - d) <= 1e-6 + 1e-6 * abs(d), "\(f) vs \(d)") }
  }
}
