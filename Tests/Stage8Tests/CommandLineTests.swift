import Foundation
import Support
import Testing

/// Runs the built `stage8` executable, as a user would, and checks what it prints and how it exits.
@Suite struct CommandLineTests {
  /// The executable sits beside the test bundle in the build folder.
  static let executable = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    .appendingPathComponent("stage8").path

  let directory = temporaryDirectory("cli")
  /// Tests/Fixtures, beside this file's folder.
  let fixturesDirectory =
    URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().path
    + "/Fixtures"

  /// A tiny run on the first 20,000 characters of Tiny Shakespeare: the sizes a debug build trains in seconds.
  var tiny: [String] {
    let corpus = writeCorpus(String(shakespeareText.prefix(20_000)), in: directory)
    return [
      "--corpus", corpus, "--data-dir", directory + "/data", "--plot-dir", directory, "--layers", "1", "--heads", "2",
      "--width", "16", "--context", "16", "--batch-size", "4", "--eval-every", "10", "--eval-batches", "2",
      "--sample-tokens", "20",
    ]
  }

  func run(_ arguments: [String]) throws -> ToolRun {
    try runTool(Self.executable, arguments)
  }

  /// Ends with exactly `message` as its one line on stderr, a failing exit and no training.
  func expectRefusal(_ result: ToolRun, _ message: String, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(result.status != 0, sourceLocation: sourceLocation)
    #expect(result.errorOutput == "stage8: error: " + message + "\n", sourceLocation: sourceLocation)
    #expect(!result.output.contains("step "), sourceLocation: sourceLocation)
  }

  @Test(arguments: [
    (["train", "--steps", "0"], "--steps must be a whole number from 1 to 10000000, got 0"),
    (["train", "--width", "30", "--heads", "4"], "--width must be a multiple of --heads (4), got 30"),
    (["train", "--tokenizer", "word"], "The value 'word' is invalid for '--tokenizer <tokenizer>'"),
    (["train", "--lr", "nan"], "--lr must be a finite number above 0, got nan"),
    (["train", "--corpus", "/nonexistent.txt"], "cannot read '/nonexistent.txt': No such file or directory"),
    (["sample"], "give the model: --checkpoint FILE (this stage's) or --hf DIR (a Hugging Face folder)"),
    (["sample", "--checkpoint", "a", "--hf", "b"], "--checkpoint and --hf name two models; give one"),
    (
      ["fill", "--text", "[MASK]"],
      "give the model: --checkpoint FILE (this stage's) or --hf DIR (a Hugging Face folder)"
    ),
    (
      ["sample", "--hf", "/nonexistent"],
      "'/nonexistent' does not exist (a Hugging Face checkpoint folder is expected)"
    ),
    (["export", "--checkpoint", "x"], "Missing expected argument '--hf-out <hf-out>'"),
    (["export", "--checkpoint", "x", "--hf-out", ""], "--hf-out is an empty path"),
    (
      ["sample", "--checkpoint", "/nonexistent.safetensors"],
      "cannot read '/nonexistent.safetensors': No such file or directory"
    ),
    (["sample", "--checkpoint", "x", "--top-p", "1.5"], "--top-p must be a finite number in (0, 1], got 1.5"),
    (["sample", "--checkpoint", "x", "--prompt", ""], "--prompt is empty: give at least one character to continue"),
    (["tokenize"], "Missing expected argument '--out-dir <out-dir>'"),
    (["tokenize", "--out-dir", ""], "--out-dir is an empty path"),
    (
      ["tokenize", "--out-dir", "x", "--tokenizer-file", "t.json", "--vocab", "300"],
      "--vocab has no effect with --tokenizer-file (the file is the tokenizer); leave it out"
    ),
    (
      ["tokenize", "--out-dir", "x", "--tokenizer", "char", "--vocab", "300"],
      "--vocab has no effect with --tokenizer char (the corpus's characters are the vocabulary)"
    ),
    (["train", "--data-dir", ""], "--data-dir is an empty path"),
    (["train", "--plot-dir", ""], "--plot-dir is an empty path"),
  ])
  func badInputEndsWithOneLineOnStderrAndAFailingExit(_ arguments: [String], _ message: String) throws {
    let result = try run(arguments)
    #expect(result.status != 0)
    #expect(result.errorOutput.hasPrefix("stage8: error: " + message), "\(result.errorOutput)")
    #expect(result.errorOutput.split(separator: "\n").count == 1)
    #expect(result.output.isEmpty)
  }

