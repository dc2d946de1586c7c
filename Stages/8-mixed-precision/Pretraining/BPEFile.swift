import Foundation
import Support

/// The tokenizer's file: Hugging Face's tokenizer.json, so that a tokenizer trained here loads in `tokenizers`
/// (and in `transformers`), and theirs loads here.

// MARK: - GPT-2's printable bytes

/// GPT-2 writes each byte as a printable character, so that a vocabulary of byte strings can be a JSON object
/// of readable text: the 188 bytes that are printable Latin-1 (33...126, 161...172, 174...255) stand for
/// themselves, and the other 68 (control characters, the space, DEL, the no-break and soft hyphens) become
/// U+0100, U+0101, ... in byte order. The space is thus 'Ġ' (U+0120), the newline 'Ċ' (U+010A).
enum ByteLevel {
  /// The character of each byte.
  static let scalars: [Unicode.Scalar] = {
    var next: UInt32 = 256
    return (0...255).map { byte -> Unicode.Scalar in
      if (33...126).contains(byte) || (161...172).contains(byte) || (174...255).contains(byte) {
        return Unicode.Scalar(UInt8(byte))
      }
      defer { next += 1 }
      return Unicode.Scalar(next)!
    }
  }()

  /// The bytes in the order of their characters' code points: the order of their ids in Hugging Face's trainer.
  static let bytesInIDOrder: [UInt8] = (0...255).map(UInt8.init).sorted { scalars[Int($0)] < scalars[Int($1)] }

  /// The byte of each character.
  static let bytesOfScalars = Dictionary(uniqueKeysWithValues: (0...255).map { (scalars[$0], UInt8($0)) })

  /// `bytes` as printable characters.
  static func string(_ bytes: some Sequence<UInt8>) -> String {
    var text = String.UnicodeScalarView()
    for byte in bytes { text.append(scalars[Int(byte)]) }
    return String(text)
  }

  /// The bytes that `text` stands for, or nil if a character of it stands for none.
  static func bytes(_ text: String) -> [UInt8]? {
    var bytes: [UInt8] = []
    for scalar in text.unicodeScalars {
      guard let byte = bytesOfScalars[scalar] else { return nil }
      bytes.append(byte)
    }
    return bytes
  }
}

extension BPETokenizer {
  /// The token of `id` as the vocabulary writes it: a special token as itself, any other in GPT-2's characters.
  func vocabularyKey(_ id: Int, bytes: [UInt8]? = nil) -> String {
    if let special = specialTokens.first(where: { $0.id == id }) { return special.token }
    return ByteLevel.string(bytes ?? tokenBytes[id])
  }

  // MARK: - Writing

  /// The tokenizer as Hugging Face writes it (tokenizers 0.23, `save(pretty: true)`), byte for byte: keys in
  /// their order, the vocabulary by id, the merges by rank as pairs.
  public func fileContents() throws -> Data {
    var out = "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n  \"added_tokens\": "
    let added = specialTokens.map { token, id in
      "    {\n      \"id\": \(id),\n      \"content\": \(jsonString(token)),\n      \"single_word\": false,\n"
        + "      \"lstrip\": false,\n      \"rstrip\": false,\n      \"normalized\": false,\n"
        + "      \"special\": true\n    }"
    }
    out += added.isEmpty ? "[]" : "[\n" + added.joined(separator: ",\n") + "\n  ]"
    out += ",\n  \"normalizer\": null,\n  \"pre_tokenizer\": " + byteLevelJSON(prefixSpace: false)
    out += ",\n  \"post_processor\": null,\n  \"decoder\": " + byteLevelJSON(prefixSpace: true)
    out += ",\n  \"model\": {\n    \"type\": \"BPE\",\n    \"dropout\": null,\n    \"unk_token\": null,\n"
    out += "    \"continuing_subword_prefix\": null,\n    \"end_of_word_suffix\": null,\n"
    out += "    \"fuse_unk\": false,\n    \"byte_fallback\": false,\n    \"ignore_merges\": \(ignoreMerges),\n"
    let vocabulary = tokenBytes.indices.map { "      \(jsonString(vocabularyKey($0))): \($0)" }
    out += "    \"vocab\": {\n" + vocabulary.joined(separator: ",\n") + "\n    },\n    \"merges\": "
    let pairs = merges.map { merge in
      "      [\n        \(jsonString(vocabularyKey(merge.left))),\n"
        + "        \(jsonString(vocabularyKey(merge.right)))\n      ]"
    }
    out += pairs.isEmpty ? "[]" : "[\n" + pairs.joined(separator: ",\n") + "\n    ]"
    out += "\n  }\n}"
    return Data(out.utf8)
  }

