import Foundation
import Support
import Testing

@testable import Stage8

/// Stage 8's number formats, against tables an independent implementation wrote (Tests/Reference/
/// number_formats.py: numpy for fp16, ml_dtypes for bf16 and fp8), and its mixed-precision training.
private let formatFixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
  .appendingPathComponent("Fixtures/formats")

private func fixtureBytes(_ name: String) throws -> [UInt8] {
  [UInt8](try Data(contentsOf: formatFixtures.appendingPathComponent(name)))
}

private func littleEndian<T: FixedWidthInteger>(_ bytes: [UInt8], as: T.Type) -> [T] {
  let size = MemoryLayout<T>.size
  return stride(from: 0, to: bytes.count, by: size).map { start in
    (0..<size).reduce(T(0)) { $0 | T(bytes[start + $1]) << (8 * $1) }
  }
}

/// Each format's conversions as this stage makes them: pattern -> Float, Float -> pattern.
private struct FormatUnderTest: Sendable {
  let format: NumberFormat
  let bits: Int
  let decode: @Sendable (UInt32) -> Float
  let encode: @Sendable (Float) -> UInt32

  static let all = [
    FormatUnderTest(
      format: .fp16, bits: 16, decode: { Float(Float16(bitPattern: UInt16($0))) },
      encode: { UInt32(Float16($0).bitPattern) }),
    FormatUnderTest(
      format: .bf16, bits: 16, decode: { BFloat16(bitPattern: UInt16($0)).float },
      encode: { UInt32(BFloat16($0).bitPattern) }),
    FormatUnderTest(
      format: .e4m3, bits: 8, decode: { FP8.e4m3.decode(UInt8($0)) }, encode: { UInt32(FP8.e4m3.encode($0)) }),
    FormatUnderTest(
      format: .e5m2, bits: 8, decode: { FP8.e5m2.decode(UInt8($0)) }, encode: { UInt32(FP8.e5m2.encode($0)) }),
  ]
}

/// The same number, or both NaN. A NaN's payload is not compared: numpy keeps a signalling NaN's payload in fp16
/// and the F16C instruction quiets it, and both are IEEE conversions.
private func sameValue(_ a: Float, _ b: Float) -> Bool {
  a.isNaN ? b.isNaN : a.bitPattern == b.bitPattern
}

@Suite struct FormatTests {
  @Test(arguments: [NumberFormat.fp16, .bf16, .e4m3, .e5m2])
  func everyBitPatternDecodesAsTheReferenceDoes(_ format: NumberFormat) throws {
    let subject = FormatUnderTest.all.first { $0.format == format }!
    let table = littleEndian(try fixtureBytes("\(format.rawValue)-decode.bin"), as: UInt32.self)
    #expect(table.count == 1 << subject.bits)
    var wrong: [UInt32] = []
    for pattern in 0..<UInt32(table.count)
    where !sameValue(subject.decode(pattern), Float(bitPattern: table[Int(pattern)])) {
      wrong.append(pattern)
    }
    #expect(wrong.isEmpty, "\(format): \(wrong.count) patterns differ, first \(wrong.prefix(5))")
  }

  /// Between every two neighbouring values a < b (and past the largest, where the format overflows): the midpoint,
  /// a tie that round to nearest even decides, and the floats just below and above it.
  @Test(arguments: [NumberFormat.fp16, .bf16, .e4m3, .e5m2])
  func everyTieAndItsNeighboursRoundAsTheReferenceRounds(_ format: NumberFormat) throws {
    let subject = FormatUnderTest.all.first { $0.format == format }!
    let decode = littleEndian(try fixtureBytes("\(format.rawValue)-decode.bin"), as: UInt32.self).map {
      Double(Float(bitPattern: $0))
    }
    let expected: [UInt32] =
      subject.bits == 16
      ? littleEndian(try fixtureBytes("\(format.rawValue)-ties.bin"), as: UInt16.self).map(UInt32.init)
      : try fixtureBytes("\(format.rawValue)-ties.bin").map(UInt32.init)
    var ladder = decode[..<(decode.count / 2)].filter(\.isFinite)
    ladder.append(Double.pow(2, (Double.log2(ladder.last!)).rounded(.down) + 1))
    var inputs: [Float] = []
    for (a, b) in zip(ladder, ladder.dropFirst()) {
      let middle = Float((a + b) / 2)
      #expect(Double(middle) == (a + b) / 2)
      inputs += [middle.nextDown, middle, middle.nextUp]
    }
    #expect(inputs.count == expected.count)
    var wrong: [Float] = []
    var rounded = inputs
    rounded.withUnsafeMutableBufferPointer { format.round($0) }  // the loops training uses
    for (i, x) in inputs.enumerated() {
      let pattern = subject.encode(x)
      if pattern != expected[i] || !sameValue(rounded[i], subject.decode(pattern))
        || !sameValue(format.round(x), rounded[i])
      {
        wrong.append(x)
      }
    }
    #expect(wrong.isEmpty, "\(format): \(wrong.count) of \(inputs.count) differ, first \(wrong.prefix(5))")
  }

