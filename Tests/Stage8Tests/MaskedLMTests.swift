import Foundation
import Support
import Testing

@testable import Stage8

/// A character tokenizer of `text` with BERT's special tokens.
func bertCharTokenizer(_ text: String) -> CharTokenizer {
  CharTokenizer(corpus: text, specials: MaskedLMCommand.charSpecials)
}

/// The first `characters` of Tiny Shakespeare, 90/10, with BERT's character tokenizer.
func bertSplits(characters: Int) -> (tokenizer: CharTokenizer, train: TokenFile, val: TokenFile) {
  let text = String(shakespeareText.prefix(characters))
  let tokenizer = bertCharTokenizer(text)
  let ids = try! tokenizer.encode(text)
  let cut = ids.count * 9 / 10
  return (tokenizer, TokenFile(Array(ids[..<cut])), TokenFile(Array(ids[cut...])))
}

/// A masked-LM trainer of a tiny BERT on the first 30,000 characters.
func tinyBERTTrainer(_ change: (inout MaskedLMConfig) -> Void = { _ in }) throws -> MaskedLMTrainer {
  var config = MaskedLMConfig()
  config.layers = 1
  config.heads = 2
  config.width = 16
  config.context = 32
  config.batchSize = 4
  config.steps = 40
  config.evalBatches = 2
  config.duplication = 1
  change(&config)
  let data = bertSplits(characters: 30_000)
  return try MaskedLMTrainer(config, tokenizer: data.tokenizer, train: data.train, val: data.val)
}

/// Two-sided bounds of a binomial share: `expected` +- 4 standard deviations over `n` draws (a test that fails
/// by chance about once in 16,000 runs).
func binomialBounds(_ expected: Double, _ n: Int) -> ClosedRange<Double> {
  let sd = (expected * (1 - expected) / Double(n)).squareRoot()
  return (expected - 4 * sd)...(expected + 4 * sd)
}

@Suite struct GELUErfTests {
  /// x Phi(x) at a few points, against values of the normal distribution function (Phi(1) = 0.8413447460685429).
  @Test func theExactGELUIsXTimesTheNormalDistributionFunction() {
    let x = Tensor<Double>([-3, -1, 0, 0.5, 1, 2], shape: [6])
    let expected = [-0.004049694094890, -0.158655253931457, 0, 0.345731230637007, 0.841344746068543, 1.954499736103642]
    for (y, e) in zip(x.geluErf().storage, expected) { #expect(abs(y - e) < 1e-14) }
  }

  /// The fast Float form (Numerical Recipes' erfc in SIMD lanes) is within a few ulps of libm's erf, forward and
  /// backward, from -10 to 10.
  @Test func theFastFloatFormAgreesWithTheReference() {
    let values = (0...2000).map { Float($0 - 1000) / 100 }
    let x = Tensor<Float>(values, shape: [values.count], requiresGrad: true)
    let y = x.geluErf()
    y.backward(gradient: [Float](repeating: 1, count: values.count))
    for (i, v) in values.enumerated() {
      let d = Double(v)
      let cdf = 0.5 * (1 + Double.erf(d / 2.0.squareRoot()))
      #expect(abs(Double(y.storage[i]) - d * cdf) < 4e-7 * max(1, abs(d)), "x = \(v)")
      let slope = cdf + d * Double.exp(-d * d / 2) / (2 * Double.pi).squareRoot()
      #expect(abs(Double(x.gradStorage![i]) - slope) < 1e-6, "x = \(v)")
    }
  }
}

@Suite struct SentencePairTests {
  /// Lines are sentences; a blank line ends a speech, the document.
  @Test func linesAreSentencesAndSpeechesDocuments() {
    let text = "A:\nhello\nworld\n\nB:\nfoo\n\n\nC:\nbar"
    let tokenizer = bertCharTokenizer(text)
    let documents = Documents(TokenFile(try! tokenizer.encode(text)), tokenizer: tokenizer, maxTokens: 100)
    let lines = documents.documents.map { $0.map { String(Array(text.unicodeScalars)[$0].map(Character.init)) } }
    #expect(lines == [["A:\n", "hello\n", "world\n"], ["B:\n", "foo\n"], ["C:\n", "bar"]])
  }

  /// A line longer than the longest input is cut into pieces of that length.
  @Test func aLongLineIsCutIntoPieces() {
    let tokenizer = bertCharTokenizer("abcdefghij\n")
    let documents = Documents(
      TokenFile(try! tokenizer.encode("abcdefghij\n")), tokenizer: tokenizer, maxTokens: 4)
    #expect(documents.documents == [[0..<4, 4..<8, 8..<11]])
  }

