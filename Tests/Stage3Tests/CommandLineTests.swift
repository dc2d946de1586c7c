import Datasets
import Foundation
import Support
import Testing

@testable import Stage3

/// Runs the built `stage3` executable, as a user would, and checks what it prints and how it exits.
@Suite struct CommandLineTests {
  /// The executable sits beside the test bundle in the build folder.
  static let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    .appendingPathComponent("stage3").path

  let directory = NSTemporaryDirectory() + "stage3-cli-\(getpid())-\(Stopwatch.now())"

  func run(_ arguments: String...) throws -> ToolRun {
    try runTool(Self.executable, arguments)
  }

  @Test(arguments: [
    (["--optimizer", "rmsprop"], "stage3: error: The value 'rmsprop' is invalid for '--optimizer <optimizer>'"),
    (["--epochs", "0"], "stage3: error: --epochs must be a whole number from 1 to 100000, got 0"),
    (["--lr", "-1"], "stage3: error: --lr must be a finite number above 0, got -1.0"),
    (["--dropout", "1.5"], "stage3: error: --dropout must be a finite number in [0, 1), got 1.5"),
    (["--batch-size", "-3"], "stage3: error: --batch-size must be a whole number from 1 to 1000000, got -3"),
    (
      ["--resume", "/nonexistent/x.safetensors"],
      "stage3: error: cannot read '/nonexistent/x.safetensors': No such file or directory"
    ),
    (["--data", "/tmp"], "stage3: error: cannot read '/tmp': it is a directory, not a file"),
    (["--data", "/dev/null"], "stage3: error: cannot read '/dev/null': it is a device, pipe or socket, not a file"),
    (
      ["--data", "/nonexistent/digits.csv"],
      "stage3: error: cannot read '/nonexistent/digits.csv': No such file or directory"
    ),
    (["--plot-dir", "/proc/no-such-dir"], "stage3: error: cannot create directory '/proc/no-such-dir'"),
  ])
  func badInputEndsWithOneLineOnStderrAndAFailingExit(_ arguments: [String], _ message: String) throws {
    let result = try runTool(Self.executable, ["train"] + arguments)
    #expect(result.status != 0)
    #expect(result.errorOutput.hasPrefix(message))
    #expect(result.errorOutput.split(separator: "\n").count == 1)
    #expect(!result.output.contains("epoch"))
  }

  @Test func aCorruptCheckpointIsOneLineToo() throws {
    try prepareOutputDirectory(directory)
    let path = directory + "/junk.safetensors"
    try writeAtomically("not a checkpoint at all", to: path)
    let result = try run("train", "--resume", path, "--plot-dir", directory)
    #expect(result.status != 0)
    #expect(result.errorOutput.hasPrefix("stage3: error: '\(path)' is not a valid safetensors file"))
    #expect(result.errorOutput.split(separator: "\n").count == 1)
  }

