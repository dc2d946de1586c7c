import Foundation
import Support

/// Byte-level BPE, GPT-2's tokenizer: start from the 256 bytes, so that every text can be encoded, and learn
/// merges of the most frequent adjacent pair of tokens until the vocabulary is full. Frequent words become one
/// token, rare ones stay split into pieces, and nothing is ever unknown.
///
/// The layout is Hugging Face `tokenizers`' (its `BpeTrainer` with the `ByteLevel` pre-tokenizer), so that the
/// same corpus gives exactly the same vocabulary and merges here and there: the special tokens first, then the 256
/// bytes in the order of GPT-2's printable stand-ins for them (`ByteLevel`), then one id per merge. Ties between
/// equally frequent pairs go to the smaller pair of ids, as in Hugging Face.
///
/// Safe to share between threads: everything is immutable but the cache of encoded words, which a lock guards.
public final class BPETokenizer: Tokenizer, @unchecked Sendable {
  public let kind = "bpe"
  public let specialTokens: [(token: String, id: Int)]
  /// The bytes of each id (a special token's are its UTF-8 text).
  public let tokenBytes: [[UInt8]]
  /// The merges by rank: `left` followed by `right` becomes `result`. Encoding applies the lowest rank first.
  public let merges: [(left: Int, right: Int, result: Int)]
  /// Whether a word that is itself in the vocabulary is taken whole, before any merge (a Hugging Face option;
  /// false for every tokenizer trained here).
  var ignoreMerges: Bool { wholeWords != nil }
  /// With `ignoreMerges`, the id of each non-special token by its bytes.
  private let wholeWords: [[UInt8]: Int]?

  /// The id of each byte.
  let byteIDs: [Int32]
  /// The rank of each mergeable pair, keyed by `pairKey`.
  let ranks: PairTable
  /// The result of the merge of each rank.
  let results: [Int32]
  /// The ids of words already encoded: most text repeats a few thousand words, each split once.
  private let cache = EncodingCache()
  /// Guards `cache`: an `encode` that finds it busy (another thread encoding) uses a cache of its own.
  private let cacheLock = NSLock()
  /// Special tokens by their first byte, longest first, to find them in text at a glance.
  private let specialsByFirstByte: [[(bytes: [UInt8], id: Int)]]

  /// Hugging Face's default special tokens for a GPT-style model.
  public static let defaultSpecials = ["<|endoftext|>", "[PAD]", "[CLS]", "[SEP]", "[MASK]"]

  /// A tokenizer of `tokenBytes` (by id) and `merges` (by rank). A pair merged twice keeps its later rank, as
  /// Hugging Face does. `byteIDs` default to the first id of each single byte.
  init(
    tokenBytes: [[UInt8]], specials: [(token: String, id: Int)], merges: [(left: Int, right: Int, result: Int)],
    ignoreMerges: Bool = false
  ) {
    self.tokenBytes = tokenBytes
    self.specialTokens = specials
    let specialIDs = Set(specials.map(\.id))
    wholeWords =
      ignoreMerges
      ? Dictionary(
        tokenBytes.indices.filter { !specialIDs.contains($0) }.map { (tokenBytes[$0], $0) },
        uniquingKeysWith: min) : nil
    var byteIDs = [Int32](repeating: -1, count: 256)
    for (id, bytes) in tokenBytes.enumerated().reversed() where bytes.count == 1 && !specialIDs.contains(id) {
      byteIDs[Int(bytes[0])] = Int32(id)
    }
    precondition(!byteIDs.contains(-1), "BPETokenizer: a byte has no token")
    self.byteIDs = byteIDs
    var lastRank: [UInt64: Int] = [:]
    for (rank, merge) in merges.enumerated() { lastRank[pairKey(merge.left, merge.right)] = rank }
    let kept = merges.enumerated().filter { lastRank[pairKey($1.left, $1.right)] == $0 }.map(\.element)
    self.merges = kept
    let ranks = PairTable(capacity: kept.count)
    for (rank, merge) in kept.enumerated() { ranks.insert(pairKey(merge.left, merge.right), rank: Int32(rank)) }
    self.ranks = ranks
    results = kept.map { Int32($0.result) }
    var byFirst = [[(bytes: [UInt8], id: Int)]](repeating: [], count: 256)
    for (token, id) in specials.sorted(by: { $0.token.utf8.count > $1.token.utf8.count }) {
      let bytes = Array(token.utf8)
      byFirst[Int(bytes[0])].append((bytes, id))
    }
    specialsByFirstByte = byFirst
  }

  public var vocabularySize: Int { tokenBytes.count }