  private func byteLevelJSON(prefixSpace: Bool) -> String {
    "{\n    \"type\": \"ByteLevel\",\n    \"add_prefix_space\": \(prefixSpace),\n"
      + "    \"trim_offsets\": true,\n    \"use_regex\": true\n  }"
  }

  // MARK: - Reading

  /// Reads a tokenizer.json: this tokenizer's own, or one of Hugging Face's byte-level BPE tokenizers (merges as
  /// pairs or, in older files, as "left right" strings). What this tokenizer cannot do exactly as the file says
  /// (another model or pre-tokenizer, a normalizer, a prefix space, ...) is refused, naming the field: encoding
  /// anyway would give other ids than Hugging Face's. `source` names the file in messages, and `mergeField` the
  /// merge at an index (by default its place in model.merges).
  public static func load(
    _ object: [String: Any], source: String, mergeField: (Int) -> String = { "model.merges[\($0)]" }
  ) throws -> BPETokenizer {
    func fail(_ message: String) -> UserError { UserError("'\(source)': \(message)") }
    func isNull(_ value: Any?) -> Bool { value == nil || value is NSNull }
    func describe(_ value: Any?) -> String { isNull(value) ? "null" : "\(value!)" }

    guard let model = object["model"] as? [String: Any] else { throw fail("'model' is missing or not an object") }
    guard let type = model["type"] as? String, type == "BPE" else {
      throw fail("model.type is \(describe(model["type"])), but this tokenizer reads only \"BPE\"")
    }
    guard isNull(object["normalizer"]) else { throw fail("normalizer must be null (this tokenizer has none)") }
    for field in ["truncation", "padding"] where !isNull(object[field]) { throw fail("\(field) must be null") }
    let preTokenizer = object["pre_tokenizer"] as? [String: Any]
    guard preTokenizer?["type"] as? String == "ByteLevel", preTokenizer?["add_prefix_space"] as? Bool == false,
      preTokenizer?["use_regex"] as? Bool ?? true
    else {
      throw fail("pre_tokenizer must be ByteLevel with add_prefix_space false and use_regex true (GPT-2's split)")
    }
    for field in ["post_processor", "decoder"] where !isNull(object[field]) {
      guard (object[field] as? [String: Any])?["type"] as? String == "ByteLevel" else {
        throw fail("\(field) must be null or ByteLevel")
      }
    }
    guard isNull(model["dropout"]) || (model["dropout"] as? Double) == 0 else {
      throw fail("model.dropout must be null")
    }
    for field in ["continuing_subword_prefix", "end_of_word_suffix"] {
      guard isNull(model[field]) || model[field] as? String == "" else { throw fail("model.\(field) must be null") }
    }

    // The vocabulary, and the special tokens
    guard let entries = model["vocab"] as? [String: Any] else { throw fail("model.vocab is missing or not an object") }
    var vocabulary: [String: Int] = [:]
    var keys: [Int: String] = [:]
    for (key, value) in entries.sorted(by: { $0.key < $1.key }) {
      guard let id = value as? Int, id >= 0 else {
        throw fail("model.vocab: the id of \(jsonString(key)) is \(value), not an id")
      }
      if let other = keys[id] {
        throw fail("model.vocab: id \(id) is both \(jsonString(other)) and \(jsonString(key))")
      }
      vocabulary[key] = id
      keys[id] = key
    }
    var specials: [(token: String, id: Int)] = []
    for (index, value) in ((object["added_tokens"] as? [Any]) ?? []).enumerated() {
      let field = "added_tokens[\(index)]"
      guard let token = value as? [String: Any], let id = token["id"] as? Int,
        let content = token["content"] as? String,
        !content.isEmpty
      else { throw fail("\(field) needs an id and a content") }
      for option in ["single_word", "lstrip", "rstrip"] where token[option] as? Bool == true {
        throw fail("\(field).\(option) is true; this tokenizer matches special tokens exactly")
      }
      if let key = keys[id], key != content {
        throw fail("\(field): id \(id) is \(jsonString(content)), but model.vocab gives it to \(jsonString(key))")
      }
      guard id >= 0 else { throw fail("\(field): id \(id) is not an id") }
      keys[id] = content
      specials.append((content, id))
    }
    let specialIDs = Set(specials.map(\.id))
    if let (id, key) = keys.max(by: { $0.key < $1.key }), id >= keys.count {
      let field = vocabulary[key] == id ? "model.vocab" : "added_tokens"
      throw fail("\(field): the id of \(jsonString(key)) is \(id), out of range for \(keys.count) tokens")
    }
    var tokenBytes: [[UInt8]] = []
    for id in 0..<keys.count {
      guard let key = keys[id] else { throw fail("model.vocab: id \(id) is missing (ids must be 0..<\(keys.count))") }
      if specialIDs.contains(id) {
        tokenBytes.append(Array(key.utf8))
      } else if let bytes = ByteLevel.bytes(key), !bytes.isEmpty {
        tokenBytes.append(bytes)
      } else {
        throw fail("model.vocab: \(jsonString(key)) is not a byte-level token (GPT-2's printable bytes)")
      }
    }
    for byte in 0...255 where vocabulary[String(Character(ByteLevel.scalars[byte]))] == nil {
      throw fail("model.vocab lacks the token of byte \(byte), \(jsonString(ByteLevel.string([UInt8(byte)])))")
    }

    // The merges
    guard let list = model["merges"] as? [Any] else { throw fail("model.merges is missing or not a list") }
    var merges: [(left: Int, right: Int, result: Int)] = []
    for (index, item) in list.enumerated() {
      let field = mergeField(index)
      let parts = (item as? [String]) ?? (item as? String).map { $0.split(separator: " ").map(String.init) } ?? []
      guard parts.count == 2 else { throw fail("\(field) is not a pair of tokens: \(item)") }
      for part in parts where vocabulary[part] == nil {
        throw fail("\(field) names \(jsonString(part)), which is not in model.vocab")
      }
      guard let result = vocabulary[parts[0] + parts[1]] else {
        throw fail("\(field): the merged token \(jsonString(parts[0] + parts[1])) is not in model.vocab")
      }
      merges.append((vocabulary[parts[0]]!, vocabulary[parts[1]]!, result))
    }
    return BPETokenizer(
      tokenBytes: tokenBytes, specials: specials, merges: merges, ignoreMerges: model["ignore_merges"] as? Bool ?? false
    )
  }
}

