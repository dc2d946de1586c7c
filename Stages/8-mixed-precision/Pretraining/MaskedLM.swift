import Foundation
import Support

/// Masked-LM and next-sentence pretraining, BERT's two objectives, on the same token files as the causal LM: pairs
/// of segments (SentencePairs.swift) are masked (Masking.swift), the encoder reads them whole (both directions at
/// once, which a causal model cannot), and the loss is the MLM cross-entropy over the chosen positions plus the NSP
/// cross-entropy over the pairs. The loop around it is the causal LM's (AdamW, warmup and cosine, clipping,
/// accumulation, evaluations, best-loss checkpoints, exact resume).

// MARK: - Configuration

/// Everything that decides a masked-LM run. The defaults: a 4-layer, width-128 post-LN BERT on inputs of 64
/// characters, BERT's masking (15%, 80/10/10, at most 20 an input) and NSP, static masks with 5 copies, 3,000
/// steps of 32 inputs (about 7 minutes on 2 cores). At 128 characters a step costs twice as much, and the encoder
/// takes as many steps to learn where its neighbours are.
public struct MaskedLMConfig: Sendable {
  public var tokenizer = TokenizerKind.char
  public var vocabulary = 512
  /// Tokens per input, [CLS] and [SEP]s included (BERT's max_seq_length).
  public var context = 64
  public var layers = 4
  public var heads = 4
  public var width = 128
  public var dropout = 0.0
  public var batchSize = 32
  public var accumulation = 1
  public var steps = 3000
  public var learningRate = 1e-3
  public var minLearningRate = 1e-4
  public var warmup = 100
  /// BERT's weight decay, on matrices and embeddings only.
  public var weightDecay = 0.01
  public var evalEvery = 500
  /// Batches of training pairs in each evaluation's estimate of the training loss.
  public var evalBatches = 10
  public var seed: UInt64 = 1337
  public var corpus = ""
  public var maskRate = 0.15
  public var maxPredictions = 20
  public var nsp = true
  public var norm = NormPlacement.post
  /// RoBERTa's dynamic masking: a fresh mask each time a pair is used, instead of BERT's masks made once per copy.
  public var dynamicMasking = false
  public var wholeWord = false
  /// Copies of the training data, each cut into pairs and masked anew (BERT's dupe_factor).
  public var duplication = 5

  public init() {}

  public func model(vocabulary: Int) -> BERTConfig {
    var config = BERTConfig(vocabulary: vocabulary, context: context, layers: layers, heads: heads, width: width)
    config.dropout = dropout
    config.norm = norm
    return config
  }

  /// The longest A + B: the context less [CLS] and the [SEP]s.
  public var maxTokens: Int { context - (nsp ? 3 : 2) }

  public var schedule: LRSchedule { .cosine(warmup: warmup, total: steps, floor: minLearningRate / learningRate) }

  /// The options that shape the run, as the command line spells them (a checkpoint records them).
  public var options: [(flag: String, value: String)] {
    [
      ("--corpus", corpus), ("--tokenizer", tokenizer.rawValue), ("--vocab", String(vocabulary)),
      ("--context", String(context)), ("--layers", String(layers)), ("--heads", String(heads)),
      ("--width", String(width)), ("--dropout", String(dropout)), ("--batch-size", String(batchSize)),
      ("--accumulation", String(accumulation)), ("--steps", String(steps)), ("--lr", String(learningRate)),
      ("--min-lr", String(minLearningRate)), ("--warmup", String(warmup)), ("--eval-every", String(evalEvery)),
      ("--eval-batches", String(evalBatches)), ("--seed", String(seed)), ("--mask-rate", String(maskRate)),
      ("--max-predictions", String(maxPredictions)), ("--nsp", nsp ? "on" : "off"), ("--norm", norm.rawValue),
      ("--dynamic-masking", String(dynamicMasking)), ("--whole-word", String(wholeWord)),
      ("--duplication", String(duplication)),
    ]
  }

  public var commandLine: String { optionsLine(options) }

