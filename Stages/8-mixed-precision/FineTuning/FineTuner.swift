import Support

/// The fine-tuning loop: the pretraining loop of stage 5 (AdamW with betas 0.9/0.99, warmup then cosine, clipping
/// at 1.0), run on whatever the method left trainable. Weight decay is 0, as Hugging Face's Trainer and PEFT's
/// examples use it: decaying LoRA's or an adapter's weights pulls the model back to the base, not to zero.

/// How long and how fast a fine-tuning run goes.
public struct FineTuneSettings: Sendable, Equatable {
  public var steps = 300
  public var batchSize = 12
  public var learningRate = 1e-3
  public var warmup = 30
  public var seed: UInt64 = 1
  /// The option the learning rate came from, for the message of a run that diverges.
  public var learningRateOption = "--lr"

  public init() {}

  /// Warmup, then a cosine down to a tenth of the peak at the last step.
  public var schedule: LRSchedule { .cosine(warmup: warmup, total: steps, floor: 0.1) }
}

/// The loop around any fine-tuning loss: AdamW on `parameters` (what the method left trainable, and a task's new
/// head), one step per call of `runStep`, with the activations of the first step's graph measured for the ledger.
public final class FineTuner {
  public let settings: FineTuneSettings
  /// The parameters that train, and nothing else: the optimizer keeps state for these only.
  public let parameters: [Tensor<Float>]
  let optimizer: Adam<Float>
  public private(set) var step = 0
  /// Bytes of the tensors the first step's graph kept for backward (what freezing saves beyond the optimizer).
  public private(set) var activationBytes = 0

  public init(parameters: [Tensor<Float>], settings: FineTuneSettings) {
    self.settings = settings
    self.parameters = parameters
    optimizer = Adam(
      [ParameterGroup(parameters, weightDecay: 0)], learningRate: settings.learningRate, beta1: 0.9, beta2: 0.99,
      decoupledWeightDecay: true)
  }

  /// One optimizer step on the loss `batchLoss` builds; returns it.
  @discardableResult
  public func runStep(_ batchLoss: () -> Tensor<Float>) throws -> Double {
    let (loss, _) = try optimizerStep(
      accumulation: 1, learningRate: settings.learningRate, factor: settings.schedule.factor(at: step), step: step,
      parameters: parameters, optimizer: optimizer, learningRateOption: settings.learningRateOption
    ) {
      let loss = batchLoss()
      if activationBytes == 0 { activationBytes = keptBytes(loss) }
      return loss
    }
    step += 1
    return loss
  }

  /// Where the run's memory goes, from the code's own accounting: all `weights` numbers (frozen or not), the
  /// gradients and AdamW's two moments of the trainable ones, and the activations the graph keeps for backward.
  public func ledger(weights: Int) -> MemoryLedger {
    let trainable = parameters.reduce(0) { $0 + $1.count }
    return MemoryLedger(
      parameters: 4 * weights, gradients: 4 * trainable, optimizer: 8 * trainable, activations: activationBytes)
  }
}

/// Bytes of a step's memory, by what holds them.
public struct MemoryLedger: Sendable, Equatable {
  public let parameters: Int
  public let gradients: Int
  public let optimizer: Int
  public let activations: Int
  public var total: Int { parameters + gradients + optimizer + activations }
}

/// Bytes a graph keeps for backward: the elements of every op's result that has inputs to pass a gradient to, as
/// they are stored (4 bytes a Float, 2 packed in 16 bits since stage 8), each buffer once (a reshape's result
/// shares its input's), and what the ops keep besides their tensors (`savedBytes`: the fused attention's weights,
/// B x H x T x T numbers per layer, LayerNorm's statistics, the loss's gradient).
func keptBytes(_ output: Tensor<Float>) -> Int {
  var seen = Set<UnsafeRawPointer>()
  var bytes = 0
  for node in output.topologicalOrder() where !node.parents.isEmpty {
    bytes += node.savedBytes
    let buffer =
      node.packed.map { $0.bits.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) } }
      ?? node.storage.withUnsafeBufferPointer { UnsafeRawPointer($0.baseAddress) }
    if let buffer, !seen.insert(buffer).inserted { continue }
    bytes += node.storageBytes
  }
  return bytes
}

/// The mean next-token loss (nats per token) of `model` over `tokens`, in consecutive windows of `window` tokens,
/// each position predicting the next (the few tokens after the last whole window are not scored).
public func languageModelLoss(_ model: GPT<Float>, tokens: [Int], window: Int) -> Double {
  model.eval()
  defer { model.train() }
  let file = TokenFile(tokens)
  let starts = consecutiveWindows(of: file, context: window)
  precondition(!starts.isEmpty, "languageModelLoss: \(tokens.count) tokens hold no window of \(window + 1)")
  return noGrad {
    var sum = 0.0
    for chunk in stride(from: 0, to: starts.count, by: 64) {
      var (inputs, targets): ([Int], [Int]) = ([], [])
      for start in starts[chunk..<min(chunk + 64, starts.count)] {
        file.append(from: start, length: window, into: &inputs)
        file.append(from: start + 1, length: window, into: &targets)
      }
      let logits = model(inputs, batch: inputs.count / window).reshape([-1, model.config.vocabulary])
      sum += Double(crossEntropyLoss(logits: logits, labels: targets).item) * Double(targets.count)
    }
    return sum / Double(starts.count * window)
  }
}

extension GPT {
  /// Every number the model holds: the base's weights, frozen or trainable, and whatever the method added.
  public var allWeightCount: Int {
    guard let setup = fineTuning else { return parameterCount }
    let added = namedParameters().filter { !setup.baseNames.contains($0.name) }
    return setup.baseWeights + added.reduce(0) { $0 + $1.tensor.count }
  }
}
