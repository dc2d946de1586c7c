import Support

/// Batches for a language model: windows of consecutive ids cut from a token file. Input x = tokens[i ..< i+T],
/// target y = tokens[i+1 ... i+T]: every position of a window is a prediction of the next id, so one window of T
/// tokens teaches T predictions at once.

/// How windows are drawn.
public enum WindowOrder: String, CaseIterable, Sendable {
  /// nanoGPT's way: each window starts at a uniformly random position, independently (with replacement), so some
  /// text is seen twice before other text is seen once.
  case random
  /// Without replacement: each epoch cuts the split into non-overlapping windows (at a random phase, so window
  /// edges move between epochs) and deals them out in a seeded random order; every token is a target once per
  /// epoch.
  case epochs
}

/// Draws batches of windows from a split, from its own generator, whose whole state a checkpoint saves: a resumed
/// run draws exactly the batches the uninterrupted run would have (nanoGPT's resume instead restarts its random
/// stream, and so trains on different batches from the moment it resumes).
public final class WindowSampler {
  public let tokens: TokenFile
  /// T: ids per window (the model's context).
  public let context: Int
  /// Windows per batch (all ranks together, see `nextBatch`).
  public let batchSize: Int
  public let order: WindowOrder
  /// The seed the epochs' orders derive from.
  public let seed: UInt64
  /// Draws the random windows (`order == .random`).
  public var rng: SeededRNG
  /// The epoch and how many of its windows are dealt already (`order == .epochs`).
  public internal(set) var epoch = 0
  public internal(set) var position = 0
  /// This epoch's window starts, in order (made from the seed and the epoch, so never saved).
  private var epochStarts: [Int32] = []

  /// `tokens` must hold at least one window (context + 1 ids): the caller checks and says so.
  public init(tokens: TokenFile, context: Int, batchSize: Int, order: WindowOrder, seed: UInt64) {
    precondition(tokens.count > context, "WindowSampler: \(tokens.count) tokens for windows of \(context) + 1")
    self.tokens = tokens
    self.context = context
    self.batchSize = batchSize
    self.order = order
    self.seed = seed
    rng = SeededRNG(seed: seed)
  }

  /// Where windows may start: 0..<count - context, so that the last target exists (nanoGPT's randint bound).
  public var starts: Int { tokens.count - context }

  /// Windows per epoch without replacement, at phase 0 (a later phase may give one fewer).
  public var windowsPerEpoch: Int { (tokens.count - 1) / context }

  /// The next batch: `batchSize` windows, as inputs and targets [batchSize * context], row after row. With
  /// `ranks` > 1 every rank draws the same global batch and keeps only its own rows (`rank`'s contiguous share):
  /// the hook for data parallelism, where each rank must see different windows of the same step.
  public func nextBatch(rank: Int = 0, ranks: Int = 1) -> (inputs: [Int], targets: [Int]) {
    precondition(
      ranks >= 1 && (0..<ranks).contains(rank) && batchSize % ranks == 0, "nextBatch: rank \(rank) of \(ranks)")
    let starts = (0..<batchSize).map { _ in nextStart() }
    let share = batchSize / ranks
    var inputs: [Int] = []
    var targets: [Int] = []
    inputs.reserveCapacity(share * context)
    targets.reserveCapacity(share * context)
    for start in starts[(rank * share)..<((rank + 1) * share)] {
      tokens.append(from: start, length: context, into: &inputs)
      tokens.append(from: start + 1, length: context, into: &targets)
    }
    return (inputs, targets)
  }

  /// The start of the next window.
  private func nextStart() -> Int {
    switch order {
    case .random:
      return rng.index(below: starts)
    case .epochs:
      if epochStarts.isEmpty {
        epochStarts = Self.epochOrder(seed: seed, epoch: epoch, count: tokens.count, context: context)
      }
      if position == epochStarts.count {
        epoch += 1
        position = 0
        epochStarts = Self.epochOrder(seed: seed, epoch: epoch, count: tokens.count, context: context)
      }
      defer { position += 1 }
      return Int(epochStarts[position])
    }
  }

  /// Epoch `epoch`'s window starts: phase, phase + T, phase + 2T, ... (each window's targets inside the split),
  /// shuffled (Fisher-Yates) by a generator seeded from the seed and the epoch alone.
  static func epochOrder(seed: UInt64, epoch: Int, count: Int, context: Int) -> [Int32] {
    var rng = SeededRNG(seed: seed ^ stableHash("epoch \(epoch)"))
    let phase = rng.index(below: context)
    var starts = Array(stride(from: Int32(phase), to: Int32(count - context), by: context))
    if starts.isEmpty { starts = [0] }  // a split of one window (phase past its only start)
    for i in stride(from: starts.count - 1, to: 0, by: -1) { starts.swapAt(i, rng.index(below: i + 1)) }
    return starts
  }

  /// Puts the sampler where a checkpoint left it.
  public func restore(rng: SeededRNG, epoch: Int, position: Int) {
    self.rng = rng
    self.epoch = epoch
    self.position = position
    epochStarts =
      order == .epochs ? Self.epochOrder(seed: seed, epoch: epoch, count: tokens.count, context: context) : []
  }
}

/// Every non-overlapping window of a split, in order, for the exact loss over the whole split: starts 0, T, 2T, ...
/// while the window's last target exists. The tail of fewer than T targets after the last window is not scored.
public func consecutiveWindows(of tokens: TokenFile, context: Int) -> [Int] {
  Array(stride(from: 0, through: tokens.count - context - 1, by: context))
}
