import Foundation
import Support
import Testing

@testable import Stage5

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
      "'\(wide)': tensor 'bert.embeddings.word_embeddings.weight' has shape [512, 32], not [512, 48] as config.json says"
    ) { _ = try BERT.huggingFace(wide) }
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
}
