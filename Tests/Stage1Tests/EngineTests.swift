import Foundation
import Support
import Testing

@testable import Stage1

/// The engine's values and gradients on cases small enough to work out by hand.
@Suite struct EngineTests {
  @Test func arithmeticValuesAndGradients() {
    let a = Value(3)
    let b = Value(-2)
    let y = (a * b + a / b - (-a)) - b  // -6 - 1.5 + 3 + 2 = -2.5
    y.backward()
    #expect(y.data == -2.5)
    let dA: Double = -2 + 1 / -2.0 + 1  // b + 1/b + 1
    let dB: Double = 3 - 3 / 4.0 - 1  // a - a/b^2 - 1
    #expect(a.grad == dA)
    #expect(b.grad == dB)
  }

  @Test func functionsAndTheirDerivatives() {
    let x = Value(0.5)
    for (f, value, slope) in [
      ({ (v: Value) in v.exp() }, Foundation.exp(0.5), Foundation.exp(0.5)),
      ({ $0.log() }, Foundation.log(0.5), 2),
      ({ $0.tanh() }, Foundation.tanh(0.5), 1 - Foundation.tanh(0.5) * Foundation.tanh(0.5)),
      ({ $0.relu() }, 0.5, 1),
      (
        { $0.sigmoid() }, 1 / (1 + Foundation.exp(-0.5)),
        Foundation.exp(-0.5) / Foundation.pow(1 + Foundation.exp(-0.5), 2)
      ),
      ({ $0.pow(3) }, 0.125, 0.75),
      ({ $0.pow(-1) }, 2, -4),
    ] as [((Value) -> Value, Double, Double)] {
      x.grad = 0
      let y = f(x)
      y.backward()
      #expect(abs(y.data - value) < 1e-15)
      #expect(abs(x.grad - slope) < 1e-14)
    }
  }

  @Test func reluIsFlatForNegativeInputs() {
    let x = Value(-1)
    let y = x.relu()
    y.backward()
    #expect(y.data == 0 && x.grad == 0)
  }

  @Test func wholePowersOfNegativeNumbersAreDefined() {
    let x = Value(-2)
    let y = x.pow(3)
    y.backward()
    #expect(y.data == -8)
    #expect(x.grad == 12)
  }

  /// d/dx x^p = p x^(p-1) on both sides of zero: at a negative x an odd p - 1 gives a negative slope, so a derivative
  /// written with abs(x) (or |x|^p for the value) fails here; and non-integer powers of positive x, with values
  /// worked out from the definition.
  @Test func powersAndTheirDerivativesOnBothSidesOfZero() {
    let cases: [(x: Double, p: Double, value: Double, slope: Double)] = [
      (-1.5, 2, 2.25, -3),
      (-1.5, 3, -3.375, 6.75),
      (-1.5, -2, 1 / 2.25, 2 / 3.375),  // -2 x^-3 at x = -1.5
      (-2, -1, -0.5, -0.25),
      (0.7, 2, 0.49, 1.4),
      (4, 0.5, 2, 0.25),
      (4, 2.5, 32, 20),  // 2.5 * 4^1.5 = 2.5 * 8
      (4, -1.5, 0.125, -1.5 / 32),  // -1.5 * 4^-2.5
      (0.25, 1.5, 0.125, 0.75),  // 1.5 * 0.25^0.5
    ]
    for (x, p, value, slope) in cases {
      let v = Value(x)
      let y = v.pow(p)
      y.backward()
      #expect(abs(y.data - value) <= 1e-14 * max(1, abs(value)), "\(x)^\(p)")
      #expect(abs(v.grad - slope) <= 1e-14 * max(1, abs(slope)), "d/dx \(x)^\(p)")
    }
  }

  @Test func plainNumbersMixOnEitherSide() {
    let x = Value(2)
    let y = (1 + x) * (3 - x) + 2 * x + 8 / x + (x + 1) * (x - 1) + x * 3 + x / 4
    // 3 + 4 + 4 + 3 + 6 + 0.5
    #expect(y.data == 20.5)
    y.backward()
    // d/dx: (3 - x) - (1 + x) + 2 - 8/x^2 + 2x + 3 + 1/4 at x = 2
    let slope: Double = 1 - 3 + 2 - 2 + 4 + 3 + 0.25
    #expect(x.grad == slope)
  }

