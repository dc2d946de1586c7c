import Foundation
import Support
import Testing

@testable import Stage8

/// Tiny Shakespeare as the project ships it, read once.
let shakespeareText = try! String(contentsOfFile: defaultCorpus, encoding: .utf8)

/// Expects `body` to throw a `UserError` whose message is exactly `message`.
func expectRefusal(
  _ message: String, sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void
) {
  do {
    try body()
    Issue.record("accepted; expected the refusal \(message)", sourceLocation: sourceLocation)
  } catch let error as UserError {
    #expect(error.description == message, sourceLocation: sourceLocation)
  } catch {
    Issue.record("not a UserError: \(error)", sourceLocation: sourceLocation)
  }
}

/// A folder of its own for a test's files.
func temporaryDirectory(_ name: String) -> String {
  let path = NSTemporaryDirectory() + "stage8-\(name)-\(getpid())-\(Stopwatch.now())"
  try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  return path
}

/// A text file holding `text`, for the commands and readers that take a path.
func writeCorpus(_ text: String, name: String = "corpus.txt", in directory: String) -> String {
  let path = directory + "/" + name
  try! Data(text.utf8).write(to: URL(fileURLWithPath: path))
  return path
}

/// The first `characters` of Tiny Shakespeare as in-memory train and val token files (90/10), with their tokenizer.
func shakespeareSplits(characters: Int) -> (tokenizer: CharTokenizer, train: TokenFile, val: TokenFile) {
  let text = String(shakespeareText.prefix(characters))
  let tokenizer = CharTokenizer(corpus: text)
  let ids = try! tokenizer.encode(text)
  let cut = ids.count * 9 / 10
  return (tokenizer, TokenFile(Array(ids[..<cut])), TokenFile(Array(ids[cut...])))
}

/// A trainer of a tiny GPT on the first 20,000 characters.
func tinyTrainer(_ change: (inout TrainConfig) -> Void = { _ in }) -> Trainer {
  var config = TrainConfig()
  config.layers = 1
  config.heads = 2
  config.width = 16
  config.context = 16
  config.batchSize = 4
  config.steps = 40
  config.evalBatches = 2
  change(&config)
  let data = shakespeareSplits(characters: 20_000)
  return Trainer(config, tokenizer: data.tokenizer, train: data.train, val: data.val)
}

