import Foundation
import Support

/// Hugging Face's checkpoints, read into this stage's models: a folder as `save_pretrained` writes it, config.json
/// (the model's shape) and model.safetensors (its tensors by name; a large model splits them into shards listed in
/// model.safetensors.index.json). The names and layouts are transformers', so each model needs a map from its
/// parameter names to ours, and two layouts differ: GPT-2 stores its projections as Conv1D, [in, out], where a
/// Linear (ours, and PyTorch's) is [out, in]; BERT keeps query, key and value as three Linears where our attention
/// has one packed [3C, C].

// MARK: - The folder

/// The JSON object in file `path`, or a `UserError` naming the file.
func readJSONObject(_ path: String) throws -> [String: Any] {
  let data = try readInputFile(path)
  let object: Any
  do {
    object = try JSONSerialization.jsonObject(with: data)
  } catch {
    throw UserError("'\(path)' is not valid JSON")
  }
  guard let dictionary = object as? [String: Any] else { throw UserError("'\(path)' is not a JSON object") }
  return dictionary
}

/// A checkpoint folder: its config and its tensors, with messages that name the file and the field.
public struct HuggingFaceFolder {
  public let directory: String
  public let config: [String: Any]
  public let tensors: [String: SafeTensor]

  public init(_ directory: String) throws {
    let configPath = directory + "/config.json"
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) else {
      throw UserError("'\(directory)' does not exist (a Hugging Face checkpoint folder is expected)")
    }
    guard isDirectory.boolValue else {
      throw UserError(
        "'\(directory)' is a file; a Hugging Face checkpoint is a folder (config.json, model.safetensors)")
    }
    guard FileManager.default.fileExists(atPath: configPath) else {
      throw UserError("'\(directory)' holds no config.json: it is not a Hugging Face checkpoint folder")
    }
    self.directory = directory
    config = try readJSONObject(configPath)
    var tensors: [String: SafeTensor] = [:]
    let index = directory + "/model.safetensors.index.json"
    if FileManager.default.fileExists(atPath: index) {
      // A sharded checkpoint: "weight_map" says which file holds each tensor.
      guard let map = try readJSONObject(index)["weight_map"] as? [String: String] else {
        throw UserError("'\(index)' has no \"weight_map\" of tensor names to files")
      }
      for file in Set(map.values).sorted() {
        guard !file.contains("/") else { throw UserError("'\(index)' names a shard outside the folder: '\(file)'") }
        tensors.merge(try readSafetensors(directory + "/" + file).tensors) { first, _ in first }
      }
      if let missing = map.keys.sorted().first(where: { tensors[$0] == nil }) {
        throw UserError("'\(index)' lists '\(missing)', which its shard does not hold")
      }
    } else {
      tensors = try readSafetensors(directory + "/model.safetensors").tensors
    }
    self.tensors = tensors
  }

  /// A whole number of the config.
  func integer(_ key: String) throws -> Int {
    guard let value = config[key] as? NSNumber, let int = Int(exactly: value.doubleValue),
      int > 0
    else {
      throw UserError("'\(directory)/config.json': \"\(key)\" is missing or not a whole number above 0")
    }
    return int
  }

  /// A number above 0 of the config, or `fallback` when the config leaves it out.
  func number(_ key: String, default fallback: Double) throws -> Double {
    guard let value = config[key] else { return fallback }
    guard let number = value as? NSNumber, number.doubleValue.isFinite, number.doubleValue > 0 else {
      throw UserError("'\(directory)/config.json': \"\(key)\" is not a number above 0")
    }
    return number.doubleValue
  }

  /// A text of the config, or `fallback` when the config leaves it out.
  func text(_ key: String, default fallback: String = "") throws -> String {
    guard let value = config[key], !(value is NSNull) else { return fallback }
    guard let text = value as? String else {
      throw UserError("'\(directory)/config.json': \"\(key)\" is \(value), not a text")
    }
    return text
  }

  /// Every tensor name the loader did not read, but for buffers and tied copies transformers itself skips
  /// (`ignorable`): a tensor of its own is a part of the model this code would leave out.
  func refuseUnused(_ used: Set<String>, ignorable: [String]) throws {
    let unused = tensors.keys.filter { key in !used.contains(key) && !ignorable.contains { key.hasSuffix($0) } }
    if let first = unused.sorted().first {
      throw UserError(
        "'\(directory)': the checkpoint has tensor '\(first)', which config.json's model has no place for"
          + (unused.count > 1 ? " (and \(unused.count - 1) more)" : ""))
    }
  }

  /// The shape tensor `name` has (with any of `prefixes`), or nil.
  func shape(_ name: String, prefixes: [String]) -> [Int]? {
    prefixes.lazy.compactMap { self.tensors[$0 + name]?.shape }.first
  }

  /// Checks the config's sizes against the tensors' before any buffer is made: a config that says 1e11 positions
  /// is refused by the tensor that disagrees, instead of asking the machine for terabytes.
  func requireShape(_ name: String, _ shape: [Int], prefixes: [String], fields: String) throws {
    guard let actual = self.shape(name, prefixes: prefixes) else {
      throw UserError("'\(directory)': the checkpoint has no tensor '\(prefixes[0] + name)'")
    }
    guard actual == shape else {
      throw UserError(
        "'\(directory)': tensor '\(prefixes[0] + name)' has shape \(actual), not \(shape) as config.json's \(fields) say"
      )
    }
  }

  /// Refuses a config whose `key` is present and not one of `accepted` (JSON null counts as absent).
  func require(_ key: String, in accepted: [String], because reason: String) throws {
    guard let value = config[key], !(value is NSNull) else { return }
    let text = value as? String ?? "\(value)"
    guard accepted.contains(text) else {
      throw UserError("'\(directory)/config.json': \"\(key)\" is \(text); \(reason)")
    }
  }

  /// The model type the config names, which must be `expected`.
  func requireModelType(_ expected: String) throws {
    let type = try text("model_type")
    guard type == expected else {
      throw UserError(
        "'\(directory)/config.json': \"model_type\" is '\(type)', not '\(expected)' (this loader reads \(expected))")
    }
  }

  /// The values of tensor `name` (tried with each prefix in turn), which must have `shape`.
  func floats(_ name: String, shape: [Int], prefixes: [String]) throws -> [Float] {
    guard let (key, tensor) = prefixes.lazy.compactMap({ p in self.tensors[p + name].map { (p + name, $0) } }).first
    else { throw UserError("'\(directory)': the checkpoint has no tensor '\(prefixes[0] + name)'") }
    guard tensor.shape == shape else {
      throw UserError("'\(directory)': tensor '\(key)' has shape \(tensor.shape), not \(shape) as config.json says")
    }
    guard let values = tensor.widenedFloats else {
      throw UserError(
        "'\(directory)': tensor '\(key)' is \(tensor.dtype.rawValue); this loader reads F32, F16 and BF16")
    }
    if let bad = values.firstIndex(where: { !$0.isFinite }) {
      throw UserError("'\(directory)': tensor '\(key)' holds \(values[bad]) at element \(bad)")
    }
    return values
  }
}

