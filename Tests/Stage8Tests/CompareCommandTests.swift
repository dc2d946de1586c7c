import Foundation
import Support
import Testing

@testable import Stage8

/// `stage8 compare`, `train --precision` and `formats` as a user runs them.
@Suite struct CompareCommandTests {
  static let executable = CommandLineTests.executable

  /// A short comparison of the runs meant to fail and of fp8: every row, its counters, the plots.
  @Test func compareShowsEachRunsFailureInItsCounters() throws {
    let directory = temporaryDirectory("compare")
    let corpus = writeCorpus(String(shakespeareText.prefix(30_000)), in: directory)
    let result = try runTool(
      Self.executable,
      [
        "compare", "--steps", "30", "--eval-every", "10", "--runs", "fp32,fp16-unscaled,bf16-pure,fp8", "--corpus",
        corpus, "--plot-dir", directory,
      ])
    #expect(result.status == 0, "\(result.errorOutput)")
    let rows = result.output.split(separator: "\n").map(String.init)
    func row(_ name: String) -> [String] {
      (rows.last { $0.hasPrefix(name + " ") } ?? "").split(separator: " ").map(String.init)
    }
    #expect(row("fp32").count >= 13 && row("fp32")[2] == "0.0000", "\(result.output)")
    // fp16 without scaling: a share of its gradients stored as subnormals; nothing skipped, nothing erased.
    let unscaled = row("fp16-unscaled")
    #expect(unscaled.count >= 13, "\(result.output)")
    #expect(Double(unscaled[5].dropLast()).map { $0 > 1 } == true, "subnormal share: \(unscaled)")
    #expect(unscaled[7] == "-")
    // Pure bf16: a share of its updates erased.
    let pure = row("bf16-pure")
    #expect(Double(pure[7].dropLast()).map { $0 > 1 } == true, "lost updates: \(pure)")
    #expect(row("fp8").count >= 13)
    for name in ["compare-val.png", "compare-scale.csv", "compare-val.csv"] {
      #expect(FileManager.default.fileExists(atPath: directory + "/" + name), "\(name)")
    }
    let scale = try String(contentsOfFile: directory + "/compare-scale.csv", encoding: .utf8)
    #expect(scale.hasPrefix("step,below normal fp16-unscaled\n1,"))
    // fp16's gradients by binary exponent: shares that add up to 1, most of them below fp16's normal range.
    let exponents = try String(contentsOfFile: directory + "/compare-exponents.csv", encoding: .utf8)
      .split(separator: "\n").dropFirst().map { $0.split(separator: ",").compactMap { Double($0) } }
    #expect(exponents.count == GradientCensus.exponentRange.count)
    #expect(abs(exponents.reduce(0) { $0 + $1[1] } - 1) < 1e-5)  // shares printed with 6 digits
    #expect(exponents.filter { $0[0] < -14 }.reduce(0) { $0 + $1[1] } > 0.3)
  }

  @Test func trainSaysWhatItStoresInWhichFormatAndResumes() throws {
    let cli = CommandLineTests()
    let path = cli.directory + "/fp16.safetensors"
    let common = cli.tiny + ["--precision", "fp16", "--checkpoint", path, "--sample-tokens", "0"]
    let first = try cli.run(["train", "--steps", "10"] + common)
    #expect(first.status == 0, "\(first.errorOutput)")
    #expect(
      first.output.contains(
        "precision: fp16 weights, activations and gradients, fp32 master weights, loss scale dynamic\n"))
    let resumed = try cli.run(["train", "--resume", path, "--steps", "20"] + ["--plot-dir", cli.directory])
    #expect(resumed.status == 0, "\(resumed.errorOutput)")
    #expect(resumed.output.contains("precision: fp16"))
  }

  @Test(arguments: [
    (
      ["train", "--precision", "bf16", "--tp", "2", "--ranks", "2"],
      "--precision bf16 runs on one process or with data parallelism (--ranks, --zero 0); not with --tp, --pp or --zero"
    ),
    (
      ["train", "--precision", "fp16", "--ranks", "2"],
      "--loss-scale dynamic with --ranks: loss scaling is not built for data parallelism; give --loss-scale none (bf16 needs none)"
    ),
    (["train", "--loss-scale", "0.5"], "--loss-scale must be dynamic, none or a number from 1 to 2^100, got '0.5'"),
    (
      ["train", "--precision", "fp8", "--ranks", "2"],
      "--precision fp8 with --ranks: each rank would scale by the amaxes of its own rows (Transformer Engine all-reduces them); not built"
    ),
    (
      ["train", "--loss-scale", "1024"],
      "--loss-scale 1024 needs --precision bf16, fp16 or fp8: fp32 has nothing to scale"
    ),
    (
      ["train", "--master-weights", "off"],
      "--master-weights off needs --precision bf16, fp16 or fp8: fp32's weights are the masters"
    ),
    (
      ["compare", "--runs", "fp32,fp64"], "--runs: 'fp64' is not one of fp32, bf16, fp16, fp16-unscaled, bf16-pure, fp8"
    ),
    (["compare", "--runs", "bf16,bf16"], "--runs names bf16 twice"),
  ])
  func badCombinationsAreRefusedWithTheirReason(_ arguments: [String], _ message: String) throws {
    let cli = CommandLineTests()
    cli.expectRefusal(try cli.run(arguments), message)
  }

  @Test func formatsShowsTheBitsOfAValue() throws {
    let result = try runTool(Self.executable, ["formats", "--value", "-2.5"])
    #expect(result.status == 0)
    func line(_ format: String, _ bits: String, _ value: String) -> String {
      "  " + format + " " + bits.padding(toLength: 40, withPad: " ", startingAt: 0) + " = " + value + "\n"
    }
    #expect(result.output.contains(line("bf16", "1 | 10000000 | 0100000", "-2.5  (+0.00e+00)")), "\(result.output)")
    #expect(result.output.contains(line("e5m2", "1 | 10000 | 01", "-2.5  (+0.00e+00)")))
    #expect(result.output.contains(line("e4m3", "1 | 1000 | 010", "-2.5  (+0.00e+00)")))
  }
}