  @Test func sigmoidAndBCEStayFiniteForHugeInputs() {
    #expect(Value(1000).sigmoid().data == 1)
    #expect(Value(-1000).sigmoid().data == 0)
    let z = Value(-1000)
    let loss = z.binaryCrossEntropy(label: 1)  // -log(sigmoid(-1000)) = 1000
    loss.backward()
    #expect(loss.data == 1000)
    #expect(z.grad == -1)
    #expect(Value(1000).binaryCrossEntropy(label: 1).data == 0)
  }

  @Test func aValueUsedTwiceAccumulatesBothPaths() {
    let x = Value(3)
    let y = x * x + x  // dy/dx = 2x + 1
    y.backward()
    #expect(x.grad == 7)
    let z = Value(5)
    let w = z + z
    w.backward()
    #expect(z.grad == 2)
  }

  @Test func aDiamondSumsTheGradientsOfItsBranches() {
    // x -> a, b -> c: c = a * b with a = x + 1, b = 2x: dc/dx = b + 2a
    let x = Value(3)
    let a = x + 1
    let b = 2 * x
    let c = a * b
    c.backward()
    #expect(x.grad == 6 + 2 * 4)
  }

  @Test func topologicalOrderPutsParentsFirst() {
    let x = Value(1)
    let y = x * 2
    let z = y + x
    let order = z.topologicalOrder()
    #expect(order.last === z)
    let position = Dictionary(uniqueKeysWithValues: order.enumerated().map { (ObjectIdentifier($1), $0) })
    for node in order {
      for parent in node.parents { #expect(position[ObjectIdentifier(parent)]! < position[ObjectIdentifier(node)]!) }
    }
    #expect(order.allSatisfy { !$0.visited })  // the flags are left clear for the next traversal
  }

  @Test func aChainOf100000NodesRunsBackwardAndIsFreedWithoutRecursion() {
    let x = Value(1)
    var y = x
    for _ in 0..<100_000 { y = y * 1.0 + 0.0 }
    y.backward()
    #expect(x.grad == 1)
    #expect(y.topologicalOrder().count == 400_001)  // each step: two constants, * and +
    y = Value(0)  // frees the chain: a recursive deinit would overflow the stack here
    #expect(x.grad == 1)
  }

  @Test func aSecondBackwardDoublesLeafGradientsAndRecomputesTheRest() {
    let x = Value(2)
    let h = x * 3
    let y = h * h  // y = 9 x^2, dy/dx = 36 at x = 2; dy/dh = 2h = 12
    y.backward()
    #expect(x.grad == 36 && h.grad == 12)
    y.backward()
    #expect(x.grad == 72)  // leaves accumulate, as with retain_graph=True in PyTorch
    #expect(h.grad == 12)  // interior nodes are recomputed, not accumulated
    x.grad = 0
    y.backward()
    #expect(x.grad == 36)  // after zeroing, one backward gives the gradient again
  }

  @Test func backwardOnALeafAccumulatesOne() {
    let x = Value(4)
    x.backward()
    x.backward()
    #expect(x.grad == 2)
  }
}

@Suite struct LayerTests {
  @Test func micrograds2x16x16x1NetworkHas337Parameters() {
    var rng = SeededRNG(seed: 1)
    let model = MLP(inputs: 2, sizes: [16, 16, 1], rng: &rng)
    #expect(model.parameterCount == 2 * 16 + 16 + 16 * 16 + 16 + 16 + 1)
    #expect(model.layers.map { $0.neurons[0].activation } == [.relu, .relu, .linear])
  }

