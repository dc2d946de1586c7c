import ArgumentParser
import Foundation
import Support

/// `stage8 fill`: a masked-LM checkpoint's guesses for each [MASK] in a text, Hugging Face's fill-mask pipeline.
struct FillCommand: ResumableCommand {
  static let configuration = CommandConfiguration(
    commandName: "fill", abstract: "Guess the tokens behind each [MASK] in a text, with a masked-LM checkpoint.",
    discussion: """
      The text is read as [CLS] TEXT [SEP]; a [SEP] inside it starts the second segment, as in pretraining. The \
      guesses are ordinary tokens (a special token is never a masked-LM target); a BPE token that is part of a \
      character's UTF-8 bytes is shown as its bytes (\\xe2).
      """)

  @Option(help: "The checkpoint `stage8 mlm --checkpoint` wrote.") var checkpoint: String?
  @Option(help: "Or a Hugging Face BERT folder (config.json, model.safetensors, and a byte-level BPE tokenizer.json).")
  var hf: String?
  @Option(help: "The text, with [MASK] where a token is to be guessed.") var text: String
  @Option(parsing: .unconditional, help: "Guesses shown per [MASK].") var top = 5

  func validate() throws {
    try checkOneModel(checkpoint: checkpoint, hf: hf)
    try Check.count(top, "--top", in: 1...1_000)
  }

  var recordedOptions: [(flag: String, value: String)] { [] }

  /// The encoder and its tokenizer: from this stage's masked-LM checkpoint, or from a Hugging Face folder.
  func loadModel() throws -> (BERT<Float>, any Tokenizer) {
    if let hf {
      let model = try BERT.huggingFace(hf)
      let tokenizer = try huggingFaceTokenizer(hf)
      try checkVocabulary(tokenizer, fits: model.config.vocabulary, folder: hf)
      return (model, tokenizer)
    }
    let saved = try CheckpointReader(path: checkpoint!, format: MaskedLMTrainer.checkpointFormat)
    let config = try MaskedLMCommand.resuming(try saved.options(), source: checkpoint!, arguments: []).config
    return try MaskedLMTrainer.pretrainedModel(from: saved, config: config)
  }

  func run() throws {
    let (model, tokenizer) = try loadModel()
    guard let mask = tokenizer.specialID("[MASK]"), let cls = tokenizer.specialID("[CLS]"),
      let sep = tokenizer.specialID("[SEP]")
    else {
      throw UserError("'\(checkpoint ?? hf!)': its tokenizer lacks [MASK], [CLS] or [SEP]")
    }
    var ids: [Int]
    do {
      ids = [cls] + (try tokenizer.encode(text)) + [sep]
    } catch let error as UserError {
      throw UserError("--text: \(error)")
    }
    let masked = ids.indices.filter { ids[$0] == mask }
    guard !masked.isEmpty else { throw UserError("--text has no [MASK]: write [MASK] where a token is to be guessed") }
    let context = model.config.context
    guard ids.count <= context else {
      throw UserError(
        "--text is \(ids.count - 2) tokens; this model reads at most \(context - 2) (its context, less [CLS] and [SEP])"
      )
    }
    // The second segment starts after the first [SEP], as pretraining built its pairs.
    let firstSep = ids.firstIndex(of: sep)!
    let segments = ids.indices.map { $0 > firstSep ? 1 : 0 }
    model.eval()
    let probabilities = noGrad {
      model.maskedLMLogits(model.encode(ids, segments: segments), at: masked).softmax(axis: 1)
    }
    let vocabulary = tokenizer.vocabularySize
    // A special token is never a masked-LM target: the head's probability for one is noise, not a guess.
    let specials = Set(tokenizer.specialTokens.map(\.id))
    let candidates = (0..<vocabulary).filter { !specials.contains($0) }
    var filled = ids
    for (k, position) in masked.enumerated() {
      let row = Array(probabilities.storage[(k * vocabulary)..<((k + 1) * vocabulary)])
      let best = candidates.sorted { row[$0] > row[$1] }.prefix(top)
      filled[position] = best.first!
      let guesses = best.map { String(format: "%@ %.1f%%", visible(tokenizer, $0), 100 * row[$0]) }
      print("[MASK] \(k + 1) of \(masked.count): " + guesses.joined(separator: ", "))
    }
    print("filled: " + tokenizer.decode(Array(filled.dropFirst().dropLast())))
  }
}

/// Token `id` as a reader can see it: `visible` of its text, or of its bytes written out as \xNN when they are
/// not whole UTF-8 characters (a byte-level BPE token may hold part of one, which would print as U+FFFD).
func visible(_ tokenizer: any Tokenizer, _ id: Int) -> String {
  if let bpe = tokenizer as? BPETokenizer, String(validating: bpe.tokenBytes[id], as: UTF8.self) == nil {
    return "'" + bpe.tokenBytes[id].map { "\\x" + String($0, radix: 16) }.joined() + "'"
  }
  return visible(tokenizer.decode([id]))
}

/// --checkpoint or --hf: one model, named once.
func checkOneModel(checkpoint: String?, hf: String?) throws {
  guard (checkpoint == nil) != (hf == nil) else {
    throw UserError(
      checkpoint == nil
        ? "give the model: --checkpoint FILE (this stage's) or --hf DIR (a Hugging Face folder)"
        : "--checkpoint and --hf name two models; give one")
  }
}

/// A Hugging Face folder's tokenizer and model must have the same ids: a text could otherwise hold an id the model
/// has no embedding for, or the model pick one the tokenizer cannot decode (a vocab_size padded to a round number,
/// as nanoGPT's 50304, is refused here rather than sampled from).
func checkVocabulary(_ tokenizer: any Tokenizer, fits vocabulary: Int, folder: String) throws {
  guard tokenizer.vocabularySize == vocabulary else {
    throw UserError(
      "'\(folder)': the tokenizer has \(tokenizer.vocabularySize) ids, the model's vocab_size is \(vocabulary); they "
        + "must be the same")
  }
}
