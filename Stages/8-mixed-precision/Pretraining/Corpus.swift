import Foundation
import Support

/// From a text file to token files: read the corpus (any UTF-8 text), cut it 90/10 into train and validation by
/// position as nanoGPT's prepare.py does (the last tenth is held out, so the validation text is unseen text from
/// the same source, not a random sample of lines the model has half-read), build the tokenizer, encode each part
/// once and write train.bin and val.bin with their sidecars and the tokenizer's file into one folder.

/// Which tokenizer `--tokenizer` asks for.
public enum TokenizerKind: String, CaseIterable, Sendable {
  /// One id per character of the corpus (nanoGPT's shakespeare_char).
  case char
  /// Byte-level BPE trained on the training split (GPT-2's scheme), `--vocab` ids.
  case bpe
}

/// A corpus's text, checked: non-empty UTF-8.
public struct Corpus {
  public let path: String
  public let text: String
  public let bytes: Int
  /// A hash of the contents: a token file records it, so that one made from another text is never reused.
  public let hash: String
  /// The first 90% of the characters (Unicode scalars, as Python counts them) and the rest, cut once.
  public let split: (train: String, val: String)

  public init(path: String) throws {
    let data = try readInputFile(path)
    markAsInput(path)
    guard !data.isEmpty else { throw UserError("corpus '\(path)' is empty: there is no text to learn from") }
    if let offset = firstInvalidUTF8(data) {
      throw UserError("corpus '\(path)' is not UTF-8 text: byte \(offset) does not start a valid character")
    }
    text = String(decoding: data, as: UTF8.self)
    let scalars = text.unicodeScalars
    let cut = scalars.index(scalars.startIndex, offsetBy: Int(Double(scalars.count) * 0.9))
    split = (String(scalars[..<cut]), String(scalars[cut...]))
    bytes = data.count
    hash = String(stableHash(text), radix: 16)
    self.path = path
  }

}

extension Corpus {
  /// The text a tokenizer learns from: the training split, which must not be empty.
  public func tokenizerTrainingText() throws -> String {
    let text = split.train
    guard !text.isEmpty else {
      throw UserError(
        "corpus '\(path)' is too short to train a tokenizer on: its training split (the first 90% of its "
          + "\(self.text.unicodeScalars.count) characters) is empty")
    }
    return text
  }
}

/// The offset of the first byte that is not part of a valid UTF-8 sequence, or nil for valid text.
func firstInvalidUTF8(_ data: Data) -> Int? {
  data.withUnsafeBytes { (bytes: UnsafeRawBufferPointer) -> Int? in
    var i = 0
    let n = bytes.count
    while i < n {
      let b = bytes[i]
      if b < 0x80 {
        i += 1
        continue
      }
      let length: Int
      var low: UInt8 = 0x80
      var high: UInt8 = 0xBF
      switch b {
      case 0xC2...0xDF: length = 2
      case 0xE0: (length, low) = (3, 0xA0)
      case 0xE1...0xEC, 0xEE...0xEF: length = 3
      case 0xED: (length, high) = (3, 0x9F)
      case 0xF0: (length, low) = (4, 0x90)
      case 0xF1...0xF3: length = 4
      case 0xF4: (length, high) = (4, 0x8F)
      default: return i
      }
      guard i + length <= n, (low...high).contains(bytes[i + 1]) else { return i }
      for k in 2..<max(length, 2) where !(0x80...0xBF).contains(bytes[i + k]) { return i }
      i += length
    }
    return nil
  }
}

/// Reads a tokenizer file: this project's character tokenizer, or a Hugging Face tokenizer.json of a byte-level BPE.
public func loadTokenizer(_ path: String) throws -> any Tokenizer {
  try parseTokenizer(try readInputFile(path), source: path)
}

/// A tokenizer from the contents of its file (`source` names it in messages).
public func parseTokenizer(_ data: Data, source path: String) throws -> any Tokenizer {
  guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
    throw UserError("'\(path)' is not a tokenizer file: it is not a JSON object")
  }
  if object["type"] as? String == "char" { return try CharTokenizer.load(object, source: path) }
  guard object["model"] != nil else {
    throw UserError("'\(path)' is not a tokenizer file: it has neither \"type\": \"char\" nor a \"model\"")
  }
  return try BPETokenizer.load(object, source: path)
}

/// A corpus tokenized into a folder: tokenizer.json, train.bin and val.bin with their sidecars.
public final class TokenizedCorpus {
  public let directory: String
  public let tokenizer: any Tokenizer
  public let train: TokenFile
  public let val: TokenFile
  public let trainInfo: TokenFileInfo
  public let valInfo: TokenFileInfo

  /// Maps the token files of `directory`, checking each against the tokenizer there. `writer` is the option that
  /// writes the folder: it alone may replace the files later (they are the run's input).
  public init(directory: String, writer: String = "--data-dir") throws {
    let tokenizerPath = directory + "/tokenizer.json"
    guard FileManager.default.fileExists(atPath: tokenizerPath) else {
      throw UserError("'\(directory)' holds no tokenizer.json: make one with `stage8 tokenize --out-dir \(directory)`")
    }
    tokenizer = try loadTokenizer(tokenizerPath)
    let fingerprint = tokenizer.fingerprint
    var files: [TokenFile] = []
    var infos: [TokenFileInfo] = []
    for split in ["train", "val"] {
      let path = directory + "/\(split).bin"
      let info = try TokenFile.readInfo(path)
      files.append(
        try TokenFile(path: path, split: split, tokenizer: fingerprint, vocabulary: tokenizer.vocabularySize))
      markAsInput(path, replaceableBy: writer)  // no other output may replace it; a new tokenizing may
      infos.append(info)
    }
    (train, val, trainInfo, valInfo) = (files[0], files[1], infos[0], infos[1])
    self.directory = directory
  }

