import Foundation

/// Damaged copies of a good checkpoint, made systematically: what every stage's fuzz test feeds to its restore,
/// which must refuse each one with a `UserError` naming what is wrong (and never crash, hang or accept it). The
/// damage is generic, found by walking the file: every region cut short, the header length, every tensor's byte
/// range, dtype and shape, every tensor removed, renamed or made non-finite, every metadata field removed or set
/// to a hostile value. What only a stage can know (its history's columns, its options) its own test adds.

/// One damaged copy: the class of damage (for counting), what was done, the bytes, and a fragment the refusal
/// must contain (the tensor's or the field's name, or that the file is not valid safetensors).
public struct CheckpointDamage: Sendable {
  public let kind: String
  public let label: String
  public let bytes: [UInt8]
  public let mustName: String

  public init(kind: String, label: String, bytes: [UInt8], mustName: String) {
    self.kind = kind
    self.label = label
    self.bytes = bytes
    self.mustName = mustName
  }
}

/// Values no metadata field of a checkpoint takes: not numbers, not finite, negative, absurdly large, empty.
public let hostileMetadataValues: [String] = [
  "NaN", "nan", "inf", "-inf", "1e300", "-1", "-5", "9223372036854775807", "-9223372036854775808", "", "abc", "0.5",
]