@Suite struct CharTokenizerTests {
  @Test func tinyShakespeareHas65CharactersInCodePointOrder() throws {
    let tokenizer = CharTokenizer(corpus: shakespeareText)
    #expect(tokenizer.vocabularySize == 65)
    // nanoGPT's stoi: sorted(set(text)), so "\n" is 0, " " is 1, "A" is 13 and "z" is 64.
    #expect(try tokenizer.encode("\n A az") == [0, 1, 13, 1, 39, 64])
    #expect(
      try tokenizer.encode(shakespeareText.prefix(14).description) == [
        18, 47, 56, 57, 58, 1, 15, 47, 58, 47, 64, 43, 52, 10,
      ])
  }

  @Test func theWholeCorpusRoundTrips() throws {
    let tokenizer = CharTokenizer(corpus: shakespeareText)
    let ids = try tokenizer.encode(shakespeareText)
    #expect(ids.count == 1_115_394)
    #expect(tokenizer.decode(ids) == shakespeareText)
    #expect(try tokenizer.encode("") == [] && tokenizer.decode([]) == "")
  }

  @Test(arguments: [
    ("Hello 😀", "character 7, '😀' (U+1F600), is not in the tokenizer's 65 characters"),
    ("To be\tor", "character 6, U+0009, is not in the tokenizer's 65 characters"),
    ("café", "character 4, 'é' (U+00E9), is not in the tokenizer's 65 characters"),
    ("#", "character 1, '#' (U+0023), is not in the tokenizer's 65 characters"),
  ])
  func aCharacterOutsideTheVocabularyIsRefusedWithItsPosition(_ text: String, _ message: String) {
    let tokenizer = CharTokenizer(corpus: shakespeareText)
    expectRefusal(message) { _ = try tokenizer.encode(text) }
  }

  /// Code points, as Python counts characters: a corpus cut anywhere still encodes with the tokenizer of the whole,
  /// and the file keeps every code point (a byte-order mark, a lone carriage return, a combining accent, the
  /// Angstrom sign beside the canonically equal Å).
  @Test func charactersAreCodePointsAsPythonCountsThem() throws {
    let text = "\u{FEFF}Cafe\u{301}\r\nok \u{212B}\u{00C5} 👍🏽\r\n"
    let tokenizer = CharTokenizer(corpus: text)
    #expect(tokenizer.vocabularySize == Set(text.unicodeScalars).count)
    let scalars = Array(text.unicodeScalars)
    for cut in 0...scalars.count {
      var head = String.UnicodeScalarView()
      head.append(contentsOf: scalars[..<cut])
      #expect(try tokenizer.encode(String(head)).count == cut)
    }
    #expect(tokenizer.decode(try tokenizer.encode(text)).unicodeScalars.elementsEqual(text.unicodeScalars))
    let loaded = try parseTokenizer(try tokenizer.fileContents(), source: "t.json")
    let (a, b) = (try loaded.encode(text), try tokenizer.encode(text))
    #expect(loaded.fingerprint == tokenizer.fingerprint && a == b)
  }

  @Test func specialTokensAreOneIdAfterTheCharacters() throws {
    let tokenizer = CharTokenizer(corpus: "abc", specials: ["<|endoftext|>"])
    #expect(tokenizer.vocabularySize == 4)
    #expect(try tokenizer.encode("ab<|endoftext|>c") == [0, 1, 3, 2])
    #expect(tokenizer.decode([2, 3, 0]) == "c<|endoftext|>a")
  }

  @Test func theFileRoundTripsAndADamagedOneIsRefused() throws {
    let tokenizer = CharTokenizer(corpus: shakespeareText, specials: ["[PAD]"])
    let loaded = try parseTokenizer(try tokenizer.fileContents(), source: "t.json")
    #expect(loaded.kind == "char" && loaded.fingerprint == tokenizer.fingerprint)
    #expect(try loaded.encode("ROMEO:[PAD]") == (try tokenizer.encode("ROMEO:[PAD]")))
    let refusal =
      "'t.json' is not a character tokenizer: 'code_points' must be distinct Unicode code points, 'special_tokens' "
      + "non-empty texts"
    for damaged in [
      #"{"type": "char", "code_points": [97, 97], "special_tokens": []}"#, #"{"type": "char", "code_points": [55296]}"#,
      #"{"type": "char", "code_points": [], "special_tokens": []}"#, #"{"type": "char", "characters": ["a"]}"#,
      #"{"type": "char", "code_points": [97], "special_tokens": [""]}"#,
    ] {
      expectRefusal(refusal) { _ = try parseTokenizer(Data(damaged.utf8), source: "t.json") }
    }
    expectRefusal("'t.json' is not a tokenizer file: it is not a JSON object") {
      _ = try parseTokenizer(Data("[1, 2]".utf8), source: "t.json")
    }
  }
}

@Suite struct TokenFileTests {
  let tokenizer = CharTokenizer(corpus: "abcdefgh")

  func info(split: String = "train", tokens: Int, tokenizer: String? = nil) -> TokenFileInfo {
    TokenFileInfo(
      split: split, tokens: tokens, tokenizer: tokenizer ?? self.tokenizer.fingerprint, vocabulary: 8,
      characters: tokens, corpus: "c.txt", corpusBytes: tokens, corpusHash: "0")
  }

  /// Writes `ids` as a token file with its sidecar and maps it back.
  func roundTrip(_ ids: [Int], in directory: String) throws -> TokenFile {
    let path = directory + "/train.bin"
    try TokenFile.write(ids, to: path, info: info(tokens: ids.count))
    return try TokenFile(path: path, split: "train", tokenizer: tokenizer.fingerprint, vocabulary: 8)
  }

  @Test func theFileIsNanoGPTsUInt16LittleEndianAndMapsBack() throws {
    let directory = temporaryDirectory("tokens")
    let ids = [0, 7, 3, 3, 1, 6]
    let file = try roundTrip(ids, in: directory)
    // numpy's np.array(ids, dtype=np.uint16).tofile(path): two bytes per id, low byte first, no header.
    let bytes = try Data(contentsOf: URL(fileURLWithPath: directory + "/train.bin"))
    #expect([UInt8](bytes) == [0, 0, 7, 0, 3, 0, 3, 0, 1, 0, 6, 0])
    #expect(file.count == 6 && (0..<6).map { file[$0] } == ids)
    var window: [Int] = []
    file.append(from: 2, length: 3, into: &window)
    #expect(window == [3, 3, 1])
    // A large id: both bytes matter.
    let big = try TokenFile.readInfo(directory + "/train.bin")
    #expect(big.dtype == "uint16-le" && big.split == "train" && big.tokens == 6)
  }

