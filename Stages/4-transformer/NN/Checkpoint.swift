import Foundation
import Support

/// Checkpoints: everything a training run needs to continue exactly where it stopped, in one safetensors file.
/// "model.NAME" holds each parameter, "optimizer.KIND.NAME" each optimizer buffer, "rng" the shared generator's
/// four words; the metadata holds the step, the optimizer's step count, the options the run was started with,
/// and the history so far. A resumed run then draws the same batches and dropout masks and makes the same updates
/// as the run that was never interrupted. `stage4 sample` reads the model from the same file.

// MARK: - Save

extension Trainer {
  /// The metadata "format" of this stage's checkpoints.
  public static let checkpointFormat = "stage4-checkpoint"

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
      "format": Self.checkpointFormat, "step": String(step), "optimizer_steps": String(optimizer.stepCount),
      "options": config.commandLine, "history": historyCSV,
    ]
    return encodeSafetensors(tensors, metadata: metadata)
  }

  /// The evaluations so far as CSV lines (step, train loss, held-out exact match).
  var historyCSV: String {
    history.map { r in [Double(r.step), r.loss, r.exactMatch].map { "\($0)" }.joined(separator: ",") }
      .joined(separator: "\n")
  }
}

// MARK: - Load

extension Trainer {
  /// Restores the checkpoint at `path` (see `restore(from:)`).
  public func resume(from path: String) throws {
    try restore(from: CheckpointReader(path: path, format: Self.checkpointFormat))
  }

  /// Restores a checkpoint into this trainer, which must have the options the checkpoint records (but for
  /// --steps: a run may be extended). Every field is checked before anything changes; a missing, extra,
  /// mis-shaped, non-finite or inconsistent one is a `UserError` naming it, and the trainer is left as it was.
  public func restore(from reader: CheckpointReader) throws {
    let planned = try reader.requireOptions(config.options, length: "--steps")
    let step = try reader.integer("step", in: 0...Int(Int32.max))
    guard step <= planned else {
      throw reader.error("metadata 'step' is \(step), past the end of the run it records (--steps \(planned))")
    }
    let records = try readHistory(reader, step: step)
    let steps = try reader.integer("optimizer_steps", in: 0...Int(Int32.max))
    guard steps == step else {
      throw reader.error("metadata 'optimizer_steps' is \(steps), but metadata 'step' is \(step) (one update a step)")
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
    self.step = step
    history = records
  }

  /// A loss is finite and at most the largest Float, the type training computes it in (so not 1e300).
  var largestLoss: Double { Double(Float.greatestFiniteMagnitude) }

  /// The history: the evaluations at steps 1 to `step`, in order, with losses and shares a run can produce. A
  /// run that has taken a step has evaluated (the command line saves at evaluations).
  func readHistory(_ reader: CheckpointReader, step: Int) throws -> [StepRecord] {
    let columns: [CheckpointReader.Column] = [
      .init("step", 1...1e9), .init("train loss", 0...largestLoss), .init("exact match", 0...1),
    ]
    let rows = try reader.table("history", columns: columns)
    guard (step == 0) == rows.isEmpty else {
      throw reader.error("metadata 'history' has \(rows.count) evaluations at step \(step)")
    }
    for (index, row) in rows.enumerated() {
      let line = "metadata 'history' line \(index + 1) is for step \(String(format: "%g", row[0]))"
      guard row[0] == row[0].rounded(), index == 0 || row[0] > rows[index - 1][0] else {
        throw reader.error(line + ", not a whole step after the line before")
      }
      guard row[0] <= Double(step) else { throw reader.error(line + ", past metadata 'step' \(step)") }
    }
    return rows.map { v in StepRecord(step: Int(v[0]), loss: v[1], exactMatch: v[2]) }
  }
}
