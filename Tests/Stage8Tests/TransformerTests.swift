import Foundation
import Support
import Testing

@testable import Stage8

@Suite struct TransformerTests {
  typealias T = Tensor<Double>

  func tinyGPT(causal: Bool = true, positions: PositionEncoding = .learned) -> GPT<Double> {
    var config = GPTConfig(vocabulary: 7, context: 6, layers: 2, heads: 2, width: 8)
    config.causal = causal
    config.positions = positions
    return GPT(config, seed: 3, random: RandomSource(seed: 3))
  }

  @Test func aCausalModelsOutputAtPositionTIgnoresLaterTokens() {
    let model = tinyGPT()
    let a = model([1, 2, 3, 4, 5, 6])
    let b = model([1, 2, 3, 0, 0, 0])  // positions 3... changed
    #expect(Array(a.storage[0..<(3 * 7)]) == Array(b.storage[0..<(3 * 7)]))
    #expect(Array(a.storage[(3 * 7)...]) != Array(b.storage[(3 * 7)...]))
    let bidirectional = tinyGPT(causal: false)
    #expect(
      Array(bidirectional([1, 2, 3, 4, 5, 6]).storage[0..<7])
        != Array(bidirectional([1, 2, 3, 0, 0, 0]).storage[0..<7]))
  }

  @Test func theHeadIsTheTokenEmbedding() {
    let model = tinyGPT()
    let names = model.namedParameters().map(\.name)
    #expect(names.first == "tokenEmbedding.weight")
    #expect(model.parameters().filter { $0.shape == [7, 8] }.count == 1)  // no separate head matrix
    #expect(names.contains("blocks.1.attention.qkv.weight") && names.last == "finalNorm.beta")
    // Changing the embedding row of a token that is not in the input changes that token's logit: the head reads it.
    let before = model([1, 2]).storage
    model.tokenEmbedding.weight.storage[6 * 8] += 1
    let after = model([1, 2]).storage
    #expect(after[6] != before[6] && after[0] == before[0])
  }

  @Test func nanoGPTsConfigurationHasItsParameterCount() {
    let model = GPT<Float>(.nanoGPTCPU, seed: 1, random: RandomSource(seed: 1))
    // wte 65x128 + wpe 64x128 + 4 x (128 + 3x128x128 + 128x128 + 128 + 4x128x128 + 128x4x128) + 128
    #expect(model.parameterCount == 804_096)
  }

  @Test func gpt2InitialisationScalesTheResidualProjections() {
    let model = GPT<Double>(
      GPTConfig(vocabulary: 50, context: 8, layers: 8, heads: 4, width: 64), seed: 1, random: RandomSource(seed: 1))
    func std(_ t: T) -> Double { (t.storage.map { $0 * $0 }.reduce(0, +) / Double(t.count)).squareRoot() }
    #expect(abs(std(model.blocks[0].expand.weight) - 0.02) < 0.001)
    #expect(abs(std(model.blocks[0].contract.weight) - 0.02 / 4) < 0.0005)  // 0.02 / sqrt(2 * 8)
    #expect(model.blocks[0].norm1.gamma!.storage.allSatisfy { $0 == 1 })
  }

  @Test func decodingWithTheCacheGivesTheSameLogitsAsWithout() {
    let model = GPT<Float>(
      GPTConfig(vocabulary: 11, context: 12, layers: 2, heads: 4, width: 32), seed: 5, random: RandomSource(seed: 5))
    let tokens = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]
    noGrad {
      let caches = model.makeCaches()
      var step = model(Array(tokens.prefix(4)), caches: caches)  // the prompt at once
      for t in 4...tokens.count {
        let full = model(Array(tokens.prefix(t)))
        let last = Array(full.storage[((t - 1) * 11)...])
        let cached = Array(step.storage[(step.count - 11)...])
        #expect(zip(last, cached).allSatisfy { abs($0 - $1) <= 1e-5 }, "position \(t - 1)")
        if t < tokens.count { step = model([tokens[t]], caches: caches) }
      }
    }
    let withCache = model.generate(
      [1, 2], count: 8, sampling: Sampling(temperature: 0.8, topK: 5), seed: 9, useCache: true)
    let without = model.generate(
      [1, 2], count: 8, sampling: Sampling(temperature: 0.8, topK: 5), seed: 9, useCache: false)
    #expect(withCache == without)
  }

  @Test func samplingRules() {
    let logits: ArraySlice<Double> = [0.1, 2.0, 0.5, 1.9]
    var rng = SeededRNG(seed: 1)
    #expect(Sampling(temperature: 0).pick(logits, rng: &rng) == 1)
    #expect((0..<50).allSatisfy { _ in Sampling(temperature: 1, topK: 1).pick(logits, rng: &rng) == 1 })
    #expect((0..<50).allSatisfy { _ in Sampling(temperature: 1, topP: 0.01).pick(logits, rng: &rng) == 1 })
    let twoBest = Set((0..<200).map { _ in Sampling(temperature: 1, topK: 2).pick(logits, rng: &rng) })
    #expect(twoBest == [1, 3])
    let hot = Set((0..<400).map { _ in Sampling(temperature: 10).pick(logits, rng: &rng) })
    #expect(hot == [0, 1, 2, 3])
    var a = SeededRNG(seed: 4)
    var b = SeededRNG(seed: 4)
    #expect(
      (0..<20).map { _ in Sampling().pick(logits, rng: &a) } == (0..<20).map { _ in Sampling().pick(logits, rng: &b) })
  }

  @Test func sinusoidsAreSinesAndCosinesOfThePosition() {
    let table: T = sinusoidalTable(4, 6)
    #expect(table[0, 0] == 0 && table[0, 1] == 1)
    #expect(abs(table[1, 0] - Foundation.sin(1.0)) < 1e-15)
    #expect(abs(table[2, 3] - Foundation.cos(2 / Foundation.pow(10_000, 2.0 / 6))) < 1e-15)
    let model = tinyGPT(positions: .sinusoidal)
    #expect(!model.namedParameters().map(\.name).contains("positionEmbedding.weight"))
  }
}