  @Test func idsAbove255KeepBothBytes() throws {
    let directory = temporaryDirectory("tokens16")
    let path = directory + "/val.bin"
    var wide = info(split: "val", tokens: 3)
    wide.vocabulary = 65_536
    try TokenFile.write([65_535, 256, 1], to: path, info: wide)
    #expect([UInt8](try Data(contentsOf: URL(fileURLWithPath: path))) == [255, 255, 0, 1, 1, 0])
    let file = try TokenFile(path: path, split: "val", tokenizer: tokenizer.fingerprint, vocabulary: 65_536)
    #expect((0..<3).map { file[$0] } == [65_535, 256, 1])
  }

  @Test func everyBadFileIsRefusedWithOneMessage() throws {
    let directory = temporaryDirectory("badtokens")
    let path = directory + "/train.bin"
    _ = try roundTrip([1, 2, 3, 4], in: directory)
    func open(split: String = "train", tokenizer: String? = nil, vocabulary: Int = 8) throws {
      _ = try TokenFile(
        path: path, split: split, tokenizer: tokenizer ?? self.tokenizer.fingerprint, vocabulary: vocabulary)
    }
    expectRefusal("'\(path)' holds the train split (its sidecar says so), not the val split") {
      try open(split: "val")
    }
    let other = #expect(throws: UserError.self) { try open(tokenizer: "bpe-0123") }
    #expect(other?.description.contains("bpe-0123") == true, "\(String(describing: other))")
    // An odd size: a byte appended.
    let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
    handle.seekToEndOfFile()
    handle.write(Data([9]))
    try handle.close()
    expectRefusal("'\(path)' is 9 bytes, an odd number: a token file holds 2 bytes (uint16) per id") {
      try open()
    }
    // A count that disagrees with the sidecar.
    try Data([1, 0, 2, 0]).write(to: URL(fileURLWithPath: path))
    expectRefusal("'\(path)' holds 2 ids but its sidecar says 4 (truncated or replaced?)") { try open() }
    // An id past the vocabulary, with its position.
    try TokenFile.write([1, 2, 8, 3], to: path, info: info(tokens: 4))
    let tooLarge = #expect(throws: UserError.self) { try open() }
    #expect(tooLarge?.description.contains("id 8") == true, "\(String(describing: tooLarge))")
    #expect(tooLarge?.description.contains("position 2") == true, "\(String(describing: tooLarge))")
    // No sidecar.
    try FileManager.default.removeItem(atPath: path + ".json")
    #expect(throws: UserError.self) { try open() }
  }
}

@Suite struct WindowSamplerTests {
  let tokens = TokenFile(Array(0..<1000).map { $0 % 7 })

  @Test func windowsAreConsecutiveIdsAndTheTargetsAreShiftedByOne() {
    let file = TokenFile(Array(0..<100))
    let sampler = WindowSampler(tokens: file, context: 8, batchSize: 3, order: .random, seed: 1)
    for _ in 0..<50 {
      let (x, y) = sampler.nextBatch()
      #expect(x.count == 24 && y.count == 24)
      for row in 0..<3 {
        let start = x[row * 8]
        #expect(Array(x[(row * 8)..<(row * 8 + 8)]) == Array(start..<(start + 8)))
        #expect(Array(y[(row * 8)..<(row * 8 + 8)]) == Array((start + 1)..<(start + 9)))
        #expect(start + 8 < 100)
      }
    }
  }

  @Test(arguments: WindowOrder.allCases)
  func theSameSeedGivesTheSameBatchesAndAnotherSeedOthers(_ order: WindowOrder) {
    let file = TokenFile(Array(0..<1000))
    let draw = { (seed: UInt64) in
      let sampler = WindowSampler(tokens: file, context: 10, batchSize: 4, order: order, seed: seed)
      return (0..<30).map { _ in sampler.nextBatch().inputs }
    }
    #expect(draw(5) == draw(5))
    #expect(draw(5) != draw(6))
  }

