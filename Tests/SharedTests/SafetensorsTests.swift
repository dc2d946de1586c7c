import Foundation
import Testing

@testable import Support

@Suite struct SafetensorsTests {
  let directory = NSTemporaryDirectory() + "safetensors-tests-\(getpid())-\(Stopwatch.now())"
  static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("Fixtures/reference.safetensors").path

  func sample() throws -> [String: SafeTensor] {
    [
      "w": try SafeTensor([Float(1.5), -2, 0.25, 4], shape: [2, 2]),
      "d": try SafeTensor([0.1, -7e300], shape: [2]),
      "s": try SafeTensor([UInt64.max, 0, 42], shape: [3]),
      "i": try SafeTensor([Int64(-5)], shape: []),
    ]
  }

  @Test func aFileFromTheReferenceLibraryReads() throws {
    let (tensors, metadata) = try readSafetensors(Self.fixture)
    #expect(metadata == ["made_by": "safetensors.numpy 0.x"])
    #expect(tensors["weight"]?.shape == [2, 2])
    #expect(tensors["weight"]?.floats == [1.5, -2, 0.25, 4])
    #expect(tensors["steps"]?.doubles == [1, 2, 3])
    #expect(tensors["rng"]?.unsigned == [1, UInt64.max])
  }

  @Test func writingAndReadingRoundTrips() throws {
    let bytes = encodeSafetensors(try sample(), metadata: ["epoch": "3"])
    let (tensors, metadata) = try decodeSafetensors(bytes, source: "memory")
    #expect(try tensors == sample())
    #expect(metadata == ["epoch": "3"])
    // The layout: an 8-byte little-endian header length, a JSON header padded to 8 bytes, then the data.
    let headerLength = Int(bytes[0]) | Int(bytes[1]) << 8 | Int(bytes[2]) << 16 | Int(bytes[3]) << 24
    #expect(headerLength % 8 == 0)
    #expect(bytes.count == 8 + headerLength + 16 + 16 + 24 + 8)
    #expect(
      String(decoding: bytes[8..<(8 + headerLength)], as: UTF8.self).hasPrefix("{\"__metadata__\":{\"epoch\":\"3\"}"))
  }

  @Test(.enabled(if: pythonHasSafetensors(), "needs python3 with the safetensors package"))
  func theReferenceLibraryReadsWhatWeWrite() throws {
    try prepareOutputDirectory(directory)
    let path = directory + "/ours.safetensors"
    try writeSafetensors(try sample(), metadata: ["k": "v"], to: path)
    let script = """
      from safetensors import safe_open
      with safe_open('\(path)', framework='numpy') as f:
          print(f.metadata()['k'], f.get_tensor('w').tolist(), f.get_tensor('s').tolist(), f.get_tensor('i').tolist())
      """
    let run = try runTool(findExecutable("python3")!, ["-c", script])
    #expect(run.status == 0, "\(run.errorOutput)")
    #expect(run.output == "v [[1.5, -2.0], [0.25, 4.0]] [18446744073709551615, 0, 42] -5\n")
  }

  @Test func everyKindOfDamageIsACleanError() throws {
    let good = encodeSafetensors(try sample())
    func message(_ bytes: [UInt8]) -> String {
      do {
        _ = try decodeSafetensors(bytes, source: "x.safetensors")
        return "no error"
      } catch { return "\(error)" }
    }
    #expect(message(Array(good.prefix(5))).contains("shorter than the 8-byte header length"))
    #expect(message(Array(good.prefix(40))).contains("truncated?"))
    #expect(message(Array(good.dropLast(3))).contains("truncated?"))
    #expect(message(good + [0]).contains("1 bytes after the last tensor"))
    var garbled = good
    garbled[8] = UInt8(ascii: "x")  // the JSON's opening brace
    #expect(message(garbled) == "'x.safetensors' is not a valid safetensors file: the header is not a JSON object")
    let header =
      #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#
    var overlapping = [UInt8](repeating: 0, count: 8)
    overlapping[0] = UInt8(header.utf8.count)
    overlapping += Array(header.utf8) + [UInt8](repeating: 0, count: 8)
    #expect(message(overlapping).contains("overlap or leave a hole"))
  }

  /// A file holding one tensor whose header entry is `entry` (JSON), over `data`.
  func file(entry: String, data: [UInt8]) -> [UInt8] {
    var header = Array("{\"t\":\(entry)}".utf8)
    while header.count % 8 != 0 { header.append(0x20) }
    let length = (0..<8).map { UInt8(truncatingIfNeeded: UInt64(header.count) >> (8 * UInt64($0))) }
    return length + header + data
  }

  func message(_ bytes: [UInt8]) -> String {
    do {
      _ = try decodeSafetensors(bytes, source: "x.safetensors")
      return "no error"
    } catch { return "\(error)" }
  }

  @Test func aShapeWhoseSizeOverflowsIsACleanError() {
    let huge = file(
      entry: #"{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,16]}"#,
      data: .init(repeating: 0, count: 16))
    #expect(
      message(huge)
        == "'x.safetensors' is not a valid safetensors file: 't' has shape [4294967296, 4294967296], more elements than any file can hold"
    )
    // The element count fits, the byte count does not.
    let bytes = file(
      entry: #"{"dtype":"F64","shape":[2305843009213693952],"data_offsets":[0,8]}"#, data: .init(repeating: 0, count: 8)
    )
    #expect(message(bytes).hasSuffix("'t' has 8 bytes for F64 of shape [2305843009213693952]"))
    #expect(checkedProduct([4_294_967_296, 4_294_967_296]) == nil)
    #expect(checkedProduct([Int.max, 1]) == Int.max && checkedProduct([]) == 1 && checkedProduct([3, 0, -1]) == nil)
  }

  @Test func bytesThatDoNotFitTheirDtypeAreAnErrorNotATrap() throws {
    // The dtype sizes are what every check rests on; a wrong one must fail a test, not end the test process.
    #expect(SafeTensor.DType.f32.size == 4 && SafeTensor.DType.f64.size == 8)
    #expect(SafeTensor.DType.i64.size == 8 && SafeTensor.DType.u64.size == 8)
    #expect(throws: UserError.self) { try SafeTensor(dtype: .f32, shape: [2], bytes: [0, 0, 0, 0, 0, 0, 0]) }
    #expect(throws: UserError.self) { try SafeTensor(dtype: .u64, shape: [1], bytes: [0, 0, 0, 0]) }
    #expect(throws: UserError.self) { try SafeTensor(dtype: .f32, shape: [Int.max, 2], bytes: []) }
    let short = file(entry: #"{"dtype":"U64","shape":[2],"data_offsets":[0,12]}"#, data: .init(repeating: 0, count: 12))
    #expect(message(short).hasSuffix("'t' has 12 bytes for U64 of shape [2]"))
    let unknown = file(
      entry: #"{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}"#, data: .init(repeating: 0, count: 2))
    #expect(message(unknown).hasSuffix("'t' has dtype F8_E4M3; this reader knows F32, F64, F16, BF16, I64, U64"))
    #expect(SafeTensor.DType.f16.size == 2 && SafeTensor.DType.bf16.size == 2)
    // 16-bit values widen exactly: 1, -2, the largest finite F16 (65504) and its smallest subnormal (2^-24); BF16 1,
    // -2, 3.140625 and the largest finite BF16.
    let f16 = try SafeTensor(dtype: .f16, shape: [4], bytes: [0x00, 0x3C, 0x00, 0xC0, 0xFF, 0x7B, 0x01, 0x00])
    #expect(f16.widenedFloats == [1, -2, 65504, 0x1p-24] && f16.floats == nil)
    let bf16 = try SafeTensor(dtype: .bf16, shape: [4], bytes: [0x80, 0x3F, 0x00, 0xC0, 0x49, 0x40, 0x7F, 0x7F])
    #expect(bf16.widenedFloats == [1, -2, 3.140625, Float(bitPattern: 0x7F7F_0000)])
  }

  @Test func aMissingFileIsACleanError() {
    #expect(throws: UserError.self) { try readSafetensors(directory + "/none.safetensors") }
  }
}

/// Whether python3 can import the reference safetensors package (the interoperability test needs it).
func pythonHasSafetensors() -> Bool {
  guard let python = findExecutable("python3") else { return false }
  return (try? runTool(python, ["-c", "import safetensors"]))?.status == 0
}

/// The options line a checkpoint stores: plain values as they are, the others as JSON strings, read back exactly.
@Suite struct OptionsLineTests {
  func reader(options: String) throws -> CheckpointReader {
    try CheckpointReader(tensors: [:], metadata: ["format": "f", "options": options], source: "c", format: "f")
  }

  @Test func valuesWithSpacesQuotesOrNothingRoundTrip() throws {
    let options = [
      ("--corpus", "my plays/all of them.txt"), ("--empty", ""), ("--quote", "\"x\" y"), ("--lr", "0.001"),
      ("--tab", "a\tb"), ("--unicode", "Hamlet 😀"), ("--seed", "7"),
    ]
    let line = optionsLine(options)
    #expect(line.hasPrefix("--corpus \"my plays\\/all of them.txt\" --empty \"\" --quote "))
    #expect(line.hasSuffix(" --lr 0.001 --tab \"a\\tb\" --unicode \"Hamlet 😀\" --seed 7"))
    let read = try reader(options: line).options()
    #expect(read.map(\.flag) == options.map(\.0) && read.map(\.value) == options.map(\.1))
  }

  @Test(arguments: [
    ("--a \"unterminated", "malformed quoted value"), ("--a \"x\"y", "malformed quoted value"),
    ("--a  --b 1", "not a list of '--option value' pairs"), ("\"--a\" 1", "not a list of '--option value' pairs"),
    ("--a", "not a list of '--option value' pairs"), ("--a 1 --a 2", "gives --a twice"),
  ])
  func aMalformedLineIsRefusedByName(_ line: String, _ message: String) throws {
    let error = #expect(throws: UserError.self) { try reader(options: line).options() }
    #expect(error?.description.contains(message) == true, "\(String(describing: error))")
  }
}