@Suite struct FusedTransformerKernelsTests {
  typealias T = Tensor<Double>

  func evaluate(_ inputs: [T], _ f: ([T]) -> T) -> (output: [Double], grads: [[Double]]) {
    let leaves = inputs.map { T($0.storage, shape: $0.shape, requiresGrad: true) }
    let y = f(leaves)
    y.backward(gradient: (0..<y.count).map { Double($0 % 7) - 3 })
    return (y.storage, leaves.map { $0.gradStorage ?? [] })
  }

  func expectClose(_ a: [Double], _ b: [Double]) {
    #expect(a.count == b.count)
    #expect(zip(a, b).allSatisfy { abs($0 - $1) <= 1e-12 + 1e-9 * abs($1) }, "\(a) vs \(b)")
  }

  /// softmax(q k^T / sqrt(d) with masked scores set to -infinity) v, from plain ops, with the mask given as a
  /// tensor (independently of the stage's `attentionComposed`, which builds its masks itself).
  func composedAttention(_ q: T, _ k: T, _ v: T, mask: T?) -> T {
    var scores = q.matmul(k.transposed()) / Double(q.shape[3]).squareRoot()
    if let mask { scores = scores.maskedFill(mask, value: -.infinity) }
    return scores.softmax(axis: -1).matmul(v)
  }

