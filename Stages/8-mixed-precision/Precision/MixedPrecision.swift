import Support

/// Mixed-precision training: a training step of stage 5's loop with the model stored in a low format, as Apex's
/// O2 and Megatron run it.
///
/// - The model's parameters are a working copy in the low format (bf16 or fp16; fp8 keeps a bf16 copy and casts it
///   to 8 bits in each product), and forward and backward run under autocast, so the activations and the
///   gradients are stored in the low format too.
/// - The optimizer keeps fp32 master weights: it updates them with the gradients converted to fp32 (and unscaled),
///   and the working copy is refreshed from them after each step. Without them (`masterWeights: false`, "pure
///   bf16") the update is added to the low-format weight itself and rounded: an update smaller than half the gap
///   between neighbouring values of the weight's format (an ulp) is lost entirely. With bf16's 8 bits of
///   precision that is any update below 2^-9 of the weight, and late in training, at a small learning rate, most
///   are: training stalls.
/// - fp16 needs its loss scaled (`GradScaler`); bf16 has fp32's range and does not.
public final class MixedPrecision {
  public let config: PrecisionConfig
  /// The format the weights, activations and gradients are stored in.
  public let format: NumberFormat
  public let parameters: [Tensor<Float>]
  /// The fp32 masters, by parameter; empty without master weights.
  var masters: [ObjectIdentifier: [Float]] = [:]
  public internal(set) var scaler: GradScaler
  public let fp8: FP8Recipe?
  /// Counts what storing gradients in the low format loses (see `GradientCensus`), step by step.
  public let census = GradientCensus()
  /// The last step's counts.
  public internal(set) var lastCensus = GradientCounts()
  /// Without master weights: the share of the last step's non-zero updates that rounding erased.
  public internal(set) var lastLostUpdates = 0.0
  /// Whether the last step was skipped for an inf or NaN gradient.
  public internal(set) var lastStepSkipped = false

  /// Sets `parameters` up: each becomes a working copy in the low format, and (with master weights) its fp32
  /// values become the master.
  public init(_ config: PrecisionConfig, parameters: [Tensor<Float>]) {
    precondition(config.precision != .fp32, "MixedPrecision: fp32 needs none")
    self.config = config
    format = config.precision.storageFormat
    self.parameters = parameters
    scaler = GradScaler(config.lossScaleMode)
    fp8 = config.precision == .fp8 ? FP8Recipe() : nil
    for p in parameters {
      if config.masterWeights { masters[ObjectIdentifier(p)] = p.storage }
      p.format = format
      p.census = census
      p.pack()
    }
  }

  /// `body` under autocast to this run's format.
  public func autocasting<R>(_ body: () throws -> R) rethrows -> R {
    try autocast(format, fp8: fp8, census: census, body)
  }

  /// The fp32 value of a parameter: its master, or (without) the working copy itself.
  public func master(of p: Tensor<Float>) -> [Float] { masters[ObjectIdentifier(p)] ?? p.storage }

  /// Sets a parameter from fp32 values (a checkpoint's): the master, and the working copy rounded from it.
  func load(_ values: [Float], into p: Tensor<Float>) {
    if config.masterWeights { masters[ObjectIdentifier(p)] = values }
    p.storage = values
    p.pack()
  }

