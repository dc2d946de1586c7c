import ArgumentParser
import Datasets
import Foundation
import Plotting
import Support

/// `stage8 train` (the default): pretrain a GPT on a corpus, nanoGPT's train.py with shakespeare_char's CPU
/// configuration as the defaults, then report the exact validation loss and print a sample.
struct TrainCommand: ResumableCommand {
  /// The line chart's files in --plot-dir: pretrain.csv, pretrain.gp, pretrain.png.
  static let plotName = "pretrain"
  static let configuration = CommandConfiguration(
    commandName: "train",
    abstract: "Pretrain a GPT on a corpus (default: character-level Tiny Shakespeare, nanoGPT's CPU configuration).",
    discussion: """
      The corpus is cut 90/10 into train and validation by position, tokenized once into token files (uint16, as \
      nanoGPT's train.bin and val.bin) in --data-dir, and read memory-mapped. --resume continues a run with the \
      options its checkpoint records; a larger --steps extends it, and the cosine schedule is re-derived for the \
      new total (so the result is not that of a run started with that --steps). A checkpoint is saved at each \
      evaluation whose validation loss is the best so far, as nanoGPT does.
      """)

  // `.unconditional` takes "-5" as the value it is, so that the checks below can say what is wrong with it.
  @Option(help: "The text to pretrain on (any UTF-8 file).") var corpus = defaultCorpus
  @Option(help: "Tokenizer: char (one id per character) or bpe (byte-level BPE trained on the train split).")
  var tokenizer = TokenizerKind.char
  @Option(parsing: .unconditional, help: "Ids of the BPE tokenizer, special tokens included.") var vocab = 512
  @Option(help: "Where the token files go (default: Plots/runs/8-mixed-precision/data-TOKENIZER).") var dataDir: String?
  @Option(parsing: .unconditional, help: "Context: tokens per window.") var context = 64
  @Option(parsing: .unconditional, help: "Transformer blocks.") var layers = 4
  @Option(parsing: .unconditional, help: "Attention heads per block.") var heads = 4
  @Option(parsing: .unconditional, help: "Model width (a multiple of --heads).") var width = 128
  @Option(help: "Biases in the Linears and LayerNorms: off (nanoGPT's configuration) or on (GPT-2's).")
  var bias = Switch.off
  @Option(parsing: .unconditional, help: "Dropout on embeddings, attention weights and residual branches.")
  var dropout = 0.0
  @Option(parsing: .unconditional, help: "Windows per micro-batch.") var batchSize = 12
  @Option(parsing: .unconditional, help: "Micro-batches per optimizer step (gradient accumulation).")
  var accumulation = 1
  @Option(parsing: .unconditional, help: "Optimizer steps (AdamW, warmup then cosine).") var steps = 2000
  @Option(parsing: .unconditional, help: "Peak learning rate.") var lr = 1e-3
  @Option(parsing: .unconditional, help: "Learning rate at the end of the cosine.") var minLr = 1e-4
  @Option(parsing: .unconditional, help: "Warmup steps.") var warmup = 100
  @Option(parsing: .unconditional, help: "Steps between evaluations.") var evalEvery = 250
  @Option(parsing: .unconditional, help: "Batches per split in each evaluation's estimate.") var evalBatches = 20
  @Option(help: "Windows: random (nanoGPT, with replacement) or epochs (without replacement, seeded order).")
  var sampling = WindowOrder.random
  @Option(parsing: .unconditional, help: "Seed of the initial weights, the batches and dropout.")
  var seed: UInt64 = 1337
  @Option(help: "Save a checkpoint (safetensors) here at each evaluation that beats the best validation loss.")
  var checkpoint: String?
  @Option(help: "Continue from this checkpoint, with the options it records (only --steps may change).")
  var resume: String?
  @Option(help: "Where the curves go.") var plotDir = defaultPlotDir
  @Option(parsing: .unconditional, help: "Tokens of the sample printed after training (0: none).")
  var sampleTokens = 500
  @OptionGroup var kernelOptions: KernelOptions
  @Option(
    name: .customLong("ranks"), parsing: .unconditional,
    help: "Ranks: threads of this process, data-parallel unless --tp or --pp cut the model (--dp x --tp x --pp).")
  var ranksGiven = 1
  /// The ranks: --ranks, or --dp x --tp x --pp when only those are given (under MPI, mpiexec's -n).
  var ranks: Int {
    get { ranksGiven == 1 && dp != nil ? dp! * tp * pp : ranksGiven }
    set { ranksGiven = newValue }
  }
  @Option(
    parsing: .unconditional,
    help: "ZeRO stage with --ranks: 0 (DDP), 1 (optimizer state sharded), 2 (gradients too), 3 (weights too).")
  var zero = 0
  @Option(parsing: .unconditional, help: "Megabytes per gradient bucket with --ranks.") var bucketMb = 1.0
  @Option(
    parsing: .unconditional,
    help: "Pipeline stages with --ranks (--ranks / --pp data-parallel copies of the pipeline; 1: no pipeline).")
  var pp = 1
  @Option(
    parsing: .unconditional,
    help: "Data-parallel copies (with --tp and --pp: --ranks is their product, which --dp alone can set).")
  var dp: Int?
  @Option(help: "With --ranks: threads (ranks in this process) or mpi (this process is one rank of `mpiexec -n N`).")
  var backend = Backend.threads
  @Option(parsing: .unconditional, help: "Seconds a rank waits for another before it stops the run.")
  var timeout = 300.0
  @Option(
    parsing: .unconditional,
    help: "Tensor-parallel ranks with --ranks (--ranks / --tp data-parallel copies of the cut model; 1: none).")
  var tp = 1
  @Option(parsing: .unconditional, help: "Micro-batches of each copy's share of a batch, with --pp.")
  var microbatches = 4
  @Option(parsing: .unconditional, help: "The pipeline's schedule with --pp: gpipe or 1f1b.")
  var schedule = PipelineSchedule.oneForwardOneBackward
  @Option(help: "The number format: fp32, bf16, fp16 or fp8 (weights, activations and gradients stored in it).")
  var precision = Precision.fp32
  @Option(help: "Loss scaling: dynamic (GradScaler), none, or a fixed number (default: dynamic for fp16, else none).")
  var lossScale: String?
  @Option(help: "fp32 master weights in the optimizer (on), or the update added to the low-format weights (off).")
  var masterWeights = Switch.on

