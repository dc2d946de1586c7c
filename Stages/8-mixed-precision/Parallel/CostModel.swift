import Foundation

/// The alpha-beta model of communication (Hockney, 1994): a message of n bytes takes alpha + n / beta, a latency
/// and a bandwidth. With it, each collective's time is a sum over its steps, and a training step's time is its
/// computation plus what communication does not hide. `stage8 bench` measures alpha and beta here and checks the
/// predictions against the collectives' real times; `stage8 plan` applies the same formulas at sizes this machine
/// cannot run.
public struct CostModel: Sendable {
  /// Seconds per message.
  public var alpha: Double
  /// Bytes per second of one link.
  public var beta: Double

  public init(alpha: Double, beta: Double) { (self.alpha, self.beta) = (alpha, beta) }

  public func message(_ bytes: Double) -> Double { alpha + bytes / beta }

  /// The ring all-reduce of `bytes` on p ranks: 2 (p - 1) steps of bytes / p each.
  public func ringAllReduce(_ bytes: Double, ranks p: Int) -> Double {
    p < 2 ? 0 : 2 * Double(p - 1) * message(bytes / Double(p))
  }

  /// Reduce-scatter or all-gather on a ring: half of the all-reduce.
  public func ringReduceScatter(_ bytes: Double, ranks p: Int) -> Double { ringAllReduce(bytes, ranks: p) / 2 }

  /// A binary tree's all-reduce (reduce up, broadcast down, whole messages): 2 log2(p) steps of all the bytes.
  /// Fewer steps than the ring (better for small messages), each carrying everything (worse for large ones).
  public func treeAllReduce(_ bytes: Double, ranks p: Int) -> Double {
    p < 2 ? 0 : 2 * Double(p).log2Ceiling * message(bytes)
  }
}

extension Double {
  fileprivate var log2Ceiling: Double { Foundation.ceil(Foundation.log2(self)) }
}

/// The shapes `stage8 plan` knows: GPT-2's four sizes (Radford et al., 2019) and a 7B model shaped as LLaMA's.
public struct PlanModel: Sendable {
  public let name: String
  public let layers: Int
  public let width: Int
  public let heads: Int
  public let vocabulary: Int
  public let context: Int

  public static let all = [
    PlanModel(name: "gpt2", layers: 12, width: 768, heads: 12, vocabulary: 50_257, context: 1024),
    PlanModel(name: "gpt2-medium", layers: 24, width: 1024, heads: 16, vocabulary: 50_257, context: 1024),
    PlanModel(name: "gpt2-large", layers: 36, width: 1280, heads: 20, vocabulary: 50_257, context: 1024),
    PlanModel(name: "gpt2-xl", layers: 48, width: 1600, heads: 25, vocabulary: 50_257, context: 1024),
    PlanModel(name: "7b", layers: 32, width: 4096, heads: 32, vocabulary: 32_000, context: 2048),
  ]

  /// Parameters: the embeddings, and 12 C^2 per block (attention 4 C^2, MLP 8 C^2; biases and norms left out).
  public var parameters: Double {
    Double(vocabulary + context) * Double(width) + 12 * Double(layers) * Double(width * width)
  }

  /// Bytes of activations one sequence keeps for backward in fp32, per block: about 34 C T + 5 H T^2 values
  /// (Korthikanti et al., 2022, in 16-bit; here 4 bytes per value, no recomputation).
  public var activationBytesPerSequence: Double {
    let (c, t, h) = (Double(width), Double(context), Double(heads))
    return 4 * Double(layers) * (34 * c * t + 5 * h * t * t)
  }
}

/// One way to lay a run over the ranks, and what the cost model predicts for it.
public struct PlanRow: Sendable {
  public let layout: String
  public let bytesPerRank: Double
  public let computeSeconds: Double
  public let communicationSeconds: Double
  public let bubbleSeconds: Double
  public var stepSeconds: Double { computeSeconds + communicationSeconds + bubbleSeconds }
}

