import Foundation
import Testing

@testable import Support

@Suite struct RandomTests {
  @Test func splitMix64MatchesTheReferenceOutputs() {
    // The first outputs of the published SplitMix64 from seed 0.
    var rng = SplitMix64(seed: 0)
    #expect(rng.next() == 0xE220_A839_7B1D_CDAF)
    #expect(rng.next() == 0x6E78_9E6A_A1B9_65F4)
    #expect(rng.next() == 0x06C4_5D18_8009_454F)
  }

  @Test func xoshiroMatchesTheReferenceOutputs() {
    // xoshiro256** from the state {1, 2, 3, 4}, as the reference C code gives it.
    var rng = SeededRNG(state: (1, 2, 3, 4))
    #expect([rng.next(), rng.next(), rng.next(), rng.next()] == [11520, 0, 1_509_978_240, 1_215_971_899_390_074_240])
  }

  @Test func theSameSeedGivesTheSameStream() {
    var a = SeededRNG(seed: 42)
    var b = SeededRNG(seed: 42)
    var c = SeededRNG(seed: 43)
    let first = (0..<5).map { _ in a.next() }
    #expect(first == (0..<5).map { _ in b.next() })
    #expect(first != (0..<5).map { _ in c.next() })
  }

  @Test func drawsHaveTheRightRangeAndMoments() {
    var rng = SeededRNG(seed: 7)
    let uniform = (0..<100_000).map { _ in rng.uniform(-2, 3) }
    #expect(uniform.allSatisfy { $0 >= -2 && $0 < 3 })
    #expect(abs(uniform.reduce(0, +) / 100_000 - 0.5) < 0.02)
    let normal = (0..<100_000).map { _ in rng.normal(mean: 1, std: 2) }
    let mean = normal.reduce(0, +) / 100_000
    let variance = normal.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 100_000
    #expect(abs(mean - 1) < 0.03)
    #expect(abs(variance.squareRoot() - 2) < 0.03)
    let indices = (0..<10_000).map { _ in rng.index(below: 3) }
    #expect(Set(indices) == [0, 1, 2])
  }

  @Test func stableHashIsFNV1a() {
    #expect(stableHash("") == 0xCBF2_9CE4_8422_2325)
    #expect(stableHash("a") == 0xAF63_DC4C_8601_EC8C)
  }
}

@Suite struct TimingTests {
  @Test func medianOfOddAndEvenCounts() {
    #expect(median([3, 1, 2]) == 2)
    #expect(median([4, 1, 3, 2]) == 2.5)
  }

  @Test func clockTimeFormatsMinutesAndHours() {
    #expect(clockTime(5) == "0:05")
    #expect(clockTime(125) == "2:05")
    #expect(clockTime(3725) == "1:02:05")
  }

  /// The peak is at least what is resident now, which includes a freshly written 64 MiB buffer, and at least the
  /// kernel's own high-water mark (VmHWM in /proc/self/status, in KiB); it can be higher than VmHWM, because
  /// Linux's ru_maxrss also keeps the peak of the process image before exec (the forked test runner), but never
  /// above the machine's memory. A unit off by 1024 either way fails. (The two readings may differ by a few MiB.)
  @Test func peakResidentMemoryCountsABufferJustWrittenAndIsBoundedByTheMachine() throws {
    #if os(Linux)
      let size = 64 << 20
      let buffer = [UInt8](repeating: 1, count: size)  // written, so every page is resident
      func status(_ field: String) throws -> Int {
        let text = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        let line = try #require(text.split(separator: "\n").first { $0.hasPrefix(field + ":") })
        return try #require(Int(line.split(separator: " ")[1])) * 1024
      }
      let resident = try status("VmRSS")
      let highWater = try status("VmHWM")
      let peak = peakResidentBytes()
      #expect(resident >= size && buffer[size - 1] == 1)
      // Linux counts resident pages per thread in batches and folds them in lazily, so with other tests running
      // in parallel the two readings may disagree by a few MiB: far less than the factor 1024 a unit error makes.
      let slack = 8 << 20
      #expect(
        peak + slack >= resident && peak + slack >= highWater, "peak \(peak), VmRSS \(resident), VmHWM \(highWater)")
      #expect(peak <= Int(ProcessInfo.processInfo.physicalMemory), "peak \(peak)")
    #endif
  }
}

@Suite struct FilesTests {
  let directory = NSTemporaryDirectory() + "files-tests-\(getpid())-\(Stopwatch.now())"

