import Foundation
import Support
import Testing

@testable import Stage8

/// Hugging Face's checkpoints: the fixtures transformers wrote (Tests/Fixtures/hf), loaded into this stage's models
/// and compared with what transformers computed from them.
@Suite struct HuggingFaceTests {
  let fixtures =
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().path + "/Fixtures/hf"

  func expected(_ model: String) throws -> [String: SafeTensor] {
    try readSafetensors(fixtures + "/\(model)/expected.safetensors").tensors
  }

  func ids(_ tensor: SafeTensor?) -> [Int] { tensor!.signed!.map(Int.init) }

  func largestDifference(_ a: [Float], _ b: [Float]) -> Float {
    zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
  }

  /// GPT2LMHeadModel (Conv1D weights transposed, q|k|v packed, tied head, gelu_new): transformers' logits and loss
  /// to 1e-4, and its 16 greedy tokens, with and without the KV cache.
  @Test func gpt2MatchesTransformers() throws {
    let model = try GPT.huggingFace(fixtures + "/gpt2")
    model.eval()
    let expected = try expected("gpt2")
    let input = ids(expected["input_ids"])
    let logits = noGrad { model(input, batch: 2) }
    #expect(logits.shape == [2, 64, 512])
    #expect(largestDifference(logits.storage, expected["logits"]!.floats!) < 1e-4)
    // transformers' loss: each position predicts the next id; the last position of each row has no target.
    let labels = (0..<128).map { $0 % 64 == 63 ? -100 : input[$0 + 1] }
    let loss = noGrad { crossEntropyLoss(logits: logits.reshape([-1, 512]), labels: labels) }
    #expect(abs(loss.item - expected["loss"]!.floats![0]) < 1e-4)
    let prompt = ids(expected["greedy_prompt"])
    let tokens = ids(expected["greedy_tokens"])
    for cache in [true, false] {
      let generated = model.generate(prompt, count: 16, sampling: Sampling(temperature: 0), seed: 0, useCache: cache)
      #expect(generated == Array(tokens[8...]), "KV cache: \(cache)")
    }
  }

  /// BertForPreTraining (q, k, v packed into one projection, post-LN, erf GELU, token types, a padded row):
  /// transformers' prediction and seq_relationship logits to 1e-4.
  @Test func bertMatchesTransformers() throws {
    let model = try BERT.huggingFace(fixtures + "/bert")
    model.eval()
    let expected = try expected("bert")
    let mask = ids(expected["attention_mask"])
    let hidden = noGrad {
      model.encode(
        ids(expected["input_ids"]), segments: ids(expected["token_type_ids"]), batch: 2,
        keyPadding: Tensor(mask.map { Float(1 - $0) }, shape: [2, 64]))
    }
    let predictions = noGrad { model.maskedLMLogits(hidden, at: Array(0..<128)) }
    // Padding positions' predictions are noise in both; compare the real ones.
    let real = (0..<128).filter { mask[$0] == 1 }
    #expect(real.count < 128)
    let want = expected["prediction_logits"]!.floats!
    let difference = real.map { row in
      largestDifference(
        Array(predictions.storage[(row * 512)..<((row + 1) * 512)]), Array(want[(row * 512)..<((row + 1) * 512)]))
    }.max()!
    #expect(difference < 1e-4)
    let nsp = noGrad { model.nextSentenceLogits(hidden) }
    #expect(largestDifference(nsp.storage, expected["seq_relationship_logits"]!.floats!) < 1e-4)
  }

