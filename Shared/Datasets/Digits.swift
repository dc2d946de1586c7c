import Foundation
import Support

/// The handwritten digits (UCI, as scikit-learn ships them): 1,797 images of 8x8 pixels with values 0..16 and a
/// label 0..9. The project carries the file in Shared/Datasets/Data (see the README there).
public struct Digits: Sendable {
  /// One row of 64 pixel values per image, scaled to [0, 1].
  public let images: [[Double]]
  public let labels: [Int]

  /// The file they came from, for messages.
  public let path: String

  public var count: Int { labels.count }

  /// Where the project keeps the file.
  public static let defaultPath = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .appendingPathComponent("Data/digits.csv").path

  /// Reads the CSV: 64 pixel values and a label per line. A missing or malformed file is a `UserError` naming
  /// the line. Windows line ends, blank lines and a byte-order mark are read as what they are, not as data.
  public init(path: String = Digits.defaultPath) throws {
    let data = try readInputFile(path)
    markAsInput(path)  // no output of this run may replace it
    var text = String(decoding: data, as: UTF8.self)
    if text.hasPrefix("\u{FEFF}") { text.removeFirst() }
    var images: [[Double]] = []
    var labels: [Int] = []
    // Not `split(separator: "\n")`: "\r\n" is one Character in Swift, so a CRLF file would be one long line.
    let lines = text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline)
    for (number, line) in lines.enumerated() where !line.allSatisfy(\.isWhitespace) {
      let fields = line.split(separator: ",", omittingEmptySubsequences: false).map {
        Int($0.trimmingCharacters(in: .whitespaces))
      }
      guard fields.count == 65, fields.allSatisfy({ $0 != nil }) else {
        throw UserError("'\(path)' line \(number + 1): expected 65 whole numbers separated by commas")
      }
      let values = fields.map { $0! }
      guard values[..<64].allSatisfy({ (0...16).contains($0) }), (0...9).contains(values[64]) else {
        throw UserError("'\(path)' line \(number + 1): pixels must be 0...16 and the label 0...9")
      }
      images.append(values[..<64].map { Double($0) / 16 })
      labels.append(values[64])
    }
    guard !labels.isEmpty else { throw UserError("'\(path)' holds no images") }
    self.images = images
    self.labels = labels
    self.path = path
  }
}

/// How many rows each part of `seededSplit(count:fractions:seed:)` gets.
public func splitSizes(count: Int, fractions: [Double]) -> [Int] {
  var sizes: [Int] = []
  var start = 0
  for (k, fraction) in fractions.enumerated() {
    let end = k == fractions.count - 1 ? count : min(start + Int((fraction * Double(count)).rounded()), count)
    sizes.append(end - start)
    start = end
  }
  return sizes
}

/// The fewest rows for which every part of the split gets at least one.
public func minimumSplitCount(fractions: [Double]) -> Int {
  var count = fractions.count
  while splitSizes(count: count, fractions: fractions).contains(0) { count += 1 }
  return count
}

/// Indices 0..<count shuffled with a seed and cut into consecutive parts of the given fractions (the last part
/// takes the rounding): a train/validation/test split that is the same on every run.
public func seededSplit(count: Int, fractions: [Double], seed: UInt64) -> [[Int]] {
  precondition(abs(fractions.reduce(0, +) - 1) < 1e-9, "seededSplit: fractions \(fractions) do not add up to 1")
  var rng = SeededRNG(seed: seed)
  var order = Array(0..<count)
  for i in stride(from: count - 1, to: 0, by: -1) { order.swapAt(i, rng.index(below: i + 1)) }
  var parts: [[Int]] = []
  var start = 0
  for size in splitSizes(count: count, fractions: fractions) {
    parts.append(Array(order[start..<(start + size)]))
    start += size
  }
  return parts
}
