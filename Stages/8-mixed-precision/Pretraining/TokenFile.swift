import Foundation
import Support

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Token files: a corpus tokenized once and kept on disk as the ids themselves, uint16 little-endian, exactly
/// nanoGPT's train.bin and val.bin (so either project reads the other's). Training then never touches text: a batch
/// is a few windows of ids read straight from the file. The file is memory-mapped, not read into an array: the
/// operating system pages in only what the windows touch and shares the pages between processes, so a corpus
/// larger than memory trains the same way (nanoGPT's np.memmap). Beside each file a small sidecar, NAME.json, says
/// which tokenizer made the ids and which split they are: ids read with another tokenizer would be nonsense that
/// no error would ever reveal.

// MARK: - The sidecar

/// What a token file holds, written beside it as NAME.json.
public struct TokenFileInfo: Codable, Equatable, Sendable {
  /// Always "uint16-le".
  public var dtype = "uint16-le"
  /// "train" or "val".
  public var split: String
  /// How many ids the file holds.
  public var tokens: Int
  /// The tokenizer's fingerprint (`Tokenizer.fingerprint`) and its vocabulary size.
  public var tokenizer: String
  public var vocabulary: Int
  /// The characters of text the ids encode (bits per character divides by it).
  public var characters: Int
  /// The corpus the split was cut from, its size in bytes and a hash of its contents.
  public var corpus: String
  public var corpusBytes: Int
  public var corpusHash: String

  enum CodingKeys: String, CodingKey {
    case dtype, split, tokens, tokenizer, vocabulary, characters, corpus
    case corpusBytes = "corpus_bytes"
    case corpusHash = "corpus_hash"
  }

  public init(
    split: String, tokens: Int, tokenizer: String, vocabulary: Int, characters: Int, corpus: String, corpusBytes: Int,
    corpusHash: String
  ) {
    self.split = split
    self.tokens = tokens
    self.tokenizer = tokenizer
    self.vocabulary = vocabulary
    self.characters = characters
    self.corpus = corpus
    self.corpusBytes = corpusBytes
    self.corpusHash = corpusHash
  }

  /// The sidecar of the token file `path`: "train.bin" -> "train.bin.json".
  public static func path(for path: String) -> String { path + ".json" }
}

// MARK: - The token file

/// The ids of one split, memory-mapped from a token file (or, for tests, held in memory).
public final class TokenFile: @unchecked Sendable {
  /// Where the ids came from, for messages.
  public let source: String
  /// How many ids.
  public let count: Int
  /// The ids, little-endian, as the file stores them.
  private let ids: UnsafePointer<UInt16>
  /// The mapping to undo when the file is released (nil for ids held in memory).
  private let mapping: (address: UnsafeMutableRawPointer, length: Int)?

  /// Ids held in memory, each in 0..<65536 (a precondition: this is for tests and freshly encoded text).
  public init(_ values: [Int], source: String = "memory") {
    let buffer = UnsafeMutablePointer<UInt16>.allocate(capacity: max(values.count, 1))
    for (i, value) in values.enumerated() {
      precondition((0...Int(UInt16.max)).contains(value), "TokenFile: id \(value) does not fit uint16")
      buffer[i] = UInt16(value).littleEndian
    }
    ids = UnsafePointer(buffer)
    count = values.count
    mapping = nil
    self.source = source
  }

