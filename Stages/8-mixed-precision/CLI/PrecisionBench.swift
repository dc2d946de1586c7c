import Foundation
import Kernels
import Support

/// `stage8 bench --formats`: stage 8's figures. The training step of nanoGPT's CPU configuration in each format
/// against fp32's, timed in alternating rounds so that a change in the machine's speed falls on all of them alike;
/// and the conversions a low format costs, against a plain copy of the same memory.
///
/// This CPU computes in fp32: a bf16 or fp16 product converts its operands, multiplies them in fp32 sgemm and
/// rounds the result, so every low-format op costs what fp32's does plus its conversions. A GPU's tensor cores
/// multiply the 16-bit numbers themselves, two to sixteen times faster than its fp32 units, and half the bytes
/// move; neither effect exists here, and the figures show only the price of the rounding.
struct PrecisionBench {
  let seconds: Double
  static let rounds = 5
  static let formats: [Precision] = [.fp32, .bf16, .fp16, .fp8]

  func run() throws {
    let trainers = Self.formats.map { precision -> Trainer in
      var config = TrainConfig()
      config.precision = PrecisionConfig(precision)
      config.evalBatches = 1
      // Random tokens: the step's time does not depend on them.
      var rng = SeededRNG(seed: 8)
      let tokens = TokenFile((0..<20_000).map { _ in Int(rng.next() % 65) })
      return Trainer(config, tokenizer: CharTokenizer(corpus: benchAlphabet), train: tokens, val: tokens)
    }
    for trainer in trainers { try trainer.runStep() }  // warm-up
    var times = [[Double]](repeating: [], count: trainers.count)
    let perRound = max(seconds / Double(Self.rounds) / Double(trainers.count), 0.05)
    var failure: (any Error)?
    for _ in 0..<Self.rounds {
      for (i, trainer) in trainers.enumerated() {
        times[i].append(
          median(
            repeatedTimes(seconds: perRound, warmup: 0) {
              do { try trainer.runStep() } catch { failure = failure ?? error }
            }))
      }
    }
    if let failure { throw failure }
    print(
      "training step in each format, nanoGPT's CPU configuration (batch 12, context 64, 4 layers, width 128), "
        + "median of \(Self.rounds) alternating rounds:")
    for (i, precision) in Self.formats.enumerated() {
      let ratios = zip(times[i], times[0]).map { $0 / $1 }
      print(
        String(
          format: "  %@ %6.1f ms per step, %.2fx fp32's (rounds: %.2f to %.2f)",
          precision.rawValue.padding(toLength: 5, withPad: " ", startingAt: 0), median(times[i]) * 1000,
          median(ratios), ratios.min()!, ratios.max()!))
    }
    conversions()
    try memory()
  }

  /// nanoGPT's Shakespeare model, where the activations are most of the memory.
  static let memoryModel = (context: 256, layers: 6, heads: 6, width: 384, batch: 8, steps: 3)

  /// The memory of a few training steps of `memoryModel` in each format, each run in a process of its own so that
  /// its peak resident memory is its own: the ledger of its buffers and the peak the kernel measured.
  func memory() throws {
    let m = Self.memoryModel
    print(
      "memory of \(m.steps) training steps, nanoGPT's Shakespeare model (batch \(m.batch), context \(m.context), "
        + "\(m.layers) layers, width \(m.width)), each format in a process of its own:")
    print("  run      weights  masters  gradients  optimizer  activations   ledger  peak RSS")
    var fp32Peak = 0.0
    for precision in Self.formats {
      let child = Process()
      // This very program (argv[0] may be a bare name found on the PATH), on the same kernels.
      #if os(Linux)
        child.executableURL = URL(fileURLWithPath: "/proc/self/exe")
      #else
        child.executableURL = Bundle.main.executableURL
      #endif
      child.arguments = ["bench", "--memory-of", precision.rawValue, "--kernels", KernelChoice.current.rawValue]
      let pipe = Pipe()
      child.standardOutput = pipe
      try child.run()
      let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
      child.waitUntilExit()
      let fields = output.split(whereSeparator: \.isWhitespace).compactMap { Double($0) }
      guard child.terminationStatus == 0, fields.count == 6 else {
        throw UserError("bench: the \(precision.rawValue) memory run failed (status \(child.terminationStatus))")
      }
      if precision == .fp32 { fp32Peak = fields[5] }
      let columns = zip(fields[0..<5] + [fields[0..<5].reduce(0, +), fields[5]], [9, 9, 11, 11, 13, 9, 10])
      print(
        "  " + precision.rawValue.padding(toLength: 5, withPad: " ", startingAt: 0)
          + columns.map { String(format: "%.0f MB", $0 / 1e6).leftPadded($1) }.joined()
          + String(format: ", %.2fx fp32's", fields[5] / fp32Peak))
    }
  }

  /// The child of `memory`: prints the ledger's five parts and the peak resident memory, in bytes.
  static func memoryChild(_ precision: Precision) throws {
    let m = memoryModel
    var config = TrainConfig()
    (config.context, config.layers, config.heads, config.width, config.batchSize) =
      (m.context, m.layers, m.heads, m.width, m.batch)
    config.precision = PrecisionConfig(precision)
    var rng = SeededRNG(seed: 8)
    let tokens = TokenFile((0..<20_000).map { _ in Int(rng.next() % 65) })
    let trainer = Trainer(config, tokenizer: CharTokenizer(corpus: benchAlphabet), train: tokens, val: tokens)
    for _ in 0..<m.steps { try trainer.runStep() }
    let ledger = FormatLedger.measure(trainer)
    let parts = [ledger.weights, ledger.masters, ledger.gradients, ledger.optimizer, ledger.activations]
    print((parts + [peakResidentBytes()]).map(String.init).joined(separator: " "))
  }

  /// Rounding 16M floats (64 MB) in place to each format against copying them, in GB/s of fp32 read.
  func conversions() {
    let count = 1 << 24
    var rng = SeededRNG(seed: 9)
    let source = (0..<count).map { _ in Float(rng.normal(std: 1)) }
    var target = source
    let bytes = Double(count * 4)
    let copy = median(
      repeatedTimes(seconds: seconds / 6) {
        target.withUnsafeMutableBufferPointer { t in
          source.withUnsafeBufferPointer { s in t.baseAddress!.update(from: s.baseAddress!, count: count) }
        }
      })
    print(
      "conversions of 16M floats in place, against copying them (\(String(format: "%.1f", bytes / copy / 1e9)) GB/s):")
    for format in [NumberFormat.bf16, .fp16, .e4m3, .e5m2] {
      let time = median(
        repeatedTimes(seconds: seconds / 6) {
          target.withUnsafeMutableBufferPointer { format.round($0) }
        })
      print(
        String(
          format: "  fp32 -> %@ -> fp32: %5.1f GB/s, %.2fx the copy's time%@", format.rawValue, bytes / time / 1e9,
          time / copy, format == .fp16 ? " (F16C's vcvtps2ph and vcvtph2ps)" : ""))
    }
  }
}

/// The 65 characters of Tiny Shakespeare's alphabet, for a tokenizer of the bench's random ids.
private let benchAlphabet = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