  /// 4,096 float32 bit patterns drawn from all 2^32, NaNs, infinities and subnormals among them. A NaN becomes a
  /// NaN of the same sign (fp16's payload is not compared; bf16's and fp8's patterns are).
  @Test func randomFloatsConvertAsTheReferenceConverts() throws {
    let bytes = try fixtureBytes("random.bin")
    #expect(bytes.count == 4096 * 10)
    var wrong: [String] = []
    for record in 0..<4096 {
      let at = record * 10
      let x = Float(bitPattern: littleEndian(Array(bytes[at..<(at + 4)]), as: UInt32.self)[0])
      let fp16 = UInt32(littleEndian(Array(bytes[(at + 4)..<(at + 6)]), as: UInt16.self)[0])
      let bf16 = UInt32(littleEndian(Array(bytes[(at + 6)..<(at + 8)]), as: UInt16.self)[0])
      let expected = [fp16, bf16, UInt32(bytes[at + 8]), UInt32(bytes[at + 9])]
      for (subject, pattern) in zip(FormatUnderTest.all, expected) {
        let mine = subject.encode(x)
        let same =
          subject.format == .fp16 && x.isNaN
          ? subject.decode(mine).isNaN && mine >> 15 == pattern >> 15 : mine == pattern
        if !same { wrong.append("\(subject.format) of \(x.bitPattern): \(mine) vs \(pattern)") }
        if !sameValue(subject.format.round(x), subject.decode(mine)) { wrong.append("\(subject.format).round(\(x))") }
      }
    }
    #expect(wrong.isEmpty, "\(wrong.prefix(5))")
  }

  /// Chosen values, worked by hand.
  @Test func chosenValuesRoundToNearestEvenAndOverflowAsEachFormatDoes() {
    let cases: [(NumberFormat, Float, Float)] = [
      // bf16 keeps 8 bits: 1 + 2^-8 is halfway between 1 and 1 + 2^-7, and 1 is even.
      (.bf16, 1 + 0x1p-8, 1), (.bf16, 1 + 3 * 0x1p-8, 1 + 0x1p-6), (.bf16, (1 + 0x1p-8).nextUp, 1 + 0x1p-7),
      (.bf16, .greatestFiniteMagnitude, .infinity), (.bf16, 0x1p-133, 0x1p-133), (.bf16, 0x1p-134, 0),
      (.bf16, 0x1.8p-134, 0x1p-133),
      // fp16: 65504 is the largest; from 65520 (halfway to 65536) up it is infinity.
      (.fp16, 65519, 65504), (.fp16, 65520, .infinity), (.fp16, 0x1p-24, 0x1p-24), (.fp16, 0x1p-25, 0),
      (.fp16, 0x1p-25 * 1.0001, 0x1p-24), (.fp16, 0x1.8p-24, 0x1p-23), (.fp16, 0x1p-14, 0x1p-14),
      (.fp16, 2049, 2048), (.fp16, 2051, 2052),
      // E4M3 saturates at 448: 464 is a tie that goes to 448 (even), 465 and infinity saturate too.
      (.e4m3, 464, 448), (.e4m3, 465, 448), (.e4m3, .infinity, 448), (.e4m3, -1e9, -448), (.e4m3, 0x1p-9, 0x1p-9),
      (.e4m3, 0x1p-10, 0), (.e4m3, 0x1.8p-10, 0x1p-9), (.e4m3, 0.1, 0.1015625),
      // E5M2 overflows: 61440 is halfway from 57344 to 65536 and goes up, to infinity; just below it stays.
      (.e5m2, 61440, .infinity), (.e5m2, 61439, 57344), (.e5m2, 0x1p-16, 0x1p-16), (.e5m2, 0x1p-17, 0),
      (.e5m2, 3.5, 3.5), (.e5m2, 3.25, 3),
    ]
    for (format, x, expected) in cases {
      #expect(format.round(x) == expected, "\(format).round(\(x)) = \(format.round(x)), not \(expected)")
    }
    #expect(BFloat16(-Float.nan).bitPattern == 0xFFC0 && BFloat16(Float(bitPattern: 0x7F80_0001)).float.isNaN)
    #expect(NumberFormat.e4m3.round(.nan).isNaN && NumberFormat.e5m2.round(-.infinity) == -.infinity)
  }