  func validate() throws {
    try Check.count(vocab, "--vocab", in: 1...65_536)
    for (option, path) in [("--data-dir", dataDir), ("--plot-dir", plotDir), ("--corpus", corpus)] where path == "" {
      throw UserError("\(option) is an empty path")
    }
    try Check.count(context, "--context", in: 1...65_536)
    try checkModelOptions(layers: layers, heads: heads, width: width)
    try Check.number(dropout, "--dropout", in: Bounds(0, 1, includesHigh: false))
    try Check.count(batchSize, "--batch-size", in: 1...100_000)
    try Check.count(accumulation, "--accumulation", in: 1...100_000)
    try Check.count(steps, "--steps", in: 1...10_000_000)
    try checkSchedule(lr: lr, minLr: minLr)
    try Check.count(warmup, "--warmup", in: 0...10_000_000)
    try Check.count(evalEvery, "--eval-every", in: 1...10_000_000)
    try Check.count(evalBatches, "--eval-batches", in: 1...100_000)
    try Check.count(sampleTokens, "--sample-tokens", in: 0...1_000_000)
    // --dp, --tp and --pp first: with --dp and without --ranks, the ranks are their product.
    try Check.count(pp, "--pp", in: 1...64)
    try Check.count(tp, "--tp", in: 1...64)
    if let dp { try Check.count(dp, "--dp", in: 1...64) }
    try Check.count(ranksGiven, "--ranks", in: 1...64)
    guard ranks <= 64 else { throw UserError("--dp x --tp x --pp is \(ranks) ranks; at most 64") }
    try Check.count(zero, "--zero", in: 0...3)
    try Check.number(bucketMb, "--bucket-mb", in: Bounds(0, 1024, includesLow: false))
    try Check.count(microbatches, "--microbatches", in: 1...100_000)
    if let dp {
      guard dp * tp * pp == ranks else {
        throw UserError("--dp \(dp) x --tp \(tp) x --pp \(pp) is \(dp * tp * pp) ranks, but --ranks is \(ranks)")
      }
    }
    try Check.number(timeout, "--timeout", in: Bounds(0, 86_400, includesLow: false))
    if let lossScale { try PrecisionConfig.checkLossScale(lossScale) }
    if precision != .fp32 && (tp > 1 || pp > 1 || zero > 0) {
      throw UserError(
        "--precision \(precision.rawValue) runs on one process or with data parallelism (--ranks, --zero 0); not "
          + "with --tp, --pp or --zero")
    }
    if precision == .fp32 && (lossScale ?? "none") != "none" {
      throw UserError("--loss-scale \(lossScale!) needs --precision bf16, fp16 or fp8: fp32 has nothing to scale")
    }
    if precision == .fp32 && masterWeights == .off {
      throw UserError("--master-weights off needs --precision bf16, fp16 or fp8: fp32's weights are the masters")
    }
    let scaling = PrecisionConfig(precision, lossScale: lossScale).lossScaleMode
    if (ranks > 1 || backend == .mpi) && precision == .fp8 {
      throw UserError(
        "--precision fp8 with --ranks: each rank would scale by the amaxes of its own rows (Transformer Engine "
          + "all-reduces them); not built")
    }
    if precision != .fp32 && (ranks > 1 || backend == .mpi) && scaling != .none {
      throw UserError(
        "--loss-scale \(lossScale ?? "dynamic") with --ranks: loss scaling is not built for data parallelism; "
          + "give --loss-scale none (bf16 needs none)")
    }
    if tp > 1 {
      guard pp == 1 else { throw UserError("--tp with --pp: tensor x pipeline parallelism is not built; use one") }
      guard ranks % tp == 0 else {
        throw UserError("--ranks \(ranks) is not a multiple of --tp \(tp): each copy of the cut model has \(tp) ranks")
      }
      guard heads % tp == 0 else {
        throw UserError("--tp \(tp) does not divide --heads \(heads): each rank must hold whole heads")
      }
      guard zero == 0 else { throw UserError("--zero \(zero) with --tp: ZeRO runs with data parallelism only") }
      guard dropout == 0 else { throw UserError("--tp needs --dropout 0: the cut blocks draw no masks") }
      guard batchSize % (ranks / tp) == 0 else {
        throw UserError("--batch-size \(batchSize) does not divide among \(ranks / tp) copies of the cut model")
      }
    } else if pp > 1 {
      guard ranks % pp == 0 else {
        throw UserError("--ranks \(ranks) is not a multiple of --pp \(pp): each copy of the pipeline has \(pp) ranks")
      }
      guard layers >= pp else { throw UserError("--pp \(pp) needs --layers at least \(pp) (a block per stage)") }
      guard zero == 0 else { throw UserError("--zero \(zero) with --pp: ZeRO runs with data parallelism only") }
      guard dropout == 0 else { throw UserError("--pp needs --dropout 0: the pipeline's stages draw no masks") }
      guard accumulation == 1 else {
        throw UserError("--accumulation \(accumulation) with --pp: the pipeline's micro-batches are its accumulation")
      }
      let copies = ranks / pp
      guard batchSize % (copies * microbatches) == 0 else {
        throw UserError(
          "--batch-size \(batchSize) does not divide into \(copies) copies x --microbatches \(microbatches)")
      }
    } else if batchSize % ranks != 0 {
      throw UserError(
        "--batch-size \(batchSize) does not divide among --ranks \(ranks): each rank takes an equal share")
    }
    let bytes = config.estimatedBytes(vocabulary: tokenizer == .bpe ? vocab : 256)
    try Check.memory(bytes: bytes, what: "this run", options: "--width, --layers, --context or --batch-size")
  }