  @Test func withoutReplacementEachEpochDealsEveryWindowOnceInANewOrder() {
    let file = TokenFile(Array(0..<1001))
    let sampler = WindowSampler(tokens: file, context: 10, batchSize: 5, order: .epochs, seed: 3)
    var epochs: [[Int]] = []
    var starts: [Int] = []
    while epochs.count < 3 {
      let inputs = sampler.nextBatch().inputs
      starts += stride(from: 0, to: 50, by: 10).map { inputs[$0] }
      if sampler.epoch > epochs.count {  // the batch crossed into the next epoch: split the starts there
        let carried = sampler.position
        epochs.append(Array(starts.dropLast(carried)))
        starts = Array(starts.suffix(carried))
      }
    }
    for epoch in epochs {
      // Non-overlapping windows at one phase: every start has the same remainder mod 10, none twice, the tail
      // of fewer than 10 targets left out, so 99 or 100 windows cover the 1,000 targets.
      #expect(Set(epoch).count == epoch.count && [99, 100].contains(epoch.count))
      #expect(Set(epoch.map { $0 % 10 }).count == 1)
      #expect(epoch.allSatisfy { $0 + 10 <= 1000 })
      #expect(epoch != epoch.sorted())
    }
    #expect(epochs[0] != epochs[1] && epochs[1] != epochs[2])
  }

  @Test func ranksTakeDisjointSharesOfTheSameGlobalBatch() {
    let file = TokenFile(Array(0..<5000))
    let whole = WindowSampler(tokens: file, context: 10, batchSize: 8, order: .epochs, seed: 9)
    let ranks = (0..<4).map { _ in WindowSampler(tokens: file, context: 10, batchSize: 8, order: .epochs, seed: 9) }
    for _ in 0..<20 {
      let global = whole.nextBatch().inputs
      let shares = ranks.enumerated().map { rank, sampler in sampler.nextBatch(rank: rank, ranks: 4).inputs }
      #expect(shares.allSatisfy { $0.count == 20 })
      #expect(Array(shares.joined()) == global)
    }
  }

  @Test func theExactLossWindowsTileTheSplit() {
    #expect(consecutiveWindows(of: TokenFile(Array(0..<41)), context: 10) == [0, 10, 20, 30])
    #expect(consecutiveWindows(of: TokenFile(Array(0..<40)), context: 10) == [0, 10, 20])
    #expect(consecutiveWindows(of: TokenFile(Array(0..<11)), context: 10) == [0])
  }
}

@Suite struct CorpusTests {
  @Test func badCorporaAreRefusedByName() throws {
    let directory = temporaryDirectory("corpus")
    let missing = directory + "/none.txt"
    expectRefusal("cannot read '\(missing)': No such file or directory") { _ = try Corpus(path: missing) }
    let empty = writeCorpus("", name: "empty.txt", in: directory)
    expectRefusal("corpus '\(empty)' is empty: there is no text to learn from") {
      _ = try Corpus(path: empty)
    }
    let latin1 = directory + "/latin1.txt"
    try Data([0x61, 0x62, 0xE9, 0x74, 0xE9]).write(to: URL(fileURLWithPath: latin1))
    expectRefusal("corpus '\(latin1)' is not UTF-8 text: byte 2 does not start a valid character") {
      _ = try Corpus(path: latin1)
    }
  }

  @Test func theSplitIsNinetyTenByCharacterAsNanoGPTCutsIt() throws {
    let directory = temporaryDirectory("split")
    let corpus = try Corpus(path: writeCorpus("abcdefghi😀", in: directory))
    #expect(corpus.split.train == "abcdefghi" && corpus.split.val == "😀")
    let full = try Corpus(path: defaultCorpus)
    #expect(full.split.train.unicodeScalars.count == 1_003_854)  // int(n * 0.9) of 1,115,394
  }

  @Test func preparedFoldersAreReusedOnlyForTheSameCorpusAndTokenizer() throws {
    let directory = temporaryDirectory("prepare")
    let first = try Corpus(path: writeCorpus(String(shakespeareText.prefix(5000)), name: "a.txt", in: directory))
    let second = try Corpus(path: writeCorpus(String(shakespeareText.prefix(6000)), name: "b.txt", in: directory))
    let data = directory + "/data"
    #expect(try TokenizedCorpus.prepare(first, kind: .char, vocabulary: 512, directory: data).reused == false)
    #expect(try TokenizedCorpus.prepare(first, kind: .char, vocabulary: 512, directory: data).reused == true)
    #expect(try TokenizedCorpus.prepare(second, kind: .char, vocabulary: 512, directory: data).reused == false)
    let bpe = try TokenizedCorpus.prepare(second, kind: .bpe, vocabulary: 300, directory: data)
    #expect(bpe.reused == false && bpe.corpus.tokenizer.vocabularySize == 300)
    #expect(try TokenizedCorpus.prepare(second, kind: .bpe, vocabulary: 301, directory: data).reused == false)
    let read = try TokenizedCorpus(directory: data)
    #expect(read.trainInfo.characters == 5400 && read.valInfo.characters == 600)
    #expect(read.tokenizer.decode((0..<read.val.count).map { read.val[$0] }) == second.split.val)
  }
}

