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
public final class CharTokenizer: Tokenizer {
  public let kind = "char"
  /// The characters, by id.
  public let characters: [Character]
  public let specialTokens: [(token: String, id: Int)]
  private let ids: [Character: Int]

  /// A tokenizer over exactly `characters` (sorted by their Unicode scalars, duplicates removed), with
  /// `specials` after them.
  public init(characters: some Sequence<Character>, specials: [String] = []) {
    let sorted = Set(characters).sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
    self.characters = sorted
    ids = Dictionary(uniqueKeysWithValues: sorted.enumerated().map { ($1, $0) })
    specialTokens = specials.enumerated().map { ($1, sorted.count + $0) }
  }

  /// The tokenizer of a corpus: every character that occurs in it.
  public convenience init(corpus: String, specials: [String] = []) {
    self.init(characters: Set(corpus), specials: specials)
  }

  public var vocabularySize: Int { characters.count + specialTokens.count }

  public func encode(_ text: String) throws -> [Int] {
    var result: [Int] = []
    result.reserveCapacity(text.utf8.count)
    var position = 0
    var rest = Substring(text)
    outer: while let character = rest.first {
      position += 1
      for (token, id) in specialTokens where rest.hasPrefix(token) {
        result.append(id)
        rest = rest.dropFirst(token.count)
        continue outer
      }
      guard let id = ids[character] else {
        let place = "character \(position), \(describeCharacter(character))"
        throw UserError("\(place), is not in the tokenizer's \(characters.count) characters")
      }
      result.append(id)
      rest = rest.dropFirst()
    }
    return result
  }

  public func decode(_ ids: [Int]) -> String {
    var text = ""
    for id in ids {
      precondition((0..<vocabularySize).contains(id), "CharTokenizer.decode: id \(id) of \(vocabularySize)")
      text += id < characters.count ? String(characters[id]) : specialTokens[id - characters.count].token
    }
    return text
  }

  public func fileContents() throws -> Data {
    let object: [String: Any] = [
      "type": "char", "characters": characters.map(String.init), "special_tokens": specialTokens.map(\.token),
    ]
    return try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])
  }

  /// Reads what `fileContents` wrote (`source` names it in messages).
  public static func load(_ object: [String: Any], source: String) throws -> CharTokenizer {
    guard let characters = object["characters"] as? [String], let specials = object["special_tokens"] as? [String],
      characters.allSatisfy({ $0.count == 1 }), Set(characters).count == characters.count
    else {
      throw UserError("'\(source)' is not a character tokenizer: 'characters' must be distinct single characters")
    }
    return CharTokenizer(characters: characters.map { Character($0) }, specials: specials)
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