/// The plan: every layout of `ranks` ranks into data x tensor x pipeline (tensor within a machine of
/// `ranksPerMachine`), with ZeRO's stages for the data dimension, predicted by `network` between machines and
/// `local` within one.
public struct Plan: Sendable {
  public let model: PlanModel
  public let ranks: Int
  public let ranksPerMachine: Int
  /// Sequences per step (all ranks together) and micro-batches of the pipeline.
  public let batch: Int
  public let micro: Int
  /// FLOP/s of one rank at the model's matrix sizes.
  public let flops: Double
  public let network: CostModel
  public let local: CostModel

  public init(
    model: PlanModel, ranks: Int, ranksPerMachine: Int, batch: Int, micro: Int, flops: Double, network: CostModel,
    local: CostModel
  ) {
    (self.model, self.ranks, self.ranksPerMachine, self.batch, self.micro) = (
      model, ranks, ranksPerMachine, batch, micro
    )
    (self.flops, self.network, self.local) = (flops, network, local)
  }

  /// The rows: each divisor layout d x t x p = ranks with t <= ranksPerMachine, t dividing the heads, p at most
  /// the layers; data parallel ones with ZeRO 0 to 3.
  public func rows() -> [PlanRow] {
    var rows: [PlanRow] = []
    let n = model.parameters
    let tokens = Double(batch * model.context)
    for t in divisors(ranks) where t <= ranksPerMachine && model.heads % t == 0 {
      for p in divisors(ranks / t) where p <= model.layers {
        let d = ranks / t / p
        guard batch % d == 0, (batch / d) % micro == 0 || p == 1 else { continue }
        // Compute: 6 N FLOP per token (forward 2, backward 4), shared by all ranks.
        let compute = 6 * n * tokens / flops / Double(ranks)
        // Tensor parallel: 4 all-reduces of a block's activations per block and micro-batch (2 forward, 2
        // backward), inside the machine.
        let sequencesPerCopy = Double(batch / d)
        let activation = 4 * sequencesPerCopy * Double(model.context * model.width)
        let tensorComm = t > 1 ? 4 * Double(model.layers / p) * local.ringAllReduce(activation, ranks: t) : 0
        // Pipeline: one activation per micro-batch and stage boundary each way; the bubble.
        let boundary = activation / Double(p > 1 ? micro : 1) / Double(t)
        let pipelineComm = p > 1 ? 2 * Double(micro) * network.message(boundary) : 0
        let bubbleShare = p > 1 ? Double(p - 1) / Double(micro + p - 1) : 0
        let parametersPerRank = n / Double(t * p)
        let activations =
          model.activationBytesPerSequence * sequencesPerCopy / Double(t * p)
          * (p > 1 ? Double(min(p, micro)) / Double(micro) : 1)
        for zero in 0...3 where d > 1 || zero == 0 {
          let gradients = 4 * parametersPerRank
          // ZeRO 0-2 move the gradients once (all-reduce or reduce-scatter + all-gather of weights: the same
          // bytes); ZeRO 3 gathers the weights twice more (forward and backward): 1.5x.
          let dataComm = network.ringAllReduce(gradients, ranks: d) * (zero == 3 ? 1.5 : 1)
          let bytesPerParameter: Double = [16, 8 + 8 / Double(d), 4 + 12 / Double(d), 16 / Double(d)][zero]
          let memory = bytesPerParameter * parametersPerRank + activations
          let work = compute + tensorComm + pipelineComm
          let layout = "dp \(d) x tp \(t) x pp \(p)" + (d > 1 ? ", ZeRO \(zero)" : "")
          // Data parallelism's all-reduce overlaps backward (2/3 of the compute); only what exceeds it shows.
          rows.append(
            PlanRow(
              layout: layout, bytesPerRank: memory, computeSeconds: compute,
              communicationSeconds: tensorComm + pipelineComm + max(0, dataComm - compute * 2 / 3),
              bubbleSeconds: work * bubbleShare / (1 - bubbleShare)))
        }
      }
    }
    return rows
  }
}

func divisors(_ n: Int) -> [Int] { (1...max(1, n)).filter { n % $0 == 0 } }
