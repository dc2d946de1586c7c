/// GPT-2's pre-split: before any merge, text is cut into words, and merges never cross a word's edge. That keeps
/// " the" one token however it is followed, and keeps punctuation from fusing with the letters around it.
///
/// GPT-2 writes the split as a regular expression, tried at each position, first alternative that matches:
///
///     's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
///
/// English contractions (lowercase only), then a run of letters, of numbers or of other symbols, each with at most
/// one space in front, then whitespace. `\s+(?!\S)` is the subtle one: a run of n whitespace characters followed
/// by a word gives n-1 of them, so that the last one, if it is a space, starts the next word (" world"). `\s` is
/// Unicode's White_Space, `\p{L}` and `\p{N}` its letter and number categories.
///
/// A regex engine is the slow part of every BPE tokenizer; this is the same split as a hand-written scanner over
/// the UTF-8 bytes. ASCII, nearly all of English text, is classified by a 128-entry table; a multi-byte scalar is
/// decoded only where it occurs.
enum PreTokenizer {
  /// What the pattern distinguishes about a character.
  enum Kind: UInt8 {
    case letter, number, space, other
  }

  /// The kind of each ASCII byte.
  static let asciiKinds: [Kind] = (0..<128).map { byte in
    switch UInt8(byte) {
    case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"): .letter
    case UInt8(ascii: "0")...UInt8(ascii: "9"): .number
    case 0x09...0x0D, 0x20: .space
    default: .other
    }
  }

  /// The kind of a Unicode scalar outside ASCII, by its White_Space property and general category.
  static func kind(of scalar: Unicode.Scalar) -> Kind {
    let properties = scalar.properties
    if properties.isWhitespace { return .space }
    switch properties.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
    case .decimalNumber, .letterNumber, .otherNumber: return .number
    default: return .other
    }
  }

  /// Calls `body` with the byte range of each word of `bytes` (valid UTF-8), in order; the ranges cover every
  /// byte exactly once.
  @inline(__always)
  static func split(_ bytes: UnsafeBufferPointer<UInt8>, _ body: (Range<Int>) -> Void) {
    guard let base = bytes.baseAddress else { return }
    let end = bytes.count
    let kinds = asciiKinds
    kinds.withUnsafeBufferPointer { table in
      /// The kind and byte length of the character starting at `i`.
      @inline(__always) func character(at i: Int) -> (kind: Kind, length: Int) {
        let lead = base[i]
        if lead < 0x80 { return (table[Int(lead)], 1) }
        return wideCharacter(base, at: i)
      }
      /// Where the run of characters of `kind` starting at `i` ends.
      @inline(__always) func run(of kind: Kind, from i: Int) -> Int {
        var j = i
        while j < end {
          let (next, length) = character(at: j)
          guard next == kind else { break }
          j += length
        }
        return j
      }

      var i = 0
      while i < end {
        let start = i
        let lead = base[i]
        if lead == UInt8(ascii: "'"), let length = contraction(base, at: i, end: end) {
          body(start..<(i + length))
          i += length
          continue
        }
        var (kind, length) = character(at: i)
        if lead == UInt8(ascii: " "), i + 1 < end {  // " ?": a space joins the run that follows it, if any
          let next = character(at: i + 1)
          if next.kind != .space {
            i += 1
            (kind, length) = next
          }
        }
        if kind != .space {
          i = run(of: kind, from: i + length)
          body(start..<i)
          continue
        }
        // Whitespace: the whole run at the end of the text; before a word, all but its last character, which
        // then starts the next word (a space) or stands alone (any other whitespace).
        var last = i
        var j = i + length
        while j < end {
          let (next, nextLength) = character(at: j)
          guard next == .space else { break }
          last = j
          j += nextLength
        }
        i = j == end || last == start ? j : last
        body(start..<i)
      }
    }
  }

  /// The length of the contraction ('s, 't, 're, 've, 'm, 'll, 'd) at the apostrophe at `i`, if there is one.
  @inline(__always)
  static func contraction(_ base: UnsafePointer<UInt8>, at i: Int, end: Int) -> Int? {
    guard i + 1 < end else { return nil }
    switch base[i + 1] {
    case UInt8(ascii: "s"), UInt8(ascii: "t"), UInt8(ascii: "m"), UInt8(ascii: "d"): return 2
    case UInt8(ascii: "r"), UInt8(ascii: "v"):
      return i + 2 < end && base[i + 2] == UInt8(ascii: "e") ? 3 : nil
    case UInt8(ascii: "l"):
      return i + 2 < end && base[i + 2] == UInt8(ascii: "l") ? 3 : nil
    default: return nil
    }
  }

  /// The kind and byte length of the multi-byte scalar starting at `i` (its lead byte is >= 0x80).
  static func wideCharacter(_ base: UnsafePointer<UInt8>, at i: Int) -> (kind: Kind, length: Int) {
    let lead = UInt32(base[i])
    let length = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2
    var value = lead & (0x7F >> UInt32(length))
    for k in 1..<length { value = value << 6 | UInt32(base[i + k] & 0x3F) }
    guard let scalar = Unicode.Scalar(value) else { return (.other, length) }
    return (kind(of: scalar), length)
  }

  /// The words of `text` as strings: for tests and for reading, not for speed.
  static func words(_ text: String) -> [String] {
    let bytes = Array(text.utf8)
    var words: [String] = []
    bytes.withUnsafeBufferPointer { buffer in
      split(buffer) { words.append(String(decoding: buffer[$0], as: UTF8.self)) }
    }
    return words
  }
}