  @Test func theTableOfFormatsHasEachOnesFacts() {
    #expect(NumberFormat.fp16.smallestNormal == 0x1p-14 && NumberFormat.fp16.smallestSubnormal == 0x1p-24)
    #expect(NumberFormat.bf16.ulpOfOne == 0x1p-7 && NumberFormat.bf16.largest == 0x1.FEp127)
    #expect(NumberFormat.e4m3.smallestSubnormal == 0x1p-9 && NumberFormat.e5m2.smallestNormal == 0x1p-14)
    #expect(FP8.e4m3.decode(0x7E) == 448 && FP8.e5m2.decode(0x7B) == 57344 && FP8.e5m2.decode(0x7C) == .infinity)
  }
}

// MARK: - Autocast

@Suite struct AutocastTests {
  /// A tiny GPT's loss under autocast to bf16, with every op's result recorded.
  static func recordedLoss(_ format: NumberFormat) -> (Tensor<Float>, [(op: String, format: NumberFormat)]) {
    let trainer = tinyTrainer()
    let (inputs, targets) = trainer.sampler.nextBatch()
    let scope = Autocast(format, recording: true)
    let loss = Autocast.$current.withValue(scope) { trainer.loss(inputs, targets) }
    return (loss, scope.recorded)
  }

  @Test func productsRunInBF16AndNormsSoftmaxAndLossesInFP32() {
    let (loss, recorded) = Self.recordedLoss(.bf16)
    var formats: [String: Set<NumberFormat>] = [:]
    for (op, format) in recorded { formats[op, default: []].insert(format) }
    #expect(formats["linear"] == [.bf16])
    #expect(formats["attention"] == [.bf16])
    #expect(formats["gelu"] == [.bf16])  // its input is a product's result
    #expect(formats["layerNorm"] == [.fp32])
    #expect(formats["crossEntropy"] == [.fp32])
    #expect(formats["gatherRows"] == [.fp32])  // the embedding's table is fp32 here (no MixedPrecision)
    #expect(formats["+"] == [.fp32])  // the residual stream: fp32 + bf16 is fp32
    #expect(loss.format == .fp32)
    // Every result holds only values of its format.
    for tensor in loss.topologicalOrder() where tensor.format != .fp32 {
      #expect(tensor.storage.allSatisfy { tensor.format.round($0) == $0 }, "\(tensor.op)")
    }
  }

  @Test func outsideAScopeNothingIsRecordedOrRounded() {
    let trainer = tinyTrainer()
    let (inputs, targets) = trainer.sampler.nextBatch()
    let loss = trainer.loss(inputs, targets)
    #expect(loss.topologicalOrder().allSatisfy { $0.format == .fp32 })
  }