  /// Roughly the memory a run needs, in bytes (as `TrainConfig.estimatedBytes`, with bidirectional attention).
  func estimatedBytes(vocabulary: Int) -> Double {
    let (w, t, v) = (Double(width), Double(context), Double(vocabulary))
    let parameters = (v + t) * w + Double(layers) * 12 * w * w
    let perToken = Double(layers) * (34 * w + 5 * Double(heads) * t) + Double(maxPredictions) / t * 3 * v
    return 4 * (4 * parameters + Double(batchSize) * t * perToken)
  }
}

/// One evaluation: the training loss estimated on a fixed set of training pairs, and on the held-out pairs the
/// total loss (MLM + NSP), the MLM loss, the masked-token accuracy and the NSP accuracy.
public struct MaskedLMRecord: Sendable, Equatable {
  public var step: Int
  public var trainLoss: Double
  public var valLoss: Double
  public var mlmLoss: Double
  public var mlmAccuracy: Double
  public var nspAccuracy: Double

  /// The record as the checkpoint's history stores it (and back).
  var row: [Double] { [Double(step), trainLoss, valLoss, mlmLoss, mlmAccuracy, nspAccuracy] }
  init(row: [Double]) {
    (step, trainLoss, valLoss, mlmLoss, mlmAccuracy, nspAccuracy) = (
      Int(row[0]), row[1], row[2], row[3], row[4], row[5]
    )
  }
  init(step: Int, trainLoss: Double, valLoss: Double, mlmLoss: Double, mlmAccuracy: Double, nspAccuracy: Double) {
    (self.step, self.trainLoss, self.valLoss) = (step, trainLoss, valLoss)
    (self.mlmLoss, self.mlmAccuracy, self.nspAccuracy) = (mlmLoss, mlmAccuracy, nspAccuracy)
  }
}

/// What the model gets right on a set of pairs.
public struct MaskedLMScore: Sendable {
  public var loss = 0.0
  public var mlmLoss = 0.0
  public var mlmAccuracy = 0.0
  public var nspAccuracy = 0.0
  /// The accuracy of always guessing the training split's most frequent token at the same positions.
  public var baselineAccuracy = 0.0
  public var predictions = 0
  public var pairs = 0
}

// MARK: - Batches

/// A batch of masked inputs, padded to its longest row.
public struct MaskedBatch {
  public var tokens: [Int] = []
  public var segments: [Int] = []
  /// 1 at padding, [rows * length].
  public var padding: [Float] = []
  public var rows = 0
  public var length = 0
  /// The chosen positions as flat indices (row * length + position), and their original ids.
  public var positions: [Int] = []
  public var labels: [Int] = []
  /// NSP's labels: 0 when B follows A, 1 when B is random.
  public var nextLabels: [Int] = []
}

/// The epochs of a list of items: each epoch deals every item once, in an order shuffled from the seed and the
/// epoch alone, so that a checkpoint needs only the epoch and the position.
public final class EpochSampler {
  public let count: Int
  public let seed: UInt64
  public internal(set) var epoch = 0
  public internal(set) var position = 0
  private var order: [Int32] = []

  public init(count: Int, seed: UInt64) {
    precondition(count > 0, "EpochSampler: no items")
    self.count = count
    self.seed = seed
  }

  public func next() -> Int {
    if order.isEmpty { order = Self.order(count, seed: seed, epoch: epoch) }
    if position == count {
      (epoch, position) = (epoch + 1, 0)
      order = Self.order(count, seed: seed, epoch: epoch)
    }
    defer { position += 1 }
    return Int(order[position])
  }

  public func restore(epoch: Int, position: Int) {
    (self.epoch, self.position) = (epoch, position)
    order = Self.order(count, seed: seed, epoch: epoch)
  }

  static func order(_ count: Int, seed: UInt64, epoch: Int) -> [Int32] {
    var rng = SeededRNG(seed: seed ^ stableHash("epoch \(epoch)"))
    var order = (0..<Int32(count)).map { $0 }
    for i in stride(from: count - 1, to: 0, by: -1) { order.swapAt(i, rng.index(below: i + 1)) }
    return order
  }
}

