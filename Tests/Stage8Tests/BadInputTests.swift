import Foundation
import Support
import Testing

/// One bad value for one option: the command line to run and the option its one line of error must name.
struct BadInput: CustomTestStringConvertible, Sendable {
  let arguments: [String]
  let option: String

  var testDescription: String { arguments.joined(separator: " ") }
}

/// The bad values each kind of option is tried with: zero, negative, huge (Int.max, past Int.max, 1e12), not a
/// number, infinite, and not a number at all.
enum BadValues {
  /// For a whole number that must be at least 1.
  static let count = [
    "0", "-1", "-9223372036854775808", "9223372036854775807", "9223372036854775808", "1e12", "nan", "inf", "1.5", "x",
  ]
  /// For a real number that must be above 0 (a learning rate: a huge one is for the divergence test).
  static let positive = ["0", "-0", "-1", "-1e12", "nan", "inf", "-inf", "1e309", "x"]
  /// For a real number in a bounded interval that includes 0.
  static let bounded = ["-1", "-1e-9", "1e12", "nan", "inf", "-inf", "x"]
  /// For a probability such as dropout, in [0, 1).
  static let fraction = ["-0.1", "1", "1.5", "1e12", "nan", "inf", "-inf"]
  /// For a seed (any UInt64).
  static let seed = ["-1", "18446744073709551616", "1e12", "nan", "inf", "x"]

  /// Every (option, value) of a table appended to `command`.
  static func cases(_ command: [String], _ table: [(String, [String])]) -> [BadInput] {
    table.flatMap { option, values in values.map { BadInput(arguments: command + [option, $0], option: option) } }
  }
}

/// Every numeric option of every command, at every bad value of its kind: each must end with one line on stderr
/// that names the option, a usage or failure exit code, and no crash trace; never a run.
@Suite struct BadInputTests {
  static let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    .appendingPathComponent("stage8").path

  static let train = BadValues.cases(
    ["train"],
    [
      ("--steps", BadValues.count), ("--batch-size", BadValues.count), ("--lr", BadValues.positive),
      ("--layers", BadValues.count), ("--heads", BadValues.count), ("--width", BadValues.count + ["65537"]),
      ("--dropout", BadValues.fraction), ("--seed", BadValues.seed), ("--context", BadValues.count + ["65537"]),
      ("--vocab", BadValues.count + ["65537"]), ("--accumulation", BadValues.count),
      ("--warmup", ["-1", "1e12", "nan", "x"]), ("--eval-every", BadValues.count), ("--eval-batches", BadValues.count),
      ("--min-lr", BadValues.bounded), ("--sample-tokens", ["-1", "1e12", "nan", "x", "1000001"]),
      ("--ranks", BadValues.count + ["65"]), ("--zero", ["-1", "4", "1e12", "nan", "x"]),
      ("--bucket-mb", BadValues.positive), ("--pp", BadValues.count + ["65"]), ("--tp", BadValues.count + ["65"]),
      ("--timeout", BadValues.positive), ("--dp", BadValues.count + ["65"]),
      ("--microbatches", BadValues.count),
    ])
  static let sample = BadValues.cases(
    ["sample", "--checkpoint", "/nonexistent.safetensors"],
    [
      ("--temperature", BadValues.bounded + ["101"]), ("--top-k", BadValues.count.filter { $0 != "0" }),
      ("--top-p", BadValues.positive + ["1.5", "1e12"]), ("--count", BadValues.count), ("--seed", BadValues.seed),
      ("--tokens", BadValues.count),
    ])
  static let tokenize = BadValues.cases(["tokenize", "--out-dir", "/tmp/x"], [("--vocab", BadValues.count)])
  static let bench =
    BadValues.cases(["bench"], [("--seconds", BadValues.positive + ["601", "1e12"])]) + [
      // Flags that do not go together: --large chooses the model --profile times, and --profile times only steps.
      BadInput(arguments: ["bench", "--large"], option: "--large"),
      BadInput(arguments: ["bench", "--profile", "--decoding"], option: "--profile"),
      BadInput(arguments: ["bench", "--profile", "--hf", "/nonexistent"], option: "--profile"),
      BadInput(arguments: ["bench", "--profile", "--parallel"], option: "--profile"),
      BadInput(arguments: ["bench", "--profile", "--formats"], option: "--profile"),
    ]
  static let finetune = BadValues.cases(
    ["finetune"],
    [
      ("--steps", BadValues.count), ("--batch-size", BadValues.count), ("--lr", BadValues.positive),
      ("--warmup", ["-1", "1e12", "nan", "x"]), ("--seed", BadValues.seed), ("--last-k", BadValues.count),
      ("--rank", BadValues.count), ("--alpha", BadValues.positive), ("--lora-dropout", BadValues.fraction),
      ("--reduction", BadValues.count), ("--virtual-tokens", BadValues.count), ("--prefix-hidden", BadValues.count),
    ])
  static let compare =
    BadValues.cases(
      ["methods"],
      [
        ("--lm-steps", BadValues.count), ("--cls-steps", BadValues.count), ("--batch-size", BadValues.count),
        ("--seeds", BadValues.count), ("--cls-lr", BadValues.positive),
      ]) + BadValues.cases(["digits"], [("--seeds", BadValues.count)])
  /// Stage 8's options.
  static let precision =
    BadValues.cases(
      ["train"],
      [
        ("--precision", ["fp64", "x", ""]), ("--loss-scale", ["0.5", "0", "-1", "nan", "inf", "1e31", "x", ""]),
        ("--master-weights", ["maybe"]),
      ])
    + BadValues.cases(
      ["compare"],
      [("--steps", BadValues.count), ("--eval-every", BadValues.count), ("--runs", ["fp64", "fp32,fp32", ""])])
    + BadValues.cases(["formats"], [("--value", ["nan", "inf", "1e39", "x"])])
  static let parity = BadValues.cases(
    ["parity"],
    [
      ("--steps", BadValues.count), ("--ranks", BadValues.count + ["65"]), ("--microbatches", BadValues.count + ["13"]),
      ("--bucket-mb", BadValues.positive), ("--timeout", BadValues.positive), ("--layers", BadValues.count),
      ("--heads", BadValues.count), ("--width", BadValues.count), ("--context", BadValues.count),
    ])
  /// Sizes in range whose product is too large for the machine: the memory estimate refuses them.
  static let tooLarge = [
    BadInput(arguments: ["train", "--width", "65536", "--heads", "1"], option: "--width"),
    BadInput(arguments: ["train", "--layers", "1000", "--width", "8192"], option: "--width"),
    BadInput(
      arguments: ["train", "--batch-size", "100000", "--width", "4096", "--layers", "100"], option: "--batch-size"),
    BadInput(arguments: ["train", "--context", "65536", "--batch-size", "1000"], option: "--context"),
    BadInput(arguments: ["train", "--width", "30", "--heads", "4"], option: "--heads"),
  ]