  /// The gradients of a bf16 and an fp16 forward and backward against fp32's. Each rounding is off by at most
  /// half an ulp, 2^-8 of the value in bf16 and 2^-11 in fp16; a gradient passes through a few dozen of them, so
  /// the relative error of the whole gradient should be a small multiple of that, and fp16's about 8 times
  /// smaller than bf16's.
  @Test func lowPrecisionGradientsAreWithinWhatTheFormatPredicts() {
    func gradients(_ format: NumberFormat) -> [Float] {
      let trainer = tinyTrainer()
      let (inputs, targets) = trainer.sampler.nextBatch()
      let loss = autocast(format) { trainer.loss(inputs, targets) }
      loss.backward()
      return trainer.parameters.flatMap { $0.gradStorage! }
    }
    let exact = gradients(.fp32)
    func relativeError(_ g: [Float]) -> Double {
      let difference = zip(g, exact).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
      return (difference / exact.reduce(0.0) { $0 + Double($1 * $1) }).squareRoot()
    }
    let bf16 = relativeError(gradients(.bf16))
    let fp16 = relativeError(gradients(.fp16))
    #expect(bf16 > 0x1p-12 && bf16 < 16 * 0x1p-8, "bf16: \(bf16)")
    #expect(fp16 > 0x1p-15 && fp16 < 16 * 0x1p-11, "fp16: \(fp16)")
    #expect(bf16 > 4 * fp16)
  }
}

// MARK: - 16-bit storage

@Suite struct StorageTests {
  /// x [4, 8] -> linear [4, 3] -> gelu -> sum, with W [3, 8].
  static func chain(
    _ x: Tensor<Float>, _ w: Tensor<Float>
  ) -> (linear: Tensor<Float>, gelu: Tensor<Float>, sum: Tensor<Float>) {
    let linear = x.linear(w, nil)
    let gelu = linear.gelu()
    return (linear, gelu, gelu.sum())
  }

  static func inputs() -> (Tensor<Float>, Tensor<Float>) {
    var rng = SeededRNG(seed: 3)
    return (
      Tensor.normal([4, 8], rng: &rng, requiresGrad: true), Tensor.normal([3, 8], rng: &rng, requiresGrad: true)
    )
  }