  /// Forgets every encoded word (for a measurement of encoding from scratch).
  func clearCache() {
    cacheLock.lock()
    defer { cacheLock.unlock() }
    cache.removeAll()
  }

  // MARK: - Training

  /// Learns a tokenizer of `vocabularySize` ids (special tokens included) from `text`. The special tokens are cut
  /// out of the text first, so no merge ever reaches into one. `progress` hears the number of merges done and the
  /// number wanted, about every 1% and at the end (which may come early: when no pair is left to merge).
  public static func train(
    _ text: String, vocabularySize: Int, specials: [String] = BPETokenizer.defaultSpecials,
    progress: ((_ merges: Int, _ total: Int) -> Void)? = nil
  ) throws -> BPETokenizer {
    let minimum = 256 + specials.count
    guard vocabularySize >= minimum else {
      throw UserError(
        "--vocab \(vocabularySize) is too small for a byte-level BPE tokenizer: the minimum is \(minimum) "
          + "(256 bytes and \(specials.count) special tokens)")
    }
    guard !text.isEmpty else { throw UserError("cannot train a BPE tokenizer on an empty text") }
    guard !specials.contains(where: \.isEmpty), Set(specials).count == specials.count else {
      throw UserError("the special tokens must be distinct and not empty: \(specials)")
    }
    var tokens = specials.map { Array($0.utf8) }
    let specialList = specials.enumerated().map { (token: $1, id: $0) }
    for byte in ByteLevel.bytesInIDOrder { tokens.append([byte]) }
    let layout = BPETokenizer(tokenBytes: tokens, specials: specialList, merges: [])

    let words = WordTable()
    var counts: [Int] = []
    layout.withWords(of: text) { base, range in
      let (index, inserted) = words.index(of: base + range.lowerBound, count: range.count)
      if inserted { counts.append(0) }
      counts[index] += 1
    }
    var trainer = MergeTrainer(words: words, counts: counts, byteIDs: layout.byteIDs)
    var keys = Dictionary(uniqueKeysWithValues: tokens.indices.map { (layout.vocabularyKey($0), $0) })
    var merges: [(left: Int, right: Int, result: Int)] = []
    let total = vocabularySize - tokens.count
    var reported = 0
    while tokens.count < vocabularySize, let pair = trainer.nextPair() {
      let (left, right) = (Int(pair >> 32), Int(pair & 0xFFFF_FFFF))
      let key = layout.vocabularyKey(left, bytes: tokens[left]) + layout.vocabularyKey(right, bytes: tokens[right])
      let result = keys[key] ?? tokens.count
      if result == tokens.count {
        tokens.append(tokens[left] + tokens[right])
        keys[key] = result
      }
      merges.append((left, right, result))
      trainer.merge(pair, into: Int32(result))
      let done = tokens.count - minimum
      if let progress, done * 100 / max(total, 1) > reported * 100 / max(total, 1) {
        progress(done, total)
        reported = done
      }
    }
    progress?(tokens.count - minimum, total)
    return BPETokenizer(tokenBytes: tokens, specials: specialList, merges: merges)
  }

  // MARK: - Encoding

  public func encode(_ text: String) -> [Int] { encode(text, specials: true) }

  public func encodeOrdinary(_ text: String) -> [Int] { encode(text, specials: false) }

  private func encode(_ text: String, specials: Bool) -> [Int] {
    var ids: [Int] = []
    ids.reserveCapacity(text.utf8.count / 3)
    let cache = cacheLock.try() ? self.cache : EncodingCache()
    defer { if cache === self.cache { cacheLock.unlock() } }
    withWords(of: text, specials: specials, special: { ids.append($0) }) { base, range in
      let word = base + range.lowerBound
      let (index, inserted) = cache.words.index(of: word, count: range.count)
      if inserted { cache.store(mergeWord(word, count: range.count)) }
      cache.append(index, to: &ids)
    }
    if cache.words.count > 1 << 20 { cache.removeAll() }  // a bound on the memory of a long-lived tokenizer
    return ids
  }