  /// On Tiny Shakespeare: NSP's labels are a fair coin; every pair fits; a true B lies after its A in the same
  /// speech and a random B in another; the same seed makes the same pairs.
  @Test func pairsAreFairFitAndComeFromTheRightPlaces() {
    let data = bertSplits(characters: 200_000)
    let documents = Documents(data.train, tokenizer: data.tokenizer, maxTokens: 125)
    var document: [Int: Int] = [:]  // the document of each token position
    for (d, sentences) in documents.documents.enumerated() {
      for sentence in sentences { for i in sentence { document[i] = d } }
    }
    var rng = SeededRNG(seed: 7)
    let pairs = makePairs(documents, maxTokens: 125, nsp: true, rng: &rng)
    #expect(pairs.count > 1000)
    let random = pairs.count(where: \.isRandomNext)
    #expect(binomialBounds(0.5, pairs.count).contains(Double(random) / Double(pairs.count)))
    for pair in pairs {
      let b = pair.b!
      #expect(!pair.a.isEmpty && !b.isEmpty && pair.a.count + b.count <= 125 && pair.length <= 128)
      #expect(document[pair.a.lowerBound] == document[pair.a.upperBound - 1])
      if pair.isRandomNext {
        #expect(document[b.lowerBound] != document[pair.a.lowerBound])
      } else {
        #expect(document[b.lowerBound] == document[pair.a.lowerBound] && b.lowerBound >= pair.a.upperBound)
      }
    }
    var again = SeededRNG(seed: 7)
    #expect(makePairs(documents, maxTokens: 125, nsp: true, rng: &again) == pairs)
    var other = SeededRNG(seed: 8)
    #expect(makePairs(documents, maxTokens: 125, nsp: true, rng: &other) != pairs)
  }

  /// Without NSP each input is one segment of whole consecutive sentences.
  @Test func withoutNSPAnInputIsOneSegment() {
    let data = bertSplits(characters: 50_000)
    let documents = Documents(data.train, tokenizer: data.tokenizer, maxTokens: 62)
    var rng = SeededRNG(seed: 1)
    let pairs = makePairs(documents, maxTokens: 62, nsp: false, rng: &rng)
    #expect(!pairs.isEmpty && pairs.allSatisfy { $0.b == nil && !$0.isRandomNext && $0.a.count <= 62 })
  }

  /// BERT's truncate_seq_pair: the longer segment loses tokens until the pair fits.
  @Test func truncationTakesFromTheLongerSegment() {
    var rng = SeededRNG(seed: 3)
    var (a, b) = (0..<10, 20..<23)
    truncatePair(&a, &b, maxTokens: 8, rng: &rng)
    #expect(a.count == 5 && b == 20..<23 && a.lowerBound >= 0 && a.upperBound <= 10)
    var (c, d) = (0..<6, 10..<16)
    truncatePair(&c, &d, maxTokens: 6, rng: &rng)
    #expect(c.count == 3 && d.count == 3)
  }
}

@Suite struct MaskingTests {
  let tokenizer = bertCharTokenizer(shakespeareText)

  /// Rows [CLS] A [SEP] B [SEP] cut from the text, with their special positions.
  func rows(_ count: Int, length: Int = 60) -> [[Int]] {
    let ids = try! tokenizer.encode(String(shakespeareText.prefix(count * length + 10)))
    let (cls, sep) = (tokenizer.specialID("[CLS]")!, tokenizer.specialID("[SEP]")!)
    return (0..<count).map { r in
      let a = Array(ids[(r * length)..<(r * length + length / 2)])
      let b = Array(ids[(r * length + length / 2)..<(r * length + length - 3)])
      return [cls] + a + [sep] + b + [sep]
    }
  }

