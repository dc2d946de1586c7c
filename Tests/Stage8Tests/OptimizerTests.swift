import Foundation
import Support
import Testing

@testable import Stage8

/// Optimizer golden values: three steps on L(p) = sum_i c_i p_i^2 with c = [1, 2, 3], from p = [1, -2, 0.5].
/// The expected numbers were computed independently, by a plain-Python transcription of the published update
/// rules (PyTorch's documented algorithms for SGD, Adam and AdamW), in double precision.
@Suite struct OptimizerGoldenTests {
  typealias T = Tensor<Double>

  func threeSteps(_ make: ([ParameterGroup<Double>]) -> any Optimizer<Double>, weightDecay: Double = 0) -> [Double] {
    let p = T([1, -2, 0.5], shape: [3], requiresGrad: true)
    let optimizer = make([ParameterGroup([p], weightDecay: weightDecay)])
    for _ in 0..<3 {
      (T([1, 2, 3], shape: [3]) * p * p).sum().backward()
      optimizer.step()
      optimizer.zeroGrad()
    }
    return p.storage
  }

  func expectClose(_ got: [Double], _ expected: [Double]) {
    #expect(zip(got, expected).allSatisfy { abs($0 - $1) < 1e-12 }, "\(got) vs \(expected)")
  }

  @Test func sgd() {
    expectClose(threeSteps { SGD($0, learningRate: 0.1) }, [0.512, -0.432, 0.03199999999999999])
  }

  @Test func sgdWithWeightDecay() {
    expectClose(
      threeSteps({ SGD($0, learningRate: 0.1) }, weightDecay: 0.1), [0.493039, -0.410758, 0.029659500000000005])
  }

  @Test func sgdWithMomentum() {
    expectClose(
      threeSteps { SGD($0, learningRate: 0.1, momentum: 0.9) }, [0.06199999999999989, 1.0800000000000003, -0.427])
  }

  @Test func sgdWithDampenedMomentum() {
    // b = g on the first step, then b = 0.9 b + (1 - 0.5) g.
    expectClose(
      threeSteps { SGD($0, learningRate: 0.1, momentum: 0.9, dampening: 0.5) },
      [0.252, 0.6720000000000002, -0.388])
  }

  @Test func sgdWithNesterovMomentum() {
    expectClose(
      threeSteps { SGD($0, learningRate: 0.1, momentum: 0.9, nesterov: true) },
      [-0.108352, 0.8665920000000003, -0.152032])
  }

  @Test func adam() {
    expectClose(
      threeSteps { Adam($0, learningRate: 0.1) }, [0.7015862729460303, -1.7006233916636408, 0.20487125044086527])
  }

  @Test func adamWithL2WeightDecay() {
    expectClose(
      threeSteps({ Adam($0, learningRate: 0.1) }, weightDecay: 0.1),
      [0.7015862728718214, -1.7006233916543037, 0.20487125042349275])
  }

  @Test func adamWWithDecoupledWeightDecay() {
    expectClose(
      threeSteps({ Adam($0, learningRate: 0.1, decoupledWeightDecay: true) }, weightDecay: 0.1),
      [0.6751012216400698, -1.6443686831798794, 0.1934156021775545])
  }

  @Test func groupsSplitMatricesFromVectors() {
    let w = T.zeros([2, 2], requiresGrad: true)
    let b = T.zeros([2], requiresGrad: true)
    let groups = ParameterGroup.decayingMatrices([w, b], weightDecay: 0.1)
    #expect(groups[0].parameters.map(\.shape) == [[2, 2]] && groups[0].weightDecay == 0.1)
    #expect(groups[1].parameters.map(\.shape) == [[2]] && groups[1].weightDecay == 0)
  }
}

@Suite struct ScheduleAndClippingTests {
  @Test func cosineWithWarmup() {
    let s = LRSchedule.cosine(warmup: 10, total: 110, floor: 0.1)
    #expect(abs(s.factor(at: 0) - 1.0 / 11) < 1e-15)
    #expect(abs(s.factor(at: 9) - 10.0 / 11) < 1e-15)
    #expect(s.factor(at: 10) == 1)
    #expect(abs(s.factor(at: 60) - 0.55) < 1e-15)  // halfway: 0.1 + 0.9 * (1 + cos(pi / 2)) / 2
    #expect(s.factor(at: 110) == 0.1 && s.factor(at: 500) == 0.1)
  }

  @Test func linearWithWarmup() {
    let s = LRSchedule.linear(warmup: 10, total: 110, floor: 0.1)
    #expect(abs(s.factor(at: 60) - 0.55) < 1e-15)
    #expect(abs(s.factor(at: 35) - 0.775) < 1e-15)
  }

  @Test func stepAndConstant() {
    #expect(LRSchedule.step(every: 10, gamma: 0.5).factor(at: 9) == 1)
    #expect(LRSchedule.step(every: 10, gamma: 0.5).factor(at: 25) == 0.25)
    #expect(LRSchedule.constant.factor(at: 1000) == 1)
  }

  @Test func clippingScalesTheGlobalNormDownAndLeavesSmallOnesAlone() {
    let a = Tensor<Double>([0], shape: [1], requiresGrad: true)
    let b = Tensor<Double>([0], shape: [1], requiresGrad: true)
    (3 * a + 4 * b).sum().backward()
    #expect(clipGradNorm([a, b], maxNorm: 1) == 5)
    #expect(abs(a.gradStorage![0] - 0.6) < 1e-6 && abs(b.gradStorage![0] - 0.8) < 1e-6)
    #expect(abs(clipGradNorm([a, b], maxNorm: 10) - 1) < 1e-6)
    #expect(abs(a.gradStorage![0] - 0.6) < 1e-6)
  }
}
