import ArgumentParser
import Foundation
import Support

/// `stage8 tokenize`: build a tokenizer (or read one) and encode a corpus into token files, nanoGPT's prepare.py.
struct TokenizeCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "tokenize",
    abstract: "Train a tokenizer on a corpus's training split and write tokenizer.json, train.bin and val.bin.",
    discussion: """
      The corpus is cut 90/10 by position. A BPE is trained on the first 90% only, so the validation text is text \
      the tokenizer never saw. With --tokenizer-file the corpus is encoded with that tokenizer instead (this \
      project's, or a Hugging Face tokenizer.json of a byte-level BPE).
      """)

  @Option(help: "The text to tokenize (any UTF-8 file).") var corpus = defaultCorpus
  @Option(help: "Tokenizer to train: char or bpe (default: bpe).") var tokenizer: TokenizerKind?
  @Option(parsing: .unconditional, help: "Ids of the BPE tokenizer, special tokens included (default: 512).")
  var vocab: Int?
  @Option(help: "Encode with this tokenizer file instead of training one.") var tokenizerFile: String?
  @Option(help: "Where tokenizer.json, train.bin and val.bin (and their .json sidecars) go.") var outDir: String

  func validate() throws {
    try Check.count(vocab, "--vocab", in: 1...65_536)
    guard !outDir.isEmpty else { throw UserError("--out-dir is an empty path") }
    // Options that would be silently ignored are refused: the user meant something by them.
    if tokenizerFile != nil, let given = tokenizer.map({ _ in "--tokenizer" }) ?? vocab.map({ _ in "--vocab" }) {
      throw UserError("\(given) has no effect with --tokenizer-file (the file is the tokenizer); leave it out")
    }
    if tokenizer == .char, vocab != nil {
      throw UserError("--vocab has no effect with --tokenizer char (the corpus's characters are the vocabulary)")
    }
  }

  func run() throws {
    let text = try Corpus(path: corpus)
    let clock = Stopwatch()
    let model: any Tokenizer
    if let tokenizerFile {
      model = try loadTokenizer(tokenizerFile)
      print("tokenizer: \(tokenizerFile), \(model.kind), \(model.vocabularySize) ids")
    } else if tokenizer == .char {
      model = CharTokenizer(corpus: text.text)
      print("tokenizer: characters of '\(corpus)', \(model.vocabularySize) ids")
    } else {
      let bpe = try BPETokenizer.train(try text.tokenizerTrainingText(), vocabularySize: vocab ?? 512) { done, total in
        showProgressLine("training BPE: \(done)/\(total) merges")
      }
      closeProgressLine()
      model = bpe
      // The learned tokens follow the special tokens and the 256 bytes, in the order they were learned.
      let learned = (bpe.specialTokens.count + 256)..<bpe.vocabularySize
      let first = learned.prefix(12).map { "'" + bpe.decode([$0]) + "'" }.joined(separator: " ")
      print(
        String(
          format: "tokenizer: byte-level BPE, %d ids (%d special, 256 bytes, %d learned), trained in %.2f s",
          bpe.vocabularySize, bpe.specialTokens.count, learned.count, clock.seconds))
      print("first tokens learned: " + first)
    }
    try prepareOutputDirectory(outDir)
    let (train, val) = text.split
    try TokenizedCorpus.write(
      model, corpus: text, parts: [("train", train), ("val", val)], directory: outDir, writer: "--out-dir")
    let data = try TokenizedCorpus(directory: outDir, writer: "--out-dir")
    for info in [data.trainInfo, data.valInfo] {
      print(
        String(
          format: "%@.bin: %d tokens for %d characters (%.2f characters per token)", info.split, info.tokens,
          info.characters, Double(info.characters) / Double(max(info.tokens, 1))))
    }
    print("wrote \(outDir)/tokenizer.json, train.bin, val.bin (and their .json sidecars)")
  }
}