  /// Calls `body` with each pre-split word of `text` (a byte range of the buffer at `base`), and `special` with
  /// the id of each special token found in it, in order (unless `specials` is false: then their spellings are text).
  func withWords(
    of text: String, specials: Bool = true, special: (Int) -> Void = { _ in },
    _ body: (_ base: UnsafePointer<UInt8>, _ range: Range<Int>) -> Void
  ) {
    var text = text
    text.makeContiguousUTF8()
    text.utf8.withContiguousStorageIfAvailable { buffer in
      guard let base = buffer.baseAddress else { return }
      var start = 0
      var i = 0
      while i < buffer.count {
        let candidates = specials ? specialsByFirstByte[Int(buffer[i])] : []
        guard !candidates.isEmpty,
          let match = candidates.first(where: {
            i + $0.bytes.count <= buffer.count && buffer[i...].starts(with: $0.bytes)
          })
        else {
          i += 1
          continue
        }
        PreTokenizer.split(UnsafeBufferPointer(rebasing: buffer[start..<i])) { body(base, $0.shifted(by: start)) }
        special(match.id)
        i += match.bytes.count
        start = i
      }
      PreTokenizer.split(UnsafeBufferPointer(rebasing: buffer[start...])) { body(base, $0.shifted(by: start)) }
    }
  }

  /// The ids of one word: its bytes, merged by rank, lowest first and leftmost first among equals (Hugging Face's
  /// order, which is GPT-2's). The candidate merges wait in a heap, so a long word costs n log n, not n^2.
  func mergeWord(_ word: UnsafePointer<UInt8>, count: Int) -> [Int32] {
    if count == 1 { return [byteIDs[Int(word[0])]] }
    if let wholeWords, let id = wholeWords[Array(UnsafeBufferPointer(start: word, count: count))] {
      return [Int32(id)]
    }
    var symbols = (0..<count).map { byteIDs[Int(word[$0])] }
    var next = Array(1...count)
    var previous = Array(-1..<(count - 1))
    var alive = [Bool](repeating: true, count: count)
    var heap = PriorityQueue<UInt64>(isBefore: <)  // rank << 32 | position
    func consider(_ position: Int) {
      if let rank = ranks.rank(pairKey(symbols[position], symbols[next[position]])) {
        heap.push(UInt64(rank) << 32 | UInt64(position))
      }
    }
    for position in 0..<(count - 1) { consider(position) }
    while let top = heap.pop() {
      let (rank, position) = (Int(top >> 32), Int(top & 0xFFFF_FFFF))
      let right = next[position]
      guard alive[position], right < count,
        let current = ranks.rank(pairKey(symbols[position], symbols[right])), results[Int(current)] == results[rank]
      else { continue }  // an entry made stale by an earlier merge
      symbols[position] = results[rank]
      alive[right] = false
      next[position] = next[right]
      if next[right] < count { previous[next[right]] = position }
      if previous[position] >= 0 { consider(previous[position]) }
      if next[position] < count { consider(position) }
    }
    return symbols.indices.filter { alive[$0] }.map { symbols[$0] }
  }

  // MARK: - Decoding

  public func decode(_ ids: [Int]) -> String {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(ids.count * 4)
    for id in ids {
      precondition(
        (0..<vocabularySize).contains(id), "BPETokenizer.decode: id \(id) is not in the vocabulary of \(vocabularySize)"
      )
      bytes += tokenBytes[id]
    }
    return String(decoding: bytes, as: UTF8.self)  // an invalid sequence (half a character) becomes U+FFFD
  }
}

// MARK: - Pairs

/// A pair of ids as one 64-bit key, first id in the high half: keys order pairs as (first, second) do.
@inline(__always)
func pairKey(_ left: some BinaryInteger, _ right: some BinaryInteger) -> UInt64 {
  UInt64(left) << 32 | UInt64(right)
}

/// Merge ranks by pair: open addressing over 64-bit keys, cheaper to probe than a Dictionary's hashing.
final class PairTable {
  private var keys: [UInt64]
  private var values: [Int32]
  private let mask: Int

  init(capacity: Int) {
    var size = 16
    while size < capacity * 2 { size *= 2 }
    keys = [UInt64](repeating: .max, count: size)
    values = [Int32](repeating: 0, count: size)
    mask = size - 1
  }

  @inline(__always) private func slot(_ key: UInt64) -> Int {
    Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
  }

  func insert(_ key: UInt64, rank: Int32) {
    var i = slot(key)
    while keys[i] != .max && keys[i] != key { i = (i + 1) & mask }
    keys[i] = key
    values[i] = rank
  }

  @inline(__always) func rank(_ key: UInt64) -> Int? {
    var i = slot(key)
    while true {
      let stored = keys[i]
      if stored == key { return Int(values[i]) }
      if stored == .max { return nil }
      i = (i + 1) & mask
    }
  }
}

/// A binary heap: `isBefore(a, b)` when a comes out first.
struct PriorityQueue<Element> {
  private var items: [Element] = []
  let isBefore: (Element, Element) -> Bool

