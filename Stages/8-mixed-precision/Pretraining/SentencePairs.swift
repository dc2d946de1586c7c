import Support

/// BERT's inputs: pairs of text segments, [CLS] A [SEP] B [SEP], where B is the text that really follows A half the
/// time and a segment from another document the other half, so that a second objective (next-sentence prediction,
/// NSP) has something to learn about how texts continue. The rules are those of BERT's create_pretraining_data.py,
/// with the exceptions named where they are.

// MARK: - Documents and sentences

/// A token file cut into documents of sentences, each sentence a range of positions in the file. On Tiny
/// Shakespeare a sentence is a line (its newline included) and a document a speech: the speaker's name and the
/// lines that follow, up to a blank line. Lines are what the text is made of (verse is cut into lines, not
/// sentences), and a speech is the longest stretch the text says belongs together.
///
/// A token ends a sentence when its text holds a newline, and a document when it holds two (a BPE token can be
/// "\n\n") or when its sentence is nothing but whitespace (a blank line, which is then dropped). A sentence longer
/// than `maxTokens` is cut into pieces of that length, so that a text without line breaks still makes pairs.
public struct Documents: Sendable {
  /// Each document's sentences, as ranges of token positions.
  public let documents: [[Range<Int>]]

  public init(_ tokens: TokenFile, tokenizer: any Tokenizer, maxTokens: Int) {
    precondition(maxTokens >= 1, "Documents: maxTokens \(maxTokens)")
    // What each id's text holds: newlines, and whether it is whitespace only.
    let texts = (0..<tokenizer.vocabularySize).map { tokenizer.decode([$0]) }
    let newlines = texts.map { $0.unicodeScalars.count { $0 == "\n" } }
    let blank = texts.map { !$0.isEmpty && $0.unicodeScalars.allSatisfy { $0.properties.isWhitespace } }
    var documents: [[Range<Int>]] = []
    var sentences: [Range<Int>] = []
    var start = 0
    var allBlank = true
    func endDocument() {
      if !sentences.isEmpty { documents.append(sentences) }
      sentences = []
    }
    func endSentence(at end: Int) {
      for piece in stride(from: start, to: end, by: maxTokens) { sentences.append(piece..<min(piece + maxTokens, end)) }
      start = end
    }
    for i in 0..<tokens.count {
      let id = tokens[i]
      allBlank = allBlank && blank[id]
      guard newlines[id] > 0 else { continue }
      if allBlank {  // a blank line: the end of a document, and no sentence
        start = i + 1
        endDocument()
      } else {
        endSentence(at: i + 1)
        if newlines[id] > 1 { endDocument() }
      }
      allBlank = true
    }
    if start < tokens.count { endSentence(at: tokens.count) }
    endDocument()
    self.documents = documents
  }

  /// Documents given directly (for tests).
  public init(documents: [[Range<Int>]]) { self.documents = documents }

  public var sentenceCount: Int { documents.reduce(0) { $0 + $1.count } }
}

// MARK: - Pairs

/// One input's text: segment A and, with NSP, segment B, as ranges of token positions, and whether B is the random
/// one (NSP's label 1) or the real continuation (label 0).
public struct SentencePair: Sendable, Equatable {
  public var a: Range<Int>
  public var b: Range<Int>?
  public var isRandomNext: Bool

  public init(a: Range<Int>, b: Range<Int>?, isRandomNext: Bool) {
    self.a = a
    self.b = b
    self.isRandomNext = isRandomNext
  }

  /// Tokens with [CLS] and the [SEP]s.
  public var length: Int { a.count + (b?.count ?? 0) + (b == nil ? 2 : 3) }
}

/// One pass of BERT's create_instances_from_document over every document: each document is cut into chunks of
/// whole sentences about `maxTokens` long (with probability `shortProbability` a document's target is shorter,
/// uniform in 2...maxTokens, so that the model also meets short inputs); a chunk splits at a random sentence
/// boundary into A and the rest; with probability 1/2 B is that rest, otherwise B is drawn from a random place in
/// another document (and the rest of the chunk goes back, to start the next one). A pair longer than `maxTokens`
/// loses tokens one at a time from its longer segment, at the front or the back at random.
///
/// Where this differs from BERT: a chunk of a single sentence makes no pair. BERT forces B to be random for such a
/// chunk, which tilts the mix away from 50/50 (on speeches, whose last line often starts a chunk of its own, by
/// several points); here NSP's labels are a fair coin. Without NSP (`nsp == false`, RoBERTa's inputs) every chunk
/// is one segment, [CLS] A [SEP], of up to `maxTokens`.
public func makePairs(
  _ corpus: Documents, maxTokens: Int, nsp: Bool, shortProbability: Double = 0.1, rng: inout SeededRNG
) -> [SentencePair] {
  let documents = corpus.documents
  precondition(!nsp || documents.count >= 2, "makePairs: NSP needs two documents, got \(documents.count)")
  var pairs: [SentencePair] = []
  for (d, sentences) in documents.enumerated() {
    let target = rng.unit() < shortProbability ? 2 + rng.index(below: max(maxTokens - 1, 1)) : maxTokens
    var chunk: [Range<Int>] = []
    var length = 0
    var i = 0
    while i < sentences.count {
      chunk.append(sentences[i])
      length += sentences[i].count
      if i == sentences.count - 1 || length >= target {
        if !nsp {
          var a = chunk[0].lowerBound..<chunk[chunk.count - 1].upperBound
          var none: Range<Int> = 0..<0
          truncatePair(&a, &none, maxTokens: maxTokens, rng: &rng)
          pairs.append(SentencePair(a: a, b: nil, isRandomNext: false))
        } else if chunk.count >= 2 {
          let aEnd = 1 + rng.index(below: chunk.count - 1)
          var a = chunk[0].lowerBound..<chunk[aEnd - 1].upperBound
          var b: Range<Int>
          let isRandom = rng.unit() < 0.5
          if isRandom {
            let targetB = max(target - a.count, 1)
            var other = rng.index(below: documents.count - 1)
            if other >= d { other += 1 }
            let source = documents[other]
            let first = rng.index(below: source.count)
            var last = first
            var taken = source[first].count
            while taken < targetB && last + 1 < source.count {
              last += 1
              taken += source[last].count
            }
            b = source[first].lowerBound..<source[last].upperBound
            i -= chunk.count - aEnd  // the unused sentences start the next chunk
          } else {
            b = chunk[aEnd].lowerBound..<chunk[chunk.count - 1].upperBound
          }
          truncatePair(&a, &b, maxTokens: maxTokens, rng: &rng)
          pairs.append(SentencePair(a: a, b: b, isRandomNext: isRandom))
        }
        chunk = []
        length = 0
      }
      i += 1
    }
  }
  return pairs
}

/// BERT's truncate_seq_pair: while A and B together exceed `maxTokens`, drop one token of the longer (B on a tie),
/// from its front or its back at random (so that the model does not learn that the text always ends at a segment's
/// end).
func truncatePair(_ a: inout Range<Int>, _ b: inout Range<Int>, maxTokens: Int, rng: inout SeededRNG) {
  while a.count + b.count > maxTokens {
    let front = rng.unit() < 0.5
    if a.count > b.count {
      a = front ? (a.lowerBound + 1)..<a.upperBound : a.lowerBound..<(a.upperBound - 1)
    } else {
      b = front ? (b.lowerBound + 1)..<b.upperBound : b.lowerBound..<(b.upperBound - 1)
    }
  }
}
