import Foundation
import Support

/// Causal-LM pretraining, the training loop of nanoGPT's train.py: windows of a token file in, next-token
/// cross-entropy out, AdamW (betas 0.9/0.99, weight decay 0.1 on matrices only), linear warmup then cosine decay to
/// a minimum rate, gradient clipping at 1.0, gradient accumulation, and an evaluation every N steps. What it adds to
/// nanoGPT: evaluation batches from generators of their own (so evaluating never changes which batches training
/// sees), the sampler's state in the checkpoint (so a resumed run retraces the uninterrupted one bit for bit), and at
/// the end the exact loss over the whole validation split instead of an estimate.

// MARK: - Configuration

/// Everything that decides a run. The defaults are nanoGPT's CPU configuration of shakespeare_char.
public struct TrainConfig: Sendable {
  public var tokenizer = TokenizerKind.char
  /// Ids of a BPE tokenizer (ignored for characters, whose vocabulary is the corpus's characters).
  public var vocabulary = 512
  public var context = 64
  public var layers = 4
  public var heads = 4
  public var width = 128
  public var dropout = 0.0
  /// Biases in the Linears and LayerNorms (GPT-2 has them; nanoGPT's configuration leaves them out).
  public var bias = false
  /// Windows per micro-batch, and micro-batches per optimizer step (gradient accumulation).
  public var batchSize = 12
  public var accumulation = 1
  public var steps = 2000
  public var learningRate = 1e-3
  public var minLearningRate = 1e-4
  public var warmup = 100
  public var weightDecay = 0.1
  public var evalEvery = 250
  /// Batches per split in each evaluation's estimate (nanoGPT's eval_iters).
  public var evalBatches = 20
  public var order = WindowOrder.random
  public var seed: UInt64 = 1337
  /// The corpus the run trains on (a path; the run tokenizes it into token files).
  public var corpus = ""
  /// The number format it trains in (stage 8): fp32, or bf16, fp16, fp8 with loss scaling and master weights.
  public var precision = PrecisionConfig()

  public init() {}

  /// The model, for a tokenizer of `vocabulary` ids: GPT-2's blocks, without biases unless `bias` (nanoGPT's config).
  public func model(vocabulary: Int) -> GPTConfig {
    var config = GPTConfig(vocabulary: vocabulary, context: context, layers: layers, heads: heads, width: width)
    config.dropout = dropout
    config.bias = bias
    return config
  }

  /// Tokens one optimizer step trains on.
  public var tokensPerStep: Int { batchSize * accumulation * context }

  /// nanoGPT's get_lr as a factor of the peak rate: warmup over `warmup` steps, cosine down to min-lr at `steps`.
  public var schedule: LRSchedule {
    .cosine(warmup: warmup, total: steps, floor: minLearningRate / learningRate)
  }

  /// The options that shape the run, as the command line spells them: a checkpoint records them, `--resume`
  /// continues with them, and `sample` builds its model from them.
  public var options: [(flag: String, value: String)] {
    let options: [(flag: String, value: String)] = [
      ("--corpus", corpus), ("--tokenizer", tokenizer.rawValue), ("--vocab", String(vocabulary)),
      ("--context", String(context)), ("--layers", String(layers)), ("--heads", String(heads)),
      ("--width", String(width)), ("--dropout", String(dropout)), ("--bias", bias ? "on" : "off"),
      ("--batch-size", String(batchSize)),
      ("--accumulation", String(accumulation)), ("--steps", String(steps)), ("--lr", String(learningRate)),
      ("--min-lr", String(minLearningRate)), ("--warmup", String(warmup)), ("--eval-every", String(evalEvery)),
      ("--eval-batches", String(evalBatches)), ("--sampling", order.rawValue), ("--seed", String(seed)),
      ("--precision", precision.precision.rawValue), ("--loss-scale", precision.lossScaleName),
      ("--master-weights", precision.masterWeights ? "on" : "off"),
    ]
    return options
  }

  /// `options` as one line: "--corpus ... --tokenizer char ..." (a value with a space in quotes).
  public var commandLine: String { optionsLine(options) }

