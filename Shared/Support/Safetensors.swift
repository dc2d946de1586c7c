import Foundation

/// The safetensors format, as PyTorch and Hugging Face write it: an 8-byte little-endian header length N, N bytes
/// of JSON mapping each tensor's name to its dtype, shape and byte range ("data_offsets", relative to the end of
/// the header), optionally "__metadata__" (string to string), then the raw little-endian data. Simple enough to
/// check completely on reading, which is the point: a file cannot make the reader run code or read out of bounds.

/// One tensor of a safetensors file.
public struct SafeTensor: Equatable, Sendable {
  /// The element types this project reads and writes.
  public enum DType: String, Sendable {
    case f32 = "F32", f64 = "F64", i64 = "I64", u64 = "U64"
    /// The two 16-bit formats checkpoints are published in: IEEE half precision, and bfloat16 (the top half of
    /// an F32: its sign, its 8 exponent bits and 7 of its fraction bits). Read, widened to Float; never written.
    case f16 = "F16", bf16 = "BF16"

    public var size: Int {
      switch self {
      case .f16, .bf16: 2
      case .f32: 4
      case .f64, .i64, .u64: 8
      }
    }
  }

  public let dtype: DType
  public let shape: [Int]
  /// The elements' bytes, little-endian.
  public let bytes: [UInt8]

  /// A tensor of `shape` whose elements are `bytes`. Throws a `UserError` when the two disagree or the shape's
  /// element count does not fit in an Int: shapes come from files, and a bad file is bad input, not a bug.
  public init(dtype: DType, shape: [Int], bytes: [UInt8]) throws {
    guard let count = checkedProduct(shape) else { throw UserError("shape \(shape) has no valid element count") }
    let (size, overflow) = count.multipliedReportingOverflow(by: dtype.size)
    guard !overflow, bytes.count == size else {
      throw UserError("\(bytes.count) bytes cannot hold \(dtype.rawValue) of shape \(shape)")
    }
    self.dtype = dtype
    self.shape = shape
    self.bytes = bytes
  }

  public init(_ values: [Float], shape: [Int]) throws {
    try self.init(dtype: .f32, shape: shape, bytes: values.flatMap { littleEndianBytes($0.bitPattern) })
  }

  public init(_ values: [Double], shape: [Int]) throws {
    try self.init(dtype: .f64, shape: shape, bytes: values.flatMap { littleEndianBytes($0.bitPattern) })
  }

  public init(_ values: [UInt64], shape: [Int]) throws {
    try self.init(dtype: .u64, shape: shape, bytes: values.flatMap { littleEndianBytes($0) })
  }

  public init(_ values: [Int64], shape: [Int]) throws {
    try self.init(dtype: .i64, shape: shape, bytes: values.flatMap { littleEndianBytes(UInt64(bitPattern: $0)) })
  }

  public var floats: [Float]? {
    dtype == .f32 ? words(4).map { Float(bitPattern: UInt32(truncatingIfNeeded: $0)) } : nil
  }
  /// The elements as Float from F32, F16 or BF16 (both widen exactly: every value they hold is a Float).
  public var widenedFloats: [Float]? {
    switch dtype {
    case .f32: floats
    case .f16: words(2).map { Float(Float16(bitPattern: UInt16(truncatingIfNeeded: $0))) }
    case .bf16: words(2).map { Float(bitPattern: UInt32(truncatingIfNeeded: $0) << 16) }
    default: nil
    }
  }
  public var doubles: [Double]? { dtype == .f64 ? words(8).map { Double(bitPattern: $0) } : nil }
  public var unsigned: [UInt64]? { dtype == .u64 ? words(8) : nil }
  public var signed: [Int64]? { dtype == .i64 ? words(8).map { Int64(bitPattern: $0) } : nil }

  /// The elements as little-endian words of `size` bytes; a partial word at the end (which `init` rules out)
  /// is dropped rather than read past the end.
  private func words(_ size: Int) -> [UInt64] {
    stride(from: 0, to: bytes.count - size + 1, by: size).map { start in
      (0..<size).reduce(UInt64(0)) { $0 | UInt64(bytes[start + $1]) << (8 * UInt64($1)) }
    }
  }
}

private func littleEndianBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
  (0..<MemoryLayout<T>.size).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
}

/// The bytes of a safetensors file holding `tensors` (written in name order) and `metadata`.
public func encodeSafetensors(_ tensors: [String: SafeTensor], metadata: [String: String] = [:]) -> [UInt8] {
  var header: [String: Any] = [:]
  if !metadata.isEmpty { header["__metadata__"] = metadata }
  var offset = 0
  for name in tensors.keys.sorted() {
    let tensor = tensors[name]!
    header[name] = [
      "dtype": tensor.dtype.rawValue, "shape": tensor.shape, "data_offsets": [offset, offset + tensor.bytes.count],
    ]
    offset += tensor.bytes.count
  }
  var json = Array(try! JSONSerialization.data(withJSONObject: header, options: [.sortedKeys]))
  while json.count % 8 != 0 { json.append(0x20) }  // pad with spaces so the data starts 8-byte aligned
  var file = littleEndianBytes(UInt64(json.count)) + json
  for name in tensors.keys.sorted() { file += tensors[name]!.bytes }
  return file
}