// MARK: - Trainer

/// A masked-LM (and NSP) pretraining run in progress.
public final class MaskedLMTrainer {
  public let config: MaskedLMConfig
  public let tokenizer: any Tokenizer
  public let train: TokenFile
  public let val: TokenFile
  public let model: BERT<Float>
  public let parameters: [Tensor<Float>]
  public let optimizer: any Optimizer<Float>
  public let schedule: LRSchedule
  public let rule: MaskingRule
  /// The training pairs (`duplication` passes) and the held-out pairs, as ranges of the token files.
  public let trainPairs: [SentencePair]
  public let valPairs: [SentencePair]
  /// The order training pairs are used in; a checkpoint saves its epoch and position.
  public let sampler: EpochSampler
  /// Dropout draws from here; a checkpoint saves it.
  let random: RandomSource
  /// Dynamic masks draw from here; a checkpoint saves it.
  var maskingRNG: SeededRNG
  let cls: Int
  let sep: Int
  let pad: Int
  /// The training split's most frequent non-special token: the unigram baseline's one guess.
  public let mostFrequent: Int
  public internal(set) var step = 0
  public internal(set) var history: [MaskedLMRecord] = []
  public internal(set) var bestValLoss = Double.infinity
  public internal(set) var lastGradientNorm = 0.0
  public internal(set) var lastEvaluationIsBest = false
  public var corpusHash = ""

  /// Held-out pairs are made, pass after pass over the validation split (20 at most), until there are at least
  /// this many (each has about 15% of its tokens masked, so this also gives well over 2,000 masked positions at the
  /// default length).
  public static let heldOutPairs = 1000

  /// A run on token files made by `tokenizer`, which must have [CLS], [SEP], [PAD] and [MASK]. A corpus too small
  /// to make pairs is a `UserError` saying so.
  public init(_ config: MaskedLMConfig, tokenizer: any Tokenizer, train: TokenFile, val: TokenFile) throws {
    var specials: [Int] = []
    for token in ["[CLS]", "[SEP]", "[PAD]"] {
      guard let id = tokenizer.specialID(token) else {
        throw UserError("the tokenizer has no \(token) token, which BERT's inputs need")
      }
      specials.append(id)
    }
    (cls, sep, pad) = (specials[0], specials[1], specials[2])
    rule = try MaskingRule(
      tokenizer: tokenizer, rate: config.maskRate, maxPredictions: config.maxPredictions, wholeWord: config.wholeWord)
    self.config = config
    self.tokenizer = tokenizer
    self.train = train
    self.val = val
    var pairs: [[SentencePair]] = []
    for (name, split) in [("training", train), ("validation", val)] {
      let documents = Documents(split, tokenizer: tokenizer, maxTokens: config.maxTokens)
      if config.nsp && documents.documents.count < 2 {
        throw UserError(
          "the \(name) split holds \(documents.documents.count) document(s); next-sentence prediction needs two at "
            + "least (documents are separated by blank lines), or use --nsp off")
      }
      var rng = SeededRNG(seed: config.seed ^ stableHash("pairs \(name)"))
      var made: [SentencePair] = []
      for pass in 0..<(name == "training" ? config.duplication : 20) {
        if name == "validation" && pass > 0 && made.count >= Self.heldOutPairs { break }
        made += makePairs(documents, maxTokens: config.maxTokens, nsp: config.nsp, rng: &rng)
      }
      guard !made.isEmpty else {
        throw UserError(
          "the \(name) split makes no \(config.nsp ? "sentence pairs" : "inputs"): it holds \(split.count) tokens in "
            + "\(documents.documents.count) document(s)\(config.nsp ? "; a pair needs a speech of two lines" : "")")
      }
      pairs.append(made)
    }
    (trainPairs, valPairs) = (pairs[0], pairs[1])
    var counts = [Int](repeating: 0, count: tokenizer.vocabularySize)
    for i in 0..<train.count { counts[train[i]] += 1 }
    mostFrequent = rule.replacements.max { counts[$0] < counts[$1] } ?? 0
    random = RandomSource(seed: config.seed &+ 1)
    maskingRNG = SeededRNG(seed: config.seed &+ 3)
    model = BERT(config.model(vocabulary: tokenizer.vocabularySize), seed: config.seed, random: random)
    parameters = model.parameters()
    optimizer = Adam(
      ParameterGroup.decayingMatrices(parameters, weightDecay: config.weightDecay), learningRate: config.learningRate,
      beta1: 0.9, beta2: 0.999, decoupledWeightDecay: true)
    schedule = config.schedule
    sampler = EpochSampler(count: trainPairs.count, seed: config.seed &+ 2)
  }