  /// Roughly the memory a run needs, in bytes, for `Check.memory`: parameters with gradients and AdamW's two
  /// moments, and what a training step keeps for backward (about 34 width-sized values per token and block, the
  /// attention weights, and the logits with their gradient). Counted in Double: no product overflows.
  func estimatedBytes(vocabulary: Int) -> Double {
    let (w, t, v) = (Double(width), Double(context), Double(vocabulary))
    let parameters = (v + t) * w + Double(layers) * 12 * w * w
    let perToken = Double(layers) * (34 * w + 5 * Double(heads) * t) + 3 * v
    return 4 * (4 * parameters + Double(batchSize) * t * perToken)
  }
}

/// One optimizer step of a pretraining loop, the causal LM's and the masked LM's alike: `accumulation` micro-batch
/// losses from `microBatchLoss`, each scaled by 1/accumulation so that the summed gradients are those of the mean;
/// a loss that is not finite stops the run before it reaches the weights (a `UserError` naming step + 1); then
/// clipping at 1.0, the rate `learningRate` x `factor`, the update. Returns the mean loss and the gradient's norm
/// before clipping.
func optimizerStep(
  accumulation: Int, learningRate: Double, factor: Double, step: Int, parameters: [Tensor<Float>],
  optimizer: any Optimizer<Float>, learningRateOption: String = "--lr", microBatchLoss: () -> Tensor<Float>
) throws -> (loss: Double, gradientNorm: Double) {
  var total = 0.0
  for _ in 0..<accumulation {
    let loss = microBatchLoss()
    let value = Double(loss.item)
    try Check.finiteLoss(value, step: step + 1, learningRate: learningRate, option: learningRateOption)
    total += value
    (accumulation == 1 ? loss : loss / Float(accumulation)).backward()
  }
  let norm = clipGradNorm(parameters, maxNorm: 1)
  optimizer.learningRate = learningRate * factor
  optimizer.step()
  optimizer.zeroGrad()
  return (total / Double(accumulation), norm)
}

/// The figures of one evaluation: nanoGPT's estimates of the training and validation losses (nats per token).
public struct StepRecord: Sendable, Equatable {
  public let step: Int
  public let trainLoss: Double
  public let valLoss: Double
}

// MARK: - Trainer

/// A pretraining run in progress.
public final class Trainer {
  public let config: TrainConfig
  public let tokenizer: any Tokenizer
  public let train: TokenFile
  public let val: TokenFile
  public let model: GPT<Float>
  public let parameters: [Tensor<Float>]
  public let optimizer: any Optimizer<Float>
  public let schedule: LRSchedule
  /// Dropout draws from here; a checkpoint saves it.
  let random: RandomSource
  /// The training batches; a checkpoint saves its state.
  public let sampler: WindowSampler
  public internal(set) var step = 0
  public internal(set) var history: [StepRecord] = []
  /// The lowest validation estimate so far (the checkpoint is saved when an evaluation beats it).
  public internal(set) var bestValLoss = Double.infinity
  /// The global norm of the last step's gradient, before clipping (what clip_grad_norm_ returns).
  public internal(set) var lastGradientNorm = 0.0
  /// A hash of the corpus's text ("" when the splits come from elsewhere): a checkpoint records it, and a resume on
  /// another text is refused, even one at the same path with as many tokens.
  public var corpusHash = ""
  /// Whether the last evaluation set a new best (the command line then saves the checkpoint, as nanoGPT does).
  public internal(set) var lastEvaluationIsBest = false
  /// The low format's machinery (stage 8): nil for fp32.
  public let mixedPrecision: MixedPrecision?

  /// A run on token files made by `tokenizer`; each split must hold at least one window (the caller checks).
  public init(_ config: TrainConfig, tokenizer: any Tokenizer, train: TokenFile, val: TokenFile) {
    self.config = config
    self.tokenizer = tokenizer
    self.train = train
    self.val = val
    random = RandomSource(seed: config.seed &+ 1)
    model = GPT(config.model(vocabulary: tokenizer.vocabularySize), seed: config.seed, random: random)
    parameters = model.parameters()
    // AdamW with decay on matrices and embeddings only, betas 0.9/0.99, as nanoGPT configures it.
    optimizer = Adam(
      ParameterGroup.decayingMatrices(parameters, weightDecay: config.weightDecay), learningRate: config.learningRate,
      beta1: 0.9, beta2: 0.99, decoupledWeightDecay: true)
    schedule = config.schedule
    sampler = WindowSampler(
      tokens: train, context: config.context, batchSize: config.batchSize, order: config.order,
      seed: config.seed &+ 2)
    mixedPrecision =
      config.precision.precision == .fp32 ? nil : MixedPrecision(config.precision, parameters: parameters)
  }