/// The transpose of a row-major [rows, columns] matrix.
func transposed(_ values: [Float], rows: Int, columns: Int) -> [Float] {
  var result = [Float](repeating: 0, count: values.count)
  for r in 0..<rows { for c in 0..<columns { result[c * rows + r] = values[r * columns + c] } }
  return result
}

/// A parameter source of zeros: the loaders build a model's shape, then fill it.
func zeroParameters<Scalar: TensorScalar>() -> ParameterSource<Scalar> {
  { _, shape, _ in Tensor.zeros(shape, requiresGrad: true) }
}

// MARK: - GPT-2

extension GPT where Scalar == Float {
  /// A GPT2LMHeadModel folder as this stage's GPT: the config's shape (learned positions, biases, the tied head),
  /// GELU in the form "activation_function" names, LayerNorm eps from the config, and every tensor checked for
  /// its shape. A config this GPT cannot represent is refused by the field that says so.
  public static func huggingFace(_ directory: String) throws -> GPT<Float> {
    let folder = try HuggingFaceFolder(directory)
    try folder.requireModelType("gpt2")
    let forms = ["gelu_new": GELUForm.tanh, "gelu_pytorch_tanh": .tanh, "gelu": .erf]
    let activation = try folder.text("activation_function", default: "gelu_new")
    guard let form = forms[activation] else {
      throw UserError(
        "'\(directory)/config.json': \"activation_function\" is \(activation); this GPT has gelu_new and gelu")
    }
    try folder.require("tie_word_embeddings", in: ["1", "true"], because: "this GPT's head is its token embedding")
    try folder.require(
      "scale_attn_weights", in: ["1", "true"], because: "this GPT scales scores by 1/sqrt(head width)")
    try folder.require(
      "scale_attn_by_inverse_layer_idx", in: ["0", "false"], because: "this GPT scales every layer's scores alike")
    try folder.require("add_cross_attention", in: ["0", "false"], because: "this GPT has no cross-attention")
    var config = GPTConfig(
      vocabulary: try folder.integer("vocab_size"), context: try folder.integer("n_positions"),
      layers: try folder.integer("n_layer"), heads: try folder.integer("n_head"), width: try folder.integer("n_embd"))
    if let inner = folder.config["n_inner"] as? NSNumber, inner.intValue != 4 * config.width {
      throw UserError("'\(directory)/config.json': \"n_inner\" is \(inner); this GPT's MLP is 4 x n_embd wide")
    }
    guard config.width % config.heads == 0 else {
      throw UserError("'\(directory)/config.json': \"n_embd\" \(config.width) is not a multiple of \"n_head\"")
    }
    config.activation = form
    config.layerNormEps = try folder.number("layer_norm_epsilon", default: 1e-5)
    let prefixes = ["transformer.", ""]  // the hub's original gpt2 files have no "transformer."
    let c = config.width
    try folder.requireShape("wte.weight", [config.vocabulary, c], prefixes: prefixes, fields: "vocab_size and n_embd")
    try folder.requireShape("wpe.weight", [config.context, c], prefixes: prefixes, fields: "n_positions and n_embd")
    try folder.requireShape(
      "h.\(config.layers - 1).mlp.c_fc.weight", [c, 4 * c], prefixes: prefixes, fields: "n_layer and n_embd")
    let model = GPT<Float>(config, random: RandomSource(seed: 0), source: zeroParameters())
    var used: Set<String> = []
    for (name, p) in model.namedParameters() {
      let (key, conv) = gpt2Name(name)
      // Conv1D holds [in, out]: ours is its transpose.
      let stored = conv ? [p.shape[1], p.shape[0]] : p.shape
      let values = try folder.floats(key, shape: stored, prefixes: prefixes)
      p.storage = conv ? transposed(values, rows: stored[0], columns: stored[1]) : values
      used.formUnion(prefixes.map { $0 + key })
    }
    // The causal-mask buffers older files hold, and the head, which is the token embedding (tied).
    try folder.refuseUnused(used, ignorable: [".attn.bias", ".attn.masked_bias", "lm_head.weight"])
    return model
  }