  /// Corpora a run cannot learn from, each refused with what is wrong with it.
  @Test func badCorporaAreRefusedWithOneMessageEach() throws {
    let empty = writeCorpus("", name: "empty.txt", in: directory)
    expectRefusal(
      try run(["train", "--corpus", empty, "--plot-dir", directory]),
      "corpus '\(empty)' is empty: there is no text to learn from")
    let short = writeCorpus(String(shakespeareText.prefix(300)), name: "short.txt", in: directory)
    expectRefusal(
      try run(["train", "--corpus", short, "--data-dir", directory + "/short", "--plot-dir", directory]),
      "the validation split of '\(short)' holds 30 tokens, fewer than one window of --context 64 + 1; use a longer "
        + "corpus or a smaller --context")
    let binary = directory + "/binary.txt"
    try Data([0x52, 0x4F, 0x4D, 0x45, 0x4F, 0xFF, 0x0A]).write(to: URL(fileURLWithPath: binary))
    expectRefusal(
      try run(["train", "--corpus", binary, "--plot-dir", directory]),
      "corpus '\(binary)' is not UTF-8 text: byte 5 does not start a valid character")
  }

  /// Token files damaged in the data folder are refused, not silently replaced or trained on.
  @Test func damagedTokenFilesAreRefusedByName() throws {
    let prepared = try run(["train"] + tiny + ["--steps", "1"])
    #expect(prepared.status == 0, "\(prepared.errorOutput)")
    let data = directory + "/data"
    let hint = " (in --data-dir '\(data)': remove it, or choose another, to tokenize afresh)"
    let val = try Data(contentsOf: URL(fileURLWithPath: data + "/val.bin"))
    // An odd size.
    try (val + Data([7])).write(to: URL(fileURLWithPath: data + "/val.bin"))
    expectRefusal(
      try run(["train"] + tiny),
      "'\(data)/val.bin' is \(val.count + 1) bytes, an odd number: a token file holds 2 bytes (uint16) per id" + hint)
    // An id past the vocabulary (the corpus has 58 characters here).
    var bad = [UInt8](val)
    (bad[4], bad[5]) = (200, 0)
    try Data(bad).write(to: URL(fileURLWithPath: data + "/val.bin"))
    let tooLarge = try run(["train"] + tiny)
    #expect(tooLarge.status == 1 && tooLarge.errorOutput.split(separator: "\n").count == 1)
    #expect(tooLarge.errorOutput.contains("id 200 at position 2"), "\(tooLarge.errorOutput)")
    // A sidecar naming another tokenizer.
    try val.write(to: URL(fileURLWithPath: data + "/val.bin"))
    let sidecar = data + "/val.bin.json"
    let text = try String(contentsOfFile: sidecar, encoding: .utf8)
    let fingerprint = try #require(text.firstMatch(of: /"tokenizer" : "([^"]+)"/)?.1)
    try text.replacingOccurrences(of: String(fingerprint), with: "bpe-0123456789abcdef")
      .write(toFile: sidecar, atomically: true, encoding: .utf8)
    let other = try run(["train"] + tiny)
    #expect(other.status == 1 && other.errorOutput.split(separator: "\n").count == 1)
    #expect(other.errorOutput.contains("bpe-0123456789abcdef"), "\(other.errorOutput)")
  }

