import Foundation
import Support
import Testing

/// Runs the built `stage1` executable, as a user would, and checks what it prints and how it exits.
@Suite struct CommandLineTests {
  /// The executable sits beside the test bundle in the build folder.
  static let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    .appendingPathComponent("stage1").path

  let directory = NSTemporaryDirectory() + "stage1-cli-\(getpid())-\(Stopwatch.now())"

  func run(_ arguments: String...) throws -> ToolRun {
    try runTool(Self.executable, arguments)
  }

  @Test(arguments: [
    (["--dataset", "blobs"], "stage1: error: The value 'blobs' is invalid for '--dataset <dataset>'"),
    (["--steps", "-5"], "stage1: error: --steps must be a whole number from 1 to 10000000, got -5"),
    (["--lr", "nan"], "stage1: error: --lr must be a finite number above 0, got nan"),
    (["--lr", "inf"], "stage1: error: --lr must be a finite number above 0, got inf"),
    (["--hidden", "16,x"], "stage1: error: The value '16,x' is invalid for '--hidden <hidden>'"),
    (["--plot-dir", "/proc/no-such-dir"], "stage1: error: cannot create directory '/proc/no-such-dir'"),
    (["--no-such-option"], "stage1: error: Unknown option '--no-such-option'"),
  ])
  func badInputEndsWithOneLineOnStderrAndAFailingExit(_ arguments: [String], _ message: String) throws {
    let result = try runTool(Self.executable, ["train"] + arguments)
    #expect(result.status != 0)
    #expect(result.errorOutput.hasPrefix(message))
    #expect(result.errorOutput.split(separator: "\n").count == 1)
    #expect(!result.output.contains("step"))  // it stopped before training
  }

  @Test func trainWritesTheCurvesAndTheBoundary() throws {
    let result = try run("train", "--steps", "5", "--hidden", "4", "--plot-dir", directory)
    #expect(result.status == 0)
    #expect(result.output.contains("step 5/5"))
    #expect(result.output.contains("after 5 steps: loss"))
    for file in ["loss.csv", "loss.gp", "boundary-grid.csv", "boundary-points.csv", "boundary.gp"] {
      #expect(FileManager.default.fileExists(atPath: directory + "/" + file), "\(file)")
    }
    let csv = try String(contentsOfFile: directory + "/loss.csv", encoding: .utf8)
    #expect(csv.split(separator: "\n").count == 6)  // header + 5 steps
    #expect(csv.hasPrefix("step,loss,accuracy,lr\n1,"))
  }

  @Test func gradcheckPassesEveryCase() throws {
    let result = try run("gradcheck")
    #expect(result.status == 0)
    #expect(result.output.contains("micrograd_more_ops"))
    #expect(result.output.hasSuffix("26 passed, 0 failed\n"))
  }

  @Test func graphWritesDOTWithDataAndGradients() throws {
    let result = try run("graph", "--example", "neuron", "--plot-dir", directory)
    #expect(result.status == 0)
    #expect(result.output.contains("neuron: 10 nodes"))
    #expect(result.output.contains("wrote \(directory)/graph-neuron.dot"))
    let dot = try String(contentsOfFile: directory + "/graph-neuron.dot", encoding: .utf8)
    #expect(dot.hasPrefix("digraph G {"))
    #expect(dot.contains("o | data 0.7071 | grad 1.0"))  // tanh(0.8814) = 1/sqrt(2)
    #expect(dot.contains("x1 | data 2.0 | grad -1.5"))
  }

  @Test func graphHelpNamesTheFileItWritesAndTheOptionTrainUses() throws {
    let help = try run("graph", "--help").output.split(whereSeparator: \.isWhitespace).joined(separator: " ")
    #expect(help.contains("--plot-dir <plot-dir> Where graph-EXAMPLE.dot (and .svg, .png"))
    #expect(!help.contains("--out-dir"))
  }

  /// Without --plot-dir, runs write under Plots/runs/ (which git ignores), never over the committed references.
  @Test func withoutPlotDirTheRunsWriteUnderPlotsRuns() throws {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let graph = try runTool(Self.executable, ["graph"], workingDirectory: directory)
    let train = try runTool(Self.executable, ["train", "--steps", "2", "--hidden", "2"], workingDirectory: directory)
    #expect(graph.status == 0 && train.status == 0)
    for file in ["graph-neuron.dot", "loss.csv", "boundary-points.csv"] {
      #expect(FileManager.default.fileExists(atPath: directory + "/Plots/runs/1-scalar-autograd/" + file), "\(file)")
    }
    #expect(!FileManager.default.fileExists(atPath: directory + "/Plots/1-scalar-autograd"))
  }
}
