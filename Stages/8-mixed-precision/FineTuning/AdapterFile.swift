import Foundation
import Support

/// An adapter file: only what fine-tuning trained (LoRA's A and B, the adapters, the prefix or prompt, IA3's
/// scales, or the base weights a method unfroze), as safetensors, with the method's settings and the fingerprint
/// of the base weights in its metadata. A few KB to a few MB, where the whole model is ~3 MB here and 500 MB for
/// GPT-2 small. Loading it onto the same base rebuilds the fine-tuned model exactly; onto any other base it is refused.
public enum AdapterFile {
  public static let format = "stage8-adapter"

  /// Whether `path` holds an adapter file (which a new one may replace).
  static func isAdapterFile(at path: String) -> Bool {
    (try? readSafetensors(path))?.metadata["format"] == format
  }

  /// Writes `model`'s trained parameters to `path`. A reparametrised prefix is folded first: the file holds the
  /// keys and values the MLP makes, not the MLP.
  public static func save(_ model: GPT<Float>, to path: String) throws {
    try writeAtomically(Data(try bytes(model)), to: path, as: "--adapter")
  }

  /// The file's bytes.
  public static func bytes(_ model: GPT<Float>) throws -> [UInt8] {
    guard let setup = model.fineTuning else { throw UserError("the model is not set up for fine-tuning") }
    model.prefix?.fold()
    var config = setup.config
    config.prefixHidden = nil  // folded
    var tensors: [String: SafeTensor] = [:]
    for (name, p) in model.namedParameters() { tensors[name] = try SafeTensor(p.storage, shape: p.shape) }
    return encodeSafetensors(tensors, metadata: metadata(config, base: setup.baseFingerprint))
  }

  /// Sets `model` (the pretrained base, not yet set up) up as the file's method and loads its parameters. The file
  /// is checked whole (format, base, every name and shape) before the model is touched.
  @discardableResult
  public static func load(_ path: String, onto model: GPT<Float>) throws -> FineTuningConfig {
    let (tensors, metadata) = try readSafetensors(path)
    func fail(_ problem: String) -> UserError { UserError("'\(path)' \(problem)") }
    guard metadata["format"] == format else {
      throw fail("is not a stage 8 adapter file (its metadata names no format \"\(format)\")")
    }
    let config = try parse(metadata, fail: fail)
    guard model.fineTuning == nil else { throw UserError("the model is set up for fine-tuning already") }
    let base = weightFingerprint(model.namedParameters())
    guard metadata["base"] == base else {
      throw fail(
        "was trained on another base model (weights \(metadata["base"] ?? "unnamed"); this checkpoint's are \(base))")
    }
    // Built on a copy first, so that a file whose names do not fit leaves the model as it was.
    let expected: [String: [Int]]
    do {
      expected = try expectedShapes(of: config, on: model)
    } catch let error as UserError {
      throw fail("holds settings this model cannot take: \(error)")
    }
    let names = Set(tensors.keys)
    if let missing = expected.keys.sorted().first(where: { !names.contains($0) }) {
      throw fail("holds no tensor \(missing), which \(config.method.rawValue) trains")
    }
    if let extra = names.sorted().first(where: { expected[$0] == nil }) {
      throw fail("holds \(extra), which \(config.method.rawValue) does not train")
    }
    var values: [String: [Float]] = [:]
    for (name, shape) in expected.sorted(by: { $0.key < $1.key }) {
      let tensor = tensors[name]!
      guard tensor.shape == shape, let floats = tensor.floats else {
        throw fail("holds \(name) as \(tensor.dtype.rawValue) \(tensor.shape); it must be F32 \(shape)")
      }
      guard floats.allSatisfy(\.isFinite) else { throw fail("holds a value in \(name) that is not finite") }
      values[name] = floats
    }
    for (name, p) in try model.prepareFineTuning(config, startingValues: false) { p.storage = values[name]! }
    model.fineTuning!.config = config
    return config
  }

  /// The trained parameters' shapes by name for `config` on a model like `model`, found by setting up a fresh copy.
  private static func expectedShapes(of config: FineTuningConfig, on model: GPT<Float>) throws -> [String: [Int]] {
    let copy = GPT<Float>(model.config, seed: 0, random: RandomSource(seed: 0))
    let trained = try copy.prepareFineTuning(config, startingValues: false)
    return Dictionary(uniqueKeysWithValues: trained.map { ($0.name, $0.tensor.shape) })
  }

  /// The method's settings as metadata strings.
  static func metadata(_ config: FineTuningConfig, base: String) -> [String: String] {
    [
      "format": format, "base": base, "method": config.method.rawValue, "last_k": String(config.lastK),
      "rank": String(config.rank), "alpha": String(config.alpha), "lora_dropout": String(config.loraDropout),
      "targets": config.targets.map(\.rawValue).joined(separator: ","), "reduction": String(config.reduction),
      "virtual_tokens": String(config.virtualTokens), "seed": String(config.seed),
    ]
  }

  /// The settings back from metadata, each checked.
  static func parse(_ metadata: [String: String], fail: (String) -> UserError) throws -> FineTuningConfig {
    func value(_ key: String) throws -> String {
      guard let value = metadata[key] else { throw fail("has no \(key) in its metadata") }
      return value
    }
    func integer(_ key: String, _ range: ClosedRange<Int>) throws -> Int {
      guard let n = Int(try value(key)), range.contains(n) else {
        throw fail("has \(key) \(try value(key)) in its metadata, not a whole number in \(range)")
      }
      return n
    }
    func number(_ key: String) throws -> Double {
      guard let x = Double(try value(key)), x.isFinite else {
        throw fail("has \(key) \(try value(key)) in its metadata, not a finite number")
      }
      return x
    }
    guard let method = FineTuningMethod(rawValue: try value("method")) else {
      throw fail("names an unknown method '\(try value("method"))'")
    }
    var config = FineTuningConfig(method: method)
    config.lastK = try integer("last_k", 1...100_000)
    config.rank = try integer("rank", 1...100_000)
    config.alpha = try number("alpha")
    guard config.alpha > 0 else { throw fail("has alpha \(config.alpha) in its metadata, not above 0") }
    config.loraDropout = try number("lora_dropout")
    guard (0..<1).contains(config.loraDropout) else {
      throw fail("has lora_dropout \(config.loraDropout) in its metadata, not a probability below 1")
    }
    let targets = try value("targets")
    config.targets = try (targets.isEmpty ? [] : targets.split(separator: ",", omittingEmptySubsequences: false)).map {
      guard let target = LoRATarget(rawValue: String($0)) else { throw fail("names an unknown LoRA target '\($0)'") }
      return target
    }
    config.reduction = try integer("reduction", 1...100_000)
    config.virtualTokens = try integer("virtual_tokens", 1...100_000)
    guard let seed = UInt64(try value("seed")) else { throw fail("has seed \(try value("seed")), not a seed") }
    config.seed = seed
    return config
  }
}
