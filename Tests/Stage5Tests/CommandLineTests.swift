import Foundation
import Support
import Testing

/// Runs the built `stage4` executable, as a user would, and checks what it prints and how it exits.
@Suite struct CommandLineTests {
  /// The executable sits beside the test bundle in the build folder.
  static let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    .appendingPathComponent("stage5").path

  let directory = NSTemporaryDirectory() + "stage5-cli-\(getpid())-\(Stopwatch.now())"

  func run(_ arguments: String...) throws -> ToolRun {
    try runTool(Self.executable, arguments)
  }

  @Test(arguments: [
    (["train", "--steps", "0"], "stage5: error: --steps must be a whole number from 1 to 10000000, got 0"),
    (
      ["train", "--width", "30", "--heads", "4"],
      "stage5: error: --width must be a multiple of --heads (4), got 30"
    ),
    (["train", "--positions", "rotary"], "stage5: error: The value 'rotary' is invalid for '--positions <positions>'"),
    (["train", "--lr", "nan"], "stage5: error: --lr must be a finite number above 0, got nan"),
    (["sample"], "stage5: error: Missing expected argument '--checkpoint <checkpoint>'"),
    (
      ["sample", "--checkpoint", "/nonexistent.safetensors"],
      "stage5: error: cannot read '/nonexistent.safetensors': No such file or directory"
    ),
    (
      ["sample", "--checkpoint", "x", "--top-p", "1.5"],
      "stage5: error: --top-p must be a finite number in (0, 1], got 1.5"
    ),
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
    // The model's shape comes from the checkpoint; repeating it is allowed, contradicting it is not.
    let cached = try run("sample", "--checkpoint", path, "--prompt", "12345678")
    let uncached = try run("sample", "--checkpoint", path, "--width", "16", "--prompt", "12345678", "--no-kv-cache")
    #expect(cached.status == 0, "\(cached.errorOutput)")
    #expect(cached.output.hasPrefix("12345678|"))
    #expect(cached.output.split(separator: "\n").first == uncached.output.split(separator: "\n").first)
    let wrongShape = try run("sample", "--checkpoint", path, "--width", "32", "--prompt", "12345678")
    #expect(wrongShape.status != 0)
    #expect(
      wrongShape.errorOutput
        == "stage5: error: --width 32 conflicts with the checkpoint: '\(path)' was made with --width 16 (leave --width out)\n"
    )
    let badPrompt = try run("sample", "--checkpoint", path, "--width", "16", "--prompt", "12ab")
    #expect(
      badPrompt.errorOutput
        == "stage5: error: --prompt: character 3, 'a' (U+0061), is not one of the model's tokens (the digits 0-9)\n")
  }

  @Test func graphWritesIntoPlotDir() throws {
    let result = try run("graph", "--example", "attention", "--plot-dir", directory)
    #expect(result.status == 0)
    #expect(result.output.contains("wrote \(directory)/graph-attention.dot"))
    let dot = try String(contentsOfFile: directory + "/graph-attention.dot", encoding: .utf8)
    #expect(dot.hasPrefix("digraph G {"))
  }

  @Test func aResumeContinuesWithTheCheckpointsOptionsAndRefusesOthers() throws {
    let path = directory + "/tiny.safetensors"
    let model = ["--layers", "1", "--heads", "2", "--width", "8", "--batch-size", "4"]
    let first = try runTool(
      Self.executable, ["train", "--steps", "2", "--checkpoint", path, "--plot-dir", directory] + model)
    #expect(first.status == 0, "\(first.errorOutput)")
    let refusals: [([String], String)] = [
      (
        ["--lr", "0.01"], "--lr 0.01 conflicts with the checkpoint: '\(path)' was made with --lr 0.003 (leave --lr out)"
      ),
      (["--width", "16"], "--width 16 conflicts with the checkpoint: '\(path)' was made with --width 8"),
      (["--positions", "sinusoidal"], "--positions sinusoidal conflicts with the checkpoint"),
      (["--dropout", "0.1"], "--dropout 0.1 conflicts with the checkpoint"),
      ([], "'\(path)' is at step 2 already: --steps 2 leaves nothing to train (ask for more)"),
      (["--steps", "1"], "'\(path)' is at step 2 already: --steps 1 leaves nothing to train"),
      (["--checkpoint", ""], "--checkpoint is an empty path"),
      (
        ["--checkpoint", "/proc/x.safetensors"], "--checkpoint '/proc/x.safetensors': directory '/proc' is not writable"
      ),
    ]
    for (arguments, message) in refusals {
      let result = try runTool(Self.executable, ["train", "--resume", path, "--plot-dir", directory] + arguments)
      #expect(result.status != 0)
      #expect(result.errorOutput.hasPrefix("stage5: error: " + message), "\(arguments)")
      #expect(result.errorOutput.split(separator: "\n").count == 1)
      #expect(!result.output.contains("step"))
    }
    let resumed = try run("train", "--resume", path, "--steps", "3", "--plot-dir", directory)
    #expect(resumed.status == 0, "\(resumed.errorOutput)")
    #expect(resumed.output.contains("GPT with 1 layers, 2 heads, width 8"))
    #expect(resumed.output.contains("resumed from \(path) after step 2"))
    #expect(
      resumed.output.contains("note: the cosine schedule is re-derived for 3 steps (the checkpoint's run planned 2)"))
    #expect(resumed.output.contains("step 3/3") && !resumed.output.contains("step 1/3"))
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