  /// The mean next-token loss of `inputs` -> `targets` (rows of `context` ids), as a graph to differentiate; in
  /// the run's format (under autocast) when it is not fp32.
  func loss(_ inputs: [Int], _ targets: [Int]) -> Tensor<Float> {
    let forward = {
      let logits = self.model(inputs, batch: inputs.count / self.config.context)
      return crossEntropyLoss(logits: logits.reshape([-1, self.tokenizer.vocabularySize]), labels: targets)
    }
    return mixedPrecision?.autocasting(forward) ?? forward()
  }

  /// One optimizer step (`optimizerStep`) on `accumulation` micro-batches of windows. Returns the mean loss.
  @discardableResult
  public func runStep() throws -> Double {
    model.train()
    let microBatchLoss = {
      let (inputs, targets) = self.sampler.nextBatch()
      return self.loss(inputs, targets)
    }
    let (loss, norm) =
      try mixedPrecision?.optimizerStep(
        accumulation: config.accumulation, learningRate: config.learningRate, factor: schedule.factor(at: step),
        step: step, optimizer: optimizer, learningRateOption: "--lr", microBatchLoss: microBatchLoss)
      ?? optimizerStep(
        accumulation: config.accumulation, learningRate: config.learningRate, factor: schedule.factor(at: step),
        step: step, parameters: parameters, optimizer: optimizer, microBatchLoss: microBatchLoss)
    lastGradientNorm = norm
    step += 1
    return loss
  }

  /// nanoGPT's estimate_loss: the mean loss of `config.evalBatches` batches of random windows of `split`, in
  /// evaluation mode and without a graph. The windows come from a generator seeded by the step and the split, not
  /// from the training stream: an evaluation changes nothing about the run, and the same step always measures the
  /// same windows.
  public func estimateLoss(_ split: TokenFile, name: String) -> Double {
    model.eval()
    defer { model.train() }
    let sampler = WindowSampler(
      tokens: split, context: config.context, batchSize: config.batchSize, order: .random,
      seed: config.seed ^ stableHash("eval \(name) \(step)"))
    return noGrad {
      var sum = 0.0
      for _ in 0..<config.evalBatches {
        let (inputs, targets) = sampler.nextBatch()
        sum += Double(loss(inputs, targets).item)
      }
      return sum / Double(config.evalBatches)
    }
  }

  /// The exact loss over the whole validation split: every non-overlapping window of the context, each position
  /// predicting its next id, averaged over all of them (the few ids after the last whole window are not scored).
  public func exactLoss(_ split: TokenFile) -> (loss: Double, windows: Int, tokens: Int) {
    model.eval()
    defer { model.train() }
    let starts = consecutiveWindows(of: split, context: config.context)
    return noGrad {
      var sum = 0.0
      for chunk in stride(from: 0, to: starts.count, by: 64) {
        var (inputs, targets): ([Int], [Int]) = ([], [])
        for start in starts[chunk..<min(chunk + 64, starts.count)] {
          split.append(from: start, length: config.context, into: &inputs)
          split.append(from: start + 1, length: config.context, into: &targets)
        }
        sum += Double(loss(inputs, targets).item) * Double(targets.count)
      }
      let tokens = starts.count * config.context
      return (sum / Double(tokens), starts.count, tokens)
    }
  }

  /// Estimates both losses and records them; the validation estimate becomes the best if it beats it. A
  /// validation loss that is not finite means the weights have diverged (a `UserError`): the caller then never
  /// saves them over the last good checkpoint.
  @discardableResult
  public func evaluate() throws -> StepRecord {
    let record = StepRecord(
      step: step, trainLoss: estimateLoss(train, name: "train"), valLoss: estimateLoss(val, name: "val"))
    try Check.finiteLoss(record.valLoss, step: step, learningRate: config.learningRate, what: "the validation loss")
    history.append(record)
    lastEvaluationIsBest = record.valLoss < bestValLoss
    bestValLoss = min(bestValLoss, record.valLoss)
    return record
  }
}
