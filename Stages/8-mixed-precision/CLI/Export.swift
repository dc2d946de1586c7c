import ArgumentParser
import Foundation
import Support

/// `stage8 export`: a checkpoint of `train` (a GPT) or `mlm` (a BERT) as a Hugging Face folder that transformers'
/// from_pretrained loads (GPT2LMHeadModel, BertForPreTraining), with the tokenizer when it is a byte-level BPE.
struct ExportCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "export", abstract: "Write a checkpoint as a Hugging Face folder (config.json, model.safetensors).")

  @Option(help: "The checkpoint `stage8 train` or `stage8 mlm` wrote.") var checkpoint: String
  @Option(help: "The folder to write (new or empty).") var hfOut: String

  func validate() throws {
    guard !hfOut.isEmpty else { throw UserError("--hf-out is an empty path") }
  }

  func run() throws {
    let format = looksLikeSafetensors(checkpoint) ? try readSafetensors(checkpoint).metadata["format"] : nil
    let written: [String]
    let tokenizer: any Tokenizer
    var notes: [String] = []
    switch format {
    case MaskedLMTrainer.checkpointFormat:
      let saved = try CheckpointReader(path: checkpoint, format: MaskedLMTrainer.checkpointFormat)
      let config = try MaskedLMCommand.resuming(try saved.options(), source: checkpoint, arguments: []).config
      let model: BERT<Float>
      (model, tokenizer) = try MaskedLMTrainer.pretrainedModel(from: saved, config: config)
      written = try saveHuggingFace(
        config: try model.huggingFaceConfig(), tensors: try model.huggingFaceTensors(), tokenizer: tokenizer,
        to: hfOut)
      if !config.nsp {
        notes.append("this BERT was trained without NSP (--nsp off): its pooler and cls.seq_relationship are untrained")
      }
    default:
      // A GPT's checkpoint, or a file that is none: the reader then says what is wrong with it.
      let saved = try openCheckpoint(checkpoint, format: Trainer.checkpointFormat)
      let config = try TrainCommand.resuming(try saved.options(), source: checkpoint, arguments: []).config
      let model: GPT<Float>
      (model, tokenizer) = try Trainer.pretrainedModel(from: saved, config: config)
      written = try saveHuggingFace(
        config: try model.huggingFaceConfig(), tensors: try model.huggingFaceTensors(), tokenizer: tokenizer,
        to: hfOut)
    }
    print("wrote " + written.joined(separator: ", "))
    if tokenizer.kind != "bpe" {
      notes.append(
        "no tokenizer.json: a character tokenizer has no Hugging Face form (its ids are the sorted characters of the "
          + "corpus, in the checkpoint's metadata 'tokenizer')")
    }
    for note in notes { print("note: " + note) }
  }
}
