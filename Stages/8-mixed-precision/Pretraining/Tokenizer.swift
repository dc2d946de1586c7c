import Foundation
import Support

/// Tokenizers: text to the integers a model reads, and back. A language model never sees characters; it sees ids
/// from a fixed vocabulary, and how text is cut into those ids decides how long a sequence is, what one prediction
/// covers and which texts the model can represent at all.

// MARK: - The protocol

/// What every tokenizer offers (Hugging Face's `encode`/`decode`, tiktoken's too).
public protocol Tokenizer: AnyObject {
  /// "char" or "bpe": the kind, as `--tokenizer` names it.
  var kind: String { get }
  /// How many ids there are: every id is in 0..<vocabularySize.
  var vocabularySize: Int { get }
  /// The special tokens (<|endoftext|>, [MASK], ...) and their ids: never split, never merged, never made from text
  /// that merely looks like them by accident of the vocabulary.
  var specialTokens: [(token: String, id: Int)] { get }
  /// The ids of `text`. A tokenizer that cannot represent some text (a character-level one meeting a character it
  /// has never seen) throws a `UserError` naming the character and its position.
  func encode(_ text: String) throws -> [Int]
  /// The ids of `text` read as plain text: a special token's spelling in it is encoded as the characters or bytes it
  /// is made of (tiktoken's encode_ordinary). Training data is encoded this way, so that a corpus that happens to
  /// contain "[MASK]" or "<|endoftext|>" does not put control tokens where the text has none.
  func encodeOrdinary(_ text: String) throws -> [Int]
  /// The text of `ids` (each in 0..<vocabularySize).
  func decode(_ ids: [Int]) -> String
  /// The tokenizer as a file (JSON): `loadTokenizer` reads it back.
  func fileContents() throws -> Data
}

extension Tokenizer {
  /// A short fingerprint of the whole tokenizer (kind, vocabulary, merges, special tokens): token files record it in
  /// their sidecar, so that ids made by one tokenizer are never read with another.
  public var fingerprint: String {
    let contents = (try? fileContents()) ?? Data()
    return kind + "-" + String(stableHash(String(decoding: contents, as: UTF8.self)), radix: 16)
  }

  /// The id of a special token, if the tokenizer has it.
  public func specialID(_ token: String) -> Int? { specialTokens.first { $0.token == token }?.id }
}

// MARK: - Characters

/// One id per character, as nanoGPT's shakespeare_char: the sorted set of the corpus's characters (65 for Tiny
/// Shakespeare), then any special tokens. The simplest tokenizer there is: no training, nothing to merge, a
/// vocabulary so small that the embedding costs nothing, and sequences as long as the text. Text with a character
/// outside the set cannot be encoded, and says where.
///
/// A character here is a Unicode code point, as Python's `str` counts them (and nanoGPT with it), not what Swift's
/// `Character` calls one (a grapheme cluster): "e" followed by a combining accent is two ids, "\r\n" two, and a
/// corpus cut anywhere between code points still encodes with the tokenizer of the whole.
public final class CharTokenizer: Tokenizer {
  public let kind = "char"
  /// The code points, by id.
  public let characters: [Unicode.Scalar]
  public let specialTokens: [(token: String, id: Int)]
  private let ids: [Unicode.Scalar: Int]

  /// A tokenizer over exactly `characters` (sorted by code point, duplicates removed), with `specials` after them.
  public init(characters: some Sequence<Unicode.Scalar>, specials: [String] = []) {
    let sorted = Set(characters).sorted { $0.value < $1.value }
    self.characters = sorted
    ids = Dictionary(uniqueKeysWithValues: sorted.enumerated().map { ($1, $0) })
    specialTokens = specials.enumerated().map { ($1, sorted.count + $0) }
  }

  /// The tokenizer of a corpus: every code point that occurs in it.
  public convenience init(corpus: String, specials: [String] = []) {
    self.init(characters: Set(corpus.unicodeScalars), specials: specials)
  }

  public var vocabularySize: Int { characters.count + specialTokens.count }

  public func encode(_ text: String) throws -> [Int] { try encode(text, specials: specialTokens) }

  public func encodeOrdinary(_ text: String) throws -> [Int] { try encode(text, specials: []) }

  private func encode(_ text: String, specials: [(token: String, id: Int)]) throws -> [Int] {
    var result: [Int] = []
    result.reserveCapacity(text.utf8.count)
    let scalars = text.unicodeScalars
    var index = scalars.startIndex
    var position = 0
    outer: while index < scalars.endIndex {
      position += 1
      for (token, id) in specials where scalars[index...].starts(with: token.unicodeScalars) {
        result.append(id)
        index = scalars.index(index, offsetBy: token.unicodeScalars.count)
        position += token.unicodeScalars.count - 1  // a position counts characters, as the user does
        continue outer
      }
      let scalar = scalars[index]
      guard let id = ids[scalar] else {
        let place = "character \(position), \(describeCharacter(Character(scalar)))"
        throw UserError("\(place), is not in the tokenizer's \(characters.count) characters")
      }
      result.append(id)
      index = scalars.index(after: index)
    }
    return result
  }

  public func decode(_ ids: [Int]) -> String {
    var text = String.UnicodeScalarView()
    for id in ids {
      precondition((0..<vocabularySize).contains(id), "CharTokenizer.decode: id \(id) of \(vocabularySize)")
      if id < characters.count {
        text.append(characters[id])
      } else {
        text.append(contentsOf: specialTokens[id - characters.count].token.unicodeScalars)
      }
    }
    return String(text)
  }

  /// The file: the code points as numbers (JSON strings would pass through Unicode normalization on the way back,
  /// which turns the Angstrom sign into Å and would merge two ids), and the special tokens.
  public func fileContents() throws -> Data {
    let object: [String: Any] = [
      "type": "char", "code_points": characters.map { Int($0.value) }, "special_tokens": specialTokens.map(\.token),
    ]
    return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
  }

  /// Reads what `fileContents` wrote (`source` names it in messages).
  public static func load(_ object: [String: Any], source: String) throws -> CharTokenizer {
    let points = object["code_points"] as? [Int] ?? []
    let scalars = points.compactMap { UInt32(exactly: $0).flatMap(Unicode.Scalar.init) }
    guard let specials = object["special_tokens"] as? [String], specials.allSatisfy({ !$0.isEmpty }),
      !points.isEmpty, scalars.count == points.count, Set(points).count == points.count
    else {
      throw UserError(
        "'\(source)' is not a character tokenizer: 'code_points' must be distinct Unicode code points, "
          + "'special_tokens' non-empty texts")
    }
    return CharTokenizer(characters: scalars, specials: specials)
  }
}

/// A character as a message can show it on one line: itself in quotes with its code point, "'⑪' (U+246A)";
/// a control character or a space only by its code point.
func describeCharacter(_ character: Character) -> String {
  let codes = character.unicodeScalars.map { scalar in
    let hex = String(scalar.value, radix: 16, uppercase: true)
    return "U+" + String(repeating: "0", count: max(4 - hex.count, 0)) + hex
  }
  let code = codes.joined(separator: " ")
  let visible = character.unicodeScalars.allSatisfy {
    !$0.properties.isWhitespace && $0.value >= 0x20 && $0.value != 0x7F
  }
  return visible ? "'\(character)' (\(code))" : code
}