  /// Transformers' name of our parameter `name`, and whether it is a Conv1D weight (stored transposed).
  static func gpt2Name(_ name: String) -> (String, Bool) {
    let parts = name.split(separator: ".").map(String.init)
    let field = parts.last == "gamma" || parts.last == "weight" ? "weight" : "bias"
    switch parts[0] {
    case "tokenEmbedding": return ("wte.weight", false)
    case "positionEmbedding": return ("wpe.weight", false)
    case "finalNorm": return ("ln_f." + field, false)
    default:
      let layer = "h.\(parts[1])."
      let module =
        [
          "norm1": "ln_1", "norm2": "ln_2", "attention.qkv": "attn.c_attn", "attention.projection": "attn.c_proj",
          "expand": "mlp.c_fc", "contract": "mlp.c_proj",
        ][parts[2..<(parts.count - 1)].joined(separator: ".")]!
      return (layer + module + "." + field, field == "weight" && !module.hasPrefix("ln"))
    }
  }
}

// MARK: - BERT

extension BERT where Scalar == Float {
  /// A BertForPreTraining folder as this stage's BERT (post-LN, the GELU "hidden_act" names, eps from the config):
  /// query, key and value are packed into our one [3C, C] projection; the MLM decoder is the word embedding (tied).
  public static func huggingFace(_ directory: String) throws -> BERT<Float> {
    let folder = try HuggingFaceFolder(directory)
    try folder.requireModelType("bert")
    let forms = ["gelu": GELUForm.erf, "gelu_new": .tanh, "gelu_pytorch_tanh": .tanh]
    let activation = try folder.text("hidden_act", default: "gelu")
    guard let form = forms[activation] else {
      throw UserError("'\(directory)/config.json': \"hidden_act\" is \(activation); this BERT has gelu and gelu_new")
    }
    try folder.require(
      "position_embedding_type", in: ["absolute"], because: "this BERT has learned absolute positions")
    try folder.require("tie_word_embeddings", in: ["1", "true"], because: "this BERT's decoder is its word embedding")
    try folder.require("is_decoder", in: ["0", "false"], because: "this BERT is an encoder")
    var config = BERTConfig(
      vocabulary: try folder.integer("vocab_size"), context: try folder.integer("max_position_embeddings"),
      layers: try folder.integer("num_hidden_layers"), heads: try folder.integer("num_attention_heads"),
      width: try folder.integer("hidden_size"))
    guard try folder.integer("intermediate_size") == 4 * config.width else {
      throw UserError("'\(directory)/config.json': \"intermediate_size\" is not 4 x hidden_size, as this BERT's MLP is")
    }
    guard config.width % config.heads == 0 else {
      throw UserError(
        "'\(directory)/config.json': \"hidden_size\" \(config.width) is not a multiple of \"num_attention_heads\"")
    }
    config.segments = try folder.integer("type_vocab_size")
    config.activation = form
    config.layerNormEps = try folder.number("layer_norm_eps", default: 1e-12)
    let c = config.width
    let embeddings = "bert.embeddings."
    try folder.requireShape(
      embeddings + "word_embeddings.weight", [config.vocabulary, c], prefixes: [""],
      fields: "vocab_size and hidden_size")
    try folder.requireShape(
      embeddings + "position_embeddings.weight", [config.context, c], prefixes: [""],
      fields: "max_position_embeddings and hidden_size")
    try folder.requireShape(
      embeddings + "token_type_embeddings.weight", [config.segments, c], prefixes: [""],
      fields: "type_vocab_size and hidden_size")
    try folder.requireShape(
      "bert.encoder.layer.\(config.layers - 1).intermediate.dense.weight", [4 * c, c], prefixes: [""],
      fields: "num_hidden_layers and hidden_size")
    let model = BERT<Float>(config, random: RandomSource(seed: 0), source: zeroParameters())
    // BertForMaskedLM's folders have no pooler and no NSP head: those stay zero (fill does not use them).
    let optional = ["bert.pooler.", "cls.seq_relationship."]
    var used: Set<String> = []
    for (name, p) in model.namedParameters() {
      let parts = name.split(separator: ".").map(String.init)
      if parts.count > 2 && parts[2] == "attention" && parts[3] == "qkv" {
        // Our packed projection: the rows of query, then key, then value (or their biases).
        let layer = "bert.encoder.layer.\(parts[1]).attention.self."
        let shape = parts[4] == "weight" ? [c, c] : [c]
        let keys = ["query", "key", "value"].map { layer + $0 + "." + parts[4] }
        p.storage = try keys.flatMap { try folder.floats($0, shape: shape, prefixes: [""]) }
        used.formUnion(keys)
      } else {
        let key = bertName(parts)
        if folder.tensors[key] == nil, optional.contains(where: { key.hasPrefix($0) }) { continue }
        p.storage = try folder.floats(key, shape: p.shape, prefixes: [""])
        used.insert(key)
      }
    }
    // A buffer of positions, and the decoder, which is the word embedding (tied) with the bias read above.
    try folder.refuseUnused(
      used, ignorable: ["embeddings.position_ids", "cls.predictions.decoder.weight", "cls.predictions.decoder.bias"])
    return model
  }