  /// Maps the token file at `path` and checks it against its sidecar and the tokenizer that will read it: the
  /// sidecar must name this `tokenizer` (a fingerprint) and `split`, the file's size must be two bytes per id and
  /// match the sidecar's count, and every id must be below `vocabulary`. Each problem is a `UserError` naming the
  /// file and what is wrong with it.
  public init(path: String, split: String, tokenizer: String, vocabulary: Int) throws {
    let info = try TokenFile.readInfo(path)
    guard info.split == split else {
      throw UserError("'\(path)' holds the \(info.split) split (its sidecar says so), not the \(split) split")
    }
    guard info.tokenizer == tokenizer, info.vocabulary == vocabulary else {
      throw UserError(
        "'\(path)' was made by tokenizer \(info.tokenizer) (\(info.vocabulary) ids), not by this run's "
          + "\(tokenizer) (\(vocabulary) ids); tokenize the corpus again")
    }
    let descriptor = open(path, O_RDONLY)
    guard descriptor >= 0 else { throw UserError("cannot read '\(path)': \(String(cString: strerror(errno)))") }
    defer { close(descriptor) }
    var status = stat()
    guard fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFREG else {
      throw UserError("cannot read '\(path)': it is not a regular file")
    }
    let bytes = Int(status.st_size)
    guard bytes % 2 == 0 else {
      throw UserError("'\(path)' is \(bytes) bytes, an odd number: a token file holds 2 bytes (uint16) per id")
    }
    guard bytes / 2 == info.tokens else {
      throw UserError("'\(path)' holds \(bytes / 2) ids but its sidecar says \(info.tokens) (truncated or replaced?)")
    }
    source = path
    count = bytes / 2
    if bytes == 0 {
      ids = UnsafePointer(UnsafeMutablePointer<UInt16>.allocate(capacity: 1))
      mapping = nil
      return
    }
    guard let address = mmap(nil, bytes, PROT_READ, MAP_PRIVATE, descriptor, 0), address != MAP_FAILED else {
      throw UserError("cannot map '\(path)': \(String(cString: strerror(errno)))")
    }
    ids = UnsafePointer(address.assumingMemoryBound(to: UInt16.self))
    mapping = (address, bytes)
    // One pass over the ids: a file from another tokenizer with a larger vocabulary, or a damaged one, would
    // otherwise index past the embedding table in the middle of training.
    for i in 0..<count where Int(UInt16(littleEndian: ids[i])) >= vocabulary {
      throw UserError(
        "'\(path)' holds id \(UInt16(littleEndian: ids[i])) at position \(i), outside the tokenizer's "
          + "\(vocabulary) ids")
    }
  }

  deinit {
    if let mapping {
      munmap(mapping.address, mapping.length)
    } else {
      UnsafeMutablePointer(mutating: ids).deallocate()
    }
  }

  /// The id at `index`.
  @inline(__always)
  public subscript(index: Int) -> Int { Int(UInt16(littleEndian: ids[index])) }

  /// `length` ids from `start`, appended to `into`.
  @inline(__always)
  public func append(from start: Int, length: Int, into array: inout [Int]) {
    precondition(start >= 0 && start + length <= count, "TokenFile: window \(start)..<\(start + length) of \(count)")
    for i in start..<(start + length) { array.append(Int(UInt16(littleEndian: ids[i]))) }
  }

  /// The sidecar of the token file at `path`, checked to be one.
  public static func readInfo(_ path: String) throws -> TokenFileInfo {
    let sidecar = TokenFileInfo.path(for: path)
    guard FileManager.default.fileExists(atPath: path) else {
      throw UserError("cannot read '\(path)': No such file or directory")
    }
    let data = try readInputFile(sidecar)
    guard let info = try? JSONDecoder().decode(TokenFileInfo.self, from: data) else {
      throw UserError("'\(sidecar)' is not a token file's sidecar (JSON with split, tokens, tokenizer, ...)")
    }
    guard info.dtype == "uint16-le", info.tokens >= 0, info.vocabulary >= 1, info.vocabulary <= 65_536 else {
      throw UserError("'\(sidecar)': dtype must be uint16-le with a vocabulary of 1 to 65536 ids")
    }
    return info
  }

  /// Writes `values` as a token file at `path` with its sidecar, each atomically (the ids first: a sidecar never
  /// describes a file that is not there).
  public static func write(_ values: [Int], to path: String, info: TokenFileInfo, writer: String? = nil) throws {
    precondition(
      info.tokens == values.count, "TokenFile.write: the sidecar counts \(info.tokens) ids, not \(values.count)")
    var bytes = [UInt8]()
    bytes.reserveCapacity(2 * values.count)
    for value in values {
      precondition((0...Int(UInt16.max)).contains(value), "TokenFile.write: id \(value) does not fit uint16")
      bytes.append(UInt8(value & 0xFF))
      bytes.append(UInt8(value >> 8))
    }
    try writeAtomically(Data(bytes), to: path, as: writer)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    try writeAtomically(try encoder.encode(info), to: TokenFileInfo.path(for: path), as: writer)
  }
}
