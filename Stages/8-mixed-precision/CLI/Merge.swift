import ArgumentParser
import Foundation
import Support

/// `stage8 merge`: a LoRA adapter merged into its base, written as a plain GPT in a Hugging Face folder.
struct MergeCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "merge",
    abstract: "Merge a LoRA adapter into its base model and write the result as a Hugging Face folder.")

  @OptionGroup var baseOptions: BaseOptions
  @Option(help: "The LoRA adapter file `stage8 finetune --method lora` wrote.") var adapter: String
  @Option(help: "The folder to write (new or empty).") var hfOut: String

  func validate() throws {
    guard !hfOut.isEmpty else { throw UserError("--hf-out is an empty path") }
  }

  func run() throws {
    _ = try readSafetensors(adapter)  // a missing or damaged adapter is said before the base is read (or made)
    let (model, tokenizer, corpus) = try baseOptions.load()
    let config = try AdapterFile.load(adapter, onto: model)
    guard config.method == .lora else {
      throw UserError(
        "'\(adapter)' is a \(config.method.rawValue) adapter; only LoRA's updates merge into the weights")
    }
    // The first window of the validation split, through the model with its LoRA and then merged.
    let probe = Array(
      try tokenizer.encodeOrdinary(String(corpus.split.val.prefix(4 * model.config.context))).prefix(
        model.config.context))
    model.eval()  // LoRA's dropout off: the same model before and after
    let before = noGrad { model(probe).storage }
    try model.mergeAndUnload()
    let after = noGrad { model(probe).storage }
    let largest = zip(before, after).map { abs($0 - $1) }.max() ?? 0
    let written = try saveHuggingFace(
      config: try model.huggingFaceConfig(), tensors: try model.huggingFaceTensors(), tokenizer: nil, to: hfOut)
    print(
      "merged \(config.targets.count * model.config.layers) LoRA updates (rank \(config.rank), alpha "
        + "\(config.alpha)) into the weights; the logits of \(probe.count) tokens before and after differ by at "
        + String(format: "most %.2e", largest))
    print("wrote " + written.joined(separator: ", "))
    if tokenizer.kind != "bpe" {
      print(
        "note: no tokenizer.json: a character tokenizer has no Hugging Face form (its characters are in the base's "
          + "metadata 'tokenizer')")
    }
  }

}
