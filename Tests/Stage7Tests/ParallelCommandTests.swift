import Foundation
import Support
import Testing

@testable import Stage7

/// `stage7 parity` as a user runs it, on threads and under `mpiexec` (MPICH, which `make deps` installs), on a tiny
/// model; and what a failed or killed rank does to a run.
@Suite(.serialized) struct ParallelCommandTests {
  static let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    .appendingPathComponent("stage7").path
  static let tiny = ["--steps", "3", "--width", "16", "--heads", "4", "--layers", "4", "--context", "16"]

  static func mpiexec(_ ranks: Int, _ arguments: [String], extra: [String] = []) throws -> ToolRun {
    let mpiexec = try #require(findExecutable("mpiexec"), "mpiexec is missing: `make deps` installs MPICH")
    return try runTool(mpiexec, extra + ["-n", String(ranks), executable] + arguments)
  }

  /// The table's rows: run name -> largest difference.
  static func rows(_ output: String) -> [String: String] {
    var rows: [String: String] = [:]
    for line in output.split(separator: "\n") where line.contains("  ") {
      let fields = line.components(separatedBy: "  ").filter { !$0.isEmpty }.map {
        $0.trimmingCharacters(in: .whitespaces)
      }
      if fields.count == 4 { rows[fields[0]] = fields[3] }
    }
    return rows
  }

  /// Every promise of bit for bit kept, and the others within their tolerance.
  static func expectPromisesKept(_ run: ToolRun, ranks: Int, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(run.status == 0, "\(run.errorOutput)", sourceLocation: sourceLocation)
    let rows = Self.rows(run.output)
    var exact = [
      "ZeRO 1: weights after 3", "ZeRO 2: weights after 3", "data parallel: ranks' weights",
      "pipeline gpipe, 4 micro: weights", "pipeline 1f1b, 4 micro: weights",
    ]
    if ranks == 2 { exact += ["data parallel: losses", "data parallel: weights"] }
    if ranks == 4 { exact.append("data x pipeline (2 x 2): weights") }
    for name in exact {
      #expect(rows[name] == "0 (same bits)", "\(name): \(rows[name] ?? "missing")", sourceLocation: sourceLocation)
    }
    let close = ["data parallel, whole batch", "tensor parallel"] + (ranks == 4 ? ["data x tensor (2 x 2)"] : [])
    for name in close.map({ $0 + ": first loss" }) {
      let value = rows[name].flatMap { Double($0) } ?? (rows[name] == "0 (same bits)" ? 0 : .nan)
      #expect(value <= 1e-6, "\(name): \(rows[name] ?? "missing")", sourceLocation: sourceLocation)
    }
  }

  @Test(arguments: [2, 4]) func parityOnThreads(ranks: Int) throws {
    let folder = temporaryDirectory("parity-threads")
    let run = try runTool(Self.executable, ["parity", "--ranks", String(ranks), "--plot-dir", folder] + Self.tiny)
    Self.expectPromisesKept(run, ranks: ranks)
    for name in ["pipeline-gpipe", "pipeline-1f1b", "ddp-overlap"] {
      #expect(FileManager.default.fileExists(atPath: folder + "/" + name + ".csv"))
    }
  }

  @Test(arguments: [2, 4]) func parityUnderMPI(ranks: Int) throws {
    let folder = temporaryDirectory("parity-mpi")
    let run = try Self.mpiexec(ranks, ["parity", "--backend", "mpi", "--plot-dir", folder] + Self.tiny)
    #expect(run.output.hasPrefix("ranks: \(ranks) MPI processes\n"), "\(run.output)")
    Self.expectPromisesKept(run, ranks: ranks)
  }