  /// One optimizer step (stage 5's `optimizerStep` in a low format): the micro-batch losses under autocast, each
  /// backward seeded with S / accumulation (the loss scaled); the gradients, stored in the low format, unscaled
  /// once into fp32; the step skipped on an inf or NaN; clipping and the update on the fp32 masters; the working
  /// copy refreshed. Returns the mean loss, the norm before clipping (NaN for a skipped step) and whether it stepped.
  func optimizerStep(
    accumulation: Int, learningRate: Double, factor: Double, step: Int, optimizer: any Optimizer<Float>,
    learningRateOption: String, microBatchLoss: () -> Tensor<Float>
  ) throws -> (loss: Double, gradientNorm: Double) {
    var total = 0.0
    census.reset()
    for _ in 0..<accumulation {
      let loss = autocasting(microBatchLoss)
      let value = Double(loss.item)
      try Check.finiteLoss(value, step: step + 1, learningRate: learningRate, option: learningRateOption)
      total += value
      loss.backward(gradient: [scaler.lossFactor / Float(accumulation)])
    }
    lastCensus = census.counts
    var norm = Double.nan
    lastStepSkipped = !scaler.step(parameters) {
      norm = clipGradNorm(parameters, maxNorm: 1)
      optimizer.learningRate = learningRate * factor
      update(optimizer)
    }
    optimizer.zeroGrad()
    return (total / Double(accumulation), norm)
  }

  /// The update, on the masters when there are any (`onMasters`).
  func update(_ optimizer: any Optimizer<Float>) { onMasters { optimizer.step() } }

  /// Runs `update` (an optimizer's step, or data parallelism's) on the fp32 masters: each parameter's elements are
  /// swapped for its master's (the optimizer's moments are fp32 already), and after it the working copy is
  /// rounded from the new master. Without masters `update` writes the working copy itself, and rounding it back
  /// to the low format is where small updates vanish: `lastLostUpdates` counts them.
  func onMasters<R>(_ update: () throws -> R) rethrows -> R {
    if config.masterWeights {
      // Each master moves into its parameter (the dictionary lets go of it, so the update writes it in place),
      // and back after; the packed working copy is dropped, and packed again from the new master.
      for p in parameters { p.storage = masters.removeValue(forKey: ObjectIdentifier(p))! }
      defer {
        for p in parameters {
          masters[ObjectIdentifier(p)] = p.storage
          p.pack()
        }
      }
      return try update()
    }
    let before = parameters.map(\.storage)
    let result = try update()
    var (moved, lost) = (0, 0)
    for (p, old) in zip(parameters, before) {
      p.storage.withUnsafeMutableBufferPointer { w in
        for i in w.indices where w[i] != old[i] {
          moved += 1
          w[i] = format.round(w[i])
          if w[i] == old[i] { lost += 1 }
        }
      }
      p.pack()
    }
    lastLostUpdates = moved == 0 ? 0 : Double(lost) / Double(moved)
    return result
  }

  /// One line on what the run stores in which format.
  public var summary: String {
    let stored =
      config.precision == .fp8
      ? "bf16 weights, activations and gradients; the linear layers' products in fp8 (E4M3 forward, E5M2 "
        + "backward, delayed per-tensor scaling)"
      : "\(format.rawValue) weights, activations and gradients"
    return stored + (config.masterWeights ? ", fp32 master weights" : ", no master weights")
      + ", loss scale \(config.lossScaleName)"
  }
}

// MARK: - Configuration

/// The number format a run trains in.
public enum Precision: String, CaseIterable, Sendable {
  case fp32, bf16, fp16, fp8

  /// The format weights, activations and gradients are stored in (fp8 stores bf16 and casts to 8 bits in the
  /// products).
  public var storageFormat: NumberFormat {
    switch self {
    case .fp32: .fp32
    case .bf16, .fp8: .bf16
    case .fp16: .fp16
    }
  }
}

/// `--precision`, `--loss-scale` and `--master-weights`.
public struct PrecisionConfig: Sendable, Equatable {
  public var precision = Precision.fp32
  /// "dynamic", "none" or a number; nil: dynamic for fp16, none otherwise.
  public var lossScale: String?
  public var masterWeights = true

  public init(_ precision: Precision = .fp32, lossScale: String? = nil, masterWeights: Bool = true) {
    self.precision = precision
    self.lossScale = lossScale
    self.masterWeights = masterWeights
  }