extension BPETokenizer {
  /// GPT-2's classic pair of files: vocab.json (token -> id) and merges.txt (a "#version" line, then "left right"
  /// per merge, by rank), read with GPT-2's ByteLevel pre-tokenizer and decoder. A vocabulary entry that is neither
  /// one byte nor the result of a merge (GPT-2's <|endoftext|>) can only have been added: it is a special token.
  public static func loadPair(vocab: String, merges: String) throws -> BPETokenizer {
    guard let entries = try JSONSerialization.jsonObject(with: readInputFile(vocab)) as? [String: Any] else {
      throw UserError("'\(vocab)' is not a JSON object of tokens and their ids")
    }
    guard let text = String(data: try readInputFile(merges), encoding: .utf8) else {
      throw UserError("'\(merges)' is not UTF-8 text")
    }
    // The merges by rank, each with its line number for messages (blank lines and the "#version" line skipped).
    let numbered = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated().filter {
      !$0.element.isEmpty && !$0.element.hasPrefix("#version")
    }
    let lines = numbered.map { String($0.element) }
    // A byte-level token never holds a space (the space byte is "Ġ"), so "left right" joins back unambiguously.
    let results = Set(lines.map { $0.split(separator: " ").joined() })
    let added = entries.keys.filter { key in (ByteLevel.bytes(key)?.count ?? 2) > 1 && !results.contains(key) }
    let object: [String: Any] = [
      "model": ["type": "BPE", "vocab": entries, "merges": lines] as [String: Any],
      "pre_tokenizer": ["type": "ByteLevel", "add_prefix_space": false, "use_regex": true] as [String: Any],
      "decoder": ["type": "ByteLevel"],
      "added_tokens": added.sorted().map { ["id": entries[$0] as Any, "content": $0] as [String: Any] },
    ]
    return try load(object, source: vocab + " and " + merges) { "line \(numbered[$0].offset + 1) of '\(merges)'" }
  }
}

/// `text` as a JSON string, escaped as serde_json (Hugging Face's writer) escapes it: quotes, backslashes and
/// control characters only.
func jsonString(_ text: String) -> String {
  var out = "\""
  for scalar in text.unicodeScalars {
    switch scalar {
    case "\"": out += "\\\""
    case "\\": out += "\\\\"
    case "\n": out += "\\n"
    case "\r": out += "\\r"
    case "\t": out += "\\t"
    case "\u{08}": out += "\\b"
    case "\u{0C}": out += "\\f"
    case "\u{00}"..."\u{1F}":
      let hex = String(scalar.value, radix: 16)
      out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
    default: out.unicodeScalars.append(scalar)
    }
  }
  return out + "\""
}