  var config: TrainConfig {
    var config = TrainConfig()
    // The checkpoint records the corpus by its absolute path: a resume from another folder still finds it, and
    // "c.txt" and "./c.txt" are the same corpus.
    config.corpus = URL(fileURLWithPath: corpus).standardizedFileURL.path
    config.tokenizer = tokenizer
    config.vocabulary = vocab
    config.context = context
    config.layers = layers
    config.heads = heads
    config.width = width
    config.dropout = dropout
    config.bias = bias == .on
    config.batchSize = batchSize
    config.accumulation = accumulation
    config.steps = steps
    config.learningRate = lr
    config.minLearningRate = minLr
    config.warmup = warmup
    config.evalEvery = evalEvery
    config.evalBatches = evalBatches
    config.order = sampling
    config.seed = seed
    config.precision = PrecisionConfig(precision, lossScale: lossScale, masterWeights: masterWeights == .on)
    return config
  }

  var recordedOptions: [(flag: String, value: String)] { config.options }

  /// The token files' folder: --data-dir, or one per tokenizer beside the run's plots.
  var dataDirectory: String {
    dataDir ?? defaultPlotDir + "/data-" + (tokenizer == .char ? "char" : "bpe-\(vocab)")
  }

  func run() throws {
    guard let resume else { return try train(resuming: nil) }
    let saved = try openCheckpoint(resume, format: Trainer.checkpointFormat)
    try Self.resuming(try saved.options(), source: resume, free: ["--steps"]).train(resuming: saved)
  }

