import ArgumentParser
import CBLAS
import Foundation
import Kernels
import Support

/// `stage2 bench`: each figure against a reference measured in the same run. The matmul op against a raw
/// cblas_sgemm call; elementwise throughput against a plain copy of the same bytes; the moons training step
/// against stage 1's.
struct BenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract: "Matmul against raw sgemm, elementwise ops against memcpy, the step against stage 1.")

  @Option(parsing: .unconditional, help: "Seconds spent timing each figure (more is steadier).") var seconds = 0.3
  @OptionGroup var kernelOptions: KernelOptions

  func validate() throws {
    try Check.number(seconds, "--seconds", in: .positive(upTo: 600))
  }

  func run() throws {
    kernelOptions.apply()
    noGrad {
      benchMatmul()
      benchElementwise()
    }
    benchTrainingStep()
  }

  /// The median time of `body`, repeated for about `seconds` after one warm-up call.
  func timed(_ body: () -> Void) -> Double {
    body()
    var times: [Double] = []
    let total = Stopwatch()
    while total.seconds < seconds || times.count < 3 { times.append(Stopwatch.time(body)) }
    return median(times)
  }

  func benchMatmul() {
    print("matmul, square n x n in Float: the Tensor op against a raw cblas_sgemm call on the same buffers")
    print("     n   op GFLOP/s  sgemm GFLOP/s  op / sgemm")
    var rng = SeededRNG(seed: 1)
    var naive = (loop: 0.0, blas: 0.0)  // FLOP/s of the triple loop and of sgemm at n = 256
    for n in [64, 128, 256, 512, 1024] {
      let a = Tensor<Float>.uniform([n, n], low: -1, high: 1, rng: &rng)
      let b = Tensor<Float>.uniform([n, n], low: -1, high: 1, rng: &rng)
      var c = [Float](repeating: 0, count: n * n)
      let op = timed { _ = a.matmul(b) }
      let raw = withBLASThreads {  // BLAS on its own, with its own threads
        timed {
          cblas_sgemm(
            CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(n), Int32(n), Int32(n), 1, a.storage, Int32(n),
            b.storage, Int32(n), 0, &c, Int32(n))
        }
      }
      let flops = 2 * Double(n) * Double(n) * Double(n)
      print(
        String(
          format: "%6d  %11.1f  %13.1f  %10.2f", n, flops / op / 1e9, flops / raw / 1e9, raw / op))
      if n == 256 { naive = (flops / timed { _ = naiveMatmul(a.storage, b.storage, m: n, k: n, n: n) }, flops / raw) }
    }
    print(
      String(
        format: "the textbook triple loop (naiveMatmul) at n = 256: %.2f GFLOP/s, %.0fx slower than sgemm",
        naive.loop / 1e9, naive.blas / naive.loop))
  }

  func benchElementwise() {
    let n = 1 << 22  // 16 MiB of Float: larger than the caches, so this measures memory
    var rng = SeededRNG(seed: 2)
    let a = Tensor<Float>.uniform([n], low: -1, high: 1, rng: &rng)
    let b = Tensor<Float>.uniform([n], low: -1, high: 1, rng: &rng)
    var target = [Float](repeating: 0, count: n)
    let bytes = Double(n * MemoryLayout<Float>.size)
    let copy = timed {
      target.withUnsafeMutableBytes { t in a.storage.withUnsafeBytes { s in t.copyMemory(from: s) } }
    }
    let add = timed { _ = a + b }
    let tanh = timed { _ = a.tanh() }
    let copyRate = 2 * bytes / copy / 1e9  // one read, one write
    print("\nelementwise over \(n) Floats (bytes read + written per second)")
    print(String(format: "  memcpy %6.1f GB/s (the reference)", copyRate))
    print(
      String(format: "  a + b  %6.1f GB/s  = %.2f of memcpy", 3 * bytes / add / 1e9, 3 * bytes / add / 1e9 / copyRate))
    print(
      String(format: "  tanh   %6.1f GB/s  = %.2f of memcpy", 2 * bytes / tanh / 1e9, 2 * bytes / tanh / 1e9 / copyRate)
    )
  }

  func benchTrainingStep() {
    let config = TrainConfig()
    let model = makeModel(config)
    let batch = Batch(makeData(config))
    var optimizer = SGD(parameters: model.parameters(), learningRate: 0.01)
    let step = timed {
      let (loss, _) = lossAndScores(model, batch, config: config)
      optimizer.zeroGrad()
      loss.backward()
      optimizer.step()
    }
    print("\nthe moons step (MLP 2-16-16-1, 100 points: forward, backward, update, freeing the graph)")
    print(String(format: "  stage 2: %.3f ms per step", step * 1000))
    guard let stage1 = siblingStage("stage1"), let run = try? runTool(stage1, ["bench", "--no-micrograd"]),
      let line = run.output.split(separator: "\n").first(where: { $0.contains("ms per step") }),
      let perStep = line.components(separatedBy: "= ").last?.split(separator: " ").first.flatMap({ Double($0) })
    else {
      print("  (build stage 1 too, `swift build -c release`, to compare with it in this run)")
      return
    }
    print(String(format: "  stage 1: %.3f ms per step (measured now by stage1 bench)", perStep))
    print(String(format: "  stage 2 is %.0fx faster", perStep / 1000 / step))
  }
}