  /// Tokenizes `corpus` into `directory` unless it already holds this corpus tokenized this way, then maps it.
  /// Unless `replacingOthers` (a folder that is only a cache, made again at will), token files there that cannot be
  /// read (odd size, ids past the vocabulary, another tokenizer's) are an error, and so are readable ones of another
  /// corpus or tokenizer. `writer` names the option that chose the folder, in messages.
  /// `progress` hears how a BPE's training goes. A character tokenizer gets `charSpecials` after the characters
  /// (BERT's inputs need [PAD], [CLS], [SEP] and [MASK]; a BPE has them all). Returns whether the folder's files
  /// were reused.
  public static func prepare(
    _ corpus: Corpus, kind: TokenizerKind, vocabulary: Int, charSpecials: [String] = [], directory: String,
    writer: String = "--data-dir", replacingOthers: Bool = true, progress: ((String) -> Void)? = nil
  ) throws -> (corpus: TokenizedCorpus, reused: Bool) {
    // A folder of token files is a cache of the corpus: reused when it holds this corpus tokenized this way, made
    // again when it holds another. A damaged one is refused, not replaced: it may be a folder the user made.
    if FileManager.default.fileExists(atPath: directory + "/train.bin")
      || FileManager.default.fileExists(atPath: directory + "/tokenizer.json")
    {
      var existing: TokenizedCorpus? = nil
      do {
        existing = try TokenizedCorpus(directory: directory, writer: writer)
      } catch {
        // A cache that cannot be read (damaged, or written by another version) is made again.
        guard replacingOthers else {
          throw UserError("\(error) (in \(writer) '\(directory)': remove it, or choose another, to tokenize afresh)")
        }
      }
      if let existing, existing.matches(corpus, kind, vocabulary, charSpecials) { return (existing, true) }
      if let existing, !replacingOthers {
        throw UserError(
          "\(writer) '\(directory)' holds another corpus or tokenizer's token files (\(existing.tokenizer.kind), "
            + "\(existing.tokenizer.vocabularySize) ids, from '\(existing.trainInfo.corpus)'); they are not replaced: "
            + "choose another \(writer), or remove it")
      }
    }
    try prepareOutputDirectory(directory)
    let (trainText, valText) = corpus.split
    let tokenizer: any Tokenizer
    switch kind {
    case .char:
      // Every character of the corpus, as nanoGPT's vocabulary.
      tokenizer = CharTokenizer(corpus: corpus.text, specials: charSpecials)
    case .bpe:
      tokenizer = try BPETokenizer.train(try corpus.tokenizerTrainingText(), vocabularySize: vocabulary) {
        done, total in
        progress?("training BPE: \(done)/\(total) merges")
      }
    }
    try write(
      tokenizer, corpus: corpus, parts: [("train", trainText), ("val", valText)], directory: directory, writer: writer)
    return (try TokenizedCorpus(directory: directory, writer: writer), false)
  }

  /// Encodes each part with `tokenizer` and writes the folder's files (as `writer`, the option that names the
  /// folder). Every file is checked before any is written: a refusal leaves the folder as it was.
  public static func write(
    _ tokenizer: any Tokenizer, corpus: Corpus, parts: [(split: String, text: String)], directory: String,
    writer: String = "--data-dir"
  ) throws {
    guard tokenizer.vocabularySize <= 65_536 else {
      throw UserError(
        "a vocabulary of \(tokenizer.vocabularySize) ids does not fit a uint16 token file (65536 at most)")
    }
    let files =
      [directory + "/tokenizer.json"]
      + parts.flatMap { [directory + "/\($0.split).bin", TokenFileInfo.path(for: directory + "/\($0.split).bin")] }
    for file in files { try refuseOverwriting(file, as: writer) }
    // Plain text: a "[MASK]" in the corpus is characters, not the control token.
    let encoded = try parts.map { (split: $0.split, text: $0.text, ids: try tokenizer.encodeOrdinary($0.text)) }
    try writeAtomically(try tokenizer.fileContents(), to: directory + "/tokenizer.json", as: writer)
    for (split, text, ids) in encoded {
      let info = TokenFileInfo(
        split: split, tokens: ids.count, tokenizer: tokenizer.fingerprint, vocabulary: tokenizer.vocabularySize,
        characters: text.unicodeScalars.count, corpus: corpus.path, corpusBytes: corpus.bytes, corpusHash: corpus.hash)
      try TokenFile.write(ids, to: directory + "/\(split).bin", info: info, writer: writer)
    }
  }

  /// Whether this folder holds `corpus` tokenized by a tokenizer of `kind` (with `vocabulary` ids, for BPE; with
  /// the special tokens `charSpecials`, for characters).
  func matches(_ corpus: Corpus, _ kind: TokenizerKind, _ vocabulary: Int, _ charSpecials: [String] = []) -> Bool {
    let sameSpecials = kind == .bpe || tokenizer.specialTokens.map(\.token) == charSpecials
    return tokenizer.kind == kind.rawValue && (kind == .char || tokenizer.vocabularySize == vocabulary) && sameSpecials
      && [trainInfo, valInfo].allSatisfy { $0.corpusHash == corpus.hash && $0.corpusBytes == corpus.bytes }
  }

  /// Characters per token of the validation split: bits per character = bits per token / this.
  public var valCharactersPerToken: Double { Double(valInfo.characters) / Double(max(valInfo.tokens, 1)) }
}