  func train(resuming saved: CheckpointReader?) throws {
    if backend == .mpi {  // the ranks are mpiexec's processes, this one among them
      let size = try MPICommunicator.world(timeout: timeout).size
      guard size > 1 else {
        throw UserError("--backend mpi: this process is a world of 1; start the ranks with mpiexec -n N")
      }
      if ranks != size {
        guard ranks == 1 else {
          throw UserError("--ranks \(ranks), but mpiexec started \(size) ranks: under MPI, mpiexec's -n decides")
        }
        var command = self
        command.ranks = size
        try command.validate()
        return try command.train(resuming: saved)
      }
    }
    kernelOptions.apply()
    try prepareOutputDirectory(plotDir)
    try reserveLineChartFiles(name: Self.plotName, directory: plotDir)
    if let checkpoint {
      try prepareOutputFile(
        checkpoint, option: "--checkpoint", replaceable: { Trainer.isCheckpoint(at: $0) }, kind: "stage 8 checkpoint")
    }
    let clock = Stopwatch()
    let text = try Corpus(path: corpus)
    // The default folder is a cache, remade for another corpus or tokenizer; a folder the user named is replaced
    // only by its own corpus tokenized anew, never when it holds another's files (they may be all there is of them).
    let (data, reused) = try TokenizedCorpus.prepare(
      text, kind: tokenizer, vocabulary: vocab, directory: dataDirectory, writer: "--data-dir",
      replacingOthers: dataDir == nil, progress: showProgressLine)
    closeProgressLine()
    for (name, split) in [("training", data.train), ("validation", data.val)] where split.count <= context {
      throw UserError(
        "the \(name) split of '\(corpus)' holds \(split.count) tokens, fewer than one window of --context "
          + "\(context) + 1; use a longer corpus or a smaller --context")
    }
    if ranks > 1 || backend == .mpi {
      return try trainOnRanks(data: data, text: text, saved: saved, reused: reused, clock: clock)
    }
    let trainer = Trainer(config, tokenizer: data.tokenizer, train: data.train, val: data.val)
    trainer.corpusHash = text.hash
    let resumed = try restore(trainer, from: saved, steps: steps)
    printHeader(trainer, data: data, reused: reused)
    for line in resumed { print(line) }
    let firstStep = trainer.step
    let savedAt = try trainLoop(trainer)
    try report(trainer, data: data, seconds: clock.seconds, trainedSteps: trainer.step - firstStep, savedAt: savedAt)
  }

  /// The run's description: data, model, optimisation.
  func printHeader(_ trainer: Trainer, data: TokenizedCorpus, reused: Bool) {
    let tokenizerName = tokenizer == .char ? "characters" : "byte-level BPE"
    print(
      """
      stage 8, pretraining: a GPT on '\(URL(fileURLWithPath: corpus).lastPathComponent)', \(tokenizerName) \
      (\(data.tokenizer.vocabularySize) ids)
      data: \(data.trainInfo.tokens) training and \(data.valInfo.tokens) validation tokens, 90/10 by position \
      (\(reused ? "token files reused from" : "tokenized into") \(data.directory))
      model: \(layers) layers, \(heads) heads, width \(width), context \(context), \(bias == .on ? "biases" : "no bias"), dropout \(dropout) \
      (\(trainer.model.parameterCount) parameters)
      training: AdamW lr \(lr) -> \(minLr) (warmup \(warmup), cosine), batch \(batchSize) x \(accumulation) x \
      \(context) tokens, \(steps) steps, clip 1.0, \(sampling.rawValue) windows
      """)
    if let mixed = trainer.mixedPrecision { print("precision: " + mixed.summary) }
  }

