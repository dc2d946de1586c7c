import ArgumentParser
import Foundation
import Support

/// `stage8 finetune`: one method on the pretrained GPT, as a language model of the two plays pretraining never saw.

/// A method's name as `option` gives it.
func parseMethod(_ name: String, option: String) throws -> FineTuningMethod {
  guard let method = FineTuningMethod(rawValue: name) else {
    let names = FineTuningMethod.allCases.map(\.rawValue).joined(separator: ", ")
    throw UserError("\(option): '\(name)' is not one of \(names)")
  }
  return method
}
extension PromptInitialization: ExpressibleByArgument {}

/// Where the base model lives unless --base says otherwise; made by pretraining when it is missing.
let defaultBase = defaultPlotDir + "/base.safetensors"

/// The pretrained model every method starts from: a checkpoint of `stage8 train`.
struct BaseOptions: ParsableArguments {
  @Option(
    help: """
      The pretrained checkpoint (`stage8 train --checkpoint`). When the default is missing it is made first: \
      `stage8 train --bias on` (stage 5's GPT on the first 90% of Tiny Shakespeare, with biases).
      """)
  var base = defaultBase

  /// The model, its tokenizer and the corpus it was pretrained on (whose validation split holds the new plays).
  func load() throws -> (model: GPT<Float>, tokenizer: any Tokenizer, corpus: Corpus) {
    let (make, tokenizer, corpus) = try loader()
    return (try make(), tokenizer, corpus)
  }

  /// As `load`, with a function that reads the model afresh from the checkpoint, once per method.
  func loader() throws -> (make: () throws -> GPT<Float>, tokenizer: any Tokenizer, corpus: Corpus) {
    if base == defaultBase && !FileManager.default.fileExists(atPath: base) {
      print("no base model at \(base): pretraining one (stage8 train --bias on), once")
      let train = try TrainCommand.parse(["--bias", "on", "--checkpoint", base, "--sample-tokens", "0"])
      try train.run()
      print()
    }
    let saved = try openCheckpoint(base, format: Trainer.checkpointFormat)
    let config = try TrainCommand.resuming(try saved.options(), source: base, arguments: []).config
    let (_, tokenizer) = try Trainer.pretrainedModel(from: saved, config: config)
    let make = { try Trainer.pretrainedModel(from: saved, config: config).model }
    // The new plays are the corpus's validation split: if the text changed since, they may not be new any more.
    let corpus = try Corpus(path: config.corpus)
    guard try saved.text("corpus_hash") == corpus.hash else {
      throw UserError(
        "the base '\(base)' was pretrained on another text than '\(config.corpus)' holds now (its metadata "
          + "'corpus_hash' differs): its validation split would not be the plays it never read")
    }
    return (make, tokenizer, corpus)
  }
}

/// The method and its settings, as the command line spells them.
struct MethodOptions: ParsableArguments {
  @Option(help: "full, head, last-k, bitfit, layernorm, lora, houlsby, pfeiffer, prefix, prompt or ia3.")
  var method = "lora"
  @Option(parsing: .unconditional, help: "last-k: how many blocks from the top train.") var lastK = 1
  @Option(parsing: .unconditional, help: "LoRA: the rank r.") var rank = 8
  @Option(parsing: .unconditional, help: "LoRA: alpha (the update is scaled by alpha / r).") var alpha = 16.0
  @Option(parsing: .unconditional, help: "LoRA: dropout on its input.") var loraDropout = 0.0
  @Option(help: "LoRA: the projections it adapts, from qkv, proj, expand, contract.") var targets = "qkv,proj"
  @Option(parsing: .unconditional, help: "Adapters: the bottleneck is the width divided by this.") var reduction = 16
  @Option(parsing: .unconditional, help: "Prefix and prompt tuning: how many virtual tokens.") var virtualTokens = 10
  @Option(parsing: .unconditional, help: "Prefix tuning: train through an MLP of this hidden width, folded after.")
  var prefixHidden: Int?
  @Option(help: "Prompt tuning: the embeddings start random, from vocabulary rows, or from a text's.")
  var promptInit = PromptInitialization.vocabulary
  @Option(help: "Prompt tuning with --prompt-init text: the text.") var promptText: String?

  func validate() throws {
    _ = try fineTuningMethod()
    try Check.count(lastK, "--last-k", in: 1...100_000)
    try Check.count(rank, "--rank", in: 1...100_000)
    try Check.number(alpha, "--alpha", in: Bounds(0, 1e6, includesLow: false))
    try Check.number(loraDropout, "--lora-dropout", in: Bounds(0, 1, includesHigh: false))
    _ = try loraTargets()
    try Check.count(reduction, "--reduction", in: 1...100_000)
    try Check.count(virtualTokens, "--virtual-tokens", in: 1...100_000)
    if let prefixHidden { try Check.count(prefixHidden, "--prefix-hidden", in: 1...100_000) }
    if promptInit == .text && (promptText ?? "").isEmpty {
      throw UserError("--prompt-init text needs a --prompt-text to start from")
    }
  }

