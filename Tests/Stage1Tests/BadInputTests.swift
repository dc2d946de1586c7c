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
    .appendingPathComponent("stage1").path

  static let widths = [
    "0", "-4", "16,-4", "16,0", "9223372036854775807", "1e12", "nan", "16,", ",", "16,,16", "x",
    Array(repeating: "4", count: 17).joined(separator: ","),
  ]
  static let train = BadValues.cases(
    ["train"],
    [
      ("--points", BadValues.count + ["1"]), ("--noise", BadValues.bounded + ["101"]), ("--steps", BadValues.count),
      ("--lr", BadValues.positive), ("--hidden", widths + ["100001"]), ("--seed", BadValues.seed),
    ])
  static let bench = BadValues.cases(
    ["bench"], [("--steps", BadValues.count), ("--reference-steps", BadValues.count)])
  /// Sizes in range whose product is too large for the machine: the memory estimate refuses them.
  static let tooLarge = [
    BadInput(arguments: ["train", "--points", "10000000"], option: "--points"),
    BadInput(arguments: ["train", "--hidden", "100000,100000"], option: "--hidden"),
  ]

  @Test(arguments: train + bench + tooLarge)
  func aBadValueEndsInOneLineNamingTheOption(_ input: BadInput) throws {
    let result = try runTool(Self.executable, input.arguments)
    let lines = result.errorOutput.split(separator: "\n")
    #expect([1, 64].contains(result.status), "exit \(result.status): \(result.errorOutput)")
    #expect(lines.count == 1, "\(result.errorOutput)")
    #expect(lines.first?.hasPrefix("stage1: error: ") == true)
    #expect(lines.first?.contains(input.option) == true, "\(result.errorOutput)")
    #expect(!result.errorOutput.contains("Fatal error") && !result.errorOutput.contains("Backtrace"))
    #expect(result.output.isEmpty, "it ran: \(result.output)")
  }

  /// Output that cannot be written (here a full disk, /dev/full) ends in an error, never in exit 0.
  @Test func outputThatCannotBeWrittenIsAnError() throws {
    let folder = NSTemporaryDirectory() + "stage1-full-\(getpid())-\(Stopwatch.now())"
    let shell = try #require(findExecutable("sh"))
    let run = try runTool(shell, ["-c", "exec \"$0\" graph --plot-dir \"$1\" > /dev/full", Self.executable, folder])
    #expect(run.status == 1)
    #expect(run.errorOutput == "stage1: error: the output could not be written: No space left on device\n")
  }

  @Test func aDivergingRunStopsWithoutPlots() throws {
    let directory = NSTemporaryDirectory() + "stage1-diverge-\(getpid())-\(Stopwatch.now())"
    let result = try runTool(Self.executable, ["train", "--lr", "1e12", "--plot-dir", directory])
    #expect(result.status == 1)
    #expect(result.errorOutput.split(separator: "\n").count == 1, "\(result.errorOutput)")
    #expect(result.errorOutput.hasPrefix("stage1: error: training diverged: the loss is inf at step 6"))
    #expect(result.errorOutput.hasSuffix("; try a lower --lr than 1e+12\n"))
    #expect(!result.output.contains("after 100 steps"))
    #expect(!FileManager.default.fileExists(atPath: directory + "/loss.csv"))
  }
}