  init(isBefore: @escaping (Element, Element) -> Bool) { self.isBefore = isBefore }

  var isEmpty: Bool { items.isEmpty }

  mutating func push(_ item: Element) {
    items.append(item)
    var child = items.count - 1
    while child > 0 {
      let parent = (child - 1) / 2
      guard isBefore(items[child], items[parent]) else { break }
      items.swapAt(child, parent)
      child = parent
    }
  }

  mutating func pop() -> Element? {
    guard let last = items.popLast() else { return nil }
    guard !items.isEmpty else { return last }
    let top = items[0]
    items[0] = last
    var parent = 0
    while true {
      let left = 2 * parent + 1
      guard left < items.count else { break }
      var child = left
      if left + 1 < items.count && isBefore(items[left + 1], items[left]) { child = left + 1 }
      guard isBefore(items[child], items[parent]) else { break }
      items.swapAt(child, parent)
      parent = child
    }
    return top
  }
}

extension Range where Bound == Int {
  fileprivate func shifted(by offset: Int) -> Range<Int> { (lowerBound + offset)..<(upperBound + offset) }
}

// MARK: - Words

/// Byte strings numbered 0, 1, 2... in the order they were first seen: the trainer's word counts and the
/// encoder's cache. Open addressing over one arena of bytes: no array, no String, no allocation per word.
final class WordTable {
  private(set) var count = 0
  private var slots: [Int32]  // index + 1 of the word in each slot; 0 is empty
  private var hashes: [UInt64] = []
  private var starts: [Int] = [0]  // the word of index i is arena[starts[i]..<starts[i + 1]]
  private var arena: [UInt8] = []

  init() { slots = [Int32](repeating: 0, count: 1 << 12) }

  /// A hash of the bytes, eight at a time.
  @inline(__always) static func hash(_ bytes: UnsafePointer<UInt8>, count: Int) -> UInt64 {
    var hash = UInt64(truncatingIfNeeded: count) &* 0x9E37_79B9_7F4A_7C15
    var i = 0
    while i + 8 <= count {
      hash = (hash ^ UnsafeRawPointer(bytes + i).loadUnaligned(as: UInt64.self)) &* 0xBF58_476D_1CE4_E5B9
      hash ^= hash >> 31
      i += 8
    }
    var tail: UInt64 = 0
    while i < count {
      tail = tail << 8 | UInt64(bytes[i])
      i += 1
    }
    hash = (hash ^ tail) &* 0x94D0_49BB_1331_11EB
    return hash ^ hash >> 29
  }

  /// The index of the word, and whether it was new (and is now added).
  @inline(__always)
  func index(of word: UnsafePointer<UInt8>, count length: Int) -> (index: Int, inserted: Bool) {
    let hash = Self.hash(word, count: length)
    let mask = slots.count - 1
    var slot = Int(truncatingIfNeeded: hash) & mask
    while true {
      let entry = Int(slots[slot])
      if entry == 0 { break }
      let index = entry - 1
      if hashes[index] == hash && starts[index + 1] - starts[index] == length {
        let same = arena.withUnsafeBufferPointer { memcmp($0.baseAddress! + starts[index], word, length) == 0 }
        if same { return (index, false) }
      }
      slot = (slot + 1) & mask
    }
    slots[slot] = Int32(count + 1)
    hashes.append(hash)
    arena.append(contentsOf: UnsafeBufferPointer(start: word, count: length))
    starts.append(arena.count)
    count += 1
    if count * 2 > slots.count { grow() }
    return (count - 1, true)
  }

  /// The bytes of the word of `index`.
  func word(_ index: Int) -> ArraySlice<UInt8> { arena[starts[index]..<starts[index + 1]] }

  private func grow() {
    slots = [Int32](repeating: 0, count: slots.count * 2)
    let mask = slots.count - 1
    for index in 0..<count {
      var slot = Int(truncatingIfNeeded: hashes[index]) & mask
      while slots[slot] != 0 { slot = (slot + 1) & mask }
      slots[slot] = Int32(index + 1)
    }
  }
}

/// The encoder's memory: each word seen, and its ids.
final class EncodingCache {
  private(set) var words = WordTable()
  private var ids: [Int32] = []
  private var starts: [Int] = [0]  // the ids of word i are ids[starts[i]..<starts[i + 1]]

  /// Records the ids of the word just added to `words`.
  func store(_ wordIDs: [Int32]) {
    ids += wordIDs
    starts.append(ids.count)
  }

  @inline(__always) func append(_ index: Int, to result: inout [Int]) {
    for k in starts[index]..<starts[index + 1] { result.append(Int(ids[k])) }
  }