  /// Transformers' name of our parameter (split at its dots).
  static func bertName(_ parts: [String]) -> String {
    let field = parts.last == "gamma" || parts.last == "weight" ? "weight" : "bias"
    switch parts[0] {
    case "tokenEmbedding": return "bert.embeddings.word_embeddings.weight"
    case "positionEmbedding": return "bert.embeddings.position_embeddings.weight"
    case "segmentEmbedding": return "bert.embeddings.token_type_embeddings.weight"
    case "embeddingNorm": return "bert.embeddings.LayerNorm." + field
    case "transform": return "cls.predictions.transform.dense." + field
    case "transformNorm": return "cls.predictions.transform.LayerNorm." + field
    case "decoderBias": return "cls.predictions.bias"
    case "pooler": return "bert.pooler.dense." + field
    case "classifier": return "cls.seq_relationship." + field
    default:
      let module =
        [
          "norm1": "attention.output.LayerNorm", "attention.projection": "attention.output.dense",
          "norm2": "output.LayerNorm", "expand": "intermediate.dense", "contract": "output.dense",
        ][parts[2..<(parts.count - 1)].joined(separator: ".")] ?? parts.joined(separator: ".")
      return "bert.encoder.layer.\(parts[1]).\(module).\(field)"
    }
  }
}