  @Test func trainWritesACheckpointThatSampleReads() throws {
    let path = directory + "/gpt.safetensors"
    let train = try run(["train"] + tiny + ["--steps", "20", "--checkpoint", path])
    #expect(train.status == 0, "\(train.errorOutput)")
    #expect(train.output.contains("step 20/20  train "))
    #expect(train.output.contains("exact validation loss "))
    #expect(train.output.contains("a sample of 20 tokens (temperature 0.8, top-k 200, seed 1):"))
    #expect(FileManager.default.fileExists(atPath: directory + "/pretrain.csv"))
    let csv = try String(contentsOfFile: directory + "/pretrain.csv", encoding: .utf8)
    #expect(csv.split(separator: "\n").first == "step,train_loss,val_loss" && csv.split(separator: "\n").count == 4)
    // The model and the tokenizer come from the checkpoint; with and without the KV cache the same text, longer
    // than the context of 16.
    let cached = try run(["sample", "--checkpoint", path, "--prompt", "ROMEO:", "--tokens", "40"])
    let uncached = try run(["sample", "--checkpoint", path, "--prompt", "ROMEO:", "--tokens", "40", "--no-kv-cache"])
    #expect(cached.status == 0, "\(cached.errorOutput)")
    #expect(cached.output.hasPrefix("ROMEO:") && cached.output.count == 6 + 40 + 1)
    #expect(cached.output == uncached.output)
    let badPrompt = try run(["sample", "--checkpoint", path, "--prompt", "ROMEO: 😀"])
    expectRefusal(badPrompt, "--prompt: character 8, '😀' (U+1F600), is not in the tokenizer's 58 characters")
    let wrongShape = try run(["sample", "--checkpoint", path, "--width", "32"])
    #expect(wrongShape.status != 0 && wrongShape.errorOutput.contains("--width"))
  }

