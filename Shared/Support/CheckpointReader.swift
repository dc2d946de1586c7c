import Foundation

/// Reading a training checkpoint field by field, each checked as it is taken: present, of the right dtype and
/// shape, finite, in range. A checkpoint is a file from outside the run (copied, edited, truncated, from another
/// version), so everything in it is bad input until checked, and a wrong value must be refused with its name
/// rather than trained on: an all-zero generator state hangs the run, a missing optimizer buffer silently restarts
/// the optimizer, a NaN weight poisons every step after it.
///
/// A stage's `restore` takes every field it needs, then calls `finish()`, which refuses whatever it did not take,
/// and only then changes the trainer: a checkpoint restores the whole state or nothing.
public final class CheckpointReader {
  /// Where the checkpoint came from (a path), for the messages.
  public let source: String
  let tensors: [String: SafeTensor]
  let metadata: [String: String]
  private var takenTensors: Set<String> = []
  private var takenMetadata: Set<String> = ["format"]

  /// Reads the file at `path`, which must be a safetensors file whose metadata "format" is `format`.
  public convenience init(path: String, format: String) throws {
    let (tensors, metadata) = try readSafetensors(path)
    markAsInput(path, replaceableBy: "--checkpoint")  // a resumed run may save over it; no plot may
    try self.init(tensors: tensors, metadata: metadata, source: path, format: format)
  }

  /// Reads a checkpoint from the bytes of a safetensors file (`source` names it in messages).
  public convenience init(bytes: [UInt8], source: String, format: String) throws {
    let (tensors, metadata) = try decodeSafetensors(bytes, source: source)
    try self.init(tensors: tensors, metadata: metadata, source: source, format: format)
  }

  /// A checkpoint already read: `tensors` and `metadata` as a safetensors file holds them (`source` names it).
  public init(tensors: [String: SafeTensor], metadata: [String: String], source: String, format: String) throws {
    guard let found = metadata["format"] else {
      throw UserError("'\(source)' is a safetensors file but not a \(format): its metadata 'format' is missing")
    }
    guard found == format else {
      throw UserError("'\(source)' is a safetensors file but not a \(format): its metadata 'format' is '\(found)'")
    }
    self.tensors = tensors
    self.metadata = metadata
    self.source = source
  }

  /// An error about this checkpoint, in the one-line form the command line prints.
  public func error(_ problem: String) -> UserError {
    UserError("checkpoint '\(source)': \(problem)")
  }

  // MARK: - Tensors

  /// The F32 tensor `name` of exactly `shape`, every element finite (and >= 0 if `nonNegative`).
  public func floats(_ name: String, shape: [Int], nonNegative: Bool = false) throws -> [Float] {
    guard let tensor = tensors[name] else { throw error("tensor '\(name)' is missing") }
    // SafeTensor's initialiser already holds its bytes to its dtype and shape: only the two need checking here.
    guard tensor.dtype == .f32, tensor.shape == shape, let values = tensor.floats else {
      throw error("tensor '\(name)' is \(tensor.dtype.rawValue) \(tensor.shape); this run needs F32 \(shape)")
    }
    if let bad = values.firstIndex(where: { !$0.isFinite || (nonNegative && $0 < 0) }) {
      let rule = nonNegative ? "finite and >= 0" : "finite"
      throw error("tensor '\(name)' holds \(values[bad]) at element \(bad); every element must be \(rule)")
    }
    takenTensors.insert(name)
    return values
  }

  /// The four words of a xoshiro256** state, tensor `name` (U64 of shape [4]), refusing the all-zero state: the
  /// generator never leaves it, so every draw would be 0 and a loop that waits for a new value would never end.
  public func generatorState(_ name: String) throws -> (UInt64, UInt64, UInt64, UInt64) {
    guard let tensor = tensors[name] else { throw error("tensor '\(name)' (the generator state) is missing") }
    guard tensor.dtype == .u64, tensor.shape == [4], let words = tensor.unsigned, words.count == 4 else {
      throw error("tensor '\(name)' is \(tensor.dtype.rawValue) \(tensor.shape); a generator state is U64 [4]")
    }
    guard words.contains(where: { $0 != 0 }) else {
      throw error("tensor '\(name)' is all zeros, a generator state that only ever draws 0")
    }
    takenTensors.insert(name)
    return (words[0], words[1], words[2], words[3])
  }

  // MARK: - Metadata

  /// The metadata string `key`.
  public func text(_ key: String) throws -> String {
    guard let value = metadata[key] else { throw error("metadata '\(key)' is missing") }
    takenMetadata.insert(key)
    return value
  }

  /// The metadata `key` as a whole number in `range`.
  public func integer(_ key: String, in range: ClosedRange<Int>) throws -> Int {
    let text = try text(key)
    guard let value = Int(text), range.contains(value) else {
      let bounds = "from \(range.lowerBound) to \(range.upperBound)"
      throw error("metadata '\(key)' is '\(text)'; it must be a whole number \(bounds)")
    }
    return value
  }