  /// Stage 7: the same run on --ranks thread ranks: data-parallel (with ZeRO), cut by --tp tensor parallelism or
  /// into --pp pipeline stages (either times --ranks / --tp or --pp data-parallel copies). Rank 0 also evaluates,
  /// samples and reports, with the whole model gathered from the others; every rank saves its part of the
  /// checkpoint, which resumes on any layout.
  func trainOnRanks(
    data: TokenizedCorpus, text: Corpus, saved: CheckpointReader?, reused: Bool, clock: Stopwatch
  ) throws {
    let shared = SharedData(tokenizer: data.tokenizer, train: data.train, val: data.val)
    let command = self
    nonisolated(unsafe) let (data, saved) = (data, saved)
    let hash = text.hash
    _ = try onRanks(backend, ranks: ranks, timeout: timeout) { comm in
      let (run, resumed) = try command.rankRun(comm, data: shared, saved: saved, corpusHash: hash)
      // After each evaluation rank 0 says whether it is a new best, and every rank saves its part.
      let save = { (best: Bool) in
        guard let checkpoint = command.checkpoint else { return }
        var flag = [best ? 1 : 0]
        try flag.withUnsafeMutableBufferPointer { try comm.broadcast($0, root: 0) }
        if flag[0] == 1 { try run.save(checkpoint) }
      }
      try run.gather()  // rank 0 evaluates before the first step
      // For the test of a crash: STAGE8_KILL_STEP=s kills the process (every rank, on threads) as the last rank
      // starts step s + 1, at whatever point rank 0 has reached.
      let killStep = ProcessInfo.processInfo.environment["STAGE8_KILL_STEP"].flatMap(Int.init)
      guard comm.rank == 0 else {
        while run.trainer.step < command.steps {
          if comm.rank == comm.size - 1 && run.trainer.step == killStep { kill(getpid(), SIGKILL) }
          _ = try run.step()
          if command.isEvaluationStep(run.trainer.step) {
            try run.gather()
            try save(false)
          }
        }
        return
      }
      command.printHeader(run.trainer, data: data, reused: reused)
      print("ranks: \(comm.size) \(comm.backend == "mpi" ? "MPI processes" : "threads"), \(run.layout)")
      for line in resumed { print(line) }
      let firstStep = run.trainer.step
      let savedAt = try command.trainLoop(
        run.trainer, step: run.step, beforeEvaluation: run.gather, afterEvaluation: save)
      try command.report(
        run.trainer, data: data, seconds: clock.seconds, trainedSteps: run.trainer.step - firstStep, savedAt: savedAt)
    }
  }

  /// The ranks' threads restore one at a time: a `CheckpointReader` notes what was taken from it as it is read.
  static let oneAtATime = NSLock()

  /// What one rank of a parallel run does, whatever the parallelism: an optimizer step, the whole model gathered
  /// into rank 0's trainer before an evaluation, and its part of a save (every rank calls each).
  struct RankRun {
    let trainer: Trainer
    let step: () throws -> Double
    let gather: () throws -> Void
    let save: (String) throws -> Void
    let layout: String
  }

