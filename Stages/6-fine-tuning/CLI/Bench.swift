import ArgumentParser
import CBLAS
import Foundation
import Kernels
import Support

/// `stage6 bench`: full training steps of a GPT, nanoGPT's CPU configuration and its default Shakespeare model,
/// against the sgemm peak measured in the same run, with a memory ledger; decoding speed with and without the KV
/// cache; the BPE tokenizer's training time and encoding throughput on Tiny Shakespeare; and GPT-2 small's decoding
/// and prefill, its weight traffic against the memory bandwidth measured in the same run (`DecodingBench`).
struct BenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract: "GPT training steps against the sgemm peak, with a memory ledger; decoding speed; BPE speed.")

  @Option(parsing: .unconditional, help: "Seconds spent timing each figure (more is steadier).") var seconds = 3.0
  @Flag(help: "Only the training step, op by op: where its time goes (run a profiler such as perf on this too).")
  var profile = false
  @Flag(
    help:
      "With --profile: nanoGPT's Shakespeare model (10.7M parameters, context 256) instead of the CPU configuration.")
  var large = false
  @Option(help: "Only GPT-2's decoding and prefill, with the model of this Hugging Face GPT-2 folder.") var hf: String?
  @Flag(help: "Only GPT-2's decoding and prefill, with a randomly initialised GPT-2 small.") var decoding = false
  @OptionGroup var kernelOptions: KernelOptions

  func validate() throws {
    try Check.number(seconds, "--seconds", in: .positive(upTo: 600))
    if large && !profile { throw UserError("--large goes with --profile: it chooses the model that is profiled") }
    if profile && (hf != nil || decoding) {
      throw UserError("--profile times only the training step: it does not go with --hf or --decoding")
    }
  }

  /// The times of `body`, repeated for about `seconds` (default: --seconds; at least 3 times) after `warmup` calls.
  func timed(seconds: Double? = nil, warmup: Int = 1, _ body: () -> Void) -> [Double] {
    repeatedTimes(seconds: seconds ?? self.seconds, warmup: warmup, body)
  }

  /// Rounds that alternate the sgemm peak and the training step: this machine's speed can change by half within
  /// seconds, so a peak measured once, before the steps, may describe a different machine from theirs.
  static let rounds = 6

  func run() throws {
    kernelOptions.apply()
    if let hf {
      let clock = Stopwatch()
      let model = try GPT.huggingFace(hf)
      return DecodingBench(model: model, name: String(format: "'%@', loaded in %.1f s", hf, clock.seconds))
        .run(seconds: seconds)
    }
    if decoding { return DecodingBench.gpt2Small().run(seconds: seconds) }
    let small = StepBench(config: .nanoGPTCPU, batch: 12)
    var shakespeare = GPTConfig(vocabulary: 65, context: 256, layers: 6, heads: 6, width: 384)
    shakespeare.bias = false
    if profile {
      let bench = large ? StepBench(config: shakespeare, batch: 8) : small
      let profiler = OpProfiler()
      for _ in 0..<3 { bench.step(profiler) }
      OpProfiler.current = profiler
      let times = timed(warmup: 0) { bench.step(profiler) }
      OpProfiler.current = nil
      printProfile(profiler, steps: times.count, stepSeconds: median(times))
      return
    }
    let peak = PeakProduct()
    let benches = [
      (
        small,
        "nanoGPT's CPU configuration (batch 12, context 64, 4 layers, 4 heads, width 128, vocabulary 65, no bias, "
          + "no dropout)"
      ),
      (
        StepBench(config: shakespeare, batch: 8),
        "nanoGPT's Shakespeare model (batch 8, context 256, 6 layers, 6 heads, width 384, vocabulary 65, no bias, "
          + "no dropout)"
      ),
    ]
    for (index, (bench, title)) in benches.enumerated() {
      let result = measure(bench, peak: peak)
      if index == 0 {
        print(
          String(
            format: "sgemm peak (1024 x 1024, %d OpenBLAS threads, %@ kernels): %.1f GFLOP/s (median of %d rounds, "
              + "%.1f to %.1f)", peak.threads, blasCoreName, median(result.peakRates), BenchCommand.rounds,
            result.peakRates.min()!, result.peakRates.max()!))
      }
      print("training step, \(title); \(bench.model.parameterCount) parameters, random tokens:")
      print(
        String(
          format: "  forward, backward, clip 1.0, AdamW: %.1f ms per step (median of %d), %.0f%% of it inside gemm; "
            + "%.1f GFLOP/s (%.2f GFLOP per step)", result.stepTime * 1000, result.steps,
          result.gemmShare * 100, bench.flops / result.stepTime / 1e9, bench.flops / 1e9))
      print(
        String(
          format: "  %.2f of the sgemm peak (median of the %d rounds' ratios, %.2f to %.2f; this step's peak %.1f "
            + "GFLOP/s)", median(result.ratios), BenchCommand.rounds, result.ratios.min()!, result.ratios.max()!,
          median(result.peakRates)))
      bench.printLedger()
    }

    let prompt = [0]
    let newTokens = small.config.context - prompt.count
    for useCache in [false, true] {
      let decode = timed(warmup: 0) {
        _ = small.model.generate(
          prompt, count: newTokens, sampling: Sampling(temperature: 0), seed: 0, useCache: useCache)
      }
      print(
        String(
          format: "decoding %d tokens greedily %@ the KV cache: %.0f tokens/s", newTokens,
          useCache ? "with" : "without", Double(newTokens) / median(decode)))
    }
    try benchBPE()
    guard kernelOptions.kernels == .fast else {
      // The plain loops would take hours over 124M weights and a 1024-token prefill; --decoding still runs them.
      return print("GPT-2 small's decoding and prefill: left out with --kernels reference (--decoding runs them)")
    }
    DecodingBench.gpt2Small().run(seconds: seconds)
  }

  /// Rounds of the peak, then one warm-up step (OpenBLAS's own threads spin on for a moment after the peak's
  /// product), then steps; each round's ratio is its own.
  func measure(
    _ bench: StepBench, peak: PeakProduct
  ) -> (
    stepTime: Double, steps: Int, peakRates: [Double], ratios: [Double], gemmShare: Double
  ) {
    var (stepTimes, peakRates, ratios, gemmShare): ([Double], [Double], [Double], [Double]) = ([], [], [], [])
    for _ in 0..<2 { bench.step() }
    for _ in 0..<BenchCommand.rounds {
      let roundSeconds = seconds / Double(BenchCommand.rounds)
      let peakRate = peak.measure(seconds: roundSeconds / 3)
      let times = timed(seconds: roundSeconds) {
        let before = gemmNanoseconds.load(ordering: .relaxed)
        let clock = Stopwatch()
        bench.step()
        gemmShare.append(Double(gemmNanoseconds.load(ordering: .relaxed) - before) / 1e9 / clock.seconds)
      }
      stepTimes += times
      peakRates.append(peakRate)
      ratios.append(bench.flops / median(times) / 1e9 / peakRate)
    }
    return (median(stepTimes), stepTimes.count, peakRates, ratios, median(gemmShare))
  }

  /// Byte-level BPE on Tiny Shakespeare's training split: training time for two vocabularies, then encoding the
  /// whole file (one thread), first with an empty word cache, then again with the cache warm.
  func benchBPE() throws {
    let corpus = try Corpus(path: defaultCorpus)
    let train = corpus.split.train
    var tokenizer: BPETokenizer? = nil
    for vocabulary in [512, 4096] {
      var trained: BPETokenizer? = nil
      let time = median(
        timed(seconds: min(seconds, 1), warmup: 0) {
          trained = try? BPETokenizer.train(train, vocabularySize: vocabulary)
        })
      print(
        String(
          format: "BPE training on the training split (%.1f MB), vocabulary %d: %.3f s (median)",
          Double(train.utf8.count) / 1e6, vocabulary, time))
      tokenizer = trained
    }
    guard let tokenizer else { return }
    let megabytes = Double(corpus.text.utf8.count) / 1e6
    let cold = median(
      timed(seconds: min(seconds, 1), warmup: 0) {
        tokenizer.clearCache()
        _ = tokenizer.encode(corpus.text)
      })
    let warm = median(timed(seconds: min(seconds, 1)) { _ = tokenizer.encode(corpus.text) })
    print(
      String(
        format: "BPE encoding of the whole file (%.1f MB, vocabulary 4096, one thread): %.1f MB/s with an empty "
          + "word cache, %.1f MB/s with it warm", megabytes, megabytes / cold, megabytes / warm))
  }

  /// The op table of `--profile`: per step, forward and backward milliseconds of each op, largest first.
  func printProfile(_ profiler: OpProfiler, steps: Int, stepSeconds: Double) {
    let perStep = { (ns: UInt64) in Double(ns) / 1e6 / Double(steps) }
    let rows = profiler.entries.sorted { $0.value.forward + $0.value.backward > $1.value.forward + $1.value.backward }
    let total = rows.reduce(0.0) { $0 + perStep($1.value.forward + $1.value.backward) }
    print(String(format: "training step, op by op (mean of %d steps; median step %.1f ms):", steps, stepSeconds * 1000))
    print("  op                 calls   forward ms  backward ms   share   in gemm")
    for (name, entry) in rows {
      let time = perStep(entry.forward + entry.backward)
      print(
        String(
          format: "  %@ %5d %12.2f %12.2f %6.1f%% %8.0f%%", name.padding(toLength: 18, withPad: " ", startingAt: 0),
          entry.calls / steps, perStep(entry.forward), perStep(entry.backward), time / total * 100,
          entry.forward + entry.backward == 0 ? 0 : Double(entry.gemm) / Double(entry.forward + entry.backward) * 100))
    }
    print(String(format: "  total %.1f ms per step", total))
  }
}