  @Test(arguments: train + sample + tokenize + bench + finetune + compare + precision + parity + tooLarge)
  func aBadValueEndsInOneLineNamingTheOption(_ input: BadInput) throws {
    let result = try runTool(Self.executable, input.arguments)
    let lines = result.errorOutput.split(separator: "\n")
    #expect([1, 64].contains(result.status), "exit \(result.status): \(result.errorOutput)")
    #expect(lines.count == 1, "\(result.errorOutput)")
    #expect(lines.first?.hasPrefix("stage8: error: ") == true)
    #expect(lines.first?.contains(input.option) == true, "\(result.errorOutput)")
    #expect(!result.errorOutput.contains("Fatal error") && !result.errorOutput.contains("Backtrace"))
    #expect(result.output.isEmpty, "it ran: \(result.output)")
  }

  /// Output that cannot be written (here a full disk, /dev/full) ends in an error, never in exit 0.
  @Test func outputThatCannotBeWrittenIsAnError() throws {
    let folder = NSTemporaryDirectory() + "stage8-full-\(getpid())-\(Stopwatch.now())"
    let shell = try #require(findExecutable("sh"))
    let run = try runTool(shell, ["-c", "exec \"$0\" graph --plot-dir \"$1\" > /dev/full", Self.executable, folder])
    #expect(run.status == 1)
    #expect(run.errorOutput == "stage8: error: the output could not be written: No space left on device\n")
  }

  @Test func aDivergingRunStopsAndKeepsTheLastGoodCheckpoint() throws {
    let directory = temporaryDirectory("diverge")
    let path = directory + "/gpt.safetensors"
    let corpus = writeCorpus(String(shakespeareText.prefix(20_000)), in: directory)
    let model = [
      "--corpus", corpus, "--data-dir", directory + "/data", "--layers", "1", "--heads", "2", "--width", "16",
      "--context", "16", "--batch-size", "4", "--eval-every", "5", "--eval-batches", "2", "--steps", "10",
      "--checkpoint", path, "--plot-dir", directory,
    ]
    let good = try runTool(Self.executable, ["train"] + model)
    #expect(good.status == 0, "\(good.errorOutput)")
    let saved = try Data(contentsOf: URL(fileURLWithPath: path))
    let bad = try runTool(Self.executable, ["train", "--lr", "1e12"] + model)
    #expect(bad.status == 1)
    #expect(bad.errorOutput.split(separator: "\n").count == 1, "\(bad.errorOutput)")
    #expect(bad.errorOutput.hasPrefix("stage8: error: training diverged: "), "\(bad.errorOutput)")
    #expect(bad.errorOutput.contains("try a lower --lr than 1e+12"))
    #expect(!bad.output.contains("exact validation loss") && !bad.output.contains("a sample"))
    #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == saved, "the diverged run overwrote the checkpoint")
  }
}
