import Foundation
import Support

/// Checkpoints: everything a training run needs to continue exactly where it stopped, in one safetensors file.
/// "model.NAME" holds each parameter, "optimizer.KIND.NAME" each optimizer buffer, "rng" the shared generator's
/// four words; the metadata holds the step, the optimizer's step count, the configuration that must match, and
/// the history so far. A resumed run then draws the same batches and dropout masks and makes the same updates
/// as the run that was never interrupted. `stage4 sample` reads the model from the same file.

// MARK: - Save

extension Trainer {
  /// Writes the checkpoint atomically: an interrupted save leaves the previous file whole.
  public func save(to path: String) throws {
    var tensors: [String: SafeTensor] = [:]
    let named = model.namedParameters()
    for (name, p) in named { tensors["model." + name] = SafeTensor(p.storage, shape: p.shape) }
    for (kind, buffers) in optimizer.state {
      for (name, p) in named {
        if let values = buffers[ObjectIdentifier(p)] {
          tensors["optimizer.\(kind).\(name)"] = SafeTensor(values, shape: p.shape)
        }
      }
    }
    let s = random.rng.state
    tensors["rng"] = SafeTensor([s.0, s.1, s.2, s.3], shape: [4])
    let metadata = [
      "format": "stage4-checkpoint", "step": String(step), "optimizer_steps": String(optimizer.stepCount),
      "signature": config.signature, "history": historyCSV,
    ]
    try writeSafetensors(tensors, metadata: metadata, to: path)
  }

  /// The evaluations so far as CSV lines (step, train loss, held-out exact match).
  var historyCSV: String {
    history.map { r in [Double(r.step), r.loss, r.exactMatch].map { "\($0)" }.joined(separator: ",") }
      .joined(separator: "\n")
  }
}

// MARK: - Load

extension Trainer {
  /// Restores a checkpoint into this trainer, which must have been made with the same configuration. Anything
  /// missing, extra, mis-shaped or from another configuration is a `UserError` saying what.
  public func resume(from path: String) throws {
    let (tensors, metadata) = try readSafetensors(path)
    func fail(_ problem: String) -> UserError { UserError("checkpoint '\(path)' does not fit this run: \(problem)") }
    guard metadata["format"] == "stage4-checkpoint", let stepText = metadata["step"], let step = Int(stepText),
      let stepsText = metadata["optimizer_steps"], let steps = Int(stepsText), let historyText = metadata["history"]
    else { throw UserError("'\(path)' is a safetensors file but not a stage 4 checkpoint") }
    guard metadata["signature"] == config.signature else {
      throw fail("it was made by \(metadata["signature"] ?? "?"), this run is \(config.signature)")
    }
    var expected = Set(tensors.keys)
    let named = model.namedParameters()  // reflection once, not once per tensor of the file
    let byName = Dictionary(uniqueKeysWithValues: named.map { ($0.name, $0.tensor) })
    // Read everything first, then change the trainer: a bad file must leave the run untouched.
    var parameters: [(Tensor<Float>, [Float])] = []
    for (name, p) in named {
      guard let saved = tensors["model." + name] else { throw fail("it has no tensor for parameter '\(name)'") }
      guard saved.shape == p.shape, let values = saved.floats else {
        throw fail("'\(name)' is \(saved.dtype.rawValue) \(saved.shape) there, F32 \(p.shape) here")
      }
      parameters.append((p, values))
      expected.remove("model." + name)
    }
    var state: [String: [ObjectIdentifier: [Float]]] = [:]
    for key in tensors.keys where key.hasPrefix("optimizer.") {
      let parts = key.split(separator: ".", maxSplits: 2).map(String.init)
      guard parts.count == 3, let p = byName[parts[2]],
        let values = tensors[key]!.floats, values.count == p.count
      else { throw fail("optimizer state '\(key)' belongs to no parameter of this model") }
      state[parts[1], default: [:]][ObjectIdentifier(p)] = values
      expected.remove(key)
    }
    guard let rng = tensors["rng"]?.unsigned, rng.count == 4 else { throw fail("it has no generator state 'rng'") }
    expected.remove("rng")
    guard expected.isEmpty else { throw fail("it has tensors this model does not: \(expected.sorted())") }
    let records = try historyText.split(separator: "\n").map { line -> StepRecord in
      let v = line.split(separator: ",").compactMap { Double($0) }
      guard v.count == 3 else { throw fail("its history line '\(line)' is malformed") }
      return StepRecord(step: Int(v[0]), loss: v[1], exactMatch: v[2])
    }

    for (p, values) in parameters { p.storage = values }
    optimizer.state = state
    optimizer.stepCount = steps
    random.rng = SeededRNG(state: (rng[0], rng[1], rng[2], rng[3]))
    self.step = step
    history = records
  }
}