/// The times of `body`, repeated for about `seconds` (at least 3 times) after `warmup` calls.
func repeatedTimes(seconds: Double, warmup: Int = 1, _ body: () -> Void) -> [Double] {
  for _ in 0..<warmup { body() }
  var times: [Double] = []
  let total = Stopwatch()
  while total.seconds < seconds || times.count < 3 { times.append(Stopwatch.time(body)) }
  return times
}

/// The reference: sgemm on 1024 x 1024 matrices with BLAS's own threads, one per core, in this process. The
/// framework runs BLAS single-threaded and splits products across the cores itself, so the thread count is set
/// for each measurement and put back after it.
struct PeakProduct {
  let n = 1024
  let a: [Float]
  let b: [Float]
  let threads = Int(Parallel.cores)

  init() {
    var rng = SeededRNG(seed: 1)
    a = (0..<(n * n)).map { _ in Float(rng.uniform(-1, 1)) }
    b = (0..<(n * n)).map { _ in Float(rng.uniform(-1, 1)) }
  }

  /// GFLOP/s of the median product, repeated for about `seconds` (at least 3 times) after one warm-up.
  func measure(seconds: Double) -> Double {
    var c = [Float](repeating: 0, count: n * n)
    let n32 = Int32(n)
    let time = withBLASThreads {
      var times: [Double] = []
      let total = Stopwatch()
      for run in 0... {
        let t = Stopwatch.time {
          cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n32, n32, n32, 1, a, n32, b, n32, 0, &c, n32)
        }
        if run > 0 { times.append(t) }  // the first wakes BLAS's threads
        if total.seconds >= seconds && times.count >= 3 { break }
      }
      return median(times)
    }
    return 2 * Double(n * n * n) / time / 1e9
  }
}

