import Foundation
import Support
import Testing

/// Runs the built `stage2` executable, as a user would, and checks what it prints and how it exits.
@Suite struct CommandLineTests {
  /// The executable sits beside the test bundle in the build folder.
  static let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    .appendingPathComponent("stage2").path

  let directory = NSTemporaryDirectory() + "stage2-cli-\(getpid())-\(Stopwatch.now())"

  func run(_ arguments: String...) throws -> ToolRun {
    try runTool(Self.executable, arguments)
  }

  @Test(arguments: [
    (["--dataset", "blobs"], "stage2: error: The value 'blobs' is invalid for '--dataset <dataset>'"),
    (["--steps", "-5"], "stage2: error: --steps must be a whole number from 1 to 10000000, got -5"),
    (["--lr", "nan"], "stage2: error: --lr must be a finite number above 0, got nan"),
    (["--lr", "inf"], "stage2: error: --lr must be a finite number above 0, got inf"),
    (["--hidden", "16,x"], "stage2: error: The value '16,x' is invalid for '--hidden <hidden>'"),
    (["--points", "1"], "stage2: error: --points must be a whole number from 3 to 10000000, got 1"),
    (["--plot-dir", "/proc/no-such-dir"], "stage2: error: cannot create directory '/proc/no-such-dir'"),
    (["--no-such-option"], "stage2: error: Unknown option '--no-such-option'"),
  ])
  func badInputEndsWithOneLineOnStderrAndAFailingExit(_ arguments: [String], _ message: String) throws {
    let result = try runTool(Self.executable, ["train"] + arguments)
    #expect(result.status != 0)
    #expect(result.errorOutput.hasPrefix(message))
    #expect(result.errorOutput.split(separator: "\n").count == 1)
    #expect(!result.output.contains("step"))  // it stopped before training
  }

  @Test func trainOneDataSetWritesItsCurvesAndBoundary() throws {
    let result = try run("train", "--dataset", "spirals", "--steps", "5", "--hidden", "8", "--plot-dir", directory)
    #expect(result.status == 0)
    #expect(result.output.contains("MLP 2-8-3"))
    #expect(result.output.contains("after 5 steps: loss"))
    for file in ["spirals-loss.csv", "spirals-loss.gp", "spirals-boundary-grid.csv", "spirals-boundary.gp"] {
      #expect(FileManager.default.fileExists(atPath: directory + "/" + file), "\(file)")
    }
  }

  @Test func theMoonsRunIsComparedWithStage1InTheSameRun() throws {
    let result = try run("train", "--dataset", "moons", "--steps", "3", "--plot-dir", directory)
    #expect(result.status == 0)
    #expect(result.output.contains("stage 1 on the same data and seed (scalar Values, Double): after 3 steps: loss"))
    // The speed is compared only when stage 1's run took 0.05 s or more, which 3 steps may or may not.
    #expect(
      result.output.contains("stage 2 trained the same network")
        || result.output.contains("(both runs took under 0.05 s: too short to compare their speeds)"))
  }

  @Test func gradcheckPassesEveryCase() throws {
    let result = try run("gradcheck")
    #expect(result.status == 0)
    #expect(result.output.contains("matmul_batch_broadcast"))
    #expect(result.output.hasSuffix("63 passed, 0 failed\n"))
  }

  @Test func graphWritesDOTWithShapes() throws {
    let result = try run("graph", "--example", "mlp", "--plot-dir", directory)
    #expect(result.status == 0)
    #expect(result.output.contains("wrote \(directory)/graph-mlp.dot"))
    #expect(result.output.contains("matmul"))
    let dot = try String(contentsOfFile: directory + "/graph-mlp.dot", encoding: .utf8)
    #expect(dot.hasPrefix("digraph G {"))
    #expect(dot.contains("W1 | shape [2, 4]"))
    #expect(dot.contains("loss | shape [] | data "))
  }

  /// Every number printed after "loss " (train and validation losses alike), in order.
  func printedLosses(_ output: String) -> [Double] {
    output.split(separator: " loss ").dropFirst().compactMap { Double($0.prefix { !$0.isWhitespace }) }
  }

  @Test func theReferenceKernelsTrainToTheSameLosses() throws {
    let arguments = ["train", "--dataset", "moons", "--steps", "30", "--plot-dir", directory]
    let fast = try runTool(Self.executable, arguments + ["--kernels", "fast"])
    let reference = try runTool(Self.executable, arguments + ["--kernels", "reference"])
    #expect(fast.status == 0 && reference.status == 0, "\(fast.errorOutput)\(reference.errorOutput)")
    let (a, b) = (printedLosses(fast.output), printedLosses(reference.output))
    #expect(a.count >= 2 && a.count == b.count, "\(fast.output)\n\(reference.output)")
    for (x, y) in zip(a, b) { #expect(abs(x - y) <= 2e-4 + 1e-3 * abs(y), "fast \(x), reference \(y)") }
  }
}