  /// --method as a method; the message lists them all on one line (the parser's own would take twelve).
  func fineTuningMethod() throws -> FineTuningMethod {
    try parseMethod(method, option: "--method")
  }

  func loraTargets() throws -> [LoRATarget] {
    let names = targets.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
    var result: [LoRATarget] = []
    for name in names {
      guard let target = LoRATarget(rawValue: name) else {
        throw UserError("--targets: '\(name)' is not one of qkv, proj, expand, contract")
      }
      guard !result.contains(target) else { throw UserError("--targets names \(name) twice") }
      result.append(target)
    }
    return result
  }

  func config(seed: UInt64) throws -> FineTuningConfig {
    var config = FineTuningConfig(method: try fineTuningMethod())
    (config.lastK, config.rank, config.alpha, config.loraDropout) = (lastK, rank, alpha, loraDropout)
    config.targets = try loraTargets()
    (config.reduction, config.virtualTokens, config.prefixHidden) = (reduction, virtualTokens, prefixHidden)
    (config.promptInit, config.promptText, config.seed) = (promptInit, promptText ?? "", seed)
    return config
  }
}

/// The fine-tuning run: steps, batch, learning rate, seed.
struct RunOptions: ParsableArguments {
  @Option(parsing: .unconditional, help: "Optimizer steps.") var steps = 300
  @Option(parsing: .unconditional, help: "Windows per batch.") var batchSize = 12
  @Option(parsing: .unconditional, help: "Peak learning rate (default: the method's, see `methods`).") var lr: Double?
  @Option(parsing: .unconditional, help: "Warmup steps.") var warmup = 30
  @Option(parsing: .unconditional, help: "Seed of the split of the speeches, the method's start and the batches.")
  var seed: UInt64 = 1

  func validate() throws {
    try Check.count(steps, "--steps", in: 1...1_000_000)
    try Check.count(batchSize, "--batch-size", in: 1...100_000)
    if let lr { try Check.number(lr, "--lr", in: .positive) }
    try Check.count(warmup, "--warmup", in: 0...1_000_000)
  }

  func settings(_ method: FineTuningMethod) -> FineTuneSettings {
    var settings = FineTuneSettings()
    (settings.steps, settings.batchSize, settings.warmup, settings.seed) = (steps, batchSize, warmup, seed)
    settings.learningRate = lr ?? method.defaultLearningRate
    return settings
  }
}

struct FineTuneCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "finetune",
    abstract: "Fine-tune the pretrained GPT with one method as a language model of two plays it never read.",
    discussion: """
      The speeches of The Taming of the Shrew and The Tempest (Tiny Shakespeare's validation split) are shuffled \
      and halved: the model trains on one half and is measured on the other, in bits per character, before and \
      after; forgetting is its loss on a fixed sample of the pretraining text, before and after.
      """)

  @OptionGroup var baseOptions: BaseOptions
  @OptionGroup var methodOptions: MethodOptions
  @OptionGroup var runOptions: RunOptions
  @Option(help: "Where the trained parameters go (default: Plots/runs/8-mixed-precision/adapter-METHOD.safetensors).")
  var adapter: String?

  func run() throws {
    let tuning = try methodOptions.config(seed: runOptions.seed)
    let path = adapter ?? defaultPlotDir + "/adapter-\(tuning.method.rawValue).safetensors"
    try prepareOutputFile(
      path, option: "--adapter", replaceable: { AdapterFile.isAdapterFile(at: $0) }, kind: "stage 8 adapter file")
    let (model, tokenizer, corpus) = try baseOptions.load()
    let task = try LanguageModelTask(corpus: corpus, tokenizer: tokenizer, seed: runOptions.seed)
    print(
      "base: \(baseOptions.base), \(model.allWeightCount) parameters; the new plays: \(task.plays.speeches) "
        + "speeches, \(task.plays.train.count) characters to train on, \(task.plays.heldOut.count) held out")
    let result = try task.run(
      model: model, tuning: tuning, settings: runOptions.settings(tuning.method), tokenizer: tokenizer
    ) { showProgressLine($0) }
    closeProgressLine()
    try AdapterFile.save(model, to: path)
    let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
    print(result.report(method: tuning.method))
    print("wrote \(path) (\(formatBytes(size)))")
  }
}

/// 1234 -> "1.2 KB", in powers of 1000 as the table prints them.
func formatBytes(_ bytes: Int) -> String {
  let value = Double(bytes)
  if value < 1e3 { return "\(bytes) B" }
  if value < 1e6 { return String(format: "%.1f KB", value / 1e3) }
  return String(format: "%.1f MB", value / 1e6)
}