  @Test func atomicWriteReplacesTheFileAndLeavesNoTemporary() throws {
    try prepareOutputDirectory(directory)
    let path = directory + "/out.txt"
    try writeAtomically("first", to: path)
    try writeAtomically("second", to: path)
    #expect(try String(contentsOfFile: path, encoding: .utf8) == "second")
    #expect(try FileManager.default.contentsOfDirectory(atPath: directory) == ["out.txt"])
  }

  @Test func aFileWhereADirectoryShouldBeIsAnError() throws {
    try prepareOutputDirectory(directory)
    let path = directory + "/plain"
    try writeAtomically("x", to: path)
    #expect(throws: UserError.self) { try prepareOutputDirectory(path) }
    do {
      try prepareOutputDirectory(path)
    } catch {
      #expect("\(error)" == "'\(path)' is a file, not a directory")
    }
  }

  /// A container's CLI often has the same pid every time: a temporary of this pid is an earlier process's leftover,
  /// and the output check removes it instead of failing on it ("File exists") for good.
  @Test func aLeftoverWithThisProcesssPidDoesNotBlockTheOutputCheck() throws {
    try prepareOutputDirectory(directory)
    let path = directory + "/same-pid.safetensors"
    let leftover = directory + "/" + temporaryName(for: "same-pid.safetensors")
    try Data("half a checkpoint".utf8).write(to: URL(fileURLWithPath: leftover))
    try prepareOutputFile(path, option: "--checkpoint")
    #expect(!FileManager.default.fileExists(atPath: leftover))
  }

  @Test func aKilledWritersTemporaryIsRemovedByTheNextWrite() throws {
    try prepareOutputDirectory(directory)
    let path = directory + "/run.safetensors"
    // Int32.max is above any pid the kernel hands out, so no process has it; pid 1 always runs.
    let stale = directory + "/" + temporaryName(for: "run.safetensors", pid: Int32.max)
    let live = directory + "/" + temporaryName(for: "run.safetensors", pid: 1)
    try Data("half a checkpoint".utf8).write(to: URL(fileURLWithPath: stale))
    try Data("another run's write".utf8).write(to: URL(fileURLWithPath: live))
    try writeAtomically("whole", to: path)
    let names = try FileManager.default.contentsOfDirectory(atPath: directory).sorted()
    #expect(names == [".run.safetensors.partial-1", "run.safetensors"])
    #expect(try String(contentsOfFile: path, encoding: .utf8) == "whole")
  }