  /// This rank's part of the run, with the checkpoint (if any) restored into it; and the lines that say so.
  func rankRun(
    _ comm: any Communicator, data: SharedData, saved: CheckpointReader?, corpusHash: String
  ) throws -> (RankRun, [String]) {
    let config = self.config
    guard pp > 1 || tp > 1 else {
      let zero = ZeroStage(rawValue: zero)!
      let options = DataParallelOptions(zero: zero, bucketBytes: Int(bucketMb * 1_048_576))
      let run = try DataParallelTrainer(config, data: data, communicator: comm, options: options)
      run.trainer.corpusHash = corpusHash
      try run.parallel.gatherParameters()  // ZeRO 3: the whole model, to load a checkpoint into
      let resumed = try Self.oneAtATime.withLock { try restore(run.trainer, from: saved, steps: steps) }
      run.parallel.loadShards()
      return (
        RankRun(
          trainer: run.trainer, step: run.runStep, gather: run.parallel.gatherParameters, save: run.saveCheckpoint,
          layout: "data parallel, ZeRO \(zero.rawValue), \(config.batchSize / comm.size) windows each"),
        resumed
      )
    }
    if tp > 1 {
      // Rank copy x tp + t holds slice t of data-parallel copy `copy`.
      let copies = ranks / tp
      let (copy, t) = comm.rank.quotientAndRemainder(dividingBy: tp)
      let tensor = try comm.split(color: copy, key: t)
      let dataGroup = copies > 1 ? try comm.split(color: t, key: copy) : nil
      let run = try TensorParallelTrainer(config, data: data, tensor: tensor, data: dataGroup)
      run.trainer.corpusHash = corpusHash
      let resumed = try Self.oneAtATime.withLock { try restore(run.trainer, from: saved, steps: steps) }
      run.adoptTrainerState()
      return (
        RankRun(
          trainer: run.trainer, step: run.runStep, gather: { if copy == 0 { try run.gatherModel() } },
          save: { if copy == 0 { try run.saveCheckpoint(to: $0) } },
          layout: "tensor parallel on \(tp) ranks (\(config.heads / tp) head\(config.heads / tp == 1 ? "" : "s") each)"
            + (copies > 1 ? " x \(copies) data-parallel copies, \(config.batchSize / copies) windows each" : "")),
        resumed
      )
    }
    // Rank copy x pp + s runs stage s of data-parallel copy `copy`.
    let copies = ranks / pp
    let (copy, s) = comm.rank.quotientAndRemainder(dividingBy: pp)
    let pipeline = try comm.split(color: copy, key: s)
    let dataGroup = copies > 1 ? try comm.split(color: s, key: copy) : nil
    let stage = try PipelineStage(config, data: data, communicator: pipeline)
    stage.trainer.corpusHash = corpusHash
    let resumed = try Self.oneAtATime.withLock { try restore(stage.trainer, from: saved, steps: steps) }
    stage.adoptTrainerState()
    let (micro, order) = (microbatches, schedule)
    return (
      RankRun(
        trainer: stage.trainer,
        step: { try stage.runStep(micro: micro, schedule: order, copy: copy, copies: copies, dataGroup: dataGroup) },
        gather: { if copy == 0 { try stage.gatherModel() } },
        save: { if copy == 0 { try stage.saveCheckpoint(to: $0) } },
        layout: "a pipeline of \(pp) stages (\(order.rawValue), \(micro) micro-batches of "
          + "\(config.batchSize / copies / micro) windows)" + (copies > 1 ? " x \(copies) data-parallel copies" : "")),
      resumed
    )
  }

  /// Whether the loop evaluates after `step`: every --eval-every steps and at the end.
  func isEvaluationStep(_ step: Int) -> Bool { step % evalEvery == 0 || step == steps }