  @Test(arguments: [NumberFormat.bf16, .fp16])
  func aResultTheGraphKeepsIsPackedInSixteenBits(_ format: NumberFormat) {
    let (x, w) = Self.inputs()
    let (linear, gelu, sum) = autocast(format) { Self.chain(x, w) }
    for t in [linear, gelu] {
      #expect(t.packed?.format == format && t.packed?.count == t.count)
      #expect(t.storageBytes == 2 * t.count)
      #expect(t.storage.allSatisfy { format.round($0) == $0 })
    }
    #expect(sum.packed == nil && sum.format == .fp32)
    // The packed elements are the product of the operands cast to the format, accumulated in fp32, rounded once.
    let cast = { (t: Tensor<Float>) in Tensor(format.rounded(t.storage), shape: t.shape) }
    #expect(linear.storage == format.rounded(cast(x).linear(cast(w), nil).storage))
    // A reshape shares the packed buffer; reading one element does not unpack the rest.
    let reshaped = autocast(format) { linear.reshape([12]) }
    #expect(
      reshaped.packed.map { r in
        linear.packed!.bits.withUnsafeBufferPointer { $0.baseAddress }
          == r.bits.withUnsafeBufferPointer { $0.baseAddress }
      } == true)
    #expect(linear[2, 1] == linear.storage[7] && reshaped.storage == linear.storage)
  }

  @Test func aResultNothingKeepsIsRoundedInPlaceNotPacked() {
    let (x, w) = Self.inputs()
    let y = noGrad { autocast(.bf16) { x.linear(w, nil) } }
    #expect(y.packed == nil && y.format == .bf16)
    #expect(y.storage.allSatisfy { BFloat16.rounded($0) == $0 })
  }

  /// A moving op that brings in a value of its own (maskedFill's fill) rounds it to the format, whether the graph
  /// keeps the result (packed) or not (rounded in place): training and evaluation see the same numbers.
  @Test func aMovingOpsOwnValuesAreRoundedWithOrWithoutTheGraph() {
    let x = Tensor<Float>([1, 2, 3, 4], shape: [4], requiresGrad: true)
    _ = MixedPrecision(PrecisionConfig(.fp16), parameters: [x])
    let mask = Tensor<Float>([0, 1, 0, 1], shape: [4])
    let kept = autocast(.fp16) { x.maskedFill(mask, value: 0.1) }
    let dropped = noGrad { autocast(.fp16) { x.maskedFill(mask, value: 0.1) } }
    #expect(kept.packed != nil && dropped.packed == nil)
    #expect(kept.storage == dropped.storage)
    #expect(kept.storage == [1, Float(Float16(0.1)), 3, Float(Float16(0.1))])
  }

  /// The ledger's kept bytes of the chain: fp32 keeps linear's 12 Floats, GELU's 12 and its tanh (12 more), and
  /// the sum's one; bf16 keeps linear's and GELU's 12 in 2 bytes each, and GELU computes tanh again in backward.
  @Test func theGraphKeepsHalfTheBytesInBF16() {
    let (x, w) = Self.inputs()
    #expect(keptBytes(Self.chain(x, w).sum) == 4 * (12 + 12 + 12 + 1))
    #expect(keptBytes(autocast(.bf16) { Self.chain(x, w).sum }) == 2 * 12 + 2 * 12 + 4)
  }

  /// GELU under autocast, computing tanh again in backward from its packed input, gives the gradient the fp32 op
  /// gives on the same input values, rounded to bf16 (the input's format).
  @Test func geluComputesItsTanhAgainToTheSameGradient() {
    var rng = SeededRNG(seed: 4)
    let values = (0..<64).map { _ in BFloat16.rounded(Float(rng.normal(std: 2))) }
    let reference = Tensor(values, shape: [64], requiresGrad: true)
    reference.gelu().sum().backward()
    // A bf16 leaf that joins the graph, as MixedPrecision makes a weight.
    let low = Tensor(values, shape: [64], requiresGrad: true)
    _ = MixedPrecision(PrecisionConfig(.bf16), parameters: [low])
    let y = autocast(.bf16) { low.gelu() }
    #expect(low.packed != nil && y.packed != nil && y.savedBytes == 0)
    autocast(.bf16) { y.sum() }.backward()
    #expect(low.gradStorage! == reference.gradStorage!.map { BFloat16.rounded($0) })
  }

  /// MixedPrecision's working copy is packed, stays packed after a step, and its masters are fp32.
  @Test func theWeightsWorkingCopyIsPackedAndTheMastersAreNot() throws {
    let trainer = tinyTrainer { $0.precision = PrecisionConfig(.bf16) }
    for _ in 0..<2 { try trainer.runStep() }
    let mixed = trainer.mixedPrecision!
    for p in trainer.parameters {
      #expect(p.packed?.format == .bf16 && p.storageBytes == 2 * p.count)
      #expect(p.storage == mixed.master(of: p).map { BFloat16.rounded($0) })
    }
    let fp32 = FormatLedger.measure(tinyTrainer())
    let bf16 = FormatLedger.measure(trainer)
    #expect(bf16.weights * 2 == fp32.weights && bf16.masters == fp32.weights)
    #expect(bf16.activations < fp32.activations * 7 / 10, "\(bf16.activations) of \(fp32.activations)")
  }
}

// MARK: - The loss scaler

@Suite struct GradScalerTests {
  static func parameter(_ gradient: [Float]) -> Tensor<Float> {
    let p = Tensor<Float>([0, 0], shape: [2], requiresGrad: true)
    p.accumulateGrad(gradient)
    return p
  }

  @Test func aCleanStepUnscalesOnceStepsAndCounts() {
    var scaler = GradScaler()
    #expect(scaler.scale == 65536 && scaler.growthTracker == 0)
    let p = Self.parameter([65536, -3 * 65536])
    var updated = false
    let stepped = scaler.step([p]) { updated = true }
    #expect(stepped && updated)
    #expect(p.gradStorage! == [1, -3])  // unscaled exactly once
    #expect(scaler.scale == 65536 && scaler.growthTracker == 1 && scaler.skippedSteps == 0)
  }

  @Test func unscalingBeforeClippingIsNotRepeatedByStep() {
    var scaler = GradScaler(initialScale: 4)
    let p = Self.parameter([8, 4])
    scaler.unscale([p])
    #expect(p.gradStorage! == [2, 1])
    _ = scaler.step([p]) {}
    #expect(p.gradStorage! == [2, 1])
  }