  /// The mask of pair `index` of a split when masks are static: drawn from a generator seeded by the seed, the
  /// split and the index alone, so the same copy of a pair always has the same mask (BERT writes its masks into
  /// the data files once), and each copy of a pair has its own.
  func staticMaskRNG(_ split: String, _ index: Int) -> SeededRNG {
    SeededRNG(seed: config.seed ^ stableHash("mask \(split) \(index)"))
  }

  /// [CLS] A [SEP] B [SEP] for each pair, masked with the generator `maskRNG` gives for it, padded to the longest.
  public func batch(_ pairs: [SentencePair], from ids: TokenFile, maskRNG: (Int) -> SeededRNG?) -> MaskedBatch {
    var batch = MaskedBatch()
    batch.rows = pairs.count
    batch.length = pairs.map(\.length).max() ?? 0
    for (row, pair) in pairs.enumerated() {
      var tokens = [cls]
      ids.append(from: pair.a.lowerBound, length: pair.a.count, into: &tokens)
      tokens.append(sep)
      var segments = [Int](repeating: 0, count: tokens.count)
      if let b = pair.b {
        ids.append(from: b.lowerBound, length: b.count, into: &tokens)
        tokens.append(sep)
        segments += [Int](repeating: 1, count: b.count + 1)
      }
      let chosen: [(position: Int, label: Int)]
      if var rng = maskRNG(row) {
        chosen = rule.apply(to: &tokens, rng: &rng)
      } else {
        chosen = rule.apply(to: &tokens, rng: &maskingRNG)
      }
      let padding = batch.length - tokens.count
      batch.tokens += tokens + [Int](repeating: pad, count: padding)
      batch.segments += segments + [Int](repeating: 0, count: padding)
      batch.padding += [Float](repeating: 0, count: tokens.count) + [Float](repeating: 1, count: padding)
      for (position, label) in chosen {
        batch.positions.append(row * batch.length + position)
        batch.labels.append(label)
      }
      batch.nextLabels.append(pair.isRandomNext ? 1 : 0)
    }
    return batch
  }

  /// The model's outputs on a batch: the MLM logits at the chosen positions, the NSP logits (nil without NSP),
  /// and the loss, MLM cross-entropy plus NSP cross-entropy, as BERT sums them.
  func forward(
    _ batch: MaskedBatch
  ) -> (loss: Tensor<Float>, mlm: Tensor<Float>, mlmLogits: Tensor<Float>, nspLogits: Tensor<Float>?) {
    let hidden = model.encode(
      batch.tokens, segments: batch.segments, batch: batch.rows,
      keyPadding: Tensor(batch.padding, shape: [batch.rows, batch.length]))
    let mlmLogits = model.maskedLMLogits(hidden, at: batch.positions)
    let mlm = crossEntropyLoss(logits: mlmLogits, labels: batch.labels)
    guard config.nsp else { return (mlm, mlm, mlmLogits, nil) }
    let nspLogits = model.nextSentenceLogits(hidden)
    return (mlm + crossEntropyLoss(logits: nspLogits, labels: batch.nextLabels), mlm, mlmLogits, nspLogits)
  }

  /// The next training batch: pairs in the sampler's order, masked statically (by the pair's index) or
  /// dynamically (from the run's masking generator).
  func nextBatch() -> MaskedBatch {
    let indices = (0..<config.batchSize).map { _ in sampler.next() }
    return batch(indices.map { trainPairs[$0] }, from: train) { row in
      config.dynamicMasking ? nil : staticMaskRNG("train", indices[row])
    }
  }