  func removeAll() {
    words = WordTable()
    ids = []
    starts = [0]
  }
}

// MARK: - Learning merges

/// The state of training: every distinct word as its current tokens, how often each adjacent pair occurs, and
/// which words to visit when a pair is merged. A merge only touches the words that contain its pair, and only
/// the counts of the pairs beside each occurrence change; the corpus is never counted again.
///
/// The most frequent pair comes from a max-heap whose counts may be stale (merges lower the counts of pairs
/// already in it): a popped pair whose count has changed goes back in with its current count. Each heap entry carries the words where its pair was made, as Hugging Face's trainer does, so that
/// even its rare corner cases (two merges giving the same token) come out the same.
struct MergeTrainer {
  private var symbols: [Int32] = []  // every word's tokens, one after the other
  private var starts: [Int] = []
  private var lengths: [Int] = []
  private let counts: [Int]
  private var pairCounts: [UInt64: Int] = [:]
  private var wordLists: [[Int32]] = []  // the words of each heap entry
  private var heap = PriorityQueue<(count: Int, pair: UInt64, list: Int)> {
    $0.count != $1.count ? $0.count > $1.count : $0.pair < $1.pair
  }
  /// The pair `nextPair` returned, and its entry's words.
  private var current: (pair: UInt64, list: Int)? = nil

  init(words: WordTable, counts: [Int], byteIDs: [Int32]) {
    self.counts = counts
    var pairWords: [UInt64: Int] = [:]  // pair -> its list in wordLists
    var order: [UInt64] = []
    for w in 0..<words.count {
      starts.append(symbols.count)
      let word = words.word(w)
      lengths.append(word.count)
      for byte in word { symbols.append(byteIDs[Int(byte)]) }
      for i in starts[w]..<(symbols.count - 1) {
        let pair = pairKey(symbols[i], symbols[i + 1])
        pairCounts[pair, default: 0] += counts[w]
        if let list = pairWords[pair] {
          if wordLists[list].last != Int32(w) { wordLists[list].append(Int32(w)) }
        } else {
          pairWords[pair] = wordLists.count
          wordLists.append([Int32(w)])
          order.append(pair)
        }
      }
    }
    for pair in order { heap.push((pairCounts[pair]!, pair, pairWords[pair]!)) }
  }

  /// The pair to merge next: the most frequent (the smallest pair among equals), or nil when none is left.
  mutating func nextPair() -> UInt64? {
    while let top = heap.pop() {
      let count = pairCounts[top.pair] ?? 0
      if count != top.count {
        heap.push((count, top.pair, top.list))
        continue
      }
      guard count >= 1 else { return nil }
      current = (top.pair, top.list)
      return top.pair
    }
    return nil
  }

  /// Replaces `pair` (just returned by `nextPair`) by `result` in its words, and updates the counts of the pairs
  /// around each occurrence.
  mutating func merge(_ pair: UInt64, into result: Int32) {
    guard let (_, list) = current, current?.pair == pair else { preconditionFailure("merge: not the next pair") }
    current = nil
    let (left, right) = (Int32(pair >> 32), Int32(pair & 0xFFFF_FFFF))
    var newLists: [UInt64: Int] = [:]
    var newPairs: [UInt64] = []
    for w in wordLists[list] {
      let w = Int(w)
      let start = starts[w]
      let end = start + lengths[w]
      let count = counts[w]
      func change(_ a: Int32, _ b: Int32, _ delta: Int) {
        let changed = pairKey(a, b)
        pairCounts[changed, default: 0] += delta * count
        guard delta > 0 else { return }
        if let list = newLists[changed] {
          if wordLists[list].last != Int32(w) { wordLists[list].append(Int32(w)) }
        } else {
          newLists[changed] = wordLists.count
          wordLists.append([Int32(w)])
          newPairs.append(changed)
        }
      }
      var read = start
      var write = start
      while read < end {
        if read + 1 < end && symbols[read] == left && symbols[read + 1] == right {
          if write > start {
            change(symbols[write - 1], left, -1)
            change(symbols[write - 1], result, 1)
          }
          if read + 2 < end {
            change(right, symbols[read + 2], -1)
            change(result, symbols[read + 2], 1)
          }
          symbols[write] = result
          read += 2
        } else {
          symbols[write] = symbols[read]
          read += 1
        }
        write += 1
      }
      lengths[w] = write - start
    }
    wordLists[list] = []
    for pair in newPairs {
      let count = pairCounts[pair]!
      if count > 0 { heap.push((count, pair, newLists[pair]!)) }
    }
  }
}