/// Every damaged copy of `file` (a valid safetensors file) this generator knows how to make.
public func damagedCopies(of file: [UInt8]) throws -> [CheckpointDamage] {
  let (tensors, metadata) = try decodeSafetensors(file, source: "the good checkpoint")
  let headerLength = Int((0..<8).reduce(UInt64(0)) { $0 | UInt64(file[$1]) << (8 * UInt64($1)) })
  let header = try JSONSerialization.jsonObject(with: Data(file[8..<(8 + headerLength)])) as! [String: Any]
  let data = Array(file[(8 + headerLength)...])
  let invalid = "is not a valid safetensors file"
  var damage: [CheckpointDamage] = []
  func add(_ kind: String, _ label: String, _ bytes: [UInt8], _ mustName: String) {
    damage.append(CheckpointDamage(kind: kind, label: label, bytes: bytes, mustName: mustName))
  }
  // What a refusal must name: a tensor in quotes (so that 'w' is not found inside 'w_renamed'), a metadata field
  // as the messages call it.
  func quoted(_ name: String) -> String { "'\(name)'" }
  func field(_ key: String) -> String { "metadata '\(key)'" }

  // Cut short in every region: inside the length field, inside the header, inside and at the end of each tensor.
  var cuts: [(Int, String)] = (0..<8).map { ($0, "inside the header length") }
  cuts += [9, 8 + headerLength / 2, 8 + headerLength - 1].map { ($0, "inside the header") }
  for (name, entry) in header where name != "__metadata__" {
    let range = offsets(entry)
    let start = 8 + headerLength + range.lowerBound
    if range.count > 1 { cuts.append((start + range.count / 2, "inside tensor '\(name)'")) }
    if range.count > 0 { cuts.append((start + range.count - 1, "one byte before the end of tensor '\(name)'")) }
  }
  for (length, place) in cuts {
    add("truncation", "cut at byte \(length), \(place)", Array(file.prefix(length)), invalid)
  }
  add("truncation", "an empty file", [], invalid)

  // A header length that does not match the header.
  let lengths: [UInt64] = [
    0, 1, UInt64(headerLength - 1), UInt64(headerLength + 1), UInt64(headerLength + 8), UInt64(file.count),
    UInt64(Int64.max), UInt64.max,
  ]
  for length in lengths {
    let field = (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * UInt64($0))) }
    add("header length", "header length \(length) (it is \(headerLength))", field + file.dropFirst(8), invalid)
  }
  add("header length", "a header that is not JSON", rewritten(Array("not json!".utf8), data: data), invalid)
  add("header length", "a header that is a JSON array", rewritten(Array("[1, 2, 3]".utf8), data: data), invalid)

  for name in header.keys.sorted() where name != "__metadata__" {
    let entry = header[name] as! [String: Any]
    let range = offsets(entry)
    let size = (tensors[name]!.dtype).size
    func with(_ field: String, _ value: Any) -> [UInt8] {
      var changed = header
      var fields = entry
      fields[field] = value
      changed[name] = fields
      return rewritten(changed, data: data)
    }
    // Byte ranges that run past the data, overlap, leave holes, run backwards or disagree with the shape.
    let ranges: [[Int]] = [
      [range.lowerBound + 1, range.upperBound + 1], [range.lowerBound, range.upperBound + size],
      [range.lowerBound, range.upperBound - size], [range.upperBound, range.lowerBound], [-8, range.upperBound],
      [range.lowerBound, data.count + 8], [range.lowerBound, Int.max],
    ]
    for r in ranges where r != [range.lowerBound, range.upperBound] {
      add("offsets", "'\(name)' data_offsets \(r)", with("data_offsets", r), invalid)
    }
    add("offsets", "'\(name)' without data_offsets", with("data_offsets", [range.lowerBound]), quoted(name))
    // Every other dtype, and ones this reader does not know.
    for dtype in ["F32", "F64", "I64", "U64", "BF16", "F16", "I8", "x", ""] where dtype != tensors[name]!.dtype.rawValue
    {
      add("dtype", "'\(name)' as \(dtype.isEmpty ? "an empty dtype" : dtype)", with("dtype", dtype), quoted(name))
    }
    // Shapes of the same size but another form, of another size, negative, and too large to count.
    let shape = tensors[name]!.shape
    var shapes: [[Int]] = [shape + [1], [1] + shape, Array(shape.reversed()), Array(shape.dropLast()), [-1]]
    shapes += [shape.map { -$0 }, [4_294_967_296, 4_294_967_296], [Int.max, 2]]
    for s in shapes where s != shape {
      add("shape", "'\(name)' with shape \(s)", with("shape", s), quoted(name))
    }
  }

  // Whole tensors gone, renamed, added, or holding values no training produces.
  for name in tensors.keys.sorted() {
    var removed = tensors
    removed[name] = nil
    add("tensor removed", "without '\(name)'", encodeSafetensors(removed, metadata: metadata), quoted(name))
    var renamed = removed
    renamed[name + "_renamed"] = tensors[name]
    add("tensor renamed", "'\(name)' renamed", encodeSafetensors(renamed, metadata: metadata), quoted(name))
    let tensor = tensors[name]!
    if let values = tensor.floats, !values.isEmpty {
      for (index, value) in [(0, Float.nan), (values.count - 1, Float.infinity), (values.count / 2, -Float.infinity)] {
        var changed = tensors
        var bad = values
        bad[index] = value
        changed[name] = try SafeTensor(bad, shape: tensor.shape)
        add(
          "non-finite", "'\(name)'[\(index)] = \(value)", encodeSafetensors(changed, metadata: metadata), quoted(name))
      }
    }
    if let words = tensor.unsigned {
      var changed = tensors
      changed[name] = try SafeTensor([UInt64](repeating: 0, count: words.count), shape: tensor.shape)
      add("non-finite", "'\(name)' all zeros", encodeSafetensors(changed, metadata: metadata), quoted(name))
    }
  }
  for extra in ["extra", "model.extra", "optimizer.extra"] {
    var added = tensors
    added[extra] = try SafeTensor([Float(1)], shape: [1])
    add("extra tensor", "an extra tensor '\(extra)'", encodeSafetensors(added, metadata: metadata), quoted(extra))
  }

  // Every metadata field removed or made hostile, and one the checkpoint does not have.
  for key in metadata.keys.sorted() {
    var removed = metadata
    removed[key] = nil
    add("metadata", "without metadata '\(key)'", encodeSafetensors(tensors, metadata: removed), field(key))
    for value in hostileMetadataValues where value != metadata[key] {
      var changed = metadata
      changed[key] = value
      add("metadata", "metadata '\(key)' = '\(value)'", encodeSafetensors(tensors, metadata: changed), field(key))
    }
  }
  var extraKey = metadata
  extraKey["extra"] = "1"
  add("metadata", "an extra metadata field", encodeSafetensors(tensors, metadata: extraKey), field("extra"))
  add("metadata", "no metadata at all", encodeSafetensors(tensors), field("format"))
  return damage
}

/// The byte range a header entry claims (relative to the data section).
private func offsets(_ entry: Any) -> Range<Int> {
  let pair = (entry as! [String: Any])["data_offsets"] as! [Int]
  return pair[0]..<pair[1]
}

/// A file of `data` under a header made of `header` (a JSON object to serialise, or raw header bytes).
private func rewritten(_ header: Any, data: [UInt8]) -> [UInt8] {
  var json: [UInt8]
  if let raw = header as? [UInt8] {
    json = raw
  } else {
    json = Array(try! JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
  }
  while json.count % 8 != 0 { json.append(0x20) }
  let length = (0..<8).map { UInt8(truncatingIfNeeded: UInt64(json.count) >> (8 * UInt64($0))) }
  return length + json + data
}