  @Test(arguments: [Float.infinity, -.infinity, .nan])
  func anInfOrNaNSkipsTheStepAndHalvesTheScale(_ bad: Float) {
    var scaler = GradScaler()
    for _ in 0..<5 { _ = scaler.step([Self.parameter([1, 1])]) {} }
    #expect(scaler.growthTracker == 5)
    var updated = false
    let stepped = scaler.step([Self.parameter([1, bad])]) { updated = true }
    #expect(!stepped && !updated)
    #expect(scaler.scale == 32768 && scaler.growthTracker == 0 && scaler.skippedSteps == 1)
    // The next step starts afresh: neither unscaled nor flagged.
    #expect(scaler.step([Self.parameter([1, 1])]) {})
  }

  @Test func theScaleDoublesAfterTheGrowthIntervalOfCleanSteps() {
    var scaler = GradScaler()
    for _ in 0..<1999 { _ = scaler.step([]) {} }
    #expect(scaler.scale == 65536 && scaler.growthTracker == 1999)
    _ = scaler.step([]) {}
    #expect(scaler.scale == 131072 && scaler.growthTracker == 0)
    var short = GradScaler(initialScale: 8, growthInterval: 2)
    _ = short.step([Self.parameter([.infinity, 0])]) {}
    _ = short.step([]) {}
    _ = short.step([]) {}
    #expect(short.scale == 8)  // halved to 4, then doubled after 2 clean steps
  }

  @Test func aFixedScaleStillSkipsButNeverMovesAndNoneNeverChecks() {
    var fixed = GradScaler(.fixed(1024))
    #expect(!fixed.step([Self.parameter([.infinity, 0])]) {})
    #expect(fixed.scale == 1024 && fixed.skippedSteps == 1)
    for _ in 0..<2001 { _ = fixed.step([]) {} }
    #expect(fixed.scale == 1024)
    var none = GradScaler(.none)
    let p = Self.parameter([.infinity, 3])
    #expect(none.lossFactor == 1 && none.step([p]) {})
    #expect(p.gradStorage![1] == 3 && none.skippedSteps == 0)
  }
}

// MARK: - Master weights and mixed-precision training

@Suite struct MixedPrecisionTests {
  /// Ten Adam steps of lr 1e-3 on a weight of 1 with a constant gradient: each moves it by about 1e-3, under half
  /// of bf16's gap of 2^-7 above 1 (and 2^-8 below it). In bf16 alone every update is rounded away; the fp32
  /// master moves by 0.01, and the working copy follows it to the nearest bf16.
  @Test(arguments: [true, false])
  func withoutMasterWeightsSmallUpdatesVanish(_ masters: Bool) {
    let p = Tensor<Float>([1, 1, 1, 1], shape: [4], requiresGrad: true)
    let mixed = MixedPrecision(PrecisionConfig(.bf16, masterWeights: masters), parameters: [p])
    let adam = Adam([ParameterGroup([p])], learningRate: 1e-3)
    for _ in 0..<10 {
      p.accumulateGrad([1, 1, 1, 1])
      mixed.update(adam)
      adam.zeroGrad()
    }
    if masters {
      #expect(mixed.master(of: p).allSatisfy { abs($0 - 0.99) < 1e-5 })
      #expect(p.storage == [Float](repeating: NumberFormat.bf16.round(0.99), count: 4))
      #expect(p.storage[0] == 1 - 0x1p-8 * 3)  // 0.98828125, the bf16 nearest 0.99
    } else {
      #expect(p.storage == [1, 1, 1, 1])
      #expect(mixed.lastLostUpdates == 1)
    }
  }

  /// fp16 with dynamic scaling, killed after 3 steps and resumed from the checkpoint: the same weights, masters,
  /// Adam moments and scale as the run that went on, to the last bit.
  @Test(arguments: [Precision.fp16, .bf16, .fp8])
  func aResumedRunRetracesTheUninterruptedOne(_ precision: Precision) throws {
    let change = { (config: inout TrainConfig) in config.precision = PrecisionConfig(precision) }
    let straight = tinyTrainer(change)
    for _ in 0..<6 { try straight.runStep() }
    let first = tinyTrainer(change)
    for _ in 0..<3 { try first.runStep() }
    try first.evaluate()  // a checkpoint follows an evaluation; it changes nothing in the run
    let bytes = try first.checkpointBytes()
    let second = tinyTrainer(change)
    try second.restore(from: CheckpointReader(bytes: bytes, source: "memory", format: Trainer.checkpointFormat))
    for _ in 0..<3 { try second.runStep() }
    #expect(second.parameters.map(\.storage) == straight.parameters.map(\.storage))
    let (a, b) = (second.mixedPrecision!, straight.mixedPrecision!)
    #expect(second.parameters.map { a.master(of: $0) } == straight.parameters.map { b.master(of: $0) })
    #expect(a.scaler == b.scaler)
  }