// MARK: - Saving

/// A model saved as `save_pretrained` would: config.json and model.safetensors (and the tokenizer, when it is a
/// byte-level BPE, as tokenizer.json), into `directory`, which must not hold a config.json or model.safetensors
/// already. Returns the files written.
func saveHuggingFace(
  config: [String: Any], tensors: [String: SafeTensor], tokenizer: (any Tokenizer)?, to directory: String
) throws -> [String] {
  var config = config
  // The special ids transformers' generation and padding use, from the tokenizer (null, not GPT-2's 50256, when
  // it has none).
  if config["model_type"] as? String == "gpt2" {
    let end: Any = tokenizer?.specialID("<|endoftext|>") ?? NSNull()
    (config["bos_token_id"], config["eos_token_id"]) = (end, end)
  }
  config["pad_token_id"] = tokenizer?.specialID("[PAD]") ?? NSNull()
  try prepareOutputDirectory(directory)
  for file in ["config.json", "model.safetensors", "tokenizer.json"]
  where FileManager.default.fileExists(atPath: directory + "/" + file) {
    throw UserError("--hf-out '\(directory)' holds a \(file) already; choose a new or empty folder")
  }
  var written: [String] = []
  func write(_ data: Data, _ file: String) throws {
    try writeAtomically(data, to: directory + "/" + file, as: "--hf-out")
    written.append(directory + "/" + file)
  }
  try write(
    try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys]), "config.json")
  try write(Data(encodeSafetensors(tensors, metadata: ["format": "pt"])), "model.safetensors")
  if let tokenizer, tokenizer.kind == "bpe" { try write(try tokenizer.fileContents(), "tokenizer.json") }
  return written
}

extension GPT where Scalar == Float {
  /// The config.json of this GPT as GPT2LMHeadModel's. Without biases, GPT-2's biases are saved as zeros (the
  /// same model); sinusoidal positions have no GPT-2 form and are refused.
  func huggingFaceConfig() throws -> [String: Any] {
    guard config.positions == .learned else {
      throw UserError("GPT-2 has learned positions; this model's are sinusoidal, which transformers' GPT-2 cannot hold")
    }
    return [
      "model_type": "gpt2", "architectures": ["GPT2LMHeadModel"], "vocab_size": config.vocabulary,
      "n_positions": config.context, "n_embd": config.width, "n_layer": config.layers, "n_head": config.heads,
      "activation_function": config.activation == .tanh ? "gelu_new" : "gelu",
      "layer_norm_epsilon": config.layerNormEps, "tie_word_embeddings": true, "resid_pdrop": config.dropout,
      "embd_pdrop": config.dropout, "attn_pdrop": config.dropout,
    ]
  }

