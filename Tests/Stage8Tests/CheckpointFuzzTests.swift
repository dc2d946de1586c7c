import Foundation
import Support
import Testing

@testable import Stage8

/// A real checkpoint, damaged in every way `damagedCopies` knows and every way only this stage knows (its
/// history's columns, its options, its step counts), fed to `restore`: each copy must be refused with a
/// `UserError` naming what is wrong, and the trainer must be left exactly as it was. A crash here ends the test
/// run, a hang never ends it, an accepted copy fails the test: all three are what the reader is for.
@Suite struct CheckpointFuzzTests {
  /// A tiny GPT (one block, width 8) keeps the checkpoint small and the hundreds of restores fast.
  static func trainer() -> Trainer {
    tinyTrainer {
      $0.width = 8
      $0.steps = 6
    }
  }

  /// Four steps of a real run with an evaluation after the second and the fourth, saved.
  static let good: [UInt8] = {
    let trainer = Self.trainer()
    for _ in 0..<2 {
      try! trainer.runStep()
      try! trainer.runStep()
      try! trainer.evaluate()
    }
    return try! trainer.checkpointBytes()
  }()

  /// `SHOW_REFUSALS=1 swift test --filter CheckpointFuzzTests` prints every damaged copy and its refusal.
  let showRefusals = ProcessInfo.processInfo.environment["SHOW_REFUSALS"] != nil

  /// The message `restore` refuses `bytes` with, or nil if it accepts them.
  func refusal(_ bytes: [UInt8], into trainer: Trainer) -> String? {
    do {
      let reader = try CheckpointReader(bytes: bytes, source: "damaged", format: Trainer.checkpointFormat)
      try trainer.restore(from: reader)
      return nil
    } catch let error as UserError {
      return error.description
    } catch {
      return "not a UserError: \(error)"
    }
  }

  /// The good checkpoint with its metadata changed by `change`.
  func withMetadata(_ change: (inout [String: String]) -> Void) -> [UInt8] {
    var (tensors, metadata) = try! decodeSafetensors(Self.good, source: "good")
    change(&metadata)
    return encodeSafetensors(tensors, metadata: metadata)
  }

