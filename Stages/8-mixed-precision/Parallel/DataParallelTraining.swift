import Foundation
import Support

/// Stage 5's pretraining loop on several ranks: each rank a `Trainer` of its own (the same model, the same seed,
/// the same batch stream) that keeps only its rows of each global batch, with a `DataParallel` combining the
/// gradients.

/// What a data-parallel run needs besides the training configuration.
public struct DataParallelOptions: Sendable {
  public var zero = ZeroStage.none
  /// Bytes per gradient bucket (PyTorch's DDP: 25 MB; this model's gradients are ~3 MB in all).
  public var bucketBytes = 1 << 20
  /// Buckets that are the model's units (a block each, then the rest) instead of `bucketBytes` each: ZeRO 3's
  /// layout, always on with it.
  public var bucketsByUnit = false
  public init(zero: ZeroStage = .none, bucketBytes: Int = 1 << 20, bucketsByUnit: Bool = false) {
    self.zero = zero
    self.bucketBytes = bucketBytes
    self.bucketsByUnit = bucketsByUnit || zero == .parameters
  }
}

/// The splits and tokenizer every rank reads (never writes): safe to share between rank threads.
public struct SharedData: @unchecked Sendable {
  public let tokenizer: any Tokenizer
  public let train: TokenFile
  public let val: TokenFile
  public init(tokenizer: any Tokenizer, train: TokenFile, val: TokenFile) {
    (self.tokenizer, self.train, self.val) = (tokenizer, train, val)
  }
}

/// One rank of a data-parallel pretraining run.
public final class DataParallelTrainer {
  public let trainer: Trainer
  public let parallel: DataParallel
  public var communicator: any Communicator { parallel.communicator }

  /// `config.batchSize` is the global batch: each of the group's ranks takes batchSize / ranks windows of it.
  public init(
    _ config: TrainConfig, data: SharedData, communicator: any Communicator, options: DataParallelOptions
  )
    throws
  {
    precondition(config.batchSize % communicator.size == 0, "DataParallelTrainer: the batch does not divide")
    trainer = Trainer(config, tokenizer: data.tokenizer, train: data.train, val: data.val)
    let index = Dictionary(uniqueKeysWithValues: trainer.parameters.enumerated().map { (ObjectIdentifier($1), $0) })
    let blocks = trainer.model.blocks.map { $0.parameters().map { index[ObjectIdentifier($0)]! } }
    parallel = try DataParallel(
      parameters: trainer.parameters, optimizer: trainer.optimizer as! Adam<Float>, communicator: communicator,
      zero: options.zero, bucketBytes: options.bucketBytes, blocks: options.bucketsByUnit ? blocks : nil)
    if options.zero == .parameters { trainer.model.aroundBlock = parallel.aroundBlock }
  }

  /// One optimizer step: `accumulation` micro-batches, each this rank's rows of a global batch, each loss scaled
  /// by 1 / (accumulation x ranks) so that the summed gradient is that of the mean over the global batches, as
  /// one process accumulating the same micro-batches computes it. Returns the mean loss over all ranks.
  @discardableResult
  public func runStep() throws -> Double {
    let config = trainer.config
    let (ranks, accumulation) = (communicator.size, config.accumulation)
    trainer.model.train()
    parallel.releaseParameters()  // ZeRO 3: the whole model was gathered for an evaluation
    var total = 0.0
    for micro in 0..<accumulation {
      let (inputs, targets) = trainer.sampler.nextBatch(rank: communicator.rank, ranks: ranks)
      try parallel.prepareForward()
      let loss = trainer.loss(inputs, targets)
      try parallel.checkHooks()
      let value = Double(loss.item)
      try Check.finiteLoss(value, step: trainer.step + 1, learningRate: config.learningRate)
      total += value
      try parallel.backward(loss / Float(accumulation * ranks), sync: micro == accumulation - 1)
    }
    // Stage 8: in a low format the gradients were summed across the ranks in fp32, and the update runs on the
    // fp32 masters.
    let update = {
      try self.parallel.step(learningRate: config.learningRate * self.trainer.schedule.factor(at: self.trainer.step))
    }
    trainer.lastGradientNorm = try trainer.mixedPrecision?.onMasters(update) ?? update()
    trainer.step += 1
    return try communicator.gather(total).reduce(0, +) / Double(accumulation * ranks)
  }
}

/// The one-process step that data parallelism on `ranks` ranks must equal bit for bit: the same global batches,
/// each cut into the ranks' rows, the pieces' gradients accumulated in rank order (each loss scaled by
/// 1 / (accumulation x ranks)), then the same clipping and AdamW step. Returns the mean loss.
@discardableResult
public func accumulatedStep(_ trainer: Trainer, ranks: Int) throws -> Double {
  let config = trainer.config
  let accumulation = config.accumulation
  let rows = config.batchSize / ranks * config.context
  trainer.model.train()
  var total = 0.0
  for _ in 0..<accumulation {
    let (inputs, targets) = trainer.sampler.nextBatch()
    for rank in 0..<ranks {
      let part = (rank * rows)..<((rank + 1) * rows)
      let loss = trainer.loss(Array(inputs[part]), Array(targets[part]))
      let value = Double(loss.item)
      try Check.finiteLoss(value, step: trainer.step + 1, learningRate: config.learningRate)
      total += value
      (loss / Float(accumulation * ranks)).backward()
    }
  }
  let update = {
    trainer.lastGradientNorm = clipGradNorm(trainer.parameters, maxNorm: 1)
    trainer.optimizer.learningRate = config.learningRate * trainer.schedule.factor(at: trainer.step)
    trainer.optimizer.step()
  }
  if let mixed = trainer.mixedPrecision { mixed.onMasters(update) } else { update() }
  trainer.optimizer.zeroGrad()
  trainer.step += 1
  return total / Double(accumulation * ranks)
}