  @Test func outputPathsAreCheckedBeforeTheWork() throws {
    try prepareOutputDirectory(directory)
    func message(_ path: String) -> String {
      do {
        try prepareOutputFile(path, option: "--checkpoint")
        return "accepted"
      } catch { return "\(error)" }
    }
    #expect(message("") == "--checkpoint is an empty path")
    #expect(message(directory) == "--checkpoint '\(directory)' is a directory; it needs a file name")
    #expect(
      message("/proc/x.safetensors").hasPrefix("--checkpoint '/proc/x.safetensors': directory '/proc' is not writable"))
    #expect(message(directory + "/new/x.safetensors") == "accepted")
    #expect(try FileManager.default.contentsOfDirectory(atPath: directory + "/new") == [])  // the probe is gone
    #expect(throws: UserError.self) { try prepareOutputDirectory("/proc/sys") }
    #expect(throws: UserError.self) { try prepareOutputDirectory("") }
  }

  @Test func anInputIsNeverOverwritten() throws {
    try prepareOutputDirectory(directory)
    let data = directory + "/data.csv"
    try writeAtomically("1,2,3\n", to: data)
    markAsInput(data)
    let link = directory + "/link.csv"
    try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: data)
    #expect(throws: UserError.self) { try prepareOutputFile(directory + "/./data.csv", option: "--checkpoint") }
    do {
      try writeAtomically("a checkpoint", to: link)
      Issue.record("the input was overwritten through a link")
    } catch {
      #expect("\(error)" == "'\(link)' is the input file '\(data)'; writing it would destroy the input")
    }
    #expect(try String(contentsOfFile: data, encoding: .utf8) == "1,2,3\n")
  }

  @Test func aCheckpointNeverReplacesADeviceAPipeOrAFileThatIsNotACheckpoint() throws {
    try prepareOutputDirectory(directory)
    func message(_ path: String) -> String {
      do {
        try prepareOutputFile(
          path, option: "--checkpoint", replaceable: looksLikeSafetensors, kind: "safetensors checkpoint")
        return "accepted"
      } catch { return "\(error)" }
    }
    #expect(
      message("/dev/null") == "--checkpoint '/dev/null' is a device, pipe or socket, not a file; it needs a file name")
    let fifo = directory + "/fifo"
    #expect(mkfifo(fifo, 0o600) == 0)
    #expect(message(fifo) == "--checkpoint '\(fifo)' is a device, pipe or socket, not a file; it needs a file name")
    #expect(message(directory + "/x.st/") == "--checkpoint '\(directory)/x.st/' ends in '/'; it needs a file name")
    let notes = directory + "/notes.txt"
    try writeAtomically("my notes\n", to: notes)
    #expect(
      message(notes)
        == "--checkpoint '\(notes)' exists and is not a safetensors checkpoint; it is not replaced (remove it or choose another name)"
    )
    #expect(try String(contentsOfFile: notes, encoding: .utf8) == "my notes\n")
    let old = directory + "/old.safetensors"
    try writeSafetensors(["x": try SafeTensor([Float(1)], shape: [1])], metadata: [:], to: old)
    #expect(message(old) == "accepted")  // an earlier checkpoint is saved over, as torch.save does
  }

  @Test func oneOutputNeverReplacesAnotherOrAnInputOtherThanItsOwn() throws {
    try prepareOutputDirectory(directory)
    let plot = directory + "/digits.csv"
    try reserveOutput(plot, for: "--plot-dir")
    do {
      try prepareOutputFile(plot, option: "--checkpoint")
      Issue.record("a checkpoint named like a plot was accepted")
    } catch {
      #expect(
        "\(error)" == "--checkpoint '\(plot)' is also a file that --plot-dir writes; one output would destroy the other"
      )
    }
    // A resumed checkpoint is an input that only --checkpoint may replace.
    let resumed = directory + "/resumed.safetensors"
    try writeAtomically("checkpoint bytes", to: resumed)
    markAsInput(resumed, replaceableBy: "--checkpoint")
    #expect(throws: UserError.self) { try reserveOutput(resumed, for: "--plot-dir") }
    #expect(throws: UserError.self) { try writeAtomically("a plot", to: resumed, as: "--plot-dir") }
    try writeAtomically("the next checkpoint", to: resumed, as: "--checkpoint")
    #expect(try String(contentsOfFile: resumed, encoding: .utf8) == "the next checkpoint")
  }

  @Test func writingIntoAMissingDirectoryIsAnError() {
    #expect(throws: UserError.self) { try writeAtomically("x", to: "/nonexistent-dir/x.txt") }
  }

  @Test func runToolCapturesOutputErrorsAndStatus() throws {
    let shell = try #require(findExecutable("sh"))
    let run = try runTool(shell, ["-c", "cat; echo oops >&2; exit 3"], input: "hello")
    #expect(run.output == "hello")
    #expect(run.errorOutput == "oops\n")
    #expect(run.status == 3)
  }

  @Test func findExecutableFindsShAndNotNonsense() {
    #expect(findExecutable("sh") != nil)
    #expect(findExecutable("no-such-tool-here") == nil)
  }
}

@Suite struct ParallelTests {
  @Test func everyIndexIsVisitedOnceInOrderedPieces() {
    for (count, grain) in [(0, 1), (1, 1), (7, 1), (1000, 10), (1000, 600), (100_003, 4096)] {
      let seen = UnsafeMutableBufferPointer<Int>.allocate(capacity: max(count, 1))
      seen.initialize(repeating: 0)
      defer { seen.deallocate() }
      Parallel.forEach(count, grain: grain) { range in
        for i in range { seen[i] += 1 }
      }
      #expect(seen.prefix(count).allSatisfy { $0 == 1 }, "count \(count), grain \(grain)")
    }
  }

  @Test func aLoopBelowTheGrainRunsAsOnePiece() {
    var pieces: [Range<Int>] = []
    Parallel.forEach(100, grain: 1000) { pieces.append($0) }
    #expect(pieces == [0..<100])
  }

  @Test func aNestedLoopSharesItsPiecesCores() {
    let pieces = min(Parallel.cores, 4)
    let shares = UnsafeMutableBufferPointer<Int>.allocate(capacity: pieces)
    defer { shares.deallocate() }
    Parallel.forEach(pieces, grain: 1) { range in
      for i in range { shares[i] = Parallel.coresHere }
    }
    #expect(shares.allSatisfy { $0 == max(1, Parallel.cores / pieces) })
    #expect(Parallel.coresHere == Parallel.cores, "the calling thread gets all its cores back")
  }

  @Test func bothRunsEachJobOnce() {
    let runs = UnsafeMutableBufferPointer<Int>.allocate(capacity: 2)
    runs.initialize(repeating: 0)
    defer { runs.deallocate() }
    Parallel.both({ runs[0] += 1 }, { runs[1] += 10 })
    #expect(Array(runs) == [1, 10])
  }
}