  @Test func trainCheckpointsAndResumesFromTheCommandLine() throws {
    let path = directory + "/run.safetensors"
    let first = try run("train", "--epochs", "2", "--hidden", "16", "--checkpoint", path, "--plot-dir", directory)
    #expect(first.status == 0)
    #expect(first.output.contains("epoch 2/2"))
    #expect(first.output.contains("test: loss"))
    // The checkpoint's options (here --hidden 16) need not be repeated; the run goes on into the same file.
    let resumed = try run("train", "--epochs", "3", "--resume", path, "--checkpoint", path, "--plot-dir", directory)
    #expect(resumed.status == 0, "\(resumed.errorOutput)")
    #expect(resumed.output.contains("MLP 64-16-10"))
    #expect(resumed.output.contains("resumed from \(path) after epoch 2"))
    #expect(
      resumed.output.contains(
        "note: the cosine schedule is re-derived for 3 epochs (the checkpoint's run planned 2): this is not the run "
          + "--epochs 3 makes from the start"))
    #expect(resumed.output.contains("epoch 3/3") && !resumed.output.contains("epoch 1/3"))
    let csv = try String(contentsOfFile: directory + "/digits.csv", encoding: .utf8)
    #expect(csv.split(separator: "\n").count == 4)  // header + epochs 1, 2 (from the checkpoint) and 3
    // Repeating an option with its recorded value is fine.
    let again = try run(
      "train", "--epochs", "4", "--hidden", "16", "--lr", "0.003", "--resume", path, "--plot-dir", directory)
    #expect(again.status == 0, "\(again.errorOutput)")
    #expect(again.output.contains("after epoch 3") && again.output.contains("epoch 4/4"))
  }

  @Test func aResumeThatContradictsItsCheckpointIsRefused() throws {
    let path = directory + "/short.safetensors"
    let first = try run("train", "--epochs", "1", "--hidden", "8", "--checkpoint", path, "--plot-dir", directory)
    #expect(first.status == 0, "\(first.errorOutput)")
    var refusals: [([String], String)] = [
      (
        ["--lr", "0.01"], "--lr 0.01 conflicts with the checkpoint: '\(path)' was made with --lr 0.003 (leave --lr out)"
      ),
      (
        ["--hidden", "9"],
        "--hidden 9 conflicts with the checkpoint: '\(path)' was made with --hidden 8 (leave --hidden out)"
      ),
      (
        ["--optimizer", "sgd"],
        "--optimizer sgd conflicts with the checkpoint: '\(path)' was made with --optimizer adamw"
      ),
      (["--batch-size", "16"], "--batch-size 16 conflicts with the checkpoint"),
      (["--seed", "1"], "--seed 1 conflicts with the checkpoint"),
      ([], "'\(path)' is at epoch 1 already: --epochs 1 leaves nothing to train (ask for more)"),
      (["--epochs", "1"], "'\(path)' is at epoch 1 already: --epochs 1 leaves nothing to train"),
    ]
    // Another data set of another size: the epochs would have other steps.
    let lines = try String(contentsOfFile: Digits.defaultPath, encoding: .utf8).split(separator: "\n").prefix(1000)
    let smaller = directory + "/smaller.csv"
    try writeAtomically(lines.joined(separator: "\n") + "\n", to: smaller)
    refusals.append(
      (
        ["--data", smaller, "--epochs", "2"],
        "checkpoint '\(path)': metadata 'train_examples' is 1258: it was trained on 1258 examples"
      ))
    for (arguments, message) in refusals {
      let result = try runTool(Self.executable, ["train", "--resume", path, "--plot-dir", directory] + arguments)
      #expect(result.status != 0)
      #expect(result.errorOutput.hasPrefix("stage3: error: " + message), "\(arguments)")
      #expect(result.errorOutput.split(separator: "\n").count == 1)
      #expect(!result.output.contains("epoch"))
    }
  }

  @Test func outputPathsAreCheckedBeforeTheFirstEpochAndNeverReplaceTheData() throws {
    try prepareOutputDirectory(directory)
    let data = directory + "/digits.csv"
    try FileManager.default.copyItem(atPath: Digits.defaultPath, toPath: data)
    let original = try Data(contentsOf: URL(fileURLWithPath: data))
    let notes = directory + "/notes.txt"
    try writeAtomically("my notes\n", to: notes)
    let refusals: [([String], String)] = [
      (
        ["--data", data, "--checkpoint", data, "--plot-dir", directory + "/plots"],
        "--checkpoint '\(data)' is the input file '\(data)'"
      ),
      (["--checkpoint", ""], "--checkpoint is an empty path"),
      (["--checkpoint", directory], "--checkpoint '\(directory)' is a directory; it needs a file name"),
      (
        ["--checkpoint", "/proc/x.safetensors"], "--checkpoint '/proc/x.safetensors': directory '/proc' is not writable"
      ),
      (["--plot-dir", "/proc"], "directory '/proc' is not writable"),
      (["--checkpoint", "/dev/null"], "--checkpoint '/dev/null' is a device, pipe or socket, not a file"),
      (["--checkpoint", directory + "/x.st/"], "--checkpoint '\(directory)/x.st/' ends in '/'; it needs a file name"),
      (
        ["--checkpoint", directory + "/digits.png"],
        "--checkpoint '\(directory)/digits.png' is also a file that --plot-dir writes; one output would destroy the other"
      ),
      (
        ["--checkpoint", notes],
        "--checkpoint '\(notes)' exists and is not a safetensors checkpoint; it is not replaced"
      ),
    ]
    for (arguments, message) in refusals {
      let result = try runTool(Self.executable, ["train", "--plot-dir", directory] + arguments)
      #expect(result.status != 0)
      #expect(result.errorOutput.hasPrefix("stage3: error: " + message), "\(arguments)")
      #expect(result.errorOutput.split(separator: "\n").count == 1)
      #expect(!result.output.contains("epoch"))
    }
    // A plot named like the data, in the data's folder: refused before training, the data kept.
    let plot = try run("train", "--epochs", "1", "--hidden", "4", "--data", data, "--plot-dir", directory)
    #expect(plot.status != 0)
    #expect(
      plot.errorOutput
        == "stage3: error: --plot-dir '\(data)' is the input file '\(data)'; writing it would destroy the input\n")
    #expect(!plot.output.contains("epoch"))
    #expect(try Data(contentsOf: URL(fileURLWithPath: data)) == original)
    #expect(try String(contentsOfFile: notes, encoding: .utf8) == "my notes\n")
  }

  /// The table and the CSV hold the runs' real figures, in order: each optimizer's row with its default rate and
  /// decay, the CSV's validation losses per epoch equal to a run of the same Trainer here (so no column is swapped
  /// or stale), the printed validation loss equal to the CSV's last row, every curve going down, and the Adam
  /// variants ahead of plain SGD.
  @Test func compareTrainsEveryOptimizerAndReportsItsLosses() throws {
    let compareDirectory = directory + "/compare"
    let result = try run("compare", "--epochs", "2", "--plot-dir", compareDirectory)
    #expect(result.status == 0, "\(result.errorOutput)")
    let names = ["sgd", "momentum", "adam", "adamw"]
    let csv = try String(contentsOfFile: compareDirectory + "/compare.csv", encoding: .utf8)
    let lines = csv.split(separator: "\n").map { $0.split(separator: ",").map(String.init) }
    #expect(lines.count == 3 && lines[0] == ["epoch"] + names)
    let curves: [[Double]] = names.indices.map { column in lines.dropFirst().map { Double($0[column + 1])! } }
    #expect(lines.dropFirst().map { $0[0] } == ["1", "2"])
    for curve in curves { #expect(curve[1] < curve[0]) }
    #expect(curves[2][1] < curves[0][1] && curves[3][1] < curves[0][1])

    let rows = result.output.split(separator: "\n").filter { line in names.contains { line.hasPrefix($0 + " ") } }
    let cells = rows.map { $0.split(separator: " ").map(String.init) }
    #expect(cells.map { $0[0] } == names)
    #expect(
      cells.map { $0[1] } == ["0.2", "0.05", "0.003", "0.003"] && cells.map { $0[2] } == ["0", "0", "0", "0.01"])
    for (row, curve) in zip(cells, curves) { #expect(abs(Double(row[4])! - curve[1]) <= 5e-5, "\(row)") }

    let splits = try DigitsSplits(Digits())
    for (column, kind) in [(0, OptimizerKind.sgd), (3, .adamw)] {
      var config = TrainConfig()
      config.optimizer = kind
      config.epochs = 2
      let trainer = Trainer(config, data: splits)
      let losses = try (0..<2).map { _ in try trainer.runEpoch().validationLoss }
      for (a, b) in zip(losses, curves[column]) { #expect(abs(a - b) <= 1e-5 * b, "\(kind): \(a) vs \(b)") }
    }
  }

  @Test func graphWritesIntoPlotDir() throws {
    let result = try run("graph", "--example", "layernorm", "--plot-dir", directory)
    #expect(result.status == 0)
    #expect(result.output.contains("wrote \(directory)/graph-layernorm.dot"))
    let dot = try String(contentsOfFile: directory + "/graph-layernorm.dot", encoding: .utf8)
    #expect(dot.hasPrefix("digraph G {"))
  }

  @Test func gradcheckPassesEveryCase() throws {
    let result = try run("gradcheck")
    #expect(result.status == 0)
    #expect(result.output.contains("mlp3_cross_entropy"))
    #expect(result.output.hasSuffix("74 passed, 0 failed\n"))
  }

  /// Every number printed after "loss " (train and validation losses alike), in order.
  func printedLosses(_ output: String) -> [Double] {
    output.split(separator: " loss ").dropFirst().compactMap { Double($0.prefix { !$0.isWhitespace }) }
  }

  @Test func theReferenceKernelsTrainToTheSameLosses() throws {
    let arguments = ["train", "--epochs", "2", "--hidden", "32", "--plot-dir", directory]
    let fast = try runTool(Self.executable, arguments + ["--kernels", "fast"])
    let reference = try runTool(Self.executable, arguments + ["--kernels", "reference"])
    #expect(fast.status == 0 && reference.status == 0, "\(fast.errorOutput)\(reference.errorOutput)")
    let (a, b) = (printedLosses(fast.output), printedLosses(reference.output))
    #expect(a.count >= 2 && a.count == b.count, "\(fast.output)\n\(reference.output)")
    for (x, y) in zip(a, b) { #expect(abs(x - y) <= 2e-4 + 1e-3 * abs(y), "fast \(x), reference \(y)") }
  }
}
