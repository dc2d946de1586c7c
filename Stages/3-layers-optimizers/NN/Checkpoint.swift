import Foundation
import Support

/// Checkpoints: everything a training run needs to continue exactly where it stopped, in one safetensors file.
/// "model.NAME" holds each parameter, "optimizer.KIND.NAME" each optimizer buffer, "rng" the shared generator's
/// four words; the metadata holds the epoch, the optimizer's step count, the options the run was started with,
/// the size of its training set, and the history so far. A resumed run then draws the same batches and dropout
/// masks and makes the same updates as the run that was never interrupted.

// MARK: - Save

extension Trainer {
  /// The metadata "format" of this stage's checkpoints.
  public static let checkpointFormat = "stage3-checkpoint"

  /// Writes the checkpoint atomically: an interrupted save leaves the previous file whole.
  public func save(to path: String) throws {
    try writeAtomically(Data(checkpointBytes()), to: path, as: "--checkpoint")
  }

  /// The checkpoint as the bytes of a safetensors file.
  public func checkpointBytes() throws -> [UInt8] {
    var tensors: [String: SafeTensor] = [:]
    let named = model.namedParameters()
    for (name, p) in named { tensors["model." + name] = try SafeTensor(p.storage, shape: p.shape) }
    for (kind, buffers) in optimizer.state {
      for (name, p) in named {
        if let values = buffers[ObjectIdentifier(p)] {
          tensors["optimizer.\(kind).\(name)"] = try SafeTensor(values, shape: p.shape)
        }
      }
    }
    let s = random.rng.state
    tensors["rng"] = try SafeTensor([s.0, s.1, s.2, s.3], shape: [4])
    let metadata: [String: String] = [
      "format": Self.checkpointFormat, "epoch": String(epoch), "optimizer_steps": String(optimizer.stepCount),
      "options": config.commandLine, "history": historyCSV, "train_examples": String(data.train.count),
    ]
    return encodeSafetensors(tensors, metadata: metadata)
  }

  /// The epochs so far as CSV lines (epoch, train loss, validation loss, validation accuracy, learning rate).
  var historyCSV: String {
    history.map { r in
      [Double(r.epoch), r.trainLoss, r.validationLoss, r.validationAccuracy, r.learningRate].map { "\($0)" }
        .joined(separator: ",")
    }.joined(separator: "\n")
  }
}

// MARK: - Load

extension Trainer {
  /// Restores the checkpoint at `path` (see `restore(from:)`).
  public func resume(from path: String) throws {
    try restore(from: CheckpointReader(path: path, format: Self.checkpointFormat))
  }

  /// Restores a checkpoint into this trainer, which must have the options the checkpoint records (but for
  /// --epochs: a run may be extended). Every field is checked before anything changes; a missing, extra,
  /// mis-shaped, non-finite or inconsistent one is a `UserError` naming it, and the trainer is left as it was.
  public func restore(from reader: CheckpointReader) throws {
    let planned = try reader.requireOptions(config.options, length: "--epochs")
    // The data is not an option with a value to compare, but its size decides the steps of an epoch.
    let examples = try reader.integer("train_examples", in: 0...Int(Int32.max))
    guard examples == data.train.count else {
      let here = "this run's data has \(data.train.count) (another --data?)"
      throw reader.error("metadata 'train_examples' is \(examples): it was trained on \(examples) examples, \(here)")
    }
    let epoch = try reader.integer("epoch", in: 0...Int(Int32.max))
    guard epoch <= planned else {
      throw reader.error("metadata 'epoch' is \(epoch), past the end of the run it records (--epochs \(planned))")
    }
    let records = try readHistory(reader)
    guard epoch == records.count else {
      throw reader.error("metadata 'epoch' is \(epoch), but metadata 'history' holds \(records.count) epochs")
    }
    let steps = try reader.integer("optimizer_steps", in: 0...Int(Int32.max))
    guard steps == epoch * stepsPerEpoch else {
      let expected = "\(epoch) epochs of \(stepsPerEpoch) steps make \(epoch * stepsPerEpoch)"
      throw reader.error("metadata 'optimizer_steps' is \(steps), but \(expected)")
    }

    let named = model.namedParameters()  // reflection once, not once per tensor of the file
    let parameters = try named.map { name, p in try reader.floats("model." + name, shape: p.shape) }
    // Each kind of optimizer state exists for every parameter once the first step is taken, and not before.
    var state: [String: [ObjectIdentifier: [Float]]] = [:]
    for kind in steps > 0 ? optimizer.stateKinds : [] {
      for (name, p) in named {
        // Adam divides by the square root of exp_avg_sq, a running mean of squares: never negative.
        let values = try reader.floats(
          "optimizer.\(kind).\(name)", shape: p.shape, nonNegative: kind == "exp_avg_sq")
        state[kind, default: [:]][ObjectIdentifier(p)] = values
      }
    }
    let rng = try reader.generatorState("rng")
    try reader.finish()

    for ((_, p), values) in zip(named, parameters) { p.storage = values }
    optimizer.state = state
    optimizer.stepCount = steps
    random.rng = SeededRNG(state: rng)
    self.epoch = epoch
    history = records
  }

  /// A loss is finite and at most the largest Float, the type training computes it in (so not 1e300).
  var largestLoss: Double { Double(Float.greatestFiniteMagnitude) }

  /// The history: one line per epoch, numbered 1, 2, ..., with losses and rates a run can produce.
  func readHistory(_ reader: CheckpointReader) throws -> [EpochRecord] {
    // The schedule's factor is at most 1: no recorded rate is above --lr (but for rounding).
    let columns: [CheckpointReader.Column] = [
      .init("epoch", 1...1e9), .init("train loss", 0...largestLoss), .init("validation loss", 0...largestLoss),
      .init("validation accuracy", 0...1), .init("learning rate", 0...(config.lr * (1 + 1e-12))),
    ]
    let rows = try reader.table("history", columns: columns)
    for (index, row) in rows.enumerated() where row[0] != Double(index + 1) {
      let epoch = String(format: "%g", row[0])
      throw reader.error("metadata 'history' line \(index + 1) is for epoch \(epoch), not \(index + 1)")
    }
    return rows.map { v in
      EpochRecord(
        epoch: Int(v[0]), trainLoss: v[1], validationLoss: v[2], validationAccuracy: v[3], learningRate: v[4])
    }
  }
}
