import Datasets
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
    .appendingPathComponent("stage3").path

  static let widths = [
    "0", "-4", "16,-4", "16,0", "9223372036854775807", "1e12", "nan", "16,", ",", "16,,16", "x",
    Array(repeating: "4", count: 17).joined(separator: ","),
  ]
  static let train = BadValues.cases(
    ["train"],
    [
      ("--lr", BadValues.positive), ("--epochs", BadValues.count), ("--batch-size", BadValues.count),
      ("--accumulation", BadValues.count), ("--hidden", widths + ["1000001"]), ("--dropout", BadValues.fraction),
      ("--weight-decay", BadValues.bounded + ["101"]), ("--clip", BadValues.bounded), ("--seed", BadValues.seed),
    ])
  static let compare = BadValues.cases(["compare"], [("--epochs", BadValues.count), ("--seed", BadValues.seed)])
  static let bench = BadValues.cases(["bench"], [("--seconds", BadValues.positive + ["601", "1e12"])])
  /// Sizes in range whose product is too large for the machine: the memory estimate refuses them.
  static let tooLarge = [
    BadInput(arguments: ["train", "--hidden", "1000000,1000000"], option: "--hidden"),
    BadInput(arguments: ["train", "--batch-size", "1000000", "--hidden", "100000,100000,100000"], option: "--hidden"),
  ]

  @Test(arguments: train + compare + bench + tooLarge)
  func aBadValueEndsInOneLineNamingTheOption(_ input: BadInput) throws {
    let result = try runTool(Self.executable, input.arguments)
    let lines = result.errorOutput.split(separator: "\n")
    #expect([1, 64].contains(result.status), "exit \(result.status): \(result.errorOutput)")
    #expect(lines.count == 1, "\(result.errorOutput)")
    #expect(lines.first?.hasPrefix("stage3: error: ") == true)
    #expect(lines.first?.contains(input.option) == true, "\(result.errorOutput)")
    #expect(!result.errorOutput.contains("Fatal error") && !result.errorOutput.contains("Backtrace"))
    #expect(result.output.isEmpty, "it ran: \(result.output)")
  }

  let directory = NSTemporaryDirectory() + "stage3-bad-\(getpid())-\(Stopwatch.now())"

  /// The first `count` lines of the shipped digits, written to a file of their own.
  func digitsFile(_ count: Int, lineEnd: String = "\n") throws -> String {
    try prepareOutputDirectory(directory)
    let path = directory + "/digits-\(count).csv"
    let lines = try String(contentsOfFile: Digits.defaultPath, encoding: .utf8).split(separator: "\n").prefix(count)
    try writeAtomically(lines.joined(separator: lineEnd) + lineEnd, to: path)
    return path
  }

  @Test(arguments: [(1, "1, 0 and 0"), (2, "1, 0 and 1"), (5, "4, 1 and 0")])
  func tooFewImagesSayHowManyEachSplitNeeds(_ count: Int, _ parts: String) throws {
    let path = try digitsFile(count)
    let expected =
      "stage3: error: '\(path)' holds \(count) images, too few to split 70/15/15 into train, "
      + "validation and test (\(parts) images): each part needs at least one, so the file at least 6\n"
    for command in ["train", "compare"] {
      let result = try runTool(Self.executable, [command, "--data", path, "--epochs", "1", "--plot-dir", directory])
      #expect(result.status == 1)
      #expect(result.errorOutput == expected)
      #expect(!FileManager.default.fileExists(atPath: directory + "/compare.csv"))
    }
    // Six is enough: one image each for validation and test.
    let six = try runTool(
      Self.executable,
      ["train", "--data", try digitsFile(6), "--epochs", "1", "--hidden", "4", "--plot-dir", directory])
    #expect(six.status == 0, "\(six.errorOutput)")
    #expect(six.output.contains("(4 train, 1 validation, 1 test)"))
  }

  @Test func aWindowsDigitsFileTrains() throws {
    let path = try digitsFile(1797, lineEnd: "\r\n")
    let result = try runTool(
      Self.executable, ["train", "--data", path, "--epochs", "1", "--hidden", "8", "--plot-dir", directory])
    #expect(result.status == 0, "\(result.errorOutput)")
    #expect(result.output.contains("(1258 train, 270 validation, 269 test)"))
  }

  /// Output that cannot be written (here a full disk, /dev/full) ends in an error, never in exit 0.
  @Test func outputThatCannotBeWrittenIsAnError() throws {
    let folder = NSTemporaryDirectory() + "stage3-full-\(getpid())-\(Stopwatch.now())"
    let shell = try #require(findExecutable("sh"))
    let run = try runTool(shell, ["-c", "exec \"$0\" graph --plot-dir \"$1\" > /dev/full", Self.executable, folder])
    #expect(run.status == 1)
    #expect(run.errorOutput == "stage3: error: the output could not be written: No space left on device\n")
  }

  @Test func aDivergingRunStopsAndKeepsTheLastGoodCheckpoint() throws {
    let path = directory + "/mlp.safetensors"
    let options = ["--hidden", "16", "--epochs", "2", "--checkpoint", path, "--plot-dir", directory]
    let good = try runTool(Self.executable, ["train"] + options)
    #expect(good.status == 0, "\(good.errorOutput)")
    let saved = try Data(contentsOf: URL(fileURLWithPath: path))
    let bad = try runTool(Self.executable, ["train", "--lr", "1e12"] + options)
    #expect(bad.status == 1)
    #expect(bad.errorOutput.split(separator: "\n").count == 1, "\(bad.errorOutput)")
    #expect(bad.errorOutput.hasPrefix("stage3: error: training diverged: "), "\(bad.errorOutput)")
    #expect(bad.errorOutput.contains("try a lower --lr than 1e+12"))
    #expect(!bad.output.contains("test: loss"))
    #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == saved, "the diverged run overwrote the checkpoint")
  }
}