  /// One optimizer step (`optimizerStep`) on `accumulation` micro-batches of pairs. Returns the mean loss.
  @discardableResult
  public func runStep() throws -> Double {
    model.train()
    let (loss, norm) = try optimizerStep(
      accumulation: config.accumulation, learningRate: config.learningRate, factor: schedule.factor(at: step),
      step: step, parameters: parameters, optimizer: optimizer
    ) { forward(nextBatch()).loss }
    lastGradientNorm = norm
    step += 1
    return loss
  }

  /// The scores on `pairs` of `split`, each with its static mask, in evaluation mode and without a graph.
  public func score(_ pairs: ArraySlice<SentencePair>, split: String) -> MaskedLMScore {
    model.eval()
    defer { model.train() }
    let ids = split == "train" ? train : val
    var score = MaskedLMScore()
    var (mlmSum, nspSum, correct, baseline, nspCorrect) = (0.0, 0.0, 0, 0, 0)
    noGrad {
      for start in stride(from: pairs.startIndex, to: pairs.endIndex, by: config.batchSize) {
        let end = min(start + config.batchSize, pairs.endIndex)
        let batch = self.batch(Array(pairs[start..<end]), from: ids) { staticMaskRNG(split + " eval", start + $0) }
        let (_, mlm, mlmLogits, nspLogits) = forward(batch)
        mlmSum += Double(mlm.item) * Double(batch.labels.count)
        let guesses = argmaxRows(mlmLogits)
        correct += zip(guesses, batch.labels).count { $0 == $1 }
        baseline += batch.labels.count { $0 == mostFrequent }
        score.predictions += batch.labels.count
        if let nspLogits {
          let loss = crossEntropyLoss(logits: nspLogits, labels: batch.nextLabels)
          nspSum += Double(loss.item) * Double(batch.rows)
          nspCorrect += zip(argmaxRows(nspLogits), batch.nextLabels).count { $0 == $1 }
        }
        score.pairs += batch.rows
      }
    }
    let (n, p) = (Double(max(score.predictions, 1)), Double(max(score.pairs, 1)))
    score.mlmLoss = mlmSum / n
    score.loss = score.mlmLoss + nspSum / p
    score.mlmAccuracy = Double(correct) / n
    score.baselineAccuracy = Double(baseline) / n
    score.nspAccuracy = config.nsp ? Double(nspCorrect) / p : 0
    return score
  }

  /// Scores a fixed set of training pairs (the first `evalBatches` batches' worth) and all held-out pairs, and
  /// records them; the held-out loss becomes the best if it beats it. A loss that is not finite is a `UserError`.
  @discardableResult
  public func evaluate() throws -> (record: MaskedLMRecord, score: MaskedLMScore) {
    let trainScore = score(trainPairs.prefix(config.evalBatches * config.batchSize), split: "train")
    let valScore = score(valPairs[...], split: "val")
    try Check.finiteLoss(valScore.loss, step: step, learningRate: config.learningRate, what: "the validation loss")
    let record = MaskedLMRecord(
      step: step, trainLoss: trainScore.loss, valLoss: valScore.loss, mlmLoss: valScore.mlmLoss,
      mlmAccuracy: valScore.mlmAccuracy, nspAccuracy: valScore.nspAccuracy)
    history.append(record)
    lastEvaluationIsBest = record.valLoss < bestValLoss
    bestValLoss = min(bestValLoss, record.valLoss)
    return (record, valScore)
  }
}

/// The index of the largest value in each row of a [rows, classes] tensor.
func argmaxRows(_ logits: Tensor<Float>) -> [Int] {
  let classes = logits.shape[1]
  return (0..<logits.shape[0]).map { row in
    let values = logits.storage[(row * classes)..<((row + 1) * classes)]
    return values.indices.max { values[$0] < values[$1] }! - row * classes
  }
}