  /// The scaler's mode: fp16 scales dynamically unless told otherwise; bf16 and fp8 (whose gradients are bf16)
  /// have fp32's range and need no scaling.
  public var lossScaleMode: GradScaler.Mode {
    switch lossScale ?? (precision == .fp16 ? "dynamic" : "none") {
    case "dynamic": .dynamic
    case "none": .none
    case let number:
      // `checkLossScale` refused anything else before a config was made.
      .fixed(Double(number) ?? { preconditionFailure("--loss-scale '\(number)' was not checked") }())
    }
  }

  /// The loss scale as `--loss-scale` spells it.
  public var lossScaleName: String {
    switch lossScaleMode {
    case .dynamic: "dynamic"
    case .none: "none"
    case .fixed(let s): String(s)
    }
  }

  /// Checks `--loss-scale`: dynamic, none, or a finite number of at least 1.
  public static func checkLossScale(_ text: String) throws {
    guard text == "dynamic" || text == "none" else {
      guard let value = Double(text), value.isFinite, value >= 1, value <= 0x1p100 else {
        throw UserError("--loss-scale must be dynamic, none or a number from 1 to 2^100, got '\(text)'")
      }
      return
    }
  }
}

// MARK: - Checkpoints

extension MixedPrecision {
  /// The scaler's state, for a checkpoint (the weights it saves are the masters: the working copy is rounded
  /// from them).
  var checkpointMetadata: [String: String] {
    [
      "loss_scale": String(scaler.scale), "loss_scale_growth_tracker": String(scaler.growthTracker),
      "skipped_steps": String(scaler.skippedSteps),
    ]
  }

  /// A checkpoint's scaler state, checked: the mode's scale (a power of two for the dynamic mode, as it only
  /// ever halves and doubles 2^16; the run's own for a fixed one; 1 without scaling), a count below the growth
  /// interval, and at most one skip per step.
  func readScaler(_ reader: CheckpointReader, step: Int) throws -> GradScaler {
    let text = try reader.text("loss_scale")
    guard let scale = Double(text), scale.isFinite, scale > 0 else {
      throw reader.error("metadata 'loss_scale' is '\(text)'; it must be a positive number")
    }
    let expected: String? =
      switch scaler.mode {
      case .dynamic: scale.significand == 1 ? nil : "a power of two (the dynamic scale halves and doubles 2^16)"
      case .fixed(let fixed): scale == fixed ? nil : "this run's --loss-scale \(fixed)"
      case .none: scale == 1 ? nil : "1 (this run has --loss-scale none)"
      }
    if let expected { throw reader.error("metadata 'loss_scale' is \(text); it must be \(expected)") }
    let tracker = try reader.integer("loss_scale_growth_tracker", in: 0...(scaler.growthInterval - 1))
    let skipped = try reader.integer("skipped_steps", in: 0...step)
    var restored = scaler
    restored.restore(scale: scale, growthTracker: tracker, skippedSteps: skipped)
    return restored
  }

  /// fp8's scales and amax histories, as tensors, and the metadata that names their weights (so that a resumed
  /// fp8 run scales as the uninterrupted one would).
  func fp8Checkpoint(_ named: [(String, Tensor<Float>)]) throws -> (tensors: [String: SafeTensor], names: String)? {
    guard let fp8 else { return nil }
    return (try fp8.checkpointTensors(named), fp8.usedWeights(named).joined(separator: ","))
  }

  /// Reads fp8's scales (nothing for other formats): every weight "fp8_weights" names, which after a step must be
  /// some.
  func readFP8(_ reader: CheckpointReader, steps: Int, named: [(String, Tensor<Float>)]) throws -> (() -> Void)? {
    guard let fp8 else { return nil }
    let list = try reader.text("fp8_weights")
    let names = list.isEmpty ? [] : list.split(separator: ",").map(String.init)
    guard steps == 0 || !names.isEmpty else {
      throw reader.error("metadata 'fp8_weights' is empty after \(steps) steps; an fp8 run's weights have scales")
    }
    let read = try fp8.readCheckpoint(reader, names: names, named: named)
    return { fp8.restore(read) }
  }
}
