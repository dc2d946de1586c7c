import Support

/// Masked-LM's corruption, BERT's create_masked_lm_predictions: choose about 15% of the tokens, and of those
/// replace 80% by [MASK], 10% by a random token, and leave 10% as they are. The model must predict the original
/// token at every chosen position. Why not [MASK] all of them: [MASK] never occurs when the model is used on real
/// text, so a model that only ever predicted at [MASK] would have no reason to build a good representation of the
/// other tokens; the random and the kept 10% make every position a possible question.

// MARK: - The rule

/// How a sequence is masked.
public struct MaskingRule: Sendable {
  /// The share of candidate tokens chosen (BERT's masked_lm_prob).
  public var rate: Double
  /// At most this many chosen per sequence (BERT's max_predictions_per_seq: 20 at length 128).
  public var maxPredictions: Int
  /// Choose whole words: all pieces of a word together, or none of them.
  public var wholeWord: Bool
  /// The [MASK] id.
  public let maskID: Int
  /// The ids never chosen ([CLS], [SEP], [PAD] and every other special token).
  public let specials: Set<Int>
  /// The ids a random replacement is drawn from: every id but the special tokens.
  public let replacements: [Int]
  /// For each id, the class of its first and last character (0 space or none, 1 letter, 2 digit, 3 other): a
  /// token continues the word of the token before it when the last character of that one and its first character
  /// are of the same class, and not space (GPT-2's pre-split makes words out of runs of one class, so a BPE token
  /// never spans two words; for characters, a word is a run of letters).
  let edges: [(first: UInt8, last: UInt8)]

  /// The rule for `tokenizer`, which must have a [MASK] token (a `UserError` otherwise).
  public init(tokenizer: any Tokenizer, rate: Double = 0.15, maxPredictions: Int = 20, wholeWord: Bool = false) throws {
    guard let mask = tokenizer.specialID("[MASK]") else {
      throw UserError("the tokenizer has no [MASK] token, which masked-LM training needs")
    }
    let specials = Set(tokenizer.specialTokens.map(\.id))
    maskID = mask
    self.specials = specials
    replacements = (0..<tokenizer.vocabularySize).filter { !specials.contains($0) }
    self.rate = rate
    self.maxPredictions = maxPredictions
    self.wholeWord = wholeWord
    func kind(_ c: Unicode.Scalar?) -> UInt8 {
      guard let c, !c.properties.isWhitespace else { return 0 }
      if c.properties.isAlphabetic { return 1 }
      return c.properties.numericType != nil ? 2 : 3
    }
    edges = (0..<tokenizer.vocabularySize).map { id in
      if specials.contains(id) { return (0, 0) }
      let text = tokenizer.decode([id]).unicodeScalars
      return (kind(text.first), kind(text.last))
    }
  }

  /// Whether `id` continues the word that the token `previous` is part of.
  func continuesWord(_ previous: Int, _ id: Int) -> Bool {
    let first = edges[id].first
    return first != 0 && first == edges[previous].last
  }

  /// Masks `tokens` in place and returns the chosen positions with their original ids, by position. The number
  /// chosen is rate x the candidates (every non-special token), rounded, at least 1 and at most maxPredictions;
  /// the candidates (or whole words of them) are taken in a random order until that number is reached, skipping a
  /// word that would go past it, as BERT does. Then each is replaced, in the order taken.
  public func apply(to tokens: inout [Int], rng: inout SeededRNG) -> [(position: Int, label: Int)] {
    var groups: [[Int]] = []
    for (position, id) in tokens.enumerated() where !specials.contains(id) {
      if wholeWord, let last = groups.last?.last, last == position - 1, continuesWord(tokens[last], id) {
        groups[groups.count - 1].append(position)
      } else {
        groups.append([position])
      }
    }
    let candidates = groups.reduce(0) { $0 + $1.count }
    guard candidates > 0 else { return [] }
    let wanted = min(maxPredictions, max(1, Int((Double(candidates) * rate).rounded())))
    for i in stride(from: groups.count - 1, to: 0, by: -1) { groups.swapAt(i, rng.index(below: i + 1)) }
    var chosen: [(position: Int, label: Int)] = []
    var taken = groups.filter { group in
      guard chosen.count < wanted && chosen.count + group.count <= wanted else { return false }
      chosen += group.map { ($0, tokens[$0]) }
      return true
    }
    // Every word longer than the number wanted (whole words, short inputs): the first word, cut to that number,
    // so that no input goes without a prediction (BERT would leave it with none, and its loss with nothing to mean).
    if chosen.isEmpty {
      taken = [Array(groups[0].prefix(wanted))]
      chosen = taken[0].map { ($0, tokens[$0]) }
    }
    for group in taken {
      for position in group {
        if rng.unit() < 0.8 {
          tokens[position] = maskID
        } else if rng.unit() >= 0.5 {  // else: kept as it is
          tokens[position] = replacements[rng.index(below: replacements.count)]
        }
      }
    }
    return chosen.sorted { $0.position < $1.position }
  }
}