@Suite(.serialized) struct CausalLMTrainerTests {
  /// What the trainer wires up, as nanoGPT's configure_optimizers: AdamW whose decaying group holds exactly the
  /// parameters of rank 2 (matrices and embeddings) and the other group the LayerNorm gains, no parameter left out
  /// or in twice.
  @Test func theTrainerDecaysTheMatricesAndEmbeddingsOnly() throws {
    let trainer = tinyTrainer { $0.layers = 2 }
    let adam = try #require(trainer.optimizer as? Adam<Float>)
    #expect(adam.decoupledWeightDecay && adam.beta1 == 0.9 && adam.beta2 == 0.99)
    let groups = trainer.optimizer.groups
    let decaying = groups.filter { $0.weightDecay != 0 }.flatMap(\.parameters)
    let kept = groups.filter { $0.weightDecay == 0 }.flatMap(\.parameters)
    #expect(groups.allSatisfy { $0.weightDecay == 0 || $0.weightDecay == 0.1 })
    // Per block: qkv, projection, expand, contract; plus the token and position embeddings.
    #expect(decaying.count == 4 * 2 + 2 && decaying.allSatisfy { $0.rank == 2 })
    // No biases (nanoGPT's bias=False): per block two LayerNorm gains, plus the final one.
    #expect(kept.count == 2 * 2 + 1 && kept.allSatisfy { $0.rank == 1 })
    let ids = Set((decaying + kept).map(ObjectIdentifier.init))
    #expect(ids == Set(trainer.parameters.map(ObjectIdentifier.init)) && ids.count == trainer.parameters.count)
  }

  /// nanoGPT's get_lr for its defaults (lr 1e-3, min 1e-4, warmup 100, 2000 steps), at chosen steps: its formula
  /// written out, min + (lr - min) (1 + cos(pi (step - 100) / 1900)) / 2 after the warmup.
  static let rates: [(step: Int, rate: Double)] = {
    let cosine = { (step: Int) -> Double in 1e-4 + 0.9e-3 * (1 + cos(Double.pi * Double(step - 100) / 1900)) / 2 }
    return [
      (0, 1e-3 / 101), (99, 1e-3 * 100 / 101), (100, 1e-3), (1050, 5.5e-4), (575, cosine(575)),
      (1999, cosine(1999)), (2000, 1e-4), (2500, 1e-4),
    ]
  }()

  @Test(arguments: rates)
  func theScheduleIsNanoGPTsWarmupThenCosine(_ step: Int, _ rate: Double) {
    let config = TrainConfig()
    #expect(abs(config.learningRate * config.schedule.factor(at: step) - rate) < 1e-15)
  }

  /// The first optimizer step runs at the schedule's rate for step 0 (2 warmup steps: 1/3, then 2/3).
  @Test func theFirstStepUsesTheSchedulesRateForStepZero() throws {
    let trainer = tinyTrainer { $0.warmup = 2 }
    try trainer.runStep()
    #expect(trainer.optimizer.stepCount == 1 && trainer.step == 1)
    #expect(abs(trainer.optimizer.learningRate - trainer.config.learningRate / 3) < 1e-15)
    try trainer.runStep()
    #expect(abs(trainer.optimizer.learningRate - trainer.config.learningRate * 2 / 3) < 1e-15)
  }

