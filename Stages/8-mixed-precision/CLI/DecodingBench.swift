import Foundation
import Support

/// GPT-2's inference speed, against the anchor the stage's issue gives for Hugging Face transformers 5.24 on torch
/// 2.15 (2 threads, random GPT-2 small weights, a machine of this class): greedy decoding at batch 1 with the KV
/// cache, a 16-token prompt and 128 new tokens, 28.7 tokens/s; the forward pass of a 1024-token prompt, 3.4 s.
/// (Tests/Reference/gpt2_small.py times the same two things in transformers on this machine.)
///
/// At batch 1 every new token reads every weight once and does two floating-point operations per weight read, far
/// too little arithmetic to keep the cores busy: decoding is bounded by how fast memory delivers the weights. So the
/// bench prints the weight traffic per second beside a memory copy's bandwidth measured in the same run.
struct DecodingBench {
  static let anchorTokensPerSecond = 28.7
  static let anchorPrefillSeconds = 3.4
  static let promptTokens = 16
  static let newTokens = 128

  let model: GPT<Float>
  let name: String

  /// GPT-2 small's shape (124M parameters, context 1024; GPT-2's bias, tanh GELU, eps 1e-5 and learned positions
  /// are GPTConfig's defaults), initialised from a seed: the speed does not depend on the weights' values.
  static func gpt2Small() -> DecodingBench {
    let config = GPTConfig(vocabulary: 50257, context: 1024, layers: 12, heads: 12, width: 768)
    let clock = Stopwatch()
    let model = GPT<Float>(config, seed: 1, random: RandomSource(seed: 1))
    return DecodingBench(
      model: model, name: String(format: "GPT-2 small, randomly initialised in %.1f s", clock.seconds))
  }

  /// The bytes of weights one decoding step reads: every parameter once (the token embedding as the head, all of
  /// it), except the position table, of which it reads one row.
  var weightBytesPerToken: Int {
    let positions = model.positionEmbedding.map { $0.weight.count - model.config.width } ?? 0
    return (model.parameterCount - positions) * MemoryLayout<Float>.size
  }

  func run(seconds: Double) {
    let config = model.config
    print(
      String(
        format: "GPT-2 inference, %@: %d parameters (%.0f MB of weights read per new token), context %d, %d layers, "
          + "width %d", name, model.parameterCount, Double(weightBytesPerToken) / 1e6, config.context,
        config.layers, config.width))
    let bandwidth = copyBandwidth(seconds: min(seconds, 2))
    print(
      String(
        format: "  memory copy over %d cores, 256 MB: %.1f GB/s (bytes read + written per second; median)",
        Parallel.cores, bandwidth))

    var rng = SeededRNG(seed: 3)
    let prompt = (0..<min(DecodingBench.promptTokens, config.context - 1)).map { _ in
      rng.index(below: config.vocabulary)
    }
    let count = min(DecodingBench.newTokens, config.context - prompt.count)
    let decode = median(
      repeatedTimes(seconds: seconds) {
        _ = model.generate(prompt, count: count, sampling: Sampling(temperature: 0), seed: 0, useCache: true)
      })
    let tokensPerSecond = Double(count) / decode
    // The prompt's pass and each later one read the weights once: `count` reads in all.
    let traffic = Double(weightBytesPerToken) * Double(count) / decode / 1e9
    print(
      String(
        format: "  greedy decoding, batch 1, KV cache, %d-token prompt, %d new tokens: %.1f tokens/s (median); "
          + "%.2fx transformers' %.1f tokens/s", prompt.count, count, tokensPerSecond,
        tokensPerSecond / DecodingBench.anchorTokensPerSecond, DecodingBench.anchorTokensPerSecond))
    print(
      String(
        format: "  weight traffic %.1f GB/s = %.2f of the memory copy's bandwidth", traffic, traffic / bandwidth))

    let long = (0..<config.context).map { _ in rng.index(below: config.vocabulary) }
    model.eval()
    defer { model.train() }
    let prefill = median(
      repeatedTimes(seconds: seconds) {
        noGrad { _ = model(long, caches: model.makeCaches()) }
      })
    print(
      String(
        format: "  prefill of a %d-token prompt (its keys and values cached, logits at every position): %.2f s "
          + "(median); transformers %.1f s, %.2fx as fast", long.count, prefill, DecodingBench.anchorPrefillSeconds,
        DecodingBench.anchorPrefillSeconds / prefill))
    print(
      String(
        format: "  peak resident memory of the process so far %.0f MB", Double(peakResidentBytes()) / 1e6))
  }

  /// GB/s of a copy of 256 MB (far beyond the caches) cut into one piece per core, all copying at once: what the
  /// machine's memory delivers to all its cores, counting each byte read and each byte written.
  func copyBandwidth(seconds: Double) -> Double {
    let bytes = 256 << 20
    let source = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
    let target = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
    defer {
      source.deallocate()
      target.deallocate()
    }
    source.initializeMemory(as: UInt8.self, repeating: 1, count: bytes)
    target.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
    nonisolated(unsafe) let (from, to) = (source, target)
    let time = median(
      repeatedTimes(seconds: seconds) {
        Parallel.forEach(Parallel.cores, grain: 1) { pieces in
          for piece in pieces {
            let range = (bytes * piece / Parallel.cores)..<(bytes * (piece + 1) / Parallel.cores)
            (to + range.lowerBound).copyMemory(from: from + range.lowerBound, byteCount: range.count)
          }
        }
      })
    return 2 * Double(bytes) / time / 1e9
  }
}
