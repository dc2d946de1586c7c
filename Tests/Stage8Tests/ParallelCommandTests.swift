import Foundation
import Support
import Testing

@testable import Stage8

/// `stage8 parity` as a user runs it, on threads and under `mpiexec` (MPICH, which `make deps` installs), on a tiny
/// model; and what a failed or killed rank does to a run.
@Suite(.serialized) struct ParallelCommandTests {
  static let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    .appendingPathComponent("stage8").path
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
    let environment = ["STAGE8_FAIL_RANK": "1"]
    let threads = try runTool(
      "/usr/bin/env", environment.map { "\($0)=\($1)" } + [Self.executable, "parity"] + Self.tiny)
    #expect(
      threads.status == 1
        && threads.errorOutput == "stage8: error: rank 1 failed: failed on purpose (STAGE8_FAIL_RANK=1)\n")
    let mpiexec = try #require(findExecutable("mpiexec"))
    let mpi = try runTool(
      "/usr/bin/env",
      ["STAGE8_FAIL_RANK=1", mpiexec, "-n", "2", Self.executable, "parity", "--backend", "mpi"] + Self.tiny)
    #expect(mpi.status != 0)
    #expect(
      mpi.errorOutput.contains("stage8: error: rank 1 failed: failed on purpose (STAGE8_FAIL_RANK=1)\n"),
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
      let run = try runTool("/usr/bin/env", ["STAGE8_HANG_RANK=1"] + command + Self.tiny)
      #expect(run.status != 0)
      #expect(run.errorOutput.contains("stage8: error: rank 1 did not answer rank 0 within 2 s"), "\(run.errorOutput)")
      #expect(clock.seconds < 30)
    }
  }

  /// A rank whose process is killed: mpiexec stops the others at once and says which process died and how.
  @Test func aKilledRankStopsTheRun() throws {
    let mpiexec = try #require(findExecutable("mpiexec"))
    let clock = Stopwatch()
    let run = try runTool(
      "/usr/bin/env",
      ["STAGE8_KILL_RANK=1", mpiexec, "-n", "2", Self.executable, "parity", "--backend", "mpi"] + Self.tiny)
    #expect(run.status != 0)
    #expect(run.output.contains("BAD TERMINATION") && run.output.contains("signal 9"), "\(run.output)")
    #expect(clock.seconds < 30)
  }

  /// Under MPI a bad option is said once (by rank 0), and --ranks must agree with mpiexec.
  @Test func mpiSaysABadOptionOnce() throws {
    let bad = try Self.mpiexec(2, ["parity", "--backend", "mpi", "--microbatches", "5"])
    #expect(
      bad.status != 0 && bad.errorOutput == "stage8: error: --microbatches must divide the batch of 12 windows, got 5\n"
    )
    let ranks = try Self.mpiexec(2, ["parity", "--backend", "mpi", "--ranks", "4"] + Self.tiny)
    #expect(
      ranks.errorOutput.hasPrefix("stage8: error: --ranks 4, but mpiexec started 2 ranks"), "\(ranks.errorOutput)")
    let alone = try runTool(Self.executable, ["parity", "--backend", "mpi"] + Self.tiny)
    #expect(
      alone.errorOutput
        == "stage8: error: --backend mpi: this process is a world of 1; start the ranks with mpiexec -n N\n")
  }

  /// `train --ranks 2` with ZeRO 0 to 3 prints the same evaluations (the same bits). With ZeRO 1 to 3 every rank
  /// writes its shard of the checkpoint; a checkpoint resumes to the run that was never stopped, bit for bit, and
  /// one saved on 2 ranks resumes on 4 (re-sharded) and on 1.
  @Test func trainOnRanksIsTheSameRunWithEveryZeroStage() throws {
    let folder = temporaryDirectory("train-ranks")
    let corpus = writeCorpus(String(shakespeareText.prefix(20_000)), in: folder)
    let common = [
      "--data-dir", folder + "/data", "--plot-dir", folder, "--sample-tokens", "0", "--eval-every", "3",
      "--eval-batches", "2",
    ]
    let model = [
      "train", "--corpus", corpus, "--layers", "2", "--heads", "2", "--width", "16", "--context", "16", "--batch-size",
      "4",
    ]
    func evaluations(_ run: ToolRun) -> [String] {
      run.output.split(separator: "\n").filter { $0.hasPrefix("step ") }.map {
        $0.components(separatedBy: "  ").prefix(3).joined(separator: "  ")
      }
    }
    func train(_ zero: Int, ranks: Int = 2, steps: Int, _ more: [String]) throws -> ToolRun {
      try runTool(
        Self.executable,
        more + common + ["--steps", String(steps), "--ranks", String(ranks), "--zero", String(zero)])
    }
    let runs = try (0...3).map { zero in
      try train(zero, steps: 6, model + ["--checkpoint", folder + "/z\(zero).safetensors"])
    }
    for run in runs {
      #expect(run.status == 0 && run.output.contains("ranks: 2 threads, data parallel"), "\(run.errorOutput)")
    }
    #expect(evaluations(runs[0]).count == 3)
    for run in runs.dropFirst() { #expect(evaluations(run) == evaluations(runs[0])) }
    // The shards: each rank's file beside the checkpoint, which holds none of what they hold.
    let files = try FileManager.default.contentsOfDirectory(atPath: folder)
    for zero in 0...3 {
      let shards = files.filter { $0.hasPrefix("z\(zero).safetensors.step") }.sorted()
      #expect(shards.count == (zero == 0 ? 0 : 2) && shards.allSatisfy { $0.hasSuffix("of2") }, "\(shards)")
      let (tensors, metadata) = try readSafetensors(folder + "/z\(zero).safetensors")
      #expect(tensors.keys.contains { $0.hasPrefix("optimizer.") } == (zero == 0))
      #expect(tensors.keys.contains { $0.hasPrefix("model.") } == (zero < 3))
      #expect(metadata["shards"]?.split(separator: "\n").map(String.init) == (zero == 0 ? nil : shards))
    }
    // Under MPI (2 processes): the same run, and it resumes a checkpoint the threads wrote.
    let mpi = try Self.mpiexec(
      2, model + common + ["--steps", "6", "--backend", "mpi", "--zero", "3", "--checkpoint", folder + "/mpi.st"])
    #expect(
      mpi.status == 0 && mpi.output.contains("ranks: 2 MPI processes, data parallel, ZeRO 3"), "\(mpi.errorOutput)")
    #expect(evaluations(mpi) == evaluations(runs[0]))
    // Resumed to 9 steps: the same bits as 9 steps never stopped, on 2 ranks, at any ZeRO stage.
    let whole = try train(0, steps: 9, model)
    let wholeEvaluations = evaluations(whole)
    #expect(whole.status == 0 && wholeEvaluations.count == 4, "\(whole.errorOutput)")
    for zero in [0, 2, 3] {
      let resumed = try train(zero, steps: 9, ["train", "--resume", folder + "/z\(zero).safetensors"])
      #expect(resumed.status == 0, "\(resumed.errorOutput)")
      let retraced = evaluations(resumed)
      #expect(!retraced.isEmpty && retraced == Array(wholeEvaluations.suffix(retraced.count)), "ZeRO \(zero)")
    }
    let resumedOnMPI = try Self.mpiexec(
      2,
      ["train", "--resume", folder + "/z3.safetensors", "--backend", "mpi", "--zero", "3"] + common + ["--steps", "9"])
    let retraced = evaluations(resumedOnMPI)
    #expect(
      !retraced.isEmpty && retraced == Array(wholeEvaluations.suffix(retraced.count)), "\(resumedOnMPI.errorOutput)")
    // A run killed (SIGKILL, after the save at step 6) and resumed: the uninterrupted run's bits, ZeRO 3 and all.
    let killed = try runTool(
      "/usr/bin/env",
      ["STAGE8_KILL_STEP=7", Self.executable] + model + common
        + ["--steps", "9", "--ranks", "2", "--zero", "3", "--checkpoint", folder + "/killed.st"])
    #expect(killed.status != 0 && evaluations(killed).count == 3, "\(killed.output)")
    let revived = try train(
      3, steps: 9, ["train", "--resume", folder + "/killed.st", "--checkpoint", folder + "/killed.st"])
    #expect(
      revived.status == 0 && !evaluations(revived).isEmpty
        && evaluations(revived) == Array(wholeEvaluations.suffix(evaluations(revived).count)), "\(revived.output)")
    // ZeRO 3's 2 shards taken up by 4 ranks and by one process: the same run up to the order of the sums.
    for ranks in [4, 1] {
      let resumed = try train(3, ranks: ranks, steps: 9, ["train", "--resume", folder + "/z3.safetensors"])
      #expect(resumed.status == 0, "\(resumed.errorOutput)")
      let last = evaluations(resumed).last?.split(separator: " ").compactMap { Double($0) } ?? []
      let reference = wholeEvaluations.last!.split(separator: " ").compactMap { Double($0) }
      #expect(last.count == 2 && zip(last, reference).allSatisfy { abs($0 - $1) <= 2e-4 }, "\(last) on \(ranks)")
    }
    let refused = try runTool(Self.executable, model + common + ["--steps", "6", "--batch-size", "5", "--ranks", "2"])
    #expect(
      refused.errorOutput
        == "stage8: error: --batch-size 5 does not divide among --ranks 2: each rank takes an equal share\n")
  }

  /// `train --pp 2`: the pipeline's steps are one process's gradient accumulation over the same micro-batches, so
  /// its checkpoint (a shard per stage) holds the same bits; with 2 data-parallel copies of the pipeline too. A
  /// pipeline's checkpoint resumes on the pipeline to the run never stopped, bit for bit, and on one process.
  @Test func trainWithAPipelineIsOneProcessAccumulating() throws {
    let folder = temporaryDirectory("train-pipeline")
    let corpus = writeCorpus(String(shakespeareText.prefix(20_000)), in: folder)
    // A constant learning rate: a run of 6 steps is the first 6 of a run of 9. An evaluation only at the end (the
    // estimate of one batch is noisier for a smaller --batch-size, and would choose another step to save).
    let run = Self.constantRateRun(corpus: corpus, folder: folder) + ["--eval-every", "6", "--sample-tokens", "0"]
    func train(_ name: String, _ more: [String]) throws -> String {
      let result = try runTool(Self.executable, run + more + ["--checkpoint", folder + "/" + name])
      #expect(result.status == 0 && result.output.contains("checkpoint (the best"), "\(result.errorOutput)")
      return folder + "/" + name
    }
    let onePath = try train("one.st", ["--steps", "6", "--batch-size", "3", "--accumulation", "4"])
    let shapes = try readSafetensors(onePath).tensors.filter { $0.key.hasPrefix("model.") }.mapValues(\.shape)
    #expect(shapes.count == 2 + 2 * 6 + 1)  // the embeddings, each block's 6 (no biases), the final norm
    func weights(_ path: String) throws -> [String: [Float]] { try Self.weights(path, shapes: shapes) }
    let one = try weights(onePath)
    let pipeline = try weights(
      try train("pp.st", ["--steps", "6", "--batch-size", "12", "--ranks", "2", "--pp", "2", "--microbatches", "4"]))
    #expect(pipeline == one)
    let grid = try weights(
      try train(
        "grid.st",
        [
          "--steps", "6", "--batch-size", "12", "--ranks", "4", "--pp", "2", "--microbatches", "1", "--schedule",
          "gpipe",
        ]))
    let two = try weights(try train("two.st", ["--steps", "6", "--batch-size", "6", "--accumulation", "2"]))
    #expect(grid == two)
    // Resumed to 9 steps on the pipeline: the run of 9 never stopped. And on one process (the whole batch at
    // once: the same run up to the order of the sums).
    let resumed = try runTool(
      Self.executable,
      ["train", "--resume", folder + "/pp.st", "--steps", "9", "--ranks", "2", "--pp", "2", "--microbatches", "4"]
        + [
          "--data-dir", folder + "/data", "--plot-dir", folder, "--sample-tokens", "0", "--checkpoint",
          folder + "/pp.st",
        ])
    #expect(resumed.output.contains("checkpoint (the best validation loss, at step 9)"), "\(resumed.output)")
    #expect(resumed.status == 0, "\(resumed.errorOutput)")
    let whole = try weights(
      try train("nine.st", ["--steps", "9", "--batch-size", "12", "--ranks", "2", "--pp", "2", "--microbatches", "4"]))
    #expect(try weights(folder + "/pp.st") == whole)
    let alone = try runTool(
      Self.executable,
      ["train", "--resume", folder + "/grid.st", "--steps", "9", "--data-dir", folder + "/data", "--plot-dir", folder]
        + ["--sample-tokens", "0"])
    #expect(alone.status == 0 && alone.output.contains("exact validation loss"), "\(alone.errorOutput)")
  }

  /// A tiny `train` run with a constant learning rate (so that a run of 6 steps is the first 6 of a run of 9).
  static func constantRateRun(corpus: String, folder: String) -> [String] {
    [
      "train", "--corpus", corpus, "--data-dir", folder + "/data", "--plot-dir", folder, "--layers", "2", "--heads",
      "2", "--width", "16", "--context", "16", "--eval-batches", "1", "--lr", "0.01", "--min-lr", "0.01", "--warmup",
      "0",
    ]
  }

  /// The model's tensors in the checkpoint at `path`, put together from its shards if it has them.
  static func weights(_ path: String, shapes: [String: [Int]]) throws -> [String: [Float]] {
    let reader = try openCheckpoint(path, format: Trainer.checkpointFormat)
    var tensors: [String: [Float]] = [:]
    for (name, shape) in shapes { tensors[name] = try reader.floats(name, shape: shape) }
    return tensors
  }

  /// `train --tp 2`: the blocks' matrices and the vocabulary cut in two, each rank writing its slices of the
  /// checkpoint. The same run as one process up to the order of the row-parallel sums; resumed on 2 ranks it
  /// retraces the run never stopped bit for bit, and it resumes on one process and with data parallelism around.
  @Test func trainWithTensorParallelismCutsTheCheckpointToo() throws {
    let folder = temporaryDirectory("train-tensor")
    let corpus = writeCorpus(String(shakespeareText.prefix(20_000)), in: folder)
    let run = Self.constantRateRun(corpus: corpus, folder: folder) + ["--eval-every", "3", "--sample-tokens", "5"]
    func train(_ more: [String], checkpoint: String) throws -> ToolRun {
      let result = try runTool(Self.executable, run + more + ["--checkpoint", folder + "/" + checkpoint])
      #expect(result.status == 0, "\(result.errorOutput)")
      return result
    }
    func exact(_ run: ToolRun) -> String? {
      run.output.split(separator: "\n").first { $0.hasPrefix("exact") }.map(String.init)
    }
    let one = try train(["--steps", "6"], checkpoint: "one.st")
    let cut = try train(["--steps", "6", "--ranks", "2", "--tp", "2"], checkpoint: "tp.st")
    #expect(cut.output.contains("ranks: 2 threads, tensor parallel on 2 ranks (1 head each)"))
    #expect(exact(cut) != nil && exact(cut) == exact(one))
    let files = try FileManager.default.contentsOfDirectory(atPath: folder)
    #expect(files.filter { $0.hasPrefix("tp.st.step6-") }.count == 2, "\(files)")
    let shapes = try readSafetensors(folder + "/one.st").tensors.filter { $0.key.hasPrefix("model.") }
      .mapValues(\.shape)
    let nine = try train(["--steps", "9", "--ranks", "2", "--tp", "2"], checkpoint: "nine.st")
    #expect(nine.output.contains("at step 9)"))
    let resumed = try runTool(
      Self.executable,
      ["train", "--resume", folder + "/tp.st", "--steps", "9", "--ranks", "2", "--tp", "2", "--checkpoint"]
        + [folder + "/tp.st", "--data-dir", folder + "/data", "--plot-dir", folder, "--sample-tokens", "0"])
    #expect(resumed.output.contains("at step 9)"), "\(resumed.errorOutput)")
    let same = try Self.weights(folder + "/tp.st", shapes: shapes) == Self.weights(folder + "/nine.st", shapes: shapes)
    #expect(same)
    for layout in [["--ranks", "1"], ["--dp", "2", "--tp", "2"]] {
      let more = try runTool(
        Self.executable,
        ["train", "--resume", folder + "/nine.st", "--steps", "12", "--data-dir", folder + "/data", "--plot-dir"]
          + [folder, "--sample-tokens", "0"] + layout)
      #expect(more.status == 0 && exact(more) != nil, "\(layout): \(more.errorOutput)")
    }
  }

  /// A sharded checkpoint whose shards are missing, or of another save, is refused with one line naming the file.
  @Test func aShardedCheckpointWithoutItsShardsIsRefused() throws {
    let folder = temporaryDirectory("shards")
    let corpus = writeCorpus(String(shakespeareText.prefix(20_000)), in: folder)
    let checkpoint = folder + "/run.safetensors"
    let arguments = [
      "train", "--corpus", corpus, "--data-dir", folder + "/data", "--plot-dir", folder, "--layers", "1", "--heads",
      "2", "--width", "16", "--context", "16", "--batch-size", "4", "--eval-every", "2", "--eval-batches", "1",
      "--sample-tokens", "0", "--ranks", "2", "--zero", "1", "--steps", "2", "--warmup", "0", "--lr", "0.01",
      "--checkpoint", checkpoint,
    ]
    let run = try runTool(Self.executable, arguments)
    #expect(run.status == 0, "\(run.errorOutput)")
    let shards = try FileManager.default.contentsOfDirectory(atPath: folder).filter { $0.hasPrefix("run.safetensors.") }
      .sorted()
    try #require(shards.count == 2 && run.output.contains("checkpoint (the best validation loss, at step 2)"))
    // Rank 1's shard in rank 0's place: another rank's file.
    try FileManager.default.moveItem(atPath: folder + "/" + shards[0], toPath: folder + "/rank0.bak")
    try FileManager.default.copyItem(atPath: folder + "/" + shards[1], toPath: folder + "/" + shards[0])
    let sample = ["sample", "--checkpoint", checkpoint, "--tokens", "5"]
    let swapped = try runTool(Self.executable, sample)
    #expect(swapped.status != 0)
    #expect(
      swapped.errorOutput.hasPrefix("stage8: error: checkpoint '\(checkpoint)': '\(shards[0])' is not shard 0 of 2"),
      "\(swapped.errorOutput)")
    try FileManager.default.removeItem(atPath: folder + "/" + shards[0])
    let missing = try runTool(Self.executable, sample)
    #expect(
      missing.errorOutput
        == "stage8: error: checkpoint '\(checkpoint)': its shard '\(folder)/\(shards[0])' is missing (a sharded "
        + "checkpoint is the file and every rank's shard beside it)\n", "\(missing.errorOutput)")
    try FileManager.default.moveItem(atPath: folder + "/rank0.bak", toPath: folder + "/" + shards[0])
    let restored = try runTool(Self.executable, sample)
    #expect(restored.status == 0, "\(restored.errorOutput)")
  }

  @Test func layoutsThatDoNotFitAreRefused() throws {
    for (arguments, message) in [
      (["--pp", "2"], "--ranks 1 is not a multiple of --pp 2: each copy of the pipeline has 2 ranks"),
      (["--ranks", "2", "--pp", "2", "--layers", "1"], "--pp 2 needs --layers at least 2 (a block per stage)"),
      (["--ranks", "2", "--pp", "2", "--zero", "1"], "--zero 1 with --pp: ZeRO runs with data parallelism only"),
      (
        ["--ranks", "2", "--pp", "2", "--dropout", "0.1"], "--pp needs --dropout 0: the pipeline's stages draw no masks"
      ),
      (
        ["--ranks", "4", "--tp", "2", "--pp", "2"],
        "--tp with --pp: tensor x pipeline parallelism is not built; use one"
      ),
      (["--ranks", "3", "--tp", "2"], "--ranks 3 is not a multiple of --tp 2: each copy of the cut model has 2 ranks"),
      (["--ranks", "3", "--tp", "3"], "--tp 3 does not divide --heads 4: each rank must hold whole heads"),
      (["--ranks", "2", "--tp", "2", "--zero", "2"], "--zero 2 with --tp: ZeRO runs with data parallelism only"),
      (["--ranks", "3", "--dp", "2", "--tp", "2"], "--dp 2 x --tp 2 x --pp 1 is 4 ranks, but --ranks is 3"),
      (["--dp", "5", "--tp", "2"], "--batch-size 12 does not divide among 5 copies of the cut model"),
      (
        ["--ranks", "2", "--pp", "2", "--accumulation", "2"],
        "--accumulation 2 with --pp: the pipeline's micro-batches are its accumulation"
      ),
      (
        ["--ranks", "4", "--pp", "2", "--microbatches", "4"],
        "--batch-size 12 does not divide into 2 copies x --microbatches 4"
      ),
    ] {
      let run = try runTool(Self.executable, ["train"] + arguments)
      #expect(run.status != 0 && run.errorOutput == "stage8: error: \(message)\n", "\(run.errorOutput)")
    }
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
      #expect(run.status != 0 && run.errorOutput == "stage8: error: \(message)\n", "\(run.errorOutput)")
    }
  }
}