  /// A rank that fails stops the others, and the message names it: on threads, and under MPI.
  @Test func aFailingRankIsNamed() throws {
    let environment = ["STAGE7_FAIL_RANK": "1"]
    let threads = try runTool(
      "/usr/bin/env", environment.map { "\($0)=\($1)" } + [Self.executable, "parity"] + Self.tiny)
    #expect(
      threads.status == 1
        && threads.errorOutput == "stage7: error: rank 1 failed: failed on purpose (STAGE7_FAIL_RANK=1)\n")
    let mpiexec = try #require(findExecutable("mpiexec"))
    let mpi = try runTool(
      "/usr/bin/env",
      ["STAGE7_FAIL_RANK=1", mpiexec, "-n", "2", Self.executable, "parity", "--backend", "mpi"] + Self.tiny)
    #expect(mpi.status != 0)
    #expect(
      mpi.errorOutput.contains("stage7: error: rank 1 failed: failed on purpose (STAGE7_FAIL_RANK=1)\n"),
      "\(mpi.errorOutput)")
  }

  /// A rank that stops answering (alive, silent): the others' watchdog names it within --timeout and stops the
  /// run, on threads and under MPI.
  @Test func aSilentRankIsNamedWithinTheTimeout() throws {
    let mpiexec = try #require(findExecutable("mpiexec"))
    for command in [
      [Self.executable, "parity", "--timeout", "2"],
      [mpiexec, "-n", "2", Self.executable, "parity", "--backend", "mpi", "--timeout", "2"],
    ] {
      let clock = Stopwatch()
      let run = try runTool("/usr/bin/env", ["STAGE7_HANG_RANK=1"] + command + Self.tiny)
      #expect(run.status != 0)
      #expect(run.errorOutput.contains("stage7: error: rank 1 did not answer rank 0 within 2 s"), "\(run.errorOutput)")
      #expect(clock.seconds < 30)
    }
  }

  /// A rank whose process is killed: mpiexec stops the others at once and says which process died and how.
  @Test func aKilledRankStopsTheRun() throws {
    let mpiexec = try #require(findExecutable("mpiexec"))
    let clock = Stopwatch()
    let run = try runTool(
      "/usr/bin/env",
      ["STAGE7_KILL_RANK=1", mpiexec, "-n", "2", Self.executable, "parity", "--backend", "mpi"] + Self.tiny)
    #expect(run.status != 0)
    #expect(run.output.contains("BAD TERMINATION") && run.output.contains("signal 9"), "\(run.output)")
    #expect(clock.seconds < 30)
  }

  /// Under MPI a bad option is said once (by rank 0), and --ranks must agree with mpiexec.
  @Test func mpiSaysABadOptionOnce() throws {
    let bad = try Self.mpiexec(2, ["parity", "--backend", "mpi", "--microbatches", "5"])
    #expect(
      bad.status != 0 && bad.errorOutput == "stage7: error: --microbatches must divide the batch of 12 windows, got 5\n"
    )
    let ranks = try Self.mpiexec(2, ["parity", "--backend", "mpi", "--ranks", "4"] + Self.tiny)
    #expect(
      ranks.errorOutput.hasPrefix("stage7: error: --ranks 4, but mpiexec started 2 ranks"), "\(ranks.errorOutput)")
    let alone = try runTool(Self.executable, ["parity", "--backend", "mpi"] + Self.tiny)
    #expect(
      alone.errorOutput
        == "stage7: error: --backend mpi: this process is a world of 1; start the ranks with mpiexec -n N\n")
  }

  /// `train --ranks 2` with ZeRO 0, 1 and 2 prints the same evaluations (the same bits), and a checkpoint of ZeRO
  /// 2 (its shards gathered) resumes to the same run as one of data parallelism.
  @Test func trainOnRanksIsTheSameRunWithEveryZeroStage() throws {
    let folder = temporaryDirectory("train-ranks")
    let corpus = writeCorpus(String(shakespeareText.prefix(20_000)), in: folder)
    let common = [
      "train", "--corpus", corpus, "--data-dir", folder + "/data", "--plot-dir", folder, "--layers", "1", "--heads",
      "2", "--width", "16", "--context", "16", "--batch-size", "4", "--eval-every", "3", "--eval-batches", "2",
      "--sample-tokens", "0", "--ranks", "2",
    ]
    func evaluations(_ run: ToolRun) -> [String] {
      run.output.split(separator: "\n").filter { $0.hasPrefix("step ") }.map {
        $0.components(separatedBy: "  ").prefix(3).joined(separator: "  ")
      }
    }
    let runs = try (0...2).map { zero in
      try runTool(
        Self.executable,
        common + ["--steps", "6", "--zero", String(zero), "--checkpoint", folder + "/z\(zero).safetensors"])
    }
    for run in runs {
      #expect(run.status == 0 && run.output.contains("ranks: 2 threads, data parallel"), "\(run.errorOutput)")
    }
    #expect(evaluations(runs[0]).count == 3)
    #expect(evaluations(runs[1]) == evaluations(runs[0]) && evaluations(runs[2]) == evaluations(runs[0]))
    let resumed = try [0, 2].map { zero in
      try runTool(
        Self.executable,
        ["train", "--resume", folder + "/z\(zero).safetensors", "--steps", "9", "--ranks", "2", "--zero", String(zero)]
          + ["--data-dir", folder + "/data", "--plot-dir", folder, "--sample-tokens", "0"])
    }
    #expect(resumed[0].status == 0 && resumed[1].status == 0, "\(resumed[1].errorOutput)")
    #expect(!evaluations(resumed[0]).isEmpty && evaluations(resumed[1]) == evaluations(resumed[0]))
    let refused = try runTool(Self.executable, common + ["--steps", "6", "--batch-size", "5"])
    #expect(
      refused.errorOutput
        == "stage7: error: --batch-size 5 does not divide among --ranks 2: each rank takes an equal share\n")
  }

  @Test func sizesThatDoNotShareAreRefused() throws {
    for (arguments, message) in [
      (["--ranks", "5"], "--ranks must divide the batch of 12 windows, got 5"),
      (
        ["--ranks", "4", "--heads", "2", "--width", "16"],
        "tensor parallelism on 4 ranks needs --heads a multiple of 4, got 2"
      ),
      (["--ranks", "4", "--layers", "2"], "a pipeline of 4 stages needs --layers at least 4, got 2"),
      (["--microbatches", "5"], "--microbatches must divide the batch of 12 windows, got 5"),
    ] {
      let run = try runTool(Self.executable, ["parity"] + arguments)
      #expect(run.status != 0 && run.errorOutput == "stage7: error: \(message)\n", "\(run.errorOutput)")
    }
  }
}
