import ArgumentParser
import Datasets
import Foundation
import Support

/// `stage8 digits`: the seeds' example, an MLP pretrained on the digits 0-4 and fine-tuned on 5-9 with few labels.
struct DigitsCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "digits",
    abstract: "Pretrain an MLP on the digits 0-4, fine-tune it on 5-9 with 10 and 50 labels per digit.")

  @Option(help: "The digits CSV (64 pixels and a label per line).") var data = Digits.defaultPath
  @Option(parsing: .unconditional, help: "Seeds of the labelled images and the head.") var seeds = 3

  func validate() throws { try Check.count(seeds, "--seeds", in: 1...1000) }

  func run() throws {
    let transfer = try DigitsTransfer(try DigitsSplits(try Digits(path: data)), path: data)
    let (pretrained, accuracy) = transfer.pretrain()
    print(String(format: "pretrained on 0-4: %.1f%% test accuracy on 0-4", 100 * accuracy))
    print(
      "fine-tuned on 5-9, \(transfer.steps) Adam steps at \(transfer.learningRate), a new head 64 -> 5; test accuracy "
        + "on 5-9, mean and spread over \(seeds) seeds of the labels and the head:")
    print("way            trained   10 per digit   50 per digit")
    for way in DigitsTransfer.Way.allCases {
      var cells: [String] = []
      var trained = 0
      for perClass in [10, 50] {
        let runs = (1...seeds).map {
          transfer.fineTune(way, pretrained: pretrained, perClass: perClass, seed: UInt64($0))
        }
        trained = runs[0].trained
        let values = runs.map(\.accuracy)
        let mean = values.reduce(0, +) / Double(values.count)
        let spread =
          values.count > 1
          ? (values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(values.count - 1)).squareRoot() : 0
        cells.append(String(format: "%5.1f%% ± %4.1f", 100 * mean, 100 * spread))
      }
      print(
        way.rawValue.padding(toLength: 13, withPad: " ", startingAt: 0)
          + String(repeating: " ", count: max(0, 8 - String(trained).count)) + String(trained) + "   "
          + cells.joined(separator: "  "))
    }
  }
}