  /// Accumulating two micro-batches of 4 gives the gradient of their mean: the same step as one batch of 8 of
  /// the same windows (up to rounding in Float).
  @Test func accumulationStepsLikeTheWholeBatch() throws {
    let whole = tinyTrainer { $0.batchSize = 8 }
    let accumulated = tinyTrainer { $0.accumulation = 2 }
    // Both draw from the same seeded generator: 8 windows in one batch, or 4 then 4.
    let a = try whole.runStep()
    let b = try accumulated.runStep()
    #expect(abs(a - b) < 1e-5)
    // The gradient itself, before clipping (AdamW's update barely changes when every gradient doubles).
    #expect(abs(whole.lastGradientNorm - accumulated.lastGradientNorm) < 1e-5 * whole.lastGradientNorm)
    for (p, q) in zip(whole.parameters, accumulated.parameters) {
      for (x, y) in zip(p.storage, q.storage) { #expect(abs(x - y) < 1e-6) }
    }
  }

  /// Killed at a random step and resumed from the checkpoint saved there, a run retraces the uninterrupted one
  /// bit for bit: weights, optimizer, dropout and data order (random windows and epochs, with accumulation).
  @Test(arguments: WindowOrder.allCases)
  func aResumedRunRetracesTheUninterruptedOneExactly(_ order: WindowOrder) throws {
    let setup = { (config: inout TrainConfig) in
      config.steps = 12
      config.dropout = 0.1
      config.accumulation = 2
      config.order = order
    }
    let straight = tinyTrainer(setup)
    var losses: [Double] = []
    for _ in 0..<12 { losses.append(try straight.runStep()) }
    var rng = SystemRandomNumberGenerator()
    let kill = Int.random(in: 1...11, using: &rng)
    let first = tinyTrainer(setup)
    for _ in 0..<kill { try first.runStep() }
    try first.evaluate()  // the command line saves at evaluations, and a checkpoint holds the history
    let path = temporaryDirectory("resume") + "/gpt.safetensors"
    try first.save(to: path)
    let second = tinyTrainer(setup)
    try second.resume(from: path)
    #expect(second.step == kill && second.history == first.history)
    var resumed: [Double] = []
    for _ in kill..<12 { resumed.append(try second.runStep()) }
    #expect(resumed == Array(losses[kill...]), "killed after step \(kill)")
    #expect(second.parameters.map(\.storage) == straight.parameters.map(\.storage), "killed after step \(kill)")
    #expect(second.sampler.epoch == straight.sampler.epoch && second.sampler.position == straight.sampler.position)
  }

  /// An evaluation draws its windows from generators of its own: it changes nothing about the training run, and
  /// the same step always measures the same windows.
  @Test func evaluatingDoesNotChangeTheRun() throws {
    let plain = tinyTrainer()
    let evaluated = tinyTrainer()
    for _ in 0..<5 {
      try plain.runStep()
      try evaluated.runStep()
      try evaluated.evaluate()
    }
    #expect(plain.parameters.map(\.storage) == evaluated.parameters.map(\.storage))
    #expect(evaluated.estimateLoss(evaluated.val, name: "val") == evaluated.history.last!.valLoss)
  }

  /// A few hundred steps of a tiny model on 100,000 characters: the validation loss falls well below the
  /// unigram entropy of the characters (what a model that ignores the context can reach), so it learned to use
  /// the context; the exact loss over the whole split agrees with the estimate.
  @Test func aTinyGPTLearnsBeyondCharacterFrequencies() throws {
    var config = TrainConfig()
    config.layers = 2
    config.heads = 2
    config.width = 32
    config.context = 32
    config.batchSize = 8
    config.steps = 300
    config.warmup = 20
    config.learningRate = 3e-3
    config.evalBatches = 10
    let data = shakespeareSplits(characters: 100_000)
    let trainer = Trainer(config, tokenizer: data.tokenizer, train: data.train, val: data.val)
    let initial = try trainer.evaluate().valLoss
    #expect(abs(initial - log(Double(data.tokenizer.vocabularySize))) < 0.1)  // uniform at the start
    for _ in 0..<config.steps { try trainer.runStep() }
    var counts = [Int](repeating: 0, count: data.tokenizer.vocabularySize)
    for i in 0..<data.train.count { counts[data.train[i]] += 1 }
    let n = Double(data.train.count)
    let unigram = -counts.filter { $0 > 0 }.map { Double($0) / n * log(Double($0) / n) }.reduce(0, +)
    let exact = trainer.exactLoss(data.val)
    #expect(exact.loss < unigram - 0.6, "exact \(exact.loss), unigram entropy \(unigram)")
    #expect(exact.windows == (data.val.count - 1) / 32 && exact.tokens == exact.windows * 32)
    #expect(abs(try trainer.evaluate().valLoss - exact.loss) < 0.15)
  }
}