  /// The dynamic scaler started far too high skips steps (Adam's step count falls behind the run's) and backs off;
  /// a checkpoint saved then resumes to the uninterrupted run's bits.
  @Test func aRunWithSkippedStepsResumesBitForBit() throws {
    func trainer() -> Trainer {
      let run = tinyTrainer { $0.precision = PrecisionConfig(.fp16) }
      run.mixedPrecision!.scaler.restore(scale: 0x1p40, growthTracker: 0, skippedSteps: 0)
      return run
    }
    let straight = trainer()
    for _ in 0..<24 { try straight.runStep() }
    let first = trainer()
    for _ in 0..<12 { try first.runStep() }
    try first.evaluate()
    let skipped = first.mixedPrecision!.scaler.skippedSteps
    #expect(skipped > 0 && first.optimizer.stepCount == 12 - skipped)
    let second = trainer()
    try second.restore(
      from: CheckpointReader(bytes: try first.checkpointBytes(), source: "memory", format: Trainer.checkpointFormat))
    for _ in 0..<12 { try second.runStep() }
    #expect(second.parameters.map(\.storage) == straight.parameters.map(\.storage))
    #expect(second.mixedPrecision!.scaler == straight.mixedPrecision!.scaler)
    #expect(straight.mixedPrecision!.scaler.scale < 0x1p40)
  }

  /// A step whose gradient overflows fp16 is skipped: the weights and Adam's moments stay, the scale halves.
  @Test func anOverflowingStepIsSkippedAndTheWeightsStay() throws {
    let trainer = tinyTrainer { $0.precision = PrecisionConfig(.fp16, lossScale: "1e30") }
    let before = trainer.parameters.map(\.storage)
    try trainer.runStep()
    let mixed = trainer.mixedPrecision!
    #expect(mixed.lastStepSkipped && mixed.scaler.skippedSteps == 1)
    #expect(mixed.lastCensus.overflow > 0)
    #expect(trainer.parameters.map(\.storage) == before)
    #expect(trainer.optimizer.stepCount == 0 && trainer.parameters.allSatisfy { $0.gradStorage == nil })
  }

  /// Unscaled, fp16 stores a language model's small gradients as zeros and subnormals; scaled by 2^16 almost
  /// none are lost.
  @Test func scalingMovesTheGradientsOutOfFP16sUnderflow() throws {
    func census(_ lossScale: String) throws -> GradientCounts {
      let trainer = tinyTrainer { $0.precision = PrecisionConfig(.fp16, lossScale: lossScale) }
      try trainer.runStep()
      return trainer.mixedPrecision!.lastCensus
    }
    let unscaled = try census("none")
    let scaled = try census("dynamic")
    #expect(unscaled.nonzero > 10_000 && scaled.nonzero > 10_000)
    #expect(unscaled.underflowShare + unscaled.subnormalShare > 0.05, "\(unscaled.subnormalShare)")
    #expect(scaled.underflowShare + scaled.subnormalShare < 0.01, "\(scaled.subnormalShare)")
  }

  /// Data parallelism in bf16 (the ranks' bf16 gradients summed in fp32, the update on fp32 masters) equals one
  /// process accumulating the same micro-batches in bf16, bit for bit.
  @Test func dataParallelBF16EqualsGradientAccumulationBitForBit() throws {
    var config = DataParallelTests.config()
    config.precision = PrecisionConfig(.bf16)
    let single = try DataParallelTests.accumulatedRun(ranks: 2, steps: 3, config: config)
    let parallel = try DataParallelTests.parallelRun(ranks: 2, zero: .none, steps: 3, config: config)
    for weights in parallel.weights { #expect(weights == single.weights) }
    #expect(parallel.losses == single.losses)
    var fp32 = config
    fp32.precision = PrecisionConfig()
    #expect(try DataParallelTests.accumulatedRun(ranks: 2, steps: 3, config: fp32).weights != single.weights)
  }
}