  @Test func attentionEqualsItsComposedForm() {
    var rng = SeededRNG(seed: 1)
    let inputs = (0..<3).map { _ in T.normal([2, 2, 4, 3], rng: &rng) }
    let causalMask = T((0..<16).map { $0 % 4 > $0 / 4 ? 1 : 0 }, shape: [4, 4])  // key after query
    let fused = evaluate(inputs) { Tensor.attention($0[0], $0[1], $0[2], causal: true) }
    let composed = evaluate(inputs) { composedAttention($0[0], $0[1], $0[2], mask: causalMask) }
    expectClose(fused.output, composed.output)
    for (a, b) in zip(fused.grads, composed.grads) { expectClose(a, b) }

    let padding = T([0, 0, 1, 1, 0, 0, 0, 1], shape: [2, 4])
    let paddingMask = padding.reshape([2, 1, 1, 4])
    let fusedPadded = evaluate(inputs) { Tensor.attention($0[0], $0[1], $0[2], causal: false, keyPadding: padding) }
    let composedPadded = evaluate(inputs) { composedAttention($0[0], $0[1], $0[2], mask: paddingMask) }
    expectClose(fusedPadded.output, composedPadded.output)
    for (a, b) in zip(fusedPadded.grads, composedPadded.grads) { expectClose(a, b) }
  }

  @Test func attentionEqualsItsComposedFormAtSizesThatFillTheRegisterBlocks() {
    // 37 positions and width 20: blocks of 4 rows and 16 columns with rows and columns left over; 5 queries
    // against 37 keys is the KV-cache shape, whose causal mask starts 32 keys in.
    var rng = SeededRNG(seed: 3)
    for (tq, tk, d) in [(37, 37, 20), (5, 37, 20), (64, 64, 32)] {
      let q = T.normal([1, 2, tq, d], rng: &rng)
      let (k, v) = (T.normal([1, 2, tk, d], rng: &rng), T.normal([1, 2, tk, d], rng: &rng))
      let causalMask = T((0..<(tq * tk)).map { $0 % tk > $0 / tk + (tk - tq) ? 1 : 0 }, shape: [tq, tk])
      let padding = T((0..<tk).map { $0 % 7 == 3 ? 1 : 0 }, shape: [1, tk])
      let cases: [(causal: Bool, padding: T?, mask: T?)] = [
        (true, nil, causalMask), (false, nil, nil), (false, padding, padding.reshape([1, 1, 1, tk])),
      ]
      for (causal, padding, mask) in cases {
        let fused = evaluate([q, k, v]) { Tensor.attention($0[0], $0[1], $0[2], causal: causal, keyPadding: padding) }
        let composed = evaluate([q, k, v]) { composedAttention($0[0], $0[1], $0[2], mask: mask) }
        expectClose(fused.output, composed.output)
        for (a, b) in zip(fused.grads, composed.grads) { expectClose(a, b) }
        let stageComposed = evaluate([q, k, v]) {
          Tensor.attentionComposed($0[0], $0[1], $0[2], causal: causal, keyPadding: padding)
        }
        expectClose(fused.output, stageComposed.output)
        for (a, b) in zip(fused.grads, stageComposed.grads) { expectClose(a, b) }
      }
    }
  }

  @Test func packedAttentionEqualsAttentionOnSplitHeads() {
    var rng = SeededRNG(seed: 5)
    let (b, t, h, d) = (2, 4, 2, 3)
    let qkv = T.normal([b, t, 3 * h * d], rng: &rng)
    let padding = T([0, 0, 0, 1, 0, 1, 0, 0], shape: [b, t])
    for keyPadding in [nil, padding] {
      for causal in [true, false] {
        let packed = evaluate([qkv]) {
          Tensor.attention(packed: $0[0], heads: h, causal: causal, keyPadding: keyPadding)
        }
        let split = evaluate([qkv]) { x in  // the heads split out and merged back with copies, as GPT-2 does
          let parts = x[0].reshape([b, t, 3, h, d]).permute([2, 0, 3, 1, 4]).split([1, 1, 1], axis: 0)
            .map { $0.reshape([b, h, t, d]) }
          return Tensor.attention(parts[0], parts[1], parts[2], causal: causal, keyPadding: keyPadding)
            .permute([0, 2, 1, 3]).reshape([b, t, h * d])
        }
        expectClose(packed.output, split.output)
        expectClose(packed.grads[0], split.grads[0])
      }
    }
  }