  /// A copy of fixture `model` in a folder of its own, with `change` applied to its config and tensors.
  func damagedCopy(
    _ model: String, config change: (inout [String: Any]) -> Void = { _ in },
    tensors edit: (inout [String: SafeTensor]) -> Void = { _ in }
  ) throws -> String {
    let folder = temporaryDirectory("hf-\(model)")
    var config =
      try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixtures + "/\(model)/config.json")))
      as! [String: Any]
    change(&config)
    try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: folder + "/config.json"))
    var tensors = try readSafetensors(fixtures + "/\(model)/model.safetensors").tensors
    edit(&tensors)
    try writeSafetensors(tensors, to: folder + "/model.safetensors")
    return folder
  }

  @Test func aFolderWithoutConfigIsRefused() {
    let folder = temporaryDirectory("hf-empty")
    expectRefusal("'\(folder)' holds no config.json: it is not a Hugging Face checkpoint folder") {
      _ = try GPT.huggingFace(folder)
    }
  }

  @Test func configsThisModelCannotRepresentAreRefusedByField() throws {
    let llama = try damagedCopy("gpt2") { $0["model_type"] = "llama" }
    expectRefusal("'\(llama)/config.json': \"model_type\" is 'llama', not 'gpt2' (this loader reads gpt2)") {
      _ = try GPT.huggingFace(llama)
    }
    let relu = try damagedCopy("gpt2") { $0["activation_function"] = "relu" }
    expectRefusal("'\(relu)/config.json': \"activation_function\" is relu; this GPT has gelu_new and gelu") {
      _ = try GPT.huggingFace(relu)
    }
    let untied = try damagedCopy("gpt2") { $0["tie_word_embeddings"] = false }
    expectRefusal("'\(untied)/config.json': \"tie_word_embeddings\" is 0; this GPT's head is its token embedding") {
      _ = try GPT.huggingFace(untied)
    }
    let rotary = try damagedCopy("bert") { $0["position_embedding_type"] = "relative_key" }
    expectRefusal(
      "'\(rotary)/config.json': \"position_embedding_type\" is relative_key; this BERT has learned absolute positions"
    ) { _ = try BERT.huggingFace(rotary) }
  }

  @Test func aMissingOrMisshapenTensorIsRefusedByName() throws {
    let missing = try damagedCopy("gpt2", tensors: { $0["transformer.h.1.mlp.c_fc.weight"] = nil })
    expectRefusal("'\(missing)': the checkpoint has no tensor 'transformer.h.1.mlp.c_fc.weight'") {
      _ = try GPT.huggingFace(missing)
    }
    let wide = try damagedCopy("bert") { ($0["hidden_size"], $0["intermediate_size"]) = (48, 192) }
    expectRefusal(
      "'\(wide)': tensor 'bert.embeddings.word_embeddings.weight' has shape [512, 32], not [512, 48] as config.json's "
        + "vocab_size and hidden_size say"
    ) { _ = try BERT.huggingFace(wide) }
    // Sizes are checked against the tensors before anything is made: 1e11 positions is a message, not a crash.
    let huge = try damagedCopy("gpt2") { $0["n_positions"] = 100_000_000_000 }
    expectRefusal(
      "'\(huge)': tensor 'transformer.wpe.weight' has shape [64, 32], not [100000000000, 32] as config.json's "
        + "n_positions and n_embd say"
    ) { _ = try GPT.huggingFace(huge) }
    let fewer = try damagedCopy("gpt2") { $0["n_layer"] = 1 }
    expectRefusal(
      "'\(fewer)': the checkpoint has tensor 'transformer.h.1.attn.c_attn.bias', which config.json's model has no "
        + "place for (and 11 more)"
    ) { _ = try GPT.huggingFace(fewer) }
    let nan = try damagedCopy(
      "gpt2",
      tensors: {
        var values = $0["transformer.ln_f.weight"]!.floats!
        values[3] = .nan
        $0["transformer.ln_f.weight"] = try! SafeTensor(values, shape: [32])
      })
    expectRefusal("'\(nan)': tensor 'transformer.ln_f.weight' holds nan at element 3") {
      _ = try GPT.huggingFace(nan)
    }
    let notJSON = try damagedCopy("gpt2")
    try Data("{not json".utf8).write(to: URL(fileURLWithPath: notJSON + "/config.json"))
    expectRefusal("'\(notJSON)/config.json' is not valid JSON") { _ = try GPT.huggingFace(notJSON) }
  }

  /// BertForMaskedLM's folders have no pooler and no NSP head; fill needs neither, so they load (as zeros).
  @Test func aBERTWithoutItsNSPHeadLoads() throws {
    let folder = try damagedCopy(
      "bert", tensors: { $0 = $0.filter { !$0.key.hasPrefix("bert.pooler.") && !$0.key.hasPrefix("cls.seq_") } })
    let model = try BERT.huggingFace(folder)
    #expect(model.classifier.weight.storage.allSatisfy { $0 == 0 })
    let whole = try BERT.huggingFace(fixtures + "/bert")
    #expect(model.tokenEmbedding.weight.storage == whole.tokenEmbedding.weight.storage)
  }

  /// A sharded checkpoint: model.safetensors.index.json maps each tensor to its shard.
  @Test func aShardedCheckpointLoadsAsTheWhole() throws {
    let folder = try damagedCopy("gpt2")
    let tensors = try readSafetensors(folder + "/model.safetensors").tensors
    try FileManager.default.removeItem(atPath: folder + "/model.safetensors")
    let names = tensors.keys.sorted()
    var map: [String: String] = [:]
    for (k, part) in [names.prefix(names.count / 2), names.dropFirst(names.count / 2)].enumerated() {
      let file = "model-0000\(k + 1)-of-00002.safetensors"
      try writeSafetensors(tensors.filter { part.contains($0.key) }, to: folder + "/" + file)
      for name in part { map[name] = file }
    }
    try JSONSerialization.data(withJSONObject: ["weight_map": map]).write(
      to: URL(fileURLWithPath: folder + "/model.safetensors.index.json"))
    let sharded = try GPT.huggingFace(folder)
    let whole = try GPT.huggingFace(fixtures + "/gpt2")
    #expect(sharded.parameters().map(\.storage) == whole.parameters().map(\.storage))
  }

  /// Checkpoints published in 16 bits (F16, BF16) load widened to Float: the same model as an F32 folder that holds
  /// the widened values. The 16-bit values are the F32 fixture's, rounded (BF16 by truncation, F16 by Swift's
  /// nearest-even conversion).
  @Test(arguments: [SafeTensor.DType.f16, .bf16])
  func aSixteenBitCheckpointLoadsWidened(_ dtype: SafeTensor.DType) throws {
    let half = try damagedCopy("gpt2")
    let widened = try damagedCopy("gpt2")
    let tensors = try readSafetensors(half + "/model.safetensors").tensors
    var halves: [String: SafeTensor] = [:]
    var floats: [String: SafeTensor] = [:]
    for (name, tensor) in tensors {
      let bits = tensor.floats!.map { value in
        dtype == .bf16 ? UInt16(truncatingIfNeeded: value.bitPattern >> 16) : Float16(value).bitPattern
      }
      halves[name] = try SafeTensor(
        dtype: dtype, shape: tensor.shape, bytes: bits.flatMap { [UInt8(truncatingIfNeeded: $0), UInt8($0 >> 8)] })
      let values = bits.map { dtype == .bf16 ? Float(bitPattern: UInt32($0) << 16) : Float(Float16(bitPattern: $0)) }
      floats[name] = try SafeTensor(values, shape: tensor.shape)
      #expect(halves[name]!.widenedFloats == values)
    }
    try writeSafetensors(halves, to: half + "/model.safetensors")
    try writeSafetensors(floats, to: widened + "/model.safetensors")
    let fromHalf = try GPT.huggingFace(half)
    #expect(fromHalf.parameters().map(\.storage) == (try GPT.huggingFace(widened)).parameters().map(\.storage))
    #expect(largestDifference(fromHalf.tokenEmbedding.weight.storage, tensors["transformer.wte.weight"]!.floats!) > 0)
  }

  // MARK: - Saving

  /// A small GPT with biases off (nanoGPT's choice) and a BERT, with random weights.
  func smallGPT() -> GPT<Float> {
    var config = GPTConfig(vocabulary: 300, context: 16, layers: 2, heads: 2, width: 16)
    config.bias = false
    return GPT(config, seed: 3, random: RandomSource(seed: 0))
  }

  func smallBERT() -> BERT<Float> {
    BERT(
      BERTConfig(vocabulary: 300, context: 16, layers: 2, heads: 2, width: 16), seed: 3, random: RandomSource(seed: 0))
  }

  /// Saved in transformers' layout and loaded back, each model gives the same logits (a GPT without biases comes
  /// back with zero biases: the same function).
  @Test func savedFoldersLoadBackAsTheSameModels() throws {
    let tokenizer = try BPETokenizer.train(String(shakespeareText.prefix(20_000)), vocabularySize: 300)
    let gpt = smallGPT()
    let gptFolder = temporaryDirectory("hf-save-gpt") + "/out"
    let written = try saveHuggingFace(
      config: try gpt.huggingFaceConfig(), tensors: try gpt.huggingFaceTensors(), tokenizer: tokenizer, to: gptFolder)
    #expect(
      written.map { URL(fileURLWithPath: $0).lastPathComponent } == [
        "config.json", "model.safetensors", "tokenizer.json",
      ])
    let ids = tokenizer.encode("ROMEO:\nBut, soft!")
    let back = try GPT.huggingFace(gptFolder)
    #expect(largestDifference(noGrad { back(ids) }.storage, noGrad { gpt(ids) }.storage) == 0)
    #expect(try huggingFaceTokenizer(gptFolder).encode("ROMEO:\nBut, soft!") == ids)
    let bert = smallBERT()
    let bertFolder = temporaryDirectory("hf-save-bert")
    _ = try saveHuggingFace(
      config: try bert.huggingFaceConfig(), tensors: try bert.huggingFaceTensors(), tokenizer: nil, to: bertFolder)
    let bertBack = try BERT.huggingFace(bertFolder)
    let segments = [Int](repeating: 0, count: ids.count)
    #expect(bertBack.namedParameters().map(\.tensor.storage) == bert.namedParameters().map(\.tensor.storage))
    #expect(
      noGrad { bertBack.encode(ids, segments: segments) }.storage
        == noGrad { bert.encode(ids, segments: segments) }.storage)
    expectRefusal("--hf-out '\(bertFolder)' holds a config.json already; choose a new or empty folder") {
      _ = try saveHuggingFace(
        config: try bert.huggingFaceConfig(), tensors: try bert.huggingFaceTensors(), tokenizer: nil, to: bertFolder)
    }
  }

  /// GPT-2's classic vocab.json + merges.txt give the ids tokenizer.json gives (the fixture's eight texts).
  @Test func vocabAndMergesReadAsTokenizerJSON() throws {
    let pair = try BPETokenizer.loadPair(
      vocab: fixtures + "/tokenizer/vocab.json", merges: fixtures + "/tokenizer/merges.txt")
    let json = try loadTokenizer(fixtures + "/tokenizer/tokenizer.json")
    #expect(pair.vocabularySize == json.vocabularySize && pair.specialTokens.map(\.id).sorted() == [0, 1, 2, 3, 4])
    let object = try JSONSerialization.jsonObject(
      with: Data(contentsOf: URL(fileURLWithPath: fixtures + "/tokenizer/expected.json")))
    let cases = (object as! [String: Any])["encodings"] as! [[String: Any]]
    #expect(cases.count == 8)
    for item in cases {
      let text = item["text"] as! String
      #expect(pair.encode(text) == (item["ids"] as! [Int]), "\(text.prefix(30))")
    }
    // A bad merge is named by its line in merges.txt (line 1 is "#version"; a blank line still counts).
    let folder = temporaryDirectory("hf-pair")
    let text = try String(contentsOfFile: fixtures + "/tokenizer/merges.txt", encoding: .utf8)
    var lines = text.components(separatedBy: "\n")
    lines.insert("", at: 2)
    lines[4] = "Ġ notatoken"
    try lines.joined(separator: "\n").write(toFile: folder + "/merges.txt", atomically: true, encoding: .utf8)
    let vocab = fixtures + "/tokenizer/vocab.json"
    let merges = folder + "/merges.txt"
    do {
      _ = try BPETokenizer.loadPair(vocab: vocab, merges: merges)
      Issue.record("a merge of an unknown token was accepted")
    } catch {
      #expect(
        "\(error)"
          == "'\(vocab) and \(merges)': line 5 of '\(merges)' names \"notatoken\", which is not in model.vocab")
    }
  }

  /// Python 3 with transformers, if this machine has them.
  static let python: String? = {
    guard let python = findExecutable("python3"),
      let check = try? runTool(python, ["-c", "import transformers, torch"]), check.status == 0
    else { return nil }
    return python
  }()

  /// transformers' from_pretrained loads what this stage saves, and computes the same logits (1e-4).
  @Test(.enabled(if: python != nil, "needs python3 with transformers and torch"))
  func transformersLoadsWhatWeSave() throws {
    let ids = [5, 17, 42, 99, 7, 250, 3, 64]
    let gpt = smallGPT()
    let bert = smallBERT()
    let folder = temporaryDirectory("hf-transformers")
    _ = try saveHuggingFace(
      config: try gpt.huggingFaceConfig(), tensors: try gpt.huggingFaceTensors(), tokenizer: nil, to: folder + "/gpt")
    _ = try saveHuggingFace(
      config: try bert.huggingFaceConfig(), tensors: try bert.huggingFaceTensors(), tokenizer: nil,
      to: folder + "/bert")
    let script = """
      import json, sys, torch
      from transformers import GPT2LMHeadModel, BertForPreTraining
      ids = torch.tensor([json.loads(sys.argv[3])])
      gpt = GPT2LMHeadModel.from_pretrained(sys.argv[1]).eval()
      bert = BertForPreTraining.from_pretrained(sys.argv[2]).eval()
      with torch.no_grad():
          out = bert(input_ids=ids)
          print(json.dumps([gpt(ids).logits[0].flatten().tolist(), out.prediction_logits[0].flatten().tolist(),
                            out.seq_relationship_logits[0].tolist()]))
      """
    let run = try runTool(
      Self.python!, ["-c", script, folder + "/gpt", folder + "/bert", "\(ids)"])
    #expect(run.status == 0, "\(run.errorOutput)")
    let theirs = try JSONSerialization.jsonObject(with: Data(run.output.utf8)) as! [[Double]]
    let ours = noGrad { () -> [[Float]] in
      let hidden = bert.encode(ids, segments: [Int](repeating: 0, count: ids.count))
      return [
        gpt(ids).storage, bert.maskedLMLogits(hidden, at: Array(ids.indices)).storage,
        bert.nextSentenceLogits(hidden).storage,
      ]
    }
    for (a, b) in zip(ours, theirs) { #expect(largestDifference(a, b.map(Float.init)) < 1e-4) }
  }

  /// `export` writes a trained checkpoint as a folder that `sample --hf` and `fill --hf` read back to the same
  /// output; a folder without a tokenizer, and an export over an existing one, are refused.
  @Test func exportThenSampleAndFillFromTheFolder() throws {
    let directory = temporaryDirectory("hf-cli")
    let corpus = writeCorpus(String(shakespeareText.prefix(30_000)), in: directory)
    let common = [
      "--corpus", corpus, "--tokenizer", "bpe", "--vocab", "300", "--data-dir", directory + "/data", "--plot-dir",
      directory, "--layers", "1", "--heads", "2", "--width", "16", "--context", "32", "--batch-size", "4", "--steps",
      "4", "--eval-every", "4", "--eval-batches", "1",
    ]
    let executable = CommandLineTests.executable
    let gpt = try runTool(
      executable, ["train"] + common + ["--sample-tokens", "0", "--checkpoint", directory + "/g.st"])
    #expect(gpt.status == 0, "\(gpt.errorOutput)")
    let bert = try runTool(executable, ["mlm"] + common + ["--duplication", "1", "--checkpoint", directory + "/b.st"])
    #expect(bert.status == 0, "\(bert.errorOutput)")
    for (file, folder) in [("g.st", "gpt"), ("b.st", "bert")] {
      let export = try runTool(
        executable, ["export", "--checkpoint", directory + "/" + file, "--hf-out", directory + "/" + folder])
      #expect(export.status == 0 && export.output.hasPrefix("wrote "), "\(export.errorOutput)")
    }
    let sample = ["--prompt", "ROMEO:", "--tokens", "12", "--seed", "4"]
    let fromCheckpoint = try runTool(executable, ["sample", "--checkpoint", directory + "/g.st"] + sample)
    let fromFolder = try runTool(executable, ["sample", "--hf", directory + "/gpt"] + sample)
    #expect(fromFolder.status == 0 && fromFolder.output == fromCheckpoint.output, "\(fromFolder.errorOutput)")
    let fill = ["--text", "To be, or not[MASK]"]
    let filled = try runTool(executable, ["fill", "--checkpoint", directory + "/b.st"] + fill)
    let filledFromFolder = try runTool(executable, ["fill", "--hf", directory + "/bert"] + fill)
    #expect(filledFromFolder.status == 0 && filledFromFolder.output == filled.output, "\(filledFromFolder.errorOutput)")
    let again = try runTool(
      executable, ["export", "--checkpoint", directory + "/g.st", "--hf-out", directory + "/gpt"])
    #expect(
      again.errorOutput
        == "stage8: error: --hf-out '\(directory)/gpt' holds a config.json already; choose a new or empty folder\n")
    let bare = temporaryDirectory("hf-bare")
    for file in ["config.json", "model.safetensors"] {
      try FileManager.default.copyItem(atPath: fixtures + "/gpt2/" + file, toPath: bare + "/" + file)
    }
    let noTokenizer = try runTool(executable, ["sample", "--hf", bare])
    #expect(
      noTokenizer.errorOutput
        == "stage8: error: '\(bare)' holds no tokenizer.json, nor vocab.json and merges.txt: the text cannot be encoded\n"
    )
    let small = try BPETokenizer.train(String(shakespeareText.prefix(20_000)), vocabularySize: 300)
    try small.fileContents().write(to: URL(fileURLWithPath: bare + "/tokenizer.json"))
    let mismatch = try runTool(executable, ["sample", "--hf", bare])
    #expect(
      mismatch.errorOutput
        == "stage8: error: '\(bare)': the tokenizer has 300 ids, the model's vocab_size is 512; they must be the same\n"
    )
  }
}
