import ArgumentParser
import CBLAS
import Foundation
import Kernels
import Support

/// `stage4 bench`: one full training step of a GPT in nanoGPT's CPU configuration, against the sgemm peak
/// measured in the same run, and decoding speed with and without the KV cache.
struct BenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract: "A GPT training step (nanoGPT's CPU configuration) against the sgemm peak; decoding speed.")

  @Option(parsing: .unconditional, help: "Seconds spent timing each figure (more is steadier).") var seconds = 3.0
  @Flag(help: "Only the training step, op by op: where its time goes (run a profiler such as perf on this too).")
  var profile = false
  @OptionGroup var kernelOptions: KernelOptions

  /// The forward + backward FLOPs of one step of this configuration, as PyTorch's FLOP counter gives them.
  static let stepFLOPs = 4.02e9

  func validate() throws {
    try Check.number(seconds, "--seconds", in: .positive(upTo: 600))
  }

  /// The times of `body`, repeated for about `seconds` (at least 3 times) after `warmup` calls.
  func timed(seconds: Double? = nil, warmup: Int = 1, _ body: () -> Void) -> [Double] {
    for _ in 0..<warmup { body() }
    var times: [Double] = []
    let total = Stopwatch()
    while total.seconds < (seconds ?? self.seconds) || times.count < 3 { times.append(Stopwatch.time(body)) }
    return times
  }

  /// Rounds that alternate the sgemm peak and the training step: this machine's speed can change by half within
  /// seconds, so a peak measured once, before the steps, may describe a different machine from theirs.
  static let rounds = 6

  func run() throws {
    kernelOptions.apply()
    let config = GPTConfig.nanoGPTCPU
    let (batch, context) = (12, config.context)
    let model = GPT<Float>(config, seed: 1, random: RandomSource(seed: 1))
    let parameters = model.parameters()
    let optimizer = Adam(
      ParameterGroup.decayingMatrices(parameters, weightDecay: 0.1), learningRate: 1e-3, beta2: 0.99,
      decoupledWeightDecay: true)
    var tokenRNG = SeededRNG(seed: 2)
    let tokens = (0..<(batch * context)).map { _ in tokenRNG.index(below: config.vocabulary) }
    let targets = (0..<(batch * context)).map { _ in tokenRNG.index(below: config.vocabulary) }
    let profiler = profile ? OpProfiler() : nil
    func trainingStep() {
      profiler?.mark()
      let logits = model(tokens, batch: batch).reshape([-1, config.vocabulary])
      let loss = crossEntropyLoss(logits: logits, labels: targets)
      loss.backward()
      profiler?.mark()
      clipGradNorm(parameters, maxNorm: 1)
      profiler?.charge("clip_grad_norm", backward: false)
      optimizer.step()
      profiler?.charge("AdamW step", backward: false)
      optimizer.zeroGrad()
    }
    if let profiler {
      for _ in 0..<3 { trainingStep() }
      OpProfiler.current = profiler
      let times = timed(warmup: 0, trainingStep)
      OpProfiler.current = nil
      printProfile(profiler, steps: times.count, stepSeconds: median(times))
      return
    }

    // Each round: the sgemm peak for a third of the round's step time, then one warm-up step (OpenBLAS's own
    // threads spin on for a moment after the peak's product), then steps. The ratio is the round's.
    let peak = PeakProduct()
    var (stepTimes, peakRates, ratios, gemmShare): ([Double], [Double], [Double], [Double]) = ([], [], [], [])
    for _ in 0..<3 { trainingStep() }
    for _ in 0..<BenchCommand.rounds {
      let roundSeconds = seconds / Double(BenchCommand.rounds)
      let peakRate = peak.measure(seconds: roundSeconds / 3)
      let times = timed(seconds: roundSeconds) {
        let before = gemmNanoseconds.load(ordering: .relaxed)
        let clock = Stopwatch()
        trainingStep()
        gemmShare.append(Double(gemmNanoseconds.load(ordering: .relaxed) - before) / 1e9 / clock.seconds)
      }
      let rate = BenchCommand.stepFLOPs / median(times) / 1e9
      stepTimes += times
      peakRates.append(peakRate)
      ratios.append(rate / peakRate)
    }
    let stepTime = median(stepTimes)
    print(
      String(
        format: "sgemm peak (1024 x 1024, %d OpenBLAS threads, %@ kernels): %.1f GFLOP/s (median of %d rounds, %.1f "
          + "to %.1f)", peak.threads, blasCoreName, median(peakRates), BenchCommand.rounds, peakRates.min()!,
        peakRates.max()!))
    print(
      """
      training step, nanoGPT's CPU configuration (batch 12, context 64, 4 layers, 4 heads, width 128, vocabulary 65,
      no bias, no dropout; \(model.parameterCount) parameters; random tokens): forward, backward, clip 1.0, AdamW
      """)
    print(
      String(
        format: "  %.1f ms per step (median of %d), %.0f%% of it inside gemm; %.1f GFLOP/s (4.02 GFLOP per step)",
        stepTime * 1000, stepTimes.count, median(gemmShare) * 100, BenchCommand.stepFLOPs / stepTime / 1e9))
    print(
      String(
        format: "  %.2f of the sgemm peak (median of the %d rounds' ratios, %.2f to %.2f)", median(ratios),
        BenchCommand.rounds, ratios.min()!, ratios.max()!))
    print(String(format: "  peak resident memory %.0f MB", Double(peakResidentBytes()) / 1e6))

    let prompt = [0]
    let newTokens = context - prompt.count
    for useCache in [false, true] {
      let decode = timed(warmup: 0) {
        _ = model.generate(prompt, count: newTokens, sampling: Sampling(temperature: 0), seed: 0, useCache: useCache)
      }
      print(
        String(
          format: "decoding %d tokens greedily %@ the KV cache: %.0f tokens/s", newTokens,
          useCache ? "with" : "without", Double(newTokens) / median(decode)))
    }
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