  @Test func aResumeContinuesWithTheCheckpointsOptionsAndRefusesOthers() throws {
    let path = directory + "/tiny.safetensors"
    let first = try run(["train"] + tiny + ["--steps", "10", "--checkpoint", path])
    #expect(first.status == 0, "\(first.errorOutput)")
    let refusals: [([String], String)] = [
      (
        ["--lr", "0.01"], "--lr 0.01 conflicts with the checkpoint: '\(path)' was made with --lr 0.001 (leave --lr out)"
      ),
      (["--width", "32"], "--width 32 conflicts with the checkpoint: '\(path)' was made with --width 16"),
      (["--tokenizer", "bpe"], "--tokenizer bpe conflicts with the checkpoint"),
      (["--sampling", "epochs"], "--sampling epochs conflicts with the checkpoint"),
      ([], "'\(path)' is at step 10 already: --steps 10 leaves nothing to train (ask for more)"),
      (["--steps", "5"], "'\(path)' is at step 10 already: --steps 5 leaves nothing to train"),
      (["--checkpoint", ""], "--checkpoint is an empty path"),
    ]
    for (arguments, message) in refusals {
      let result = try run(
        ["train", "--resume", path, "--plot-dir", directory, "--data-dir", directory + "/data"] + arguments)
      #expect(result.status != 0)
      #expect(result.errorOutput.hasPrefix("stage8: error: " + message), "\(arguments): \(result.errorOutput)")
      #expect(result.errorOutput.split(separator: "\n").count == 1)
      #expect(!result.output.contains("step "))
    }
    let resumed = try run(
      ["train", "--resume", path, "--steps", "20", "--plot-dir", directory, "--data-dir", directory + "/data"])
    #expect(resumed.status == 0, "\(resumed.errorOutput)")
    #expect(resumed.output.contains("model: 1 layers, 2 heads, width 16, context 16"))
    #expect(resumed.output.contains("token files reused from"))
    #expect(resumed.output.contains("resumed from \(path) after step 10"))
    #expect(
      resumed.output.contains("note: the cosine schedule is re-derived for 20 steps (the checkpoint's run planned 10)"))
    #expect(resumed.output.contains("step 20/20") && !resumed.output.contains("step 10/20"))
  }

  /// Text that is valid but unlike Shakespeare's: code points split apart by the 90/10 cut (a combining accent,
  /// "\r\n"), a byte-order mark, no newline at all (the sample then starts from the first character).
  @Test func unusualTextTrainsAndSamples() throws {
    for (name, text) in [
      ("accents", "x" + String(repeating: "ae\u{301} ", count: 700)),
      ("crlf", "\u{FEFF}" + String(repeating: "hello world\r\n", count: 200)),
      ("flat", String(repeating: "abc def ", count: 400)),
    ] {
      let corpus = writeCorpus(text, name: name + ".txt", in: directory)
      let path = directory + "/\(name).safetensors"
      let result = try run(
        ["train"] + tiny + [
          "--corpus", corpus, "--data-dir", directory + "/" + name, "--steps", "10", "--checkpoint", path,
        ])
      #expect(result.status == 0, "\(name): \(result.errorOutput)")
      #expect(result.output.contains("a sample of 20 tokens"), "\(name)")
      let sample = try run(["sample", "--checkpoint", path, "--tokens", "5"])
      #expect(sample.status == 0, "\(name): \(sample.errorOutput)")
    }
  }

  /// What a resume and a checkpoint must not do: train on changed text, or replace a file that is not theirs.
  @Test func checkpointsAndDataFoldersGuardWhatIsNotTheirs() throws {
    let path = directory + "/a.safetensors"
    let first = try run(["train"] + tiny + ["--steps", "10", "--checkpoint", path])
    #expect(first.status == 0, "\(first.errorOutput)")
    // From another folder, without --corpus: the checkpoint records the corpus's absolute path.
    try FileManager.default.createDirectory(atPath: directory + "/elsewhere", withIntermediateDirectories: true)
    let elsewhere = try runTool(
      Self.executable, ["train", "--resume", path, "--steps", "11", "--plot-dir", "."],
      workingDirectory: directory + "/elsewhere")
    #expect(elsewhere.status == 0, "\(elsewhere.errorOutput)")
    // The same path with other text: refused, not trained on.
    let corpus = directory + "/corpus.txt"
    let original = try String(contentsOfFile: corpus, encoding: .utf8)
    try String(original.reversed()).write(toFile: corpus, atomically: true, encoding: .utf8)
    let changed = try run([
      "train", "--resume", path, "--steps", "20", "--data-dir", directory + "/other", "--plot-dir", directory,
    ])
    #expect(changed.status == 1 && changed.errorOutput.contains("metadata 'corpus_hash'"), "\(changed.errorOutput)")
    try original.write(toFile: corpus, atomically: true, encoding: .utf8)
    // A safetensors file that is not a stage 8 checkpoint (a Hugging Face GPT-2) is not replaced.
    let gpt2 = directory + "/gpt2.safetensors"
    try FileManager.default.copyItem(
      atPath: fixturesDirectory + "/hf/gpt2/model.safetensors", toPath: gpt2)
    let before = try Data(contentsOf: URL(fileURLWithPath: gpt2))
    expectRefusal(
      try run(["train"] + tiny + ["--checkpoint", gpt2]),
      "--checkpoint '\(gpt2)' exists and is not a stage 8 checkpoint; it is not replaced (remove it or choose another name)"
    )
    #expect(try Data(contentsOf: URL(fileURLWithPath: gpt2)) == before)
    // A data folder the user named that holds another tokenizer's files is not replaced; nor is anything written
    // when the checkpoint would land on one of the folder's files.
    let bpe = try run(["tokenize", "--corpus", corpus, "--vocab", "300", "--out-dir", directory + "/bpe"])
    #expect(bpe.status == 0, "\(bpe.errorOutput)")
    let refused = try run(["train"] + tiny + ["--data-dir", directory + "/bpe"])
    #expect(refused.status == 1, "\(refused.output)")
    #expect(
      refused.errorOutput.hasPrefix(
        "stage8: error: --data-dir '\(directory)/bpe' holds another corpus or tokenizer's token files (bpe, 300 ids"))
    let fresh = directory + "/fresh"
    expectRefusal(
      try run(["train"] + tiny + ["--data-dir", fresh, "--checkpoint", fresh + "/val.bin.json"]),
      "--data-dir '\(fresh)/val.bin.json' is also a file that --checkpoint writes; one output would destroy the other")
    #expect((try? FileManager.default.contentsOfDirectory(atPath: fresh)) ?? [] == [])
  }

  /// The default data folder is a cache: made on the first run, reused on the next, made again when damaged or
  /// left by another corpus.
  @Test func theDefaultDataFolderIsACache() throws {
    let arguments = ["train"] + tiny.filter { !$0.contains("/data") && $0 != "--data-dir" } + ["--steps", "1"]
    let cache = directory + "/Plots/runs/8-mixed-precision/data-char"
    let first = try runTool(Self.executable, arguments, workingDirectory: directory)
    #expect(
      first.status == 0 && first.output.contains("(tokenized into Plots/runs/8-mixed-precision/data-char)"),
      "\(first.errorOutput)")
    let second = try runTool(Self.executable, arguments, workingDirectory: directory)
    #expect(
      second.output.contains("(token files reused from Plots/runs/8-mixed-precision/data-char)"),
      "\(second.errorOutput)")
    try Data("{}".utf8).write(to: URL(fileURLWithPath: cache + "/tokenizer.json"))
    let damaged = try runTool(Self.executable, arguments, workingDirectory: directory)
    #expect(damaged.status == 0 && damaged.output.contains("(tokenized into"), "\(damaged.errorOutput)")
  }

  @Test func tokenizeTrainsABPEAndWritesTokenFiles() throws {
    let corpus = writeCorpus(String(shakespeareText.prefix(50_000)), in: directory)
    let out = directory + "/bpe"
    let result = try run(["tokenize", "--corpus", corpus, "--vocab", "300", "--out-dir", out])
    #expect(result.status == 0, "\(result.errorOutput)")
    #expect(result.output.contains("tokenizer: byte-level BPE, 300 ids (5 special, 256 bytes, 39 learned)"))
    #expect(result.output.contains("first tokens learned: "))
    for name in ["tokenizer.json", "train.bin", "train.bin.json", "val.bin", "val.bin.json"] {
      #expect(FileManager.default.fileExists(atPath: out + "/" + name), "\(name)")
    }
    // The same folder trains a model with no second tokenizing; another tokenizer file encodes the same way.
    let again = try run([
      "tokenize", "--corpus", corpus, "--tokenizer-file", out + "/tokenizer.json", "--out-dir", directory + "/again",
    ])
    #expect(again.status == 0, "\(again.errorOutput)")
    for name in ["train.bin", "val.bin"] {
      #expect(
        try Data(contentsOf: URL(fileURLWithPath: out + "/" + name))
          == Data(contentsOf: URL(fileURLWithPath: directory + "/again/" + name)))
    }
  }

  @Test func aBPERunReportsBitsPerCharacter() throws {
    let result = try run(["train"] + tiny + ["--tokenizer", "bpe", "--vocab", "300", "--steps", "10"])
    #expect(result.status == 0, "\(result.errorOutput)")
    #expect(result.output.contains("byte-level BPE (300 ids)"))
    #expect(result.output.contains("nats/token over the whole split"))
    #expect(result.output.contains("bits per character"))
  }

  @Test func graphWritesIntoPlotDirWithEveryGradient() throws {
    let result = try run(["graph", "--example", "attention", "--plot-dir", directory])
    #expect(result.status == 0)
    #expect(result.output.contains("wrote \(directory)/graph-attention.dot"))
    let dot = try String(contentsOfFile: directory + "/graph-attention.dot", encoding: .utf8)
    #expect(dot.hasPrefix("digraph G {"))
    #expect(!dot.contains("grad -"), "a node of the picture lost its gradient")
  }

  @Test func gradcheckPassesEveryCase() throws {
    let result = try run(["gradcheck"])
    #expect(result.status == 0)
    #expect(result.output.contains("gpt_tiny") && result.output.contains("bert_pretraining"))
    #expect(result.output.contains("lora_linear") && result.output.contains("prefix_attention"))
    #expect(result.output.hasSuffix("90 passed, 0 failed\n"))
  }

  /// Every number printed after "train " and "val " on the evaluation lines, in order.
  func printedLosses(_ output: String) -> [Double] {
    output.split(separator: "\n").filter { $0.hasPrefix("step ") }.flatMap { line in
      [" train ", " val "].compactMap { key in
        line.range(of: key).flatMap { Double(line[$0.upperBound...].prefix { !$0.isWhitespace }) }
      }
    }
  }

  @Test func theReferenceKernelsTrainToTheSameLosses() throws {
    let fast = try run(["train"] + tiny + ["--steps", "20", "--kernels", "fast"])
    let reference = try run(["train"] + tiny + ["--steps", "20", "--kernels", "reference"])
    #expect(fast.status == 0 && reference.status == 0, "\(fast.errorOutput)\(reference.errorOutput)")
    let (a, b) = (printedLosses(fast.output), printedLosses(reference.output))
    #expect(a.count == 6 && a.count == b.count, "\(fast.output)\n\(reference.output)")
    for (x, y) in zip(a, b) { #expect(abs(x - y) <= 2e-4 + 1e-3 * abs(y), "fast \(x), reference \(y)") }
  }
}
