import Datasets
import Support

/// The seeds' own example of fine-tuning: an MLP pretrained to tell the digits 0-4 apart, then fine-tuned to tell
/// 5-9 apart from a few labelled images of each (10 or 50), against the same MLP trained on those few from scratch.
/// The body (64 -> 64 -> 64, ReLU) carries over; the head (64 -> 5) is new for the new digits.
public struct DigitsTransfer {
  public let splits: DigitsSplits
  /// Adam's learning rate, steps, and the LoRA rank of the body's two layers.
  public var learningRate = 3e-3
  public var steps = 200
  public var rank = 4

  /// The transfer on `splits`, which must hold the few labels it asks for: 50 training images of each of 5-9, and
  /// images of every digit to pretrain on and to test.
  public init(_ splits: DigitsSplits, path: String) throws {
    for digit in 0...9 {
      let (train, test) = (
        splits.train.labels.filter { $0 == digit }.count, splits.test.labels.filter { $0 == digit }.count
      )
      let needed = digit >= 5 ? 50 : 1
      guard train >= needed && test >= 1 else {
        throw UserError(
          "'\(path)' holds \(train) training and \(test) test images of the digit \(digit); the transfer needs "
            + "\(needed) and 1 at least (up to 50 labels of each of 5-9 are drawn from the training part)")
      }
    }
    self.splits = splits
  }

  /// The examples of `data` whose label is in `digits`, relabelled 0..<5.
  static func only(_ digits: ClosedRange<Int>, _ data: LabeledData) -> LabeledData {
    let rows = data.labels.indices.filter { digits.contains(data.labels[$0]) }
    let picked = data.rows(rows)
    return LabeledData(features: picked.features, labels: picked.labels.map { $0 - digits.lowerBound })
  }

  /// A body drawn from `seed`.
  static func body(seed: UInt64) -> Sequential<Float> {
    var rng = SeededRNG(seed: seed)
    return Sequential([
      Linear(64, 64, rng: &rng), ReLU(), Linear(64, 64, rng: &rng), ReLU(),
    ])
  }

  /// Trains what of body and head requires grad on `data` for `steps` Adam steps, in shuffled batches of at most
  /// 256; returns what it trained.
  func train(
    _ body: Sequential<Float>, _ head: Linear<Float>, on data: LabeledData, steps: Int, seed: UInt64
  ) -> [Tensor<Float>] {
    let parameters = body.parameters() + head.parameters()
    let optimizer = Adam([ParameterGroup(parameters, weightDecay: 0)], learningRate: learningRate)
    let random = RandomSource(seed: seed)
    let loader = BatchLoader(count: data.count, batchSize: min(256, data.count))
    var step = 0
    while step < steps {
      for batch in loader.epoch(random) where step < steps {
        let rows = data.rows(batch)
        crossEntropyLoss(logits: head(body(rows.features)), labels: rows.labels).backward()
        optimizer.step()
        optimizer.zeroGrad()
        step += 1
      }
    }
    return parameters
  }

  static func accuracy(_ body: Sequential<Float>, _ head: Linear<Float>, _ data: LabeledData) -> Double {
    let logits = noGrad { head(body(data.features)) }.storage
    let right = data.labels.indices.filter { i in
      let row = logits[(i * 5)..<((i + 1) * 5)]
      return row.indices.max { row[$0] < row[$1] }! - i * 5 == data.labels[i]
    }
    return Double(right.count) / Double(data.count)
  }

  /// The body pretrained on 0-4 (all their training images), and its test accuracy on 0-4.
  public func pretrain() -> (body: Sequential<Float>, accuracy: Double) {
    let body = Self.body(seed: 1)
    var rng = SeededRNG(seed: 2)
    let head = Linear<Float>(64, 5, rng: &rng)
    _ = train(body, head, on: Self.only(0...4, splits.train), steps: 600, seed: 3)
    return (body, Self.accuracy(body, head, Self.only(0...4, splits.test)))
  }

  /// `perClass` labelled training images of each of 5-9, drawn with `seed`.
  func fewLabels(_ perClass: Int, seed: UInt64) -> LabeledData {
    let data = Self.only(5...9, splits.train)
    var rng = SeededRNG(seed: seed)
    var rows: [Int] = []
    for label in 0..<5 {
      var mine = data.labels.indices.filter { data.labels[$0] == label }
      rng.shuffle(&mine)
      rows += mine.prefix(perClass)
    }
    return data.rows(rows)
  }

  /// The ways to learn 5-9 from the few labels.
  public enum Way: String, CaseIterable, Sendable {
    case scratch = "from scratch"
    case full
    case head
    case lora
  }

  /// The test accuracy on 5-9 of `way` with `perClass` labels per digit, the labels and the head drawn with `seed`;
  /// and how many numbers it trained.
  public func fineTune(
    _ way: Way, pretrained: Sequential<Float>, perClass: Int, seed: UInt64
  ) -> (accuracy: Double, trained: Int) {
    let body = Self.body(seed: 100 + seed)  // from scratch: fresh weights; otherwise the pretrained ones
    if way != .scratch {
      for (mine, theirs) in zip(body.parameters(), pretrained.parameters()) { mine.storage = theirs.storage }
    }
    var rng = SeededRNG(seed: 10 + seed)
    let layers = body.layers.compactMap { $0 as? Linear<Float> }
    if way == .head || way == .lora { for p in body.parameters() { p.requiringGrad(false) } }
    if way == .lora {
      for layer in layers {
        layer.lora = LoRA(
          inputs: 64, outputs: 64, rank: rank, alpha: Double(2 * rank), dropout: 0, rng: &rng,
          random: RandomSource(seed: seed))
      }
    }
    let head = Linear<Float>(64, 5, rng: &rng)
    let trained = train(body, head, on: fewLabels(perClass, seed: seed), steps: steps, seed: 20 + seed)
    return (Self.accuracy(body, head, Self.only(5...9, splits.test)), trained.reduce(0) { $0 + $1.count })
  }
}
