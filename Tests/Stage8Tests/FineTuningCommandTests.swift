import Foundation
import Support
import Testing

@testable import Stage8

/// The fine-tuning commands as a user runs them, on a tiny base: a corpus whose validation split holds speeches of
/// the five speakers, a GPT of one block pretrained on it for a few steps.
@Suite(.serialized) struct FineTuningCommandTests {
  static let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    .appendingPathComponent("stage8").path

  /// 20,000 characters of Tiny Shakespeare, then 40 short speeches, 8 by each speaker of task (a): the last 10%
  /// of the text (the validation split) holds them all.
  static let corpusText: String = {
    let lines = ["come hither, sir, and hear me speak.", "what say you to this, my lord?", "i will not go."]
    let speeches = (0..<40).map { k in
      SpeakerTask.speakers[k % 5] + ":\n" + lines[k % 3] + " " + String(repeating: "ay, ", count: k % 4) + "so."
    }
    return String(shakespeareText.prefix(20_000)) + "\n\n" + speeches.joined(separator: "\n\n") + "\n"
  }()

  /// A directory with the corpus and a base pretrained on it (made once per directory).
  static func base(seed: Int = 1) throws -> (directory: String, base: String) {
    let directory = temporaryDirectory("finetune")
    let corpus = writeCorpus(corpusText, in: directory)
    let base = directory + "/base.safetensors"
    let run = try runTool(
      executable,
      [
        "train", "--corpus", corpus, "--data-dir", directory + "/data", "--plot-dir", directory, "--layers", "1",
        "--heads", "2", "--width", "16", "--context", "16", "--batch-size", "4", "--steps", "10", "--lr", "0.01",
        "--min-lr", "0.001", "--warmup", "1", "--eval-every", "10", "--eval-batches", "2", "--sample-tokens", "0",
        "--bias", "on", "--seed", String(seed), "--checkpoint", base,
      ])
    #expect(
      run.status == 0 && run.output.contains("checkpoint (the best validation loss, at step 10)"), "\(run.output)")
    return (directory, base)
  }

  func run(_ arguments: [String]) throws -> ToolRun { try runTool(Self.executable, arguments) }

  @Test func theSpeechesOfTheNewPlaysAreFoundAndSplit() throws {
    let speeches = playSpeeches(in: "ab\n\nTRANIO:\nyes, sir.\n\nnot a speech\nat all\n\nKATHARINA:\n\nPROSPERO:\nno.")
    #expect(speeches.map(\.speaker) == ["TRANIO", "PROSPERO"])
    #expect(speeches[0].text == "TRANIO:\nyes, sir.")
    // The real corpus: the two plays of the validation split, about 390 speeches of the five speakers.
    let corpus = try Corpus(path: defaultCorpus)
    let all = playSpeeches(in: corpus.split.val)
    let five = all.filter { SpeakerTask.speakers.contains($0.speaker) }
    #expect((380...400).contains(five.count), "\(five.count)")
    let plays = try NewPlays(validationText: corpus.split.val, seed: 1)
    #expect(plays.speeches == all.count)
    let parts = [plays.train, plays.validation, plays.heldOut]
    #expect(parts.map { playSpeeches(in: $0).count }.reduce(0, +) == all.count)
    #expect(
      Set(playSpeeches(in: plays.train).map(\.text)).isDisjoint(with: playSpeeches(in: plays.heldOut).map(\.text)))
    #expect(try NewPlays(validationText: corpus.split.val, seed: 1).train == plays.train)
    #expect(try NewPlays(validationText: corpus.split.val, seed: 2).train != plays.train)
  }

  @Test func finetuneWritesAnAdapterThatSampleAndMergeUse() throws {
    let (directory, base) = try Self.base()
    let adapter = directory + "/lora.safetensors"
    let tuned = try run([
      "finetune", "--base", base, "--method", "lora", "--rank", "2", "--steps", "3", "--batch-size", "2",
      "--adapter", adapter,
    ])
    #expect(tuned.status == 0, "\(tuned.errorOutput)")
    #expect(tuned.output.contains("lora: 192 of "), "\(tuned.output)")  // one block: r (16 + 48) + r (16 + 16), r = 2
    #expect(tuned.output.contains("held-out half of the new plays: "))
    #expect(tuned.output.contains("wrote \(adapter) ("))
    let sampled = try run(["sample", "--checkpoint", base, "--adapter", adapter, "--tokens", "5", "--prompt", "a"])
    #expect(sampled.status == 0, "\(sampled.errorOutput)")
    // On another base (another seed's): refused.
    let (_, other) = try Self.base(seed: 2)
    let refused = try run(["sample", "--checkpoint", other, "--adapter", adapter, "--tokens", "5"])
    #expect(refused.status == 1)
    #expect(refused.errorOutput.contains("was trained on another base model"), "\(refused.errorOutput)")
    let merged = try run(["merge", "--base", base, "--adapter", adapter, "--hf-out", directory + "/merged"])
    #expect(merged.status == 0, "\(merged.errorOutput)")
    #expect(merged.output.contains("merged 2 LoRA updates (rank 2, alpha 16.0) into the weights"), "\(merged.output)")
    #expect(FileManager.default.fileExists(atPath: directory + "/merged/model.safetensors"))
    let largest = merged.output.split(separator: "differ by at most ").last.flatMap { Double($0.prefix(8)) }
    #expect(largest != nil && largest! <= 1e-5, "\(merged.output)")
    // Not LoRA: nothing to merge.
    let ia3 = directory + "/ia3.safetensors"
    _ = try run(["finetune", "--base", base, "--method", "ia3", "--steps", "1", "--batch-size", "2", "--adapter", ia3])
    let notLoRA = try run(["merge", "--base", base, "--adapter", ia3, "--hf-out", directory + "/merged-ia3"])
    #expect(
      notLoRA.errorOutput == "stage8: error: '\(ia3)' is a ia3 adapter; only LoRA's updates merge into the weights\n")
  }

  @Test func methodsMakesTheTable() throws {
    let (directory, base) = try Self.base()
    let result = try run([
      "methods", "--base", base, "--methods", "head,prompt", "--lm-steps", "2", "--cls-steps", "2", "--seeds", "2",
      "--batch-size", "2", "--plot-dir", directory,
    ])
    #expect(result.status == 0, "\(result.errorOutput)")
    for row in ["head ", "prompt ", "pretrained, not tuned", "from scratch", "majority speaker"] {
      #expect(result.output.contains("\n" + row), "\(row): \(result.output)")
    }
    let csv = try String(contentsOfFile: directory + "/methods-table.csv", encoding: .utf8)
    #expect(csv.hasPrefix("method,trainable,total,memory_bytes,adapter_bytes"))
    #expect(csv.split(separator: "\n").count == 6)
  }

  @Test func digitsComparesTheWaysToLearnTheNewDigits() throws {
    let result = try run(["digits", "--seeds", "1"])
    #expect(result.status == 0, "\(result.errorOutput)")
    let lines = result.output.split(separator: "\n").map(String.init)
    #expect(lines.first?.hasPrefix("pretrained on 0-4: ") == true)
    for way in DigitsTransfer.Way.allCases { #expect(lines.contains { $0.hasPrefix(way.rawValue) }, "\(way)") }
    // The head alone trains 64 x 5 + 5 numbers; LoRA adds r (64 + 64) per layer, r = 4, two layers.
    #expect(lines.contains { $0.hasPrefix("head") && $0.contains(" 325 ") })
    #expect(lines.contains { $0.hasPrefix("lora") && $0.contains(" 1349 ") })
  }

  @Test(arguments: [
    (
      ["finetune", "--method", "dora"],
      "--method: 'dora' is not one of full, head, last-k, bitfit, layernorm, lora, houlsby, pfeiffer, prefix, prompt, ia3"
    ),
    (["finetune", "--targets", "qkv,mlp"], "--targets: 'mlp' is not one of qkv, proj, expand, contract"),
    (["finetune", "--targets", "qkv,qkv"], "--targets names qkv twice"),
    (["finetune", "--prompt-init", "text"], "--prompt-init text needs a --prompt-text to start from"),
    (
      ["finetune", "--base", "/nonexistent.safetensors"],
      "cannot read '/nonexistent.safetensors': No such file or directory"
    ),
    (
      ["methods", "--methods", "lora,dora"],
      "--methods: 'dora' is not one of full, head, last-k, bitfit, layernorm, lora, houlsby, pfeiffer, prefix, prompt, ia3"
    ),
    (["merge", "--adapter", "x", "--hf-out", ""], "--hf-out is an empty path"),
    (
      ["sample", "--checkpoint", "/nonexistent.safetensors", "--adapter", "x"],
      "cannot read '/nonexistent.safetensors': No such file or directory"
    ),
  ])
  func badSettingsAreRefusedBeforeAnyWork(_ arguments: [String], _ message: String) throws {
    let result = try run(arguments)
    #expect(result.status != 0)
    #expect(result.errorOutput == "stage8: error: " + message + "\n", "\(result.errorOutput)")
    #expect(result.output.isEmpty, "\(result.output)")
  }
}