  /// 15% of the candidates chosen; of those 80% [MASK], 10% random, 10% kept, within binomial bounds over 4,000
  /// sequences; never a special token; the same seed masks the same way.
  @Test func ratesMatchBERTsAndSpecialTokensAreNeverChosen() throws {
    let rule = try MaskingRule(tokenizer: tokenizer)
    let (mask, specials) = (rule.maskID, rule.specials)
    var rng = SeededRNG(seed: 11)
    var (chosen, candidates, masked, kept) = (0, 0, 0, 0)
    for row in rows(4000) {
      var tokens = row
      let picks = rule.apply(to: &tokens, rng: &rng)
      candidates += row.count { !specials.contains($0) }
      chosen += picks.count
      for (position, label) in picks {
        #expect(!specials.contains(row[position]) && row[position] == label)
        if tokens[position] == mask { masked += 1 } else if tokens[position] == label { kept += 1 }
      }
      for i in row.indices where !picks.contains(where: { $0.position == i }) { #expect(tokens[i] == row[i]) }
    }
    // Each row has 57 candidates: round(57 x 0.15) = 9 chosen, 15.8%.
    #expect(abs(Double(chosen) / Double(candidates) - 9.0 / 57) < 1e-12)
    let n = chosen
    #expect(binomialBounds(0.8, n).contains(Double(masked) / Double(n)))
    // A random replacement is the original token 1 time in 65: kept is 10% + 10% / 65.
    #expect(binomialBounds(0.1 + 0.1 / 65, n).contains(Double(kept) / Double(n)))
    #expect(binomialBounds(0.1 - 0.1 / 65, n).contains(Double(n - masked - kept) / Double(n)))
  }

  /// The number chosen is round(rate x candidates), at least 1, at most max-predictions.
  @Test(arguments: [(0.15, 20, 20, 3), (0.5, 20, 100, 20), (0.01, 20, 20, 1), (0.15, 5, 200, 5)])
  func theCapHolds(_ rate: Double, _ cap: Int, _ length: Int, _ expected: Int) throws {
    let rule = try MaskingRule(tokenizer: tokenizer, rate: rate, maxPredictions: cap)
    var rng = SeededRNG(seed: 5)
    for row in rows(50, length: length + 3) {
      var tokens = row
      #expect(rule.apply(to: &tokens, rng: &rng).count == expected)
    }
  }

  /// Whole-word masking chooses every letter of a word or none (a character tokenizer's words are runs of letters).
  @Test func wholeWordMaskingTakesWholeWords() throws {
    let rule = try MaskingRule(tokenizer: tokenizer, wholeWord: true)
    var rng = SeededRNG(seed: 9)
    let isLetter = { (id: Int) in rule.edges[id].first == 1 }
    for row in rows(300) {
      var tokens = row
      let chosen = Set(rule.apply(to: &tokens, rng: &rng).map(\.position))
      for p in chosen where p + 1 < row.count && isLetter(row[p]) && isLetter(row[p + 1]) {
        #expect(chosen.contains(p + 1))
      }
      for p in chosen where p > 0 && isLetter(row[p]) && isLetter(row[p - 1]) { #expect(chosen.contains(p - 1)) }
    }
  }

  /// A row whose every word is longer than the number wanted still gets a prediction: part of one word.
  @Test func noRowGoesWithoutAPrediction() throws {
    let rule = try MaskingRule(tokenizer: tokenizer, maxPredictions: 1, wholeWord: true)
    var rng = SeededRNG(seed: 2)
    let (cls, sep) = (tokenizer.specialID("[CLS]")!, tokenizer.specialID("[SEP]")!)
    var tokens = [cls] + (try tokenizer.encode("Wherefore")) + [sep]
    #expect(rule.apply(to: &tokens, rng: &rng).count == 1)
  }

  /// A corpus that spells a special token holds the characters of it in its token files, not the control token.
  @Test func aCorpusSpellingASpecialTokenIsPlainText() throws {
    let text = "A:\nTo [MASK] or not\n\nB:\n[CLS] and [SEP] and <|endoftext|>\n"
    let char = bertCharTokenizer(text)
    #expect(try char.encodeOrdinary(text).count == text.unicodeScalars.count)
    #expect(try char.encode(text).count < text.unicodeScalars.count)
    let bpe = try BPETokenizer.train(String(shakespeareText.prefix(20_000)), vocabularySize: 300)
    let ids = bpe.encodeOrdinary(text)
    #expect(!ids.contains { id in bpe.specialTokens.contains { $0.id == id } } && bpe.decode(ids) == text)
    #expect(bpe.encode(text).contains(bpe.specialID("[MASK]")!))
  }

  @Test func aTokenizerWithoutMaskIsRefused() {
    expectRefusal("the tokenizer has no [MASK] token, which masked-LM training needs") {
      _ = try MaskingRule(tokenizer: CharTokenizer(corpus: "abc"))
    }
  }
}

@Suite struct BERTTests {
  func tinyBERT(_ norm: NormPlacement) -> BERT<Double> {
    var config = BERTConfig(vocabulary: 11, context: 8, layers: 2, heads: 2, width: 8)
    config.norm = norm
    return BERT(config, random: RandomSource(seed: 0), source: bertInitialization(rng: SeededRNG(seed: 4)))
  }

  /// Padding changes nothing at the other positions: a row padded to 8 gives the hidden states it gives alone.
  @Test(arguments: NormPlacement.allCases)
  func paddingIsInvisible(_ norm: NormPlacement) {
    let model = tinyBERT(norm)
    let alone = model.encode([1, 2, 3, 4, 5], segments: [0, 0, 0, 1, 1])
    let padded = model.encode(
      [1, 2, 3, 4, 5, 0, 0, 0], segments: [0, 0, 0, 1, 1, 0, 0, 0],
      keyPadding: Tensor([0, 0, 0, 0, 0, 1, 1, 1], shape: [1, 8]))
    for (x, y) in zip(alone.storage, padded.storage.prefix(40)) { #expect(abs(x - y) < 1e-12) }
  }

  /// The encoder is bidirectional: the first position's state depends on the last token.
  @Test func everyPositionSeesEveryOther() {
    let model = tinyBERT(.post)
    let a = model.encode([1, 2, 3], segments: [0, 0, 0]).storage.prefix(8)
    let b = model.encode([1, 2, 4], segments: [0, 0, 0]).storage.prefix(8)
    #expect(a != b)
  }

  /// A post-LN block is ln1(x + attention(x)), then ln2(x + mlp(x)), and its output rows are normalised.
  @Test func aPostLNBlockNormalisesEachSum() {
    let model = tinyBERT(.post)
    #expect(model.finalNorm == nil && tinyBERT(.pre).finalNorm != nil)
    let block = model.blocks[0]
    let x = Tensor<Double>((0..<24).map { Double($0 % 7) / 3 - 1 }, shape: [1, 3, 8])
    let y = block(x, keyPadding: nil, cache: nil)
    let h = block.norm1(x + block.attention(x))
    let expected = block.norm2(h + block.contract(block.expand(h).geluErf()))
    for (a, b) in zip(y.storage, expected.storage) { #expect(abs(a - b) < 1e-12) }
  }

  /// The MLM decoder is the token embedding, tied: its gradient reaches the embedding table.
  @Test func theDecoderIsTiedToTheTokenEmbedding() {
    let model = tinyBERT(.post)
    let names = model.namedParameters().map(\.name)
    #expect(!names.contains { $0.contains("decoder.weight") } && names.contains("decoderBias"))
    let hidden = model.encode([1, 2, 3], segments: [0, 0, 0])
    crossEntropyLoss(logits: model.maskedLMLogits(hidden, at: [1]), labels: [7]).backward()
    let row7 = model.tokenEmbedding.weight.gradStorage![(7 * 8)..<(8 * 8)]
    #expect(row7.contains { $0 != 0 }, "token 7 appears only as the target")
  }
}

@Suite struct MaskedLMTrainerTests {
  /// A short run: the held-out MLM loss falls well below the loss of guessing from the unigram distribution.
  @Test func trainingLowersTheMaskedLMLoss() throws {
    let trainer = try tinyBERTTrainer {
      $0.steps = 150
      $0.learningRate = 3e-3
    }
    let before = try trainer.evaluate().record

    for _ in 0..<150 { try trainer.runStep() }
    let after = try trainer.evaluate()
    #expect(after.record.mlmLoss < before.mlmLoss - 0.5)
    // From about 1 in 70 at the start to at least the most frequent token's share (the first thing it learns).
    #expect(before.mlmAccuracy < 0.05 && after.score.mlmAccuracy > after.score.baselineAccuracy - 0.01)
    #expect(after.score.pairs >= MaskedLMTrainer.heldOutPairs)
  }

  /// Static masks are the same for the same copy of a pair every time; dynamic masks differ between uses.
  @Test func staticMasksRepeatAndDynamicOnesDoNot() throws {
    let fixed = try tinyBERTTrainer()
    let pair = [fixed.trainPairs[0]]
    let first = fixed.batch(pair, from: fixed.train) { _ in fixed.staticMaskRNG("train", 0) }
    let second = fixed.batch(pair, from: fixed.train) { _ in fixed.staticMaskRNG("train", 0) }
    #expect(first.tokens == second.tokens && first.positions == second.positions)
    let dynamic = try tinyBERTTrainer { $0.dynamicMasking = true }
    let batches = (0..<5).map { _ in dynamic.batch(pair, from: dynamic.train) { _ in nil }.tokens }
    #expect(Set(batches).count > 1)
  }

  /// Killed at a random step and resumed, a run retraces the uninterrupted one bit for bit (static and dynamic
  /// masks, dropout, accumulation).
  @Test(arguments: [false, true])
  func aResumedRunRetracesTheUninterruptedOneExactly(_ dynamic: Bool) throws {
    let setup = { (config: inout MaskedLMConfig) in
      config.steps = 10
      config.dropout = 0.1
      config.accumulation = 2
      config.dynamicMasking = dynamic
    }
    let straight = try tinyBERTTrainer(setup)
    var losses: [Double] = []
    for _ in 0..<10 { losses.append(try straight.runStep()) }
    let kill = Int.random(in: 1...9)
    let first = try tinyBERTTrainer(setup)
    for _ in 0..<kill { try first.runStep() }
    try first.evaluate()
    let path = temporaryDirectory("mlm-resume") + "/bert.safetensors"
    try first.save(to: path)
    let second = try tinyBERTTrainer(setup)
    try second.resume(from: path)
    #expect(second.step == kill && second.history == first.history)
    var resumed: [Double] = []
    for _ in kill..<10 { resumed.append(try second.runStep()) }
    #expect(resumed == Array(losses[kill...]), "killed after step \(kill)")
    #expect(second.parameters.map(\.storage) == straight.parameters.map(\.storage))
  }

  /// A causal-LM checkpoint is not a masked-LM one, and the other way round.
  @Test func checkpointsOfTheOtherKindAreRefused() throws {
    let path = temporaryDirectory("mlm-kind") + "/gpt.safetensors"
    let gpt = tinyTrainer()
    try gpt.evaluate()
    try gpt.save(to: path)
    #expect(!MaskedLMTrainer.isCheckpoint(at: path) && Trainer.isCheckpoint(at: path))
    let bert = try tinyBERTTrainer()
    #expect(throws: UserError.self) { try bert.resume(from: path) }
  }

  /// A corpus of one speech cannot make NSP pairs, and says so.
  @Test func oneDocumentIsRefusedWithNSP() {
    let text = String(repeating: "To be or not to be.\n", count: 200)
    let tokenizer = bertCharTokenizer(text)
    let ids = try! tokenizer.encode(text)
    expectRefusal(
      "the training split holds 1 document(s); next-sentence prediction needs two at least (documents are separated "
        + "by blank lines), or use --nsp off"
    ) {
      _ = try MaskedLMTrainer(
        MaskedLMConfig(), tokenizer: tokenizer, train: TokenFile(Array(ids[..<3600])),
        val: TokenFile(Array(ids[3600...])))
    }
  }
}

/// `stage8 mlm` and `stage8 fill` as a user runs them (with CommandLineTests' folder, `run` and `expectRefusal`).
extension CommandLineTests {
  /// A tiny run on the first 30,000 characters.
  var tinyMLM: [String] {
    let corpus = writeCorpus(String(shakespeareText.prefix(30_000)), in: directory)
    return [
      "mlm", "--corpus", corpus, "--data-dir", directory + "/data", "--plot-dir", directory, "--layers", "1",
      "--heads", "2", "--width", "16", "--context", "32", "--batch-size", "4", "--steps", "20", "--eval-every", "10",
      "--eval-batches", "2", "--duplication", "1",
    ]
  }

  @Test(arguments: [
    (["mlm", "--mask-rate", "0"], "--mask-rate must be a finite number in (0, 1], got 0.0"),
    (["mlm", "--mask-rate", "1.5"], "--mask-rate must be a finite number in (0, 1], got 1.5"),
    (["mlm", "--max-predictions", "0"], "--max-predictions must be a whole number from 1 to 65536, got 0"),
    (["mlm", "--context", "4"], "--context must be a whole number from 5 to 65536, got 4"),
    (["mlm", "--duplication", "0"], "--duplication must be a whole number from 1 to 1000, got 0"),
    (
      ["mlm", "--nsp", "maybe"], "The value 'maybe' is invalid for '--nsp <nsp>'. Please provide one of 'on' and 'off'."
    ),
    (["mlm", "--data-dir", ""], "--data-dir is an empty path"),
    (["fill", "--checkpoint", "x"], "Missing expected argument '--text <text>'"),
    (["fill", "--checkpoint", "x", "--text", "a", "--top", "0"], "--top must be a whole number from 1 to 1000, got 0"),
    (
      ["mlm", "--lr", "0.00005"],
      "--min-lr 0.0001 is above --lr 5e-05: the cosine would end higher than it starts (give a --min-lr of at most 5e-05)"
    ),
  ])
  func badMaskedLMOptionsAreRefusedByName(_ arguments: [String], _ message: String) throws {
    expectRefusal(try run(arguments), message)
  }

  /// A whole run: the held-out report against its baselines, a checkpoint that `fill` reads, and fill's refusals.
  @Test func aRunReportsAndItsCheckpointFillsMasks() throws {
    let checkpoint = directory + "/bert.safetensors"
    let result = try run(tinyMLM + ["--checkpoint", checkpoint])
    #expect(result.status == 0, "\(result.errorOutput)")
    #expect(result.output.contains("step 20/20"))
    #expect(result.output.contains("held out: masked-token accuracy "))
    #expect(result.output.contains("(always guessing ' ': "))
    #expect(result.output.contains("held out: NSP accuracy "))
    #expect(result.output.contains("(chance: 50%)"))
    #expect(FileManager.default.fileExists(atPath: directory + "/mlm.csv"))
    let all = try run(["fill", "--checkpoint", checkpoint, "--text", "[MASK]", "--top", "1000"])
    for special in ["[PAD]", "[CLS]", "[SEP]", "'[MASK]'"] { #expect(!all.output.contains(special), "\(special)") }
    let fill = try run(["fill", "--checkpoint", checkpoint, "--text", "To be, or not to [MASK]e", "--top", "3"])
    #expect(fill.status == 0, "\(fill.errorOutput)")
    let lines = fill.output.split(separator: "\n")
    #expect(
      lines.count == 2 && lines[0].hasPrefix("[MASK] 1 of 1: '") && lines[1].hasPrefix("filled: To be, or not to "))
    expectRefusal(
      try run(["fill", "--checkpoint", checkpoint, "--text", "no mask here"]),
      "--text has no [MASK]: write [MASK] where a token is to be guessed")
    expectRefusal(
      try run(["fill", "--checkpoint", checkpoint, "--text", "[MASK]" + String(repeating: "a", count: 40)]),
      "--text is 41 tokens; this model reads at most 30 (its context, less [CLS] and [SEP])")
    let emoji = try run(["fill", "--checkpoint", checkpoint, "--text", "[MASK] \u{1F600}"])
    #expect(
      emoji.status != 0 && emoji.errorOutput.hasPrefix("stage8: error: --text: character 8, '\u{1F600}' (U+1F600), "))
    // A causal LM's checkpoint is not a masked LM's.
    let gpt = directory + "/gpt.safetensors"
    let corpus = directory + "/corpus.txt"
    let trained = try run([
      "train", "--corpus", corpus, "--data-dir", directory + "/gpt-data", "--plot-dir", directory, "--layers", "1",
      "--heads", "2", "--width", "16", "--context", "16", "--batch-size", "4", "--steps", "10", "--eval-every", "10",
      "--eval-batches", "2", "--sample-tokens", "0", "--checkpoint", gpt,
    ])
    #expect(trained.status == 0, "\(trained.errorOutput)")
    let refused = try run(["fill", "--checkpoint", gpt, "--text", "[MASK]"])
    #expect(refused.status != 0 && refused.errorOutput.contains("stage8-checkpoint"), "\(refused.errorOutput)")
  }

  /// NSP needs two documents: a corpus without blank lines is refused, and runs with --nsp off.
  @Test func aCorpusOfOneSpeechNeedsNSPOff() throws {
    let arguments = Array(tinyMLM.dropFirst(3)) + ["--steps", "2"]  // tinyMLM writes corpus.txt: this one is another
    let text = String(repeating: "To be or not to be, that is the question.\n", count: 300)
    let corpus = writeCorpus(text, name: "one-speech.txt", in: directory)
    expectRefusal(
      try run(["mlm", "--corpus", corpus] + arguments),
      "the training split holds 1 document(s); next-sentence prediction needs two at least (documents are "
        + "separated by blank lines), or use --nsp off")
    let result = try run(["mlm", "--corpus", corpus, "--nsp", "off"] + arguments)
    #expect(result.status == 0, "\(result.errorOutput)")
    #expect(!result.output.contains("NSP accuracy"))
  }
}