  /// The tensors under transformers' names: Conv1D weights transposed back, absent biases as zeros.
  func huggingFaceTensors() throws -> [String: SafeTensor] {
    var tensors: [String: SafeTensor] = [:]
    for (name, p) in namedParameters() {
      let (key, conv) = Self.gpt2Name(name)
      tensors["transformer." + key] = try SafeTensor(
        conv ? transposed(p.storage, rows: p.shape[0], columns: p.shape[1]) : p.storage,
        shape: conv ? [p.shape[1], p.shape[0]] : p.shape)
    }
    let c = config.width
    var biases = ["ln_f.bias": c]
    for layer in 0..<config.layers {
      for (part, size) in [
        ("ln_1", c), ("attn.c_attn", 3 * c), ("attn.c_proj", c), ("ln_2", c), ("mlp.c_fc", 4 * c), ("mlp.c_proj", c),
      ] {
        biases["h.\(layer).\(part).bias"] = size
      }
    }
    for (key, size) in biases where tensors["transformer." + key] == nil {
      tensors["transformer." + key] = try SafeTensor([Float](repeating: 0, count: size), shape: [size])
    }
    return tensors
  }
}

extension BERT where Scalar == Float {
  /// The config.json of this BERT as BertForPreTraining's; transformers' BERT is post-LN, so a pre-LN one is refused.
  func huggingFaceConfig() throws -> [String: Any] {
    guard config.norm == .post else {
      throw UserError("transformers' BERT is post-LN; this model is pre-LN (--norm pre), which it cannot hold")
    }
    return [
      "model_type": "bert", "architectures": ["BertForPreTraining"], "vocab_size": config.vocabulary,
      "hidden_size": config.width, "num_hidden_layers": config.layers, "num_attention_heads": config.heads,
      "intermediate_size": 4 * config.width, "hidden_act": config.activation == .erf ? "gelu" : "gelu_new",
      "max_position_embeddings": config.context, "type_vocab_size": config.segments,
      "layer_norm_eps": config.layerNormEps, "hidden_dropout_prob": config.dropout,
      "attention_probs_dropout_prob": config.dropout, "tie_word_embeddings": true,
    ]
  }

  /// The tensors under transformers' names, the packed projection split into query, key and value.
  func huggingFaceTensors() throws -> [String: SafeTensor] {
    var tensors: [String: SafeTensor] = [:]
    let c = config.width
    for (name, p) in namedParameters() {
      let parts = name.split(separator: ".").map(String.init)
      if parts.count > 2 && parts[2] == "attention" && parts[3] == "qkv" {
        let piece = p.count / 3
        for (k, part) in ["query", "key", "value"].enumerated() {
          tensors["bert.encoder.layer.\(parts[1]).attention.self.\(part).\(parts[4])"] = try SafeTensor(
            Array(p.storage[(k * piece)..<((k + 1) * piece)]), shape: parts[4] == "weight" ? [c, c] : [c])
        }
      } else {
        tensors[Self.bertName(parts)] = try SafeTensor(p.storage, shape: p.shape)
      }
    }
    return tensors
  }
}

/// The tokenizer of a Hugging Face folder: tokenizer.json (a byte-level BPE), or GPT-2's vocab.json and merges.txt.
func huggingFaceTokenizer(_ directory: String) throws -> any Tokenizer {
  if FileManager.default.fileExists(atPath: directory + "/tokenizer.json") {
    return try loadTokenizer(directory + "/tokenizer.json")
  }
  if FileManager.default.fileExists(atPath: directory + "/vocab.json") {
    return try BPETokenizer.loadPair(vocab: directory + "/vocab.json", merges: directory + "/merges.txt")
  }
  throw UserError("'\(directory)' holds no tokenizer.json, nor vocab.json and merges.txt: the text cannot be encoded")
}