/// Reads a safetensors file's tensors and metadata, checking everything: a truncated, corrupt or inconsistent
/// file throws a `UserError` that says what is wrong, naming `source` (a path, for the message).
public func decodeSafetensors(
  _ file: [UInt8], source: String
) throws -> (
  tensors: [String: SafeTensor], metadata: [String: String]
) {
  func fail(_ problem: String) -> UserError { UserError("'\(source)' is not a valid safetensors file: \(problem)") }
  guard file.count >= 8 else { throw fail("it is \(file.count) bytes long, shorter than the 8-byte header length") }
  let headerLength = (0..<8).reduce(UInt64(0)) { $0 | UInt64(file[$1]) << (8 * UInt64($1)) }
  guard headerLength <= UInt64(file.count - 8) else {
    throw fail("the header claims \(headerLength) bytes but only \(file.count - 8) follow (truncated?)")
  }
  let dataStart = 8 + Int(headerLength)
  guard let object = try? JSONSerialization.jsonObject(with: Data(file[8..<dataStart])),
    let header = object as? [String: Any]
  else { throw fail("the header is not a JSON object") }

  var metadata: [String: String] = [:]
  if let meta = header["__metadata__"] {
    guard let strings = meta as? [String: String] else { throw fail("__metadata__ is not a map of strings") }
    metadata = strings
  }
  var tensors: [String: SafeTensor] = [:]
  var ranges: [(Int, Int)] = []
  let dataLength = file.count - dataStart
  for (name, entry) in header where name != "__metadata__" {
    guard let fields = entry as? [String: Any], let dtypeName = fields["dtype"] as? String,
      let shape = fields["shape"] as? [Int], let offsets = fields["data_offsets"] as? [Int], offsets.count == 2
    else { throw fail("the entry for '\(name)' lacks a dtype, shape or data_offsets") }
    guard let dtype = SafeTensor.DType(rawValue: dtypeName) else {
      throw fail("'\(name)' has dtype \(dtypeName); this reader knows F32, F64, F16, BF16, I64, U64")
    }
    guard shape.allSatisfy({ $0 >= 0 }) else { throw fail("'\(name)' has a negative size in shape \(shape)") }
    guard let count = checkedProduct(shape) else {
      throw fail("'\(name)' has shape \(shape), more elements than any file can hold")
    }
    let (begin, end) = (offsets[0], offsets[1])
    guard 0 <= begin, begin <= end, end <= dataLength else {
      throw fail("'\(name)' claims bytes \(begin)..<\(end) of a \(dataLength)-byte data section (truncated?)")
    }
    let (size, overflow) = count.multipliedReportingOverflow(by: dtype.size)
    guard !overflow, end - begin == size else {
      throw fail("'\(name)' has \(end - begin) bytes for \(dtypeName) of shape \(shape)")
    }
    do {
      tensors[name] = try SafeTensor(
        dtype: dtype, shape: shape, bytes: Array(file[(dataStart + begin)..<(dataStart + end)]))
    } catch {
      throw fail("'\(name)': \(error)")
    }
    ranges.append((begin, end))
  }
  // The ranges must tile the data section: no overlaps, no holes, nothing left over.
  var expected = 0
  for (begin, end) in ranges.sorted(by: { $0.0 < $1.0 }) {
    guard begin == expected else { throw fail("the tensors' byte ranges overlap or leave a hole at byte \(expected)") }
    expected = end
  }
  guard expected == dataLength else { throw fail("\(dataLength - expected) bytes after the last tensor") }
  return (tensors, metadata)
}

/// Writes a safetensors file atomically (a temporary file, then a rename): an interrupted save leaves the
/// previous checkpoint intact.
public func writeSafetensors(_ tensors: [String: SafeTensor], metadata: [String: String] = [:], to path: String) throws
{
  try writeAtomically(Data(encodeSafetensors(tensors, metadata: metadata)), to: path)
}

/// Reads and checks a safetensors file (see `decodeSafetensors`).
public func readSafetensors(_ path: String) throws -> (tensors: [String: SafeTensor], metadata: [String: String]) {
  let data = try readInputFile(path)
  return try decodeSafetensors(Array(data), source: path)
}

/// Whether the file at `path` begins as a safetensors file does (an 8-byte header length that fits the file, then
/// a JSON object): a checkpoint may be saved over such a file, never over a file that is something else.
public func looksLikeSafetensors(_ path: String) -> Bool {
  guard let handle = FileHandle(forReadingAtPath: path) else { return false }
  defer { try? handle.close() }
  guard let head = try? handle.read(upToCount: 9), head.count == 9, head[head.startIndex + 8] == UInt8(ascii: "{")
  else { return false }
  let length = head.prefix(8).reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
  guard let size = try? handle.seekToEnd() else { return false }
  return length <= size - 8
}