  /// The loop: evaluate at the start, every --eval-every steps and at the end; save on a new best. Returns the
  /// step of the last save, if any. `step` runs one optimizer step (the trainer's own by default). After the
  /// start, `beforeEvaluation` runs before each evaluation and `afterEvaluation` after it, told whether it is a
  /// new best to save (by default it saves the trainer); every rank of a parallel run calls both at those steps.
  func trainLoop(
    _ trainer: Trainer, step: (() throws -> Double)? = nil, beforeEvaluation: () throws -> Void = {},
    afterEvaluation: ((Bool) throws -> Void)? = nil
  ) throws -> Int? {
    var savedAt: Int? = nil
    let clock = Stopwatch()
    let firstStep = trainer.step  // tokens/s counts this run's steps, not those before a resume
    let interactive = isatty(STDOUT_FILENO) == 1
    let progress = interactive ? Progress(total: steps) : nil
    /// Evaluates and prints; returns whether the checkpoint should be saved now.
    func evaluate() throws -> Bool {
      let r = try trainer.evaluate()
      let done = Double(trainer.step - firstStep)
      let rate = done * Double(config.tokensPerStep) / max(clock.seconds, 1e-9)
      let eta = done > 0 ? clock.seconds / done * Double(steps - trainer.step) : Double.nan
      closeProgressLine()
      print(
        String(
          format: "step %*d/%d  train %.4f  val %.4f  %@ tokens/s  ETA %@", String(steps).count, r.step, steps,
          r.trainLoss, r.valLoss, done > 0 ? String(format: "%.0f", rate) : "-", clockTime(eta)))
      fflush(nil)  // a log file shows each evaluation as it happens, not at the end
      // As nanoGPT, never at step 0: an untrained model would replace whatever the file held.
      return trainer.lastEvaluationIsBest && trainer.step > 0 && checkpoint != nil
    }
    // The first evaluation is of the model as it starts (initial, or just loaded): nothing new to save.
    if trainer.history.last?.step != trainer.step { _ = try evaluate() }
    while trainer.step < steps {
      let loss = try step?() ?? trainer.runStep()
      progress?.update(step: trainer.step, String(format: "loss %.4f", loss))
      if isEvaluationStep(trainer.step) {
        try beforeEvaluation()
        let best = try evaluate()
        if let afterEvaluation {
          try afterEvaluation(best)
        } else if best, let checkpoint {
          try trainer.save(to: checkpoint)
          removeOldShards(of: checkpoint)  // a sharded checkpoint's, if this one replaced it
        }
        if best { savedAt = trainer.step }
      }
    }
    return savedAt
  }

  /// The exact validation loss, speed, memory, a sample and the curves.
  func report(_ trainer: Trainer, data: TokenizedCorpus, seconds: Double, trainedSteps: Int, savedAt: Int?) throws {
    let exact = trainer.exactLoss(data.val)
    let bitsPerToken = exact.loss / Double.log(2)
    let unit = tokenizer == .char ? "nats/char" : "nats/token"
    print(
      String(
        format: "exact validation loss %.4f %@ over the whole split (%d windows of %d), %.3f bits per character",
        exact.loss, unit, exact.windows, context, bitsPerToken / data.valCharactersPerToken))
    print(
      String(
        format: "%.1f s in all, %.0f tokens/s of training, peak resident memory %.0f MB", seconds,
        Double(trainedSteps) * Double(config.tokensPerStep) / seconds, Double(peakResidentBytes()) / 1e6))
    if let checkpoint {
      print(
        savedAt.map { "checkpoint (the best validation loss, at step \($0)): \(checkpoint)" }
          ?? "no checkpoint written: no evaluation in this run beat the validation loss before it")
    }
    if sampleTokens > 0 {
      let prompt = defaultPrompt(data.tokenizer)
      let tokens = trainer.model.generate(
        prompt, count: sampleTokens, sampling: Sampling(temperature: 0.8, topK: 200), seed: 1, useCache: true)
      print("a sample of \(sampleTokens) tokens (temperature 0.8, top-k 200, seed 1):")
      print(data.tokenizer.decode(tokens))
    }
    var table = Table(columns: ["step", "train_loss", "val_loss"])
    for r in trainer.history { table.append([Double(r.step), r.trainLoss, r.valLoss]) }
    let chart = LineChart(
      title: "Stage 8: pretraining on \(URL(fileURLWithPath: corpus).lastPathComponent) (\(tokenizer.rawValue))",
      xLabel: "step", yLabel: "loss (nats per token)", table: table,
      curves: [Curve("train_loss", title: "train loss"), Curve("val_loss", title: "validation loss")])
    let written = try writeLineChart(chart, name: Self.plotName, directory: plotDir)
    print("wrote " + written.written.joined(separator: ", "))
    for note in written.notes { print("note: " + note) }
  }
}

/// Tiny Shakespeare, as the project ships it (Shared/Datasets/Data).
let defaultCorpus = shakespearePath

/// The prompt of a sample when none is given: a newline, as nanoGPT's sample.py starts, or the tokenizer's first id
/// when a newline is not in its vocabulary (a corpus without line breaks).
func defaultPrompt(_ tokenizer: any Tokenizer) -> [Int] {
  (try? tokenizer.encode("\n")).flatMap { $0.isEmpty ? nil : $0 } ?? [0]
}