  @Test func geluEqualsItsComposedForm() {
    let x = T((0..<41).map { Double($0) / 5 - 4 }, shape: [41])
    let fused = evaluate([x]) { $0[0].gelu() }
    let composed = evaluate([x]) { x in
      let inner = (2 / Double.pi).squareRoot() * (x[0] + 0.044715 * x[0].pow(3))
      return 0.5 * x[0] * (1 + inner.tanh())
    }
    expectClose(fused.output, composed.output)
    expectClose(fused.grads[0], composed.grads[0])
    let stageComposed = evaluate([x]) { $0[0].geluComposed() }
    expectClose(fused.output, stageComposed.output)
    expectClose(fused.grads[0], stageComposed.grads[0])
  }

  @Test func attentionDropoutDropsWeightsConsistently() {
    var rng = SeededRNG(seed: 2)
    let inputs = (0..<3).map { _ in T.normal([1, 1, 3, 2], rng: &rng) }
    let a = evaluate(inputs) {
      Tensor.attention($0[0], $0[1], $0[2], causal: false, dropout: (0.5, RandomSource(seed: 7)))
    }
    let b = evaluate(inputs) {
      Tensor.attention($0[0], $0[1], $0[2], causal: false, dropout: (0.5, RandomSource(seed: 7)))
    }
    let plain = evaluate(inputs) { Tensor.attention($0[0], $0[1], $0[2], causal: false) }
    #expect(a.output == b.output && a.grads == b.grads)  // the same seed, the same mask
    #expect(a.output != plain.output)
  }

  @Test func attentionDropoutEqualsTheComposedFormWithTheSameMask() {
    // (softmax(q k^T / sqrt(d)) * keep / (1 - p)) v with the mask the fused op draws: outputs and all three
    // gradients, with and without the causal mask, on the separate and the packed layout.
    var rng = SeededRNG(seed: 4)
    let (b, h, t, d, p) = (2, 2, 5, 3, 0.3)
    for causal in [false, true] {
      let inputs = (0..<3).map { _ in T.normal([b, h, t, d], rng: &rng) }
      let keepValues = T.attentionDropoutMask(count: b * h * t * t, p: p, random: RandomSource(seed: 7))
      #expect(keepValues.contains(0) && keepValues.contains { abs($0 - 1 / (1 - p)) < 1e-12 })
      #expect(keepValues.allSatisfy { $0 == 0 || abs($0 - 1 / (1 - p)) < 1e-12 })
      let keep = T(keepValues, shape: [b, h, t, t])
      let fused = evaluate(inputs) {
        Tensor.attention($0[0], $0[1], $0[2], causal: causal, dropout: (p, RandomSource(seed: 7)))
      }
      let composed = evaluate(inputs) { Tensor.attentionComposed($0[0], $0[1], $0[2], causal: causal, keep: keep) }
      expectClose(fused.output, composed.output)
      for (x, y) in zip(fused.grads, composed.grads) { expectClose(x, y) }
    }
  }

  @Test func multiHeadAttentionComposedEqualsFusedWithDropout() {
    // The `fused` switch: the same layer, the same dropout draws, the same outputs and gradients.
    func run(fused: Bool) -> (output: [Double], grads: [[Double]]) {
      var rng = SeededRNG(seed: 9)
      let (c, heads) = (8, 2)
      let random = RandomSource(seed: 3)
      let layer = MultiHeadAttention<Double>(
        qkv: Linear(c, 3 * c, rng: &rng), projection: Linear(c, c, rng: &rng), heads: heads, causal: true,
        dropout: Dropout(0.25, random: random))
      layer.fused = fused
      let x = T.normal([2, 4, c], rng: &rng)
      return evaluate([x]) { layer($0[0]) }
    }
    let (fused, composed) = (run(fused: true), run(fused: false))
    expectClose(fused.output, composed.output)
    expectClose(fused.grads[0], composed.grads[0])
  }
}
