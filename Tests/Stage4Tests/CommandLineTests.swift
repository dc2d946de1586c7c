import Foundation
import Support
import Testing

/// Runs the built `stage4` executable, as a user would, and checks what it prints and how it exits.
@Suite struct CommandLineTests {
  /// The executable sits beside the test bundle in the build folder.
  static let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    .appendingPathComponent("stage4").path

  let directory = NSTemporaryDirectory() + "stage4-cli-\(getpid())-\(Stopwatch.now())"

  func run(_ arguments: String...) throws -> ToolRun {
    try runTool(Self.executable, arguments)
  }

  @Test(arguments: [
    (["train", "--steps", "0"], "stage4: error: --steps must be a positive whole number, got 0"),
    (
      ["train", "--width", "30", "--heads", "4"],
      "stage4: error: --width must be a positive multiple of --heads (4), got 30"
    ),
    (["train", "--positions", "rotary"], "stage4: error: The value 'rotary' is invalid for '--positions <positions>'"),
    (["train", "--lr", "nan"], "stage4: error: --lr must be a finite positive number, got nan"),
    (["sample"], "stage4: error: Missing expected argument '--checkpoint <checkpoint>'"),
    (["sample", "--checkpoint", "/nonexistent.safetensors"], "stage4: error: cannot read '/nonexistent.safetensors'"),
    (["sample", "--checkpoint", "x", "--top-p", "1.5"], "stage4: error: --top-p must be in (0, 1], got 1.5"),
  ])
  func badInputEndsWithOneLineOnStderrAndAFailingExit(_ arguments: [String], _ message: String) throws {
    let result = try runTool(Self.executable, arguments)
    #expect(result.status != 0)
    #expect(result.errorOutput.hasPrefix(message))
    #expect(result.errorOutput.split(separator: "\n").count == 1)
    #expect(!result.output.contains("step"))
  }

  @Test func trainWritesACheckpointThatSampleReads() throws {
    let path = directory + "/gpt.safetensors"
    let train = try run("train", "--steps", "20", "--width", "16", "--checkpoint", path, "--plot-dir", directory)
    #expect(train.status == 0, "\(train.errorOutput)")
    #expect(train.output.contains("step 20/20"))
    #expect(FileManager.default.fileExists(atPath: directory + "/reverse.csv"))
    let cached = try run("sample", "--checkpoint", path, "--width", "16", "--prompt", "12345678")
    let uncached = try run("sample", "--checkpoint", path, "--width", "16", "--prompt", "12345678", "--no-kv-cache")
    #expect(cached.status == 0, "\(cached.errorOutput)")
    #expect(cached.output.hasPrefix("12345678|"))
    #expect(cached.output.split(separator: "\n").first == uncached.output.split(separator: "\n").first)
    let wrongShape = try run("sample", "--checkpoint", path, "--width", "32", "--prompt", "12345678")
    #expect(wrongShape.status != 0)
    #expect(wrongShape.errorOutput.contains("does not fit this run"))
    let badPrompt = try run("sample", "--checkpoint", path, "--width", "16", "--prompt", "12ab")
    #expect(badPrompt.errorOutput == "stage4: error: --prompt must be exactly 8 digits, got '12ab'\n")
  }

  @Test func gradcheckPassesEveryCase() throws {
    let result = try run("gradcheck")
    #expect(result.status == 0)
    #expect(result.output.contains("gpt_tiny"))
    #expect(result.output.hasSuffix("83 passed, 0 failed\n"))
  }

  /// Every number printed after "loss " (train and validation losses alike), in order.
  func printedLosses(_ output: String) -> [Double] {
    output.split(separator: " loss ").dropFirst().compactMap { Double($0.prefix { !$0.isWhitespace }) }
  }

  @Test func theReferenceKernelsTrainToTheSameLosses() throws {
    let arguments = ["train", "--steps", "20", "--width", "16", "--plot-dir", directory]
    let fast = try runTool(Self.executable, arguments + ["--kernels", "fast"])
    let reference = try runTool(Self.executable, arguments + ["--kernels", "reference"])
    #expect(fast.status == 0 && reference.status == 0, "\(fast.errorOutput)\(reference.errorOutput)")
    let (a, b) = (printedLosses(fast.output), printedLosses(reference.output))
    #expect(a.count >= 2 && a.count == b.count, "\(fast.output)\n\(reference.output)")
    for (x, y) in zip(a, b) { #expect(abs(x - y) <= 2e-4 + 1e-3 * abs(y), "fast \(x), reference \(y)") }
  }
}
