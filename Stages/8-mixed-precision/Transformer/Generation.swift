import Support

/// Generation: a trained GPT continues a prompt one token at a time, greedily or by sampling, with the key/value
/// cache (`LayerCache`) or without.

/// How to pick the next token from the logits.
public struct Sampling: Sendable {
  /// 0 picks the most likely token (greedy); otherwise the logits are divided by it before the softmax:
  /// below 1 sharpens the distribution, above 1 flattens it.
  public var temperature = 1.0
  /// Sample only among the k most likely tokens.
  public var topK: Int? = nil
  /// Sample only among the most likely tokens whose probabilities add up to p (nucleus sampling).
  public var topP: Double? = nil

  public init(temperature: Double = 1, topK: Int? = nil, topP: Double? = nil) {
    self.temperature = temperature
    self.topK = topK
    self.topP = topP
  }

  /// The next token for a row of logits.
  public func pick<Scalar: TensorScalar>(_ logits: ArraySlice<Scalar>, rng: inout SeededRNG) -> Int {
    let values = logits.map { Double($0) }
    if temperature == 0 { return values.indices.max { values[$0] < values[$1] }! }
    var order = values.indices.sorted { values[$0] > values[$1] }
    if let topK { order = Array(order.prefix(max(topK, 1))) }
    let top = values[order[0]]
    var probabilities = order.map { Double.exp((values[$0] - top) / temperature) }
    let total = probabilities.reduce(0, +)
    probabilities = probabilities.map { $0 / total }
    if let topP {  // the fewest most-likely tokens whose probabilities reach p
      var keep = 0
      var sum = 0.0
      while keep < probabilities.count && sum < topP {
        sum += probabilities[keep]
        keep += 1
      }
      order = Array(order.prefix(keep))
      probabilities = Array(probabilities.prefix(keep))
    }
    var draw = rng.unit() * probabilities.reduce(0, +)
    for (token, p) in zip(order, probabilities) {
      draw -= p
      if draw < 0 { return token }
    }
    return order.last!
  }
}

extension GPT {
  /// `count` new tokens after `prompt`, one at a time, in evaluation mode and without a graph.
  /// Without the cache every step runs the last `context` tokens again; with it, the prompt runs once and each step
  /// runs only the new token, whose query attends to the cached keys and values. Once the sequence outgrows the
  /// context, the model sees only its last `context` tokens, as nanoGPT's generate crops them: the positions shift,
  /// so the cache is refilled from that window at every such step, and both ways give the same tokens.
  public func generate(_ prompt: [Int], count: Int, sampling: Sampling, seed: UInt64, useCache: Bool) -> [Int] {
    precondition(!prompt.isEmpty, "generate: an empty prompt")
    eval()
    defer { train() }
    var rng = SeededRNG(seed: seed)
    var tokens = prompt
    return noGrad {
      var caches = useCache ? makeCaches() : nil
      for _ in 0..<count {
        let input: [Int]
        if let cached = cachedTokens(caches), tokens.count <= tokenWindow {
          input = Array(tokens[cached...])  // only what the caches have not seen
        } else {
          if useCache { caches = makeCaches() }  // the window slid: every position moved, nothing cached holds
          input = Array(tokens.suffix(tokenWindow))
        }
        let logits = self(input, caches: caches)
        let v = config.vocabulary
        let next = sampling.pick(logits.storage[(logits.count - v)...], rng: &rng)
        tokens.append(next)
      }
      return Array(tokens.dropFirst(prompt.count))
    }
  }
}
