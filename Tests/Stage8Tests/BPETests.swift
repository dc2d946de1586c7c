import Foundation
import Support
import Testing

@testable import Stage8

/// The package's root: this file is Tests/Stage8Tests/BPETests.swift.
private let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
  .deletingLastPathComponent()
/// Hugging Face's tokenizer for Tiny Shakespeare (vocabulary 512) and its encodings, written by tokenizers 0.23.3.
private let fixtures = packageRoot.appendingPathComponent("Tests/Fixtures/hf/tokenizer")

private func shakespeare() throws -> String {
  let url = packageRoot.appendingPathComponent("Shared/Datasets/Data/tinyshakespeare.txt")
  return try String(contentsOf: url, encoding: .utf8)
}

private func fixture(_ name: String) throws -> Data {
  try Data(contentsOf: fixtures.appendingPathComponent(name))
}

private func loadFixture(_ name: String) throws -> BPETokenizer {
  let object = try JSONSerialization.jsonObject(with: fixture(name)) as! [String: Any]
  return try BPETokenizer.load(object, source: name)
}

/// Hugging Face's texts and their ids.
private func expectedEncodings() throws -> [(text: String, ids: [Int])] {
  let object = try JSONSerialization.jsonObject(with: fixture("expected.json")) as! [String: Any]
  return (object["encodings"] as! [[String: Any]]).map { ($0["text"] as! String, $0["ids"] as! [Int]) }
}

/// One tokenizer of Tiny Shakespeare with 512 ids, trained once for all the tests that need it.
private let trained512 = Result { try BPETokenizer.train(shakespeare(), vocabularySize: 512) }

/// The learned merges as text, "left+right".
private func mergeNames(_ tokenizer: BPETokenizer) -> [String] {
  tokenizer.merges.map { tokenizer.vocabularyKey($0.left) + "+" + tokenizer.vocabularyKey($0.right) }
}

@Suite struct BPETests {
  // MARK: - The pre-split

