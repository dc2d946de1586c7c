import Datasets
import Support

/// Feeding data to training: a fixed split of the digits, and a loader that deals each epoch's examples out in
/// a fresh random order, in batches.

// MARK: - Batches

/// Examples as a matrix of features [count, features] and a label each.
public struct LabeledData {
  public let features: Tensor<Float>
  public let labels: [Int]

  public var count: Int { labels.count }

  /// The examples at `indices`, in that order, as a new batch.
  public func rows(_ indices: [Int]) -> LabeledData {
    let width = features.shape[1]
    var values = [Float]()
    values.reserveCapacity(indices.count * width)
    for i in indices { values += features.storage[(i * width)..<((i + 1) * width)] }
    return LabeledData(features: Tensor(values, shape: [indices.count, width]), labels: indices.map { labels[$0] })
  }
}

/// Deals 0..<count out in batches of `batchSize` (the last may be smaller), in a new random order every epoch
/// (PyTorch's DataLoader with shuffle=True), drawing from the shared training generator.
public struct BatchLoader {
  public let count: Int
  public let batchSize: Int
  public let shuffle: Bool

  public init(count: Int, batchSize: Int, shuffle: Bool = true) {
    precondition(count > 0 && batchSize > 0, "BatchLoader: count \(count), batch size \(batchSize)")
    self.count = count
    self.batchSize = batchSize
    self.shuffle = shuffle
  }

  public var batchesPerEpoch: Int { (count + batchSize - 1) / batchSize }

  /// One epoch's batches of indices.
  public func epoch(_ random: RandomSource) -> [[Int]] {
    var order = Array(0..<count)
    if shuffle {
      random.rng.shuffle(&order)
    }
    return stride(from: 0, to: count, by: batchSize).map { Array(order[$0..<min($0 + batchSize, count)]) }
  }
}

// MARK: - The digits

/// The digits in three fixed parts: 70% to train on, 15% to choose by (validation), 15% to report (test).
/// The split's seed is fixed, so every run, whatever its own seed, sees the same parts.
public struct DigitsSplits {
  public let train: LabeledData
  public let validation: LabeledData
  public let test: LabeledData

  public static let splitSeed: UInt64 = 2024

  public static let fractions = [0.7, 0.15, 0.15]

  /// Splits the digits, or says how many images the split needs: an empty part would leave nothing to train
  /// on, or an accuracy of 0/0.
  public init(_ digits: Digits) throws {
    let sizes = splitSizes(count: digits.count, fractions: DigitsSplits.fractions)
    guard !sizes.contains(0) else {
      let needed = minimumSplitCount(fractions: DigitsSplits.fractions)
      let parts = "\(sizes[0]), \(sizes[1]) and \(sizes[2]) images"
      var message = "'\(digits.path)' holds \(digits.count) images, too few to split 70/15/15 into train, "
      message += "validation and test (\(parts)): each part needs at least one, so the file at least \(needed)"
      throw UserError(message)
    }
    let parts = seededSplit(count: digits.count, fractions: DigitsSplits.fractions, seed: DigitsSplits.splitSeed)
    let all = LabeledData(
      features: Tensor(digits.images.flatMap { $0.map(Float.init) }, shape: [digits.count, 64]), labels: digits.labels)
    (train, validation, test) = (all.rows(parts[0]), all.rows(parts[1]), all.rows(parts[2]))
  }
}
