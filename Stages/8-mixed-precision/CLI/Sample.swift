import ArgumentParser
import Foundation
import Support

/// `stage8 sample`: text from a pretrained checkpoint, nanoGPT's sample.py. The checkpoint holds the model's shape
/// (its options), its weights and its tokenizer, so nothing else is needed.
struct SampleCommand: ResumableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sample", abstract: "Generate text from a pretrained checkpoint.")

  @Option(help: "The checkpoint `stage8 train --checkpoint` wrote.") var checkpoint: String?
  @Option(
    help:
      "Or a Hugging Face GPT-2 folder (config.json, model.safetensors, tokenizer.json or vocab.json and merges.txt).")
  var hf: String?
  @Option(help: "An adapter file `stage8 finetune` wrote for this model: sample the fine-tuned model.")
  var adapter: String?
  @Option(help: "The text to continue (default: a newline, or the tokenizer's first character if it has none).")
  var prompt: String?
  @Option(parsing: .unconditional, help: "How many tokens to generate.") var tokens = 500
  @Option(parsing: .unconditional, help: "0 is greedy; below 1 sharper, above 1 flatter.") var temperature = 0.8
  @Option(parsing: .unconditional, help: "Sample among the k most likely tokens only (0: among all).") var topK = 200
  @Option(parsing: .unconditional, help: "Sample among the most likely tokens whose probabilities reach p.") var topP:
    Double?
  @Option(parsing: .unconditional, help: "Seed of the sampling.") var seed: UInt64 = 1
  @Option(parsing: .unconditional, help: "How many samples.") var count = 1
  @Flag(inversion: .prefixedNo, help: "Decode with the key/value cache.") var kvCache = true

  func validate() throws {
    try checkOneModel(checkpoint: checkpoint, hf: hf)
    try Check.count(tokens, "--tokens", in: 1...1_000_000)
    try Check.number(temperature, "--temperature", in: Bounds(0, 100))
    try Check.count(topK, "--top-k", in: 0...1_000_000)
    try Check.number(topP, "--top-p", in: .positive(upTo: 1))
    try Check.count(count, "--count", in: 1...100_000)
    guard prompt?.isEmpty != true else {
      throw UserError("--prompt is empty: give at least one character to continue")
    }
  }

  /// The model and its tokenizer: from this stage's checkpoint, or from a Hugging Face folder.
  func loadModel() throws -> (GPT<Float>, any Tokenizer) {
    if let hf {
      let model = try GPT.huggingFace(hf)
      let tokenizer = try huggingFaceTokenizer(hf)
      try checkVocabulary(tokenizer, fits: model.config.vocabulary, folder: hf)
      return (model, tokenizer)
    }
    let saved = try openCheckpoint(checkpoint!, format: Trainer.checkpointFormat)
    let config = try TrainCommand.resuming(try saved.options(), source: checkpoint!, arguments: []).config
    return try Trainer.pretrainedModel(from: saved, config: config)
  }

  /// Sampling records nothing in a checkpoint: the model's options all come from it.
  var recordedOptions: [(flag: String, value: String)] { [] }

  func run() throws {
    let (model, tokenizer) = try loadModel()
    if let adapter { try AdapterFile.load(adapter, onto: model) }
    var ids = defaultPrompt(tokenizer)
    if let prompt {
      do {
        ids = try tokenizer.encode(prompt)
      } catch let error as UserError {
        throw UserError("--prompt: \(error)")
      }
    }
    let start = prompt ?? tokenizer.decode(ids)
    let sampling = Sampling(temperature: temperature, topK: topK == 0 ? nil : topK, topP: topP)
    let clock = Stopwatch()
    for k in 0..<count {
      let generated = model.generate(ids, count: tokens, sampling: sampling, seed: seed &+ UInt64(k), useCache: kvCache)
      if k > 0 { print("---") }
      print(start + tokenizer.decode(generated))
    }
    let total = Double(count * tokens)
    fflush(nil)  // the samples first, then the timing after them, even when both streams go to one file
    FileHandle.standardError.write(
      Data(
        String(
          format: "(%d tokens in %.2f s, %@ the KV cache)\n", Int(total), clock.seconds, kvCache ? "with" : "without"
        ).utf8))
  }
}