  @Test func thePreSplitKeepsContractionsLowercaseOnly() {
    #expect(
      PreTokenizer.words("It's we'll they're I'd you've") == [
        "It", "'s", " we", "'ll", " they", "'re", " I", "'d", " you", "'ve",
      ])
    #expect(PreTokenizer.words("IT'S don't") == ["IT", "'", "S", " don", "'t"])
    #expect(PreTokenizer.words("rock'n'roll '") == ["rock", "'", "n", "'", "roll", " '"])
  }

  @Test func aSpaceJoinsTheLettersNumbersOrSymbolsAfterIt() {
    #expect(PreTokenizer.words("Hello world") == ["Hello", " world"])
    #expect(PreTokenizer.words("abc123def 45") == ["abc", "123", "def", " 45"])
    #expect(PreTokenizer.words("Hi!!! ...?! ok") == ["Hi", "!!!", " ...?!", " ok"])
    #expect(PreTokenizer.words("x?'s") == ["x", "?'", "s"])  // inside a run of symbols, ' is a symbol
  }

  @Test func aRunOfWhitespaceLeavesItsLastSpaceToTheNextWord() {
    #expect(PreTokenizer.words("a   b") == ["a", "  ", " b"])  // n - 1, then " b"
    #expect(PreTokenizer.words("a \tb") == ["a", " ", "\t", "b"])  // the last is a tab: it stands alone
    #expect(PreTokenizer.words("a\nb") == ["a", "\n", "b"])
    #expect(PreTokenizer.words("one\n\ntwo") == ["one", "\n", "\n", "two"])
    #expect(PreTokenizer.words("end  ") == ["end", "  "])  // at the end of the text, the whole run
    #expect(PreTokenizer.words("  x") == [" ", " x"])
    #expect(PreTokenizer.words(" ") == [" "])
    #expect(PreTokenizer.words("") == [])
  }

  @Test func thePreSplitKnowsUnicodeLettersNumbersAndSpaces() {
    #expect(PreTokenizer.words("café naïve über") == ["café", " naïve", " über"])
    #expect(PreTokenizer.words("한국어 text") == ["한국어", " text"])
    #expect(PreTokenizer.words("Ⅻ½٣ 😀👍🏽") == ["Ⅻ½٣", " 😀👍🏽"])  // Nl, No, Nd; emoji are symbols
    #expect(PreTokenizer.words("a\u{3000}\u{A0}b") == ["a", "\u{3000}", "\u{A0}", "b"])  // ideographic, no-break
  }

  // MARK: - Training

  /// "hug hug pug pun" without special tokens; a byte's id is its byte - 33 for '!'...'~', and the space (Ġ) is
  /// 220 (the 33rd of the 68 bytes after the 188 printable ones). Words: "hug", " hug", " pug", " pun".
  ///
  ///     pairs: (u,g) 3; (h,u) 2, (Ġ,p) 2, (p,u) 2; (Ġ,h) 1, (u,n) 1
  ///     1. (u,g) -> "ug" 256       words: h ug, Ġ h ug, Ġ p ug, Ġ p u n
  ///        (h,ug) 2, (Ġ,p) 2, then 1 each: (Ġ,h), (p,ug), (p,u), (u,n)
  ///     2. (h,ug) -> "hug" 257     a tie at 2: h is 71, Ġ is 220, so (71, 256) beats (220, 79)
  ///        (Ġ,p) 2, then 1 each: (Ġ,hug), (p,ug), (p,u), (u,n)
  ///     3. (Ġ,p) -> " p" 258       words: hug, Ġ hug, Ġp ug, Ġp u n
  ///        all at 1: (Ġ,hug) = (220, 257), (Ġp,ug) = (258, 256), (Ġp,u) = (258, 84), (u,n) = (84, 77)
  ///     4. (u,n) -> "un" 259       the smallest pair
  ///     5. (Ġ,hug) -> " hug" 260   (220, 257) before (258, 256) and (258, 259)
  @Test func theFirstMergesOfAShortTextAreTheHandWorkedOnes() throws {
    let tokenizer = try BPETokenizer.train("hug hug pug pun", vocabularySize: 261, specials: [])
    #expect(mergeNames(tokenizer) == ["u+g", "h+ug", "Ġ+p", "u+n", "Ġ+hug"])
    #expect(tokenizer.merges.map(\.result) == [256, 257, 258, 259, 260])
    #expect(tokenizer.encode("hug hug pun") == [257, 260, 258, 259])
    #expect(tokenizer.encode("pug") == [79, 256])
  }

  @Test func betweenEquallyFrequentPairsTheSmallerPairWins() throws {
    // Three words, every pair once: (a,b) = (64, 65) before (a,c) = (64, 66) before (z,y) = (89, 88), although
    // "zy" comes first in the text and (z,y) was counted first.
    let tokenizer = try BPETokenizer.train("zy,ac,ab", vocabularySize: 259, specials: [])
    #expect(mergeNames(tokenizer) == ["a+b", "a+c", "z+y"])
  }

  @Test func trainingStopsWhenNoPairIsLeft() throws {
    var reports: [(Int, Int)] = []
    let tokenizer = try BPETokenizer.train(
      "abab", vocabularySize: 300, specials: [], progress: { reports.append(($0, $1)) })
    #expect(mergeNames(tokenizer) == ["a+b", "ab+ab"])
    #expect(tokenizer.vocabularySize == 258)
    #expect(reports.last! == (2, 44))
  }

  @Test func progressIsReportedAboutEveryPercentAndAtTheEnd() throws {
    var reports: [Int] = []
    _ = try BPETokenizer.train(
      shakespeare(), vocabularySize: 1261,
      progress: { done, total in
        #expect(total == 1000)
        reports.append(done)
      })
    #expect(reports.count == 101 && reports.last == 1000 && reports == reports.sorted())
  }

  @Test func trainingRefusesATooSmallVocabularyAndAnEmptyText() {
    #expect(throws: UserError.self) { try BPETokenizer.train("abc", vocabularySize: 260) }
    do {
      _ = try BPETokenizer.train("abc", vocabularySize: 260)
    } catch {
      #expect("\(error)".contains("--vocab 260") && "\(error)".contains("261"))
    }
    #expect(throws: UserError.self) { try BPETokenizer.train("", vocabularySize: 300) }
  }

  // MARK: - Special tokens

  @Test func specialTokensAreSingleIdsAndNeverMerged() throws {
    let text = String(repeating: "hello<|endoftext|>world[SEP]", count: 50)
    let tokenizer = try BPETokenizer.train(text, vocabularySize: 300)
    // Nothing learned reaches into a special token: its characters occur nowhere else in the text.
    let learned = tokenizer.tokenBytes[261...]
    #expect(learned.allSatisfy { !$0.contains { "<|>[]".utf8.contains($0) } })
    #expect(learned.contains(Array("hello".utf8)) && learned.contains(Array("world".utf8)))
    let ids = tokenizer.encode("hello<|endoftext|>world[SEP]")
    #expect(ids == tokenizer.encode("hello") + [0] + tokenizer.encode("world") + [3])
    #expect(tokenizer.encode("[SEP][SEP]<|endoftext|") == [3, 3] + tokenizer.encode("<|endoftext|"))
    #expect(tokenizer.decode(ids) == "hello<|endoftext|>world[SEP]")
    #expect(tokenizer.specialID("[MASK]") == 4)
  }

  // MARK: - Round trips

  @Test(arguments: ["", "a", "😀👍🏽", "한국어", "Mixed: café 123 \t\n  ok?! It's <|endoftext|> [PAD]x"])
  func encodingThenDecodingGivesTheTextBack(_ text: String) throws {
    let tokenizer = try trained512.get()
    #expect(tokenizer.decode(tokenizer.encode(text)) == text)
  }

  @Test func theWholeCorpusRoundTrips() throws {
    let tokenizer = try trained512.get()
    let text = try shakespeare()
    let ids = tokenizer.encode(text)
    #expect(ids.count == 577_675)  // what Hugging Face gives too (see the test against Python below)
    #expect(tokenizer.decode(ids) == text)
    #expect(tokenizer.encode(text) == ids)  // again, from the cache
  }

  @Test func halfACharacterDecodesToTheReplacementCharacter() throws {
    let tokenizer = try trained512.get()
    let euro = tokenizer.encode("€")  // three bytes, three ids at this size
    #expect(euro.count == 3)
    #expect(tokenizer.decode(Array(euro.prefix(2))) == "\u{FFFD}")
    #expect(tokenizer.decode(euro.prefix(2) + [tokenizer.encode("a")[0]]) == "\u{FFFD}a")
  }

  // MARK: - Against Hugging Face

  @Test func trainingOnTinyShakespeareGivesHuggingFacesVocabularyAndMerges() throws {
    let tokenizer = try trained512.get()
    let theirs = try loadFixture("tokenizer.json")
    #expect(tokenizer.vocabularySize == 512 && tokenizer.merges.count == 251)
    #expect(tokenizer.tokenBytes == theirs.tokenBytes)
    #expect(mergeNames(tokenizer) == mergeNames(theirs))
    #expect(tokenizer.specialTokens.map(\.token) == theirs.specialTokens.map(\.token))
    // Byte for byte the file Hugging Face wrote.
    #expect(try tokenizer.fileContents() == fixture("tokenizer.json"))
  }

  @Test func encodingGivesHuggingFacesIds() throws {
    let ours = try trained512.get()
    let loaded = try loadFixture("tokenizer.json")
    let stringMerges = try loadFixture("tokenizer-string-merges.json")
    for (text, ids) in try expectedEncodings() {
      #expect(ours.encode(text) == ids)
      #expect(loaded.encode(text) == ids)
      #expect(stringMerges.encode(text) == ids)
    }
  }

  // MARK: - The file

  @Test func savingThenLoadingGivesTheSameTokenizer() throws {
    let tokenizer = try BPETokenizer.train(shakespeare(), vocabularySize: 700, specials: ["<s>", "</s>"])
    let object = try JSONSerialization.jsonObject(with: tokenizer.fileContents()) as! [String: Any]
    let loaded = try BPETokenizer.load(object, source: "saved.json")
    #expect(try loaded.fileContents() == tokenizer.fileContents())
    #expect(loaded.fingerprint == tokenizer.fingerprint)
    for text in ["", "<s>ROMEO:\nBut, soft!</s>", "  two  spaces,\ttabs", "café 😀 한국어", "It's 1234"] {
      #expect(loaded.encode(text) == tokenizer.encode(text))
    }
  }

  /// The fixture, changed by `damage`, must be refused with a message that names `field`.
  private func expectRefused(naming field: String, _ damage: (inout [String: Any]) -> Void) throws {
    var object = try JSONSerialization.jsonObject(with: fixture("tokenizer.json")) as! [String: Any]
    damage(&object)
    do {
      _ = try BPETokenizer.load(object, source: "damaged.json")
      Issue.record("a file with a bad \(field) was accepted")
    } catch {
      #expect(error is UserError)
      #expect("\(error)".contains(field) && "\(error)".contains("damaged.json"), "\(error)")
    }
  }

  private func changeModel(_ object: inout [String: Any], _ change: (inout [String: Any]) -> Void) {
    var model = object["model"] as! [String: Any]
    change(&model)
    object["model"] = model
  }

  @Test func aDamagedFileIsRefusedNamingTheField() throws {
    try expectRefused(naming: "model.type") { changeModel(&$0) { $0["type"] = "WordPiece" } }
    try expectRefused(naming: "added_tokens: the id of \"<|x|>\" is 9999, out of range for 513 tokens") {
      $0["added_tokens"] = ($0["added_tokens"] as! [Any]) + [["id": 9999, "content": "<|x|>"]]
    }
    try expectRefused(naming: "model.merges[0]") { changeModel(&$0) { $0["merges"] = [["Ġ", "notatoken"]] } }
    try expectRefused(naming: "model.merges[1]") { changeModel(&$0) { $0["merges"] = [["Ġ", "t"], ["Ġt"]] } }
    try expectRefused(naming: "model.vocab") {
      changeModel(&$0) { model in
        var vocabulary = model["vocab"] as! [String: Any]
        vocabulary["Ġt"] = 262  // also the id of "he"
        model["vocab"] = vocabulary
      }
    }
    try expectRefused(naming: "model.vocab") {
      changeModel(&$0) { model in
        var vocabulary = model["vocab"] as! [String: Any]
        vocabulary["Ġt"] = 9000
        model["vocab"] = vocabulary
      }
    }
    try expectRefused(naming: "normalizer") { $0["normalizer"] = ["type": "NFC"] }
    try expectRefused(naming: "pre_tokenizer") {
      $0["pre_tokenizer"] = ["type": "ByteLevel", "add_prefix_space": true, "use_regex": true]
    }
    try expectRefused(naming: "pre_tokenizer") { $0["pre_tokenizer"] = ["type": "Whitespace"] }
  }

  // MARK: - Against Python's tokenizers, when it is installed

  /// Python 3 with Hugging Face's `tokenizers`, if this machine has them.
  static let python: String? = {
    guard let python = findExecutable("python3"),
      let check = try? runTool(python, ["-c", "import tokenizers"]), check.status == 0
    else { return nil }
    return python
  }()

  @Test(.enabled(if: python != nil, "needs python3 with the tokenizers package"))
  func pythonsTokenizersEncodesWithOurFileAsWeDo() throws {
    let tokenizer = try BPETokenizer.train(shakespeare(), vocabularySize: 300)
    let path = NSTemporaryDirectory() + "bpe-test-\(getpid())-\(UInt64.random(in: 0...UInt64.max)).json"
    try tokenizer.fileContents().write(to: URL(fileURLWithPath: path))
    defer { try? FileManager.default.removeItem(atPath: path) }
    let texts = [
      "", "ROMEO:\nBut, soft! what light", "  two  spaces,\ttabs\nand newlines\n\n", "café naïve über",
      "😀 emoji and 한국어", "It's we'll they're I'd you've 123 4567", "hello<|endoftext|>world[SEP] [PAD][CLS]",
      "\u{3000}ideographic\u{A0}space  \u{2028}x", "O Romeo, wherefore art thou",
      String(repeating: " ", count: 300) + "end",
    ]
    let script = """
      import json, sys
      from tokenizers import Tokenizer
      tokenizer = Tokenizer.from_file(sys.argv[1])
      print(json.dumps([tokenizer.encode(text).ids for text in json.load(sys.stdin)]))
      """
    let input = String(decoding: try JSONSerialization.data(withJSONObject: texts), as: UTF8.self)
    let run = try runTool(Self.python!, ["-c", script, path], input: input)
    #expect(run.status == 0, "\(run.errorOutput)")
    let theirs = try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as! [[Int]]
    #expect(theirs == texts.map { tokenizer.encode($0) })

    // With Hugging Face's ignore_merges, a word in the vocabulary is taken whole, even one no merge can make.
    var object = try JSONSerialization.jsonObject(with: tokenizer.fileContents()) as! [String: Any]
    var model = object["model"] as! [String: Any]
    model["ignore_merges"] = true
    var vocabulary = model["vocab"] as! [String: Any]
    vocabulary["Ġwherefore"] = 300
    model["vocab"] = vocabulary
    object["model"] = model
    let whole = try BPETokenizer.load(object, source: "ignore-merges.json")
    try whole.fileContents().write(to: URL(fileURLWithPath: path))
    let wholeRun = try runTool(Self.python!, ["-c", script, path], input: input)
    let wholeIDs = try JSONSerialization.jsonObject(with: Data(wholeRun.output.utf8)) as! [[Int]]
    #expect(wholeIDs == texts.map { whole.encode($0) })
    #expect(whole.encode("O Romeo, wherefore art thou") == whole.encode("O Romeo,") + [300] + whole.encode(" art thou"))
  }
}