  /// The options the run was started with, stored as the command line spells them ("--lr 0.003 --seed 1", see
  /// `optionsLine`): each a flag and one value, no flag twice. What the values mean is for the command to check.
  public func options(_ key: String = "options") throws -> [(flag: String, value: String)] {
    let text = try text(key)
    guard let words = optionWords(text) else {
      throw error("metadata '\(key)' has an unterminated or malformed quoted value")
    }
    var options: [(flag: String, value: String)] = []
    var index = 0
    while index < words.count {
      let flag = words[index].text
      guard !words[index].quoted, flag.hasPrefix("--"), flag.count > 2, index + 1 < words.count,
        words[index + 1].quoted || !words[index + 1].text.isEmpty
      else {
        throw error("metadata '\(key)' is not a list of '--option value' pairs (at '\(flag)')")
      }
      guard !options.contains(where: { $0.flag == flag }) else {
        throw error("metadata '\(key)' gives \(flag) twice")
      }
      options.append((flag, words[index + 1].text))
      index += 2
    }
    return options
  }

  /// Checks that the run was started with the options `expected` (a run's own, as `options` spells them), all
  /// but `length` (--epochs, --steps: a run may be extended), and returns the recorded `length`.
  public func requireOptions(_ expected: [(flag: String, value: String)], length: String) throws -> Int {
    let saved = try options()
    for (flag, value) in expected where flag != length {
      guard let savedValue = saved.first(where: { $0.flag == flag })?.value else {
        throw error("metadata 'options' lacks \(flag)")
      }
      guard savedValue == value else {
        throw error("it was made with \(flag) \(savedValue), this run has \(flag) \(value)")
      }
    }
    if let extra = saved.first(where: { option in !expected.contains { $0.flag == option.flag } }) {
      throw error("metadata 'options' has \(extra.flag), which this run does not know")
    }
    guard let text = saved.first(where: { $0.flag == length })?.value else {
      throw error("metadata 'options' lacks \(length)")
    }
    guard let planned = Int(text), planned >= 1 else {
      throw error("metadata 'options' has \(length) '\(text)', not a positive whole number")
    }
    return planned
  }

  /// One column of a `table`: its name and the range every value must lie in.
  public struct Column {
    public let name: String
    public let range: ClosedRange<Double>

    public init(_ name: String, _ range: ClosedRange<Double>) {
      self.name = name
      self.range = range
    }
  }

  /// The metadata `key` as CSV lines of numbers (the training history), one value per column, each within its
  /// column's range (and so finite).
  public func table(_ key: String, columns: [Column]) throws -> [[Double]] {
    let text = try text(key)
    if text.isEmpty { return [] }
    var rows: [[Double]] = []
    for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
      let fields = line.split(separator: ",", omittingEmptySubsequences: false)
      guard fields.count == columns.count else {
        throw error("metadata '\(key)' line \(number + 1) has \(fields.count) fields, not \(columns.count)")
      }
      var row: [Double] = []
      for (field, column) in zip(fields, columns) {
        guard let value = Double(field), column.range.contains(value) else {
          let bounds = "from \(plain(column.range.lowerBound)) to \(plain(column.range.upperBound))"
          throw error("metadata '\(key)' line \(number + 1): \(column.name) is '\(field)', not a number \(bounds)")
        }
        row.append(value)
      }
      rows.append(row)
    }
    return rows
  }

  // MARK: - The end

  /// Refuses the checkpoint if it holds anything the restore did not take: a tensor or metadata of another model
  /// or version would otherwise be dropped without a word.
  public func finish() throws {
    if let name = tensors.keys.filter({ !takenTensors.contains($0) }).min() {
      throw error("unexpected tensor '\(name)': this run has no parameter or state of that name")
    }
    if let key = metadata.keys.filter({ !takenMetadata.contains($0) }).min() {
      throw error("unexpected metadata '\(key)'")
    }
  }
}

/// A bound as a person writes it: 1000000, not 1000000.0.
private func plain(_ value: Double) -> String {
  value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : String(value)
}

/// Options as one line, as a checkpoint stores them: "--flag value" pairs joined by single spaces, a value that is
/// empty, holds a space or a control character, or starts with a quote written as a JSON string ("my file.txt").
public func optionsLine(_ options: [(flag: String, value: String)]) -> String {
  func quotedIfNeeded(_ value: String) -> String {
    let plain =
      !value.isEmpty && !value.hasPrefix("\"") && !value.unicodeScalars.contains { $0.value <= 0x20 || $0 == "\u{7F}" }
    guard !plain, let data = try? JSONSerialization.data(withJSONObject: value, options: .fragmentsAllowed) else {
      return value
    }
    return String(decoding: data, as: UTF8.self)
  }
  return options.map { $0.flag + " " + quotedIfNeeded($0.value) }.joined(separator: " ")
}

/// The words of an options line: split at single spaces, a word in double quotes read as a JSON string. Nil when a
/// quoted word does not end or is not valid JSON.
func optionWords(_ text: String) -> [(text: String, quoted: Bool)]? {
  var words: [(text: String, quoted: Bool)] = []
  var rest = Substring(text)
  while true {
    if rest.hasPrefix("\"") {
      var end = rest.index(after: rest.startIndex)
      var escaped = false
      while end < rest.endIndex && (escaped || rest[end] != "\"") {
        escaped = !escaped && rest[end] == "\\"
        end = rest.index(after: end)
      }
      guard end < rest.endIndex,
        let value = try? JSONSerialization.jsonObject(
          with: Data(rest[...end].utf8), options: .fragmentsAllowed) as? String
      else { return nil }
      words.append((value, true))
      rest = rest[rest.index(after: end)...]
      guard rest.isEmpty || rest.hasPrefix(" ") else { return nil }
    } else {
      let end = rest.firstIndex(of: " ") ?? rest.endIndex
      words.append((String(rest[..<end]), false))
      rest = rest[end...]
    }
    if rest.isEmpty { return words }
    rest = rest.dropFirst()  // the space between two words
  }
}