  @Test func initialisationIsSeededAndWithinMinusOneToOne() {
    var a = SeededRNG(seed: 5)
    var b = SeededRNG(seed: 5)
    let m1 = MLP(inputs: 3, sizes: [4, 2], rng: &a)
    let m2 = MLP(inputs: 3, sizes: [4, 2], rng: &b)
    #expect(m1.parameters().map(\.data) == m2.parameters().map(\.data))
    #expect(m1.parameters().allSatisfy { abs($0.data) <= 1 })
  }

  /// micrograd's initialisation, bounded on both sides: weights uniform in [-1, 1] reaching near both ends with the
  /// spread of U(-1, 1) (std 1 / sqrt(3)), biases 0. All zeros, or a narrower range, fails.
  @Test func weightsAreUniformInMinusOneToOneAndBiasesZero() {
    var rng = SeededRNG(seed: 2)
    let layer = Layer(inputs: 50, outputs: 40, activation: .relu, rng: &rng)
    let weights = layer.neurons.flatMap { $0.weights.map(\.data) }
    #expect(weights.count == 2000 && weights.allSatisfy { abs($0) <= 1 })
    #expect(weights.max()! > 0.98 && weights.min()! < -0.98)
    let std = (weights.map { $0 * $0 }.reduce(0, +) / 2000).squareRoot()
    #expect(abs(std - 1 / 3.0.squareRoot()) < 0.02)
    #expect(layer.neurons.allSatisfy { $0.bias.data == 0 })
  }

  @Test func aNeuronComputesTanhOfTheWeightedSum() {
    var rng = SeededRNG(seed: 2)
    let neuron = Neuron(inputs: 2, activation: .tanh, rng: &rng)
    neuron.weights[0].data = 0.5
    neuron.weights[1].data = -1
    neuron.bias.data = 0.25
    let y = neuron([Value(2), Value(1)])
    #expect(abs(y.data - Foundation.tanh(0.25)) < 1e-15)
  }

  @Test func zeroGradClearsEveryParameter() {
    var rng = SeededRNG(seed: 3)
    let model = MLP(inputs: 2, sizes: [3, 1], rng: &rng)
    model([Value(1), Value(-1)])[0].backward()
    #expect(model.parameters().contains { $0.grad != 0 })
    model.zeroGrad()
    #expect(model.parameters().allSatisfy { $0.grad == 0 })
  }
}

@Suite struct LossAndOptimizerTests {
  @Test func hingeLossIsTheMeanMarginViolation() {
    // margins 1 - y s: 1 - 2 = -1 -> 0; 1 - (-1)(0.5) = 1.5; 1 - (1)(0.25) = 0.75
    let loss = hingeLoss(scores: [Value(2), Value(0.5), Value(0.25)], labels: [1, -1, 1])
    #expect(loss.data == 0.75)
  }

  @Test func mseAndL2Values() {
    #expect(mseLoss([Value(1), Value(3)], [Value(0), Value(1)]).data == 2.5)
    #expect(l2Penalty([Value(1), Value(-2)], alpha: 0.1).data == 0.5)
  }

  @Test func bceMatchesTheNaiveFormulaWhereThatIsSafe() {
    let z = 0.7
    let s = 1 / (1 + Foundation.exp(-z))
    let loss = bceWithLogitsLoss(logits: [Value(z), Value(z)], labels: [1, 0])
    #expect(abs(loss.data - (-Foundation.log(s) - Foundation.log(1 - s)) / 2) < 1e-14)
  }

  @Test func sgdStepsAgainstTheGradientWithALinearlyDecayingRate() {
    let p = Value(1)
    var sgd = SGD(parameters: [p], learningRate: 1, finalFraction: 0.1, totalSteps: 100)
    #expect(sgd.learningRate(at: 0) == 1)
    #expect(abs(sgd.learningRate(at: 50) - 0.55) < 1e-15)
    #expect(abs(sgd.learningRate(at: 99) - 0.109) < 1e-15)  // micrograd's 1.0 - 0.9 * 99 / 100
    p.grad = 0.5
    sgd.step()
    #expect(p.data == 0.5)
    #expect(sgd.stepCount == 1)
    sgd.zeroGrad()
    #expect(p.grad == 0)
  }
}