  /// Damage only this stage can make: its history, options and counts, each wrong in a way a run cannot be.
  func stageDamage() throws -> [CheckpointDamage] {
    let (tensors, metadata) = try decodeSafetensors(Self.good, source: "good")
    var damage: [CheckpointDamage] = []
    func add(_ kind: String, _ label: String, _ bytes: [UInt8], _ mustName: String) {
      damage.append(CheckpointDamage(kind: kind, label: label, bytes: bytes, mustName: mustName))
    }
    // Every field of the first and the last line of the history.
    let lines = metadata["history"]!.split(separator: "\n").map { $0.split(separator: ",").map(String.init) }
    #expect(lines.count == 2 && lines.allSatisfy { $0.count == 3 })
    for line in [0, lines.count - 1] {
      for column in 0..<3 {
        for value in ["nan", "inf", "-inf", "1e300", "-1", "", "x", "1e39"] {
          var changed = lines
          changed[line][column] = value
          let text = changed.map { $0.joined(separator: ",") }.joined(separator: "\n")
          let label = "history line \(line + 1) column \(column + 1) = '\(value)'"
          add("history", label, withMetadata { $0["history"] = text }, "metadata 'history'")
        }
      }
    }
    let joined = { (lines: [[String]]) in lines.map { $0.joined(separator: ",") }.joined(separator: "\n") }
    add("history", "history lines swapped", withMetadata { $0["history"] = joined(lines.reversed()) }, "history")
    add("history", "a line twice", withMetadata { $0["history"] = joined(lines + [lines[1]]) }, "history")
    add(
      "history", "a step past the run's",
      withMetadata { $0["history"] = joined([lines[0], ["5"] + lines[1].dropFirst()]) }, "history")
    add(
      "history", "a fractional step",
      withMetadata { $0["history"] = joined([["1.5"] + lines[0].dropFirst(), lines[1]]) }, "history")
    add("history", "a field too many", withMetadata { $0["history"]! += ",1" }, "metadata 'history'")
    add("history", "an empty history", withMetadata { $0["history"] = "" }, "metadata 'history'")
    // Counts that disagree with each other and with the run's length.
    for (key, value) in [
      ("step", "3"), ("step", "5"), ("step", "7"), ("optimizer_steps", "3"), ("optimizer_steps", "5"),
      ("train_tokens", "17999"), ("sampler_epoch", "-1"), ("sampler_position", "100000"), ("best_val_loss", "0.5"),
      ("best_val_loss", "inf"), ("corpus_hash", "0123456789abcdef"),
    ] {
      add("counts", "\(key) = \(value)", withMetadata { $0[key] = value }, "metadata '\(key)'")
    }
    // Every option changed to another valid value, dropped, or joined by one this stage does not have.
    let options = metadata["options"]!.split(separator: " ").map(String.init)
    let other: [String: String] = [
      "--corpus": "other.txt", "--tokenizer": "bpe", "--vocab": "300", "--context": "8", "--layers": "2",
      "--heads": "4", "--width": "16", "--dropout": "0.1", "--bias": "on", "--batch-size": "8", "--accumulation": "2",
      "--lr": "0.01", "--min-lr": "0.0005", "--warmup": "3", "--eval-every": "5", "--eval-batches": "3",
      "--sampling": "epochs", "--seed": "7", "--precision": "bf16", "--loss-scale": "1024", "--master-weights": "off",
    ]
    for index in stride(from: 0, to: options.count, by: 2) where options[index] != "--steps" {
      let flag = options[index]
      var changed = options
      changed[index + 1] = other[flag]!
      let text = changed.joined(separator: " ")
      add("options", "\(flag) \(other[flag]!)", withMetadata { $0["options"] = text }, flag)
      var dropped = options
      dropped.removeSubrange(index...(index + 1))
      let without = dropped.joined(separator: " ")
      add("options", "without \(flag)", withMetadata { $0["options"] = without }, flag)
    }
    for steps in ["0", "3", "-3", "x"] {
      let text = metadata["options"]!.replacingOccurrences(of: "--steps 6", with: "--steps \(steps)")
      let mustName = steps == "3" ? "past the end of the run it records (--steps 3)" : "--steps"
      add("options", "--steps \(steps)", withMetadata { $0["options"] = text }, mustName)
    }
    add("options", "an unknown option", withMetadata { $0["options"]! += " --momentum 0.9" }, "--momentum")
    add("options", "an option twice", withMetadata { $0["options"]! += " --seed 1337" }, "--seed twice")
    // Another tokenizer: its ids would mean other characters.
    let otherTokenizer = String(decoding: try CharTokenizer(corpus: "abc").fileContents(), as: UTF8.self)
    add("data", "another tokenizer", withMetadata { $0["tokenizer"] = otherTokenizer }, "metadata 'tokenizer'")
    // A negative second moment: Adam takes its square root.
    for name in tensors.keys.sorted() where name.hasPrefix("optimizer.exp_avg_sq.") {
      var changed = tensors
      var values = tensors[name]!.floats!
      values[0] = -1e-3
      changed[name] = try SafeTensor(values, shape: tensors[name]!.shape)
      add("non-finite", "'\(name)'[0] negative", encodeSafetensors(changed, metadata: metadata), "'\(name)'")
    }
    return damage
  }

  @Test func theGoodCheckpointRestores() throws {
    let trainer = Self.trainer()
    #expect(refusal(Self.good, into: trainer) == nil)
    #expect(trainer.step == 4 && trainer.history.map(\.step) == [2, 4] && trainer.optimizer.stepCount == 4)
  }

  @Test func everyDamagedCopyIsRefusedByNameAndChangesNothing() throws {
    let trainer = Self.trainer()
    let before = trainer.parameters.map(\.storage)
    let damage = try damagedCopies(of: Self.good) + stageDamage()
    var counts: [String: Int] = [:]
    for copy in damage {
      counts[copy.kind, default: 0] += 1
      let message = refusal(copy.bytes, into: trainer)
      if showRefusals { print("\(copy.kind): \(copy.label) -> \(message ?? "accepted")") }
      #expect(message?.contains(copy.mustName) == true, "\(copy.label): \(message ?? "accepted")")
    }
    // Compared as one Bool each, so that a failure does not print every weight.
    let weightsUnchanged = trainer.parameters.map(\.storage) == before
    let stateUnchanged = trainer.optimizer.state.isEmpty && trainer.optimizer.stepCount == 0
    #expect(weightsUnchanged, "a refused checkpoint changed the weights")
    #expect(stateUnchanged, "a refused checkpoint changed the optimizer")
    #expect(trainer.step == 0 && trainer.history.isEmpty)
    #expect(damage.count > 400)
    let summary = counts.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
    print("stage 8 checkpoint damage tried: \(damage.count) (\(summary))")
  }
}