/// One training step of a GPT on random tokens, as `train` runs it: forward, backward, clipping, AdamW.
final class StepBench {
  let config: GPTConfig
  let batch: Int
  let model: GPT<Float>
  let parameters: [Tensor<Float>]
  let optimizer: Adam<Float>
  let tokens: [Int]
  let targets: [Int]
  /// Bytes of the tensors the graph holds for backward, measured on the first step.
  private(set) var activationBytes = 0

  init(config: GPTConfig, batch: Int) {
    self.config = config
    self.batch = batch
    model = GPT<Float>(config, seed: 1, random: RandomSource(seed: 1))
    parameters = model.parameters()
    optimizer = Adam(
      ParameterGroup.decayingMatrices(parameters, weightDecay: 0.1), learningRate: 1e-3, beta2: 0.99,
      decoupledWeightDecay: true)
    var rng = SeededRNG(seed: 2)
    tokens = (0..<(batch * config.context)).map { _ in rng.index(below: config.vocabulary) }
    targets = (0..<(batch * config.context)).map { _ in rng.index(below: config.vocabulary) }
  }

  /// The step's floating-point operations as PyTorch's FLOP counter counts them: 2 per multiply-add of every
  /// product, forward once and backward twice, and attention's two products (scores and mixing, over the whole
  /// T x T even where the causal mask hides half) forward once and backward 2.5 times.
  var flops: Double {
    let (b, t, l, c, v) = (
      Double(batch), Double(config.context), Double(config.layers), Double(config.width),
      Double(config.vocabulary)
    )
    let products = b * t * (l * 24 * c * c + 2 * c * v)
    let attention = b * t * l * 4 * t * c
    return 3 * products + 3.5 * attention
  }

  func step(_ profiler: OpProfiler? = nil) {
    profiler?.mark()
    let logits = model(tokens, batch: batch).reshape([-1, config.vocabulary])
    let loss = crossEntropyLoss(logits: logits, labels: targets)
    if activationBytes == 0 {
      let kept = loss.topologicalOrder().filter { !$0.parents.isEmpty }
      activationBytes = kept.reduce(0) { $0 + $1.storage.count * MemoryLayout<Float>.size }
    }
    loss.backward()
    profiler?.mark()
    clipGradNorm(parameters, maxNorm: 1)
    profiler?.charge("clip_grad_norm", backward: false)
    optimizer.step()
    profiler?.charge("AdamW step", backward: false)
    optimizer.zeroGrad()
  }

  /// Where the step's memory goes: parameters, gradients and AdamW's two moments (4 bytes each per parameter),
  /// the outputs of every op in the graph, which backward reads; and what the process's peak holds beyond them.
  func printLedger() {
    let megabytes = { (bytes: Int) in String(format: "%.1f MB", Double(bytes) / 1e6) }
    let parameterBytes = model.parameterCount * MemoryLayout<Float>.size
    let total = 4 * parameterBytes + activationBytes
    print(
      "  memory: parameters \(megabytes(parameterBytes)), gradients \(megabytes(parameterBytes)), AdamW moments "
        + "\(megabytes(2 * parameterBytes)), activations kept for backward \(megabytes(activationBytes)); "
        + "in all \(megabytes(total))")
    let peak = peakResidentBytes()
    print(
      "  peak resident memory of the process so far \(megabytes(peak)); beyond the above, \(megabytes(peak - total)): "
        + "backward's gradients in flight, the kernels' workspaces, the program, its libraries and what ran before")
  }

}
