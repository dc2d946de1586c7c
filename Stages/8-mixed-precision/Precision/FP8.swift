import Foundation
import Support

/// fp8 training as NVIDIA's Transformer Engine does it: the linear layers' products take their operands in 8
/// bits, E4M3 for the forward's inputs and weights (more precision) and E5M2 for the gradient flowing back (more
/// range), and everything else runs as under bf16 autocast.
///
/// Eight bits cannot hold a tensor as it comes: E4M3 spans 2^-9 to 448, and a layer's weights (about 0.02) would
/// sit among its few subnormals. So each tensor is multiplied by a scale before the cast and divided by it after:
/// x -> round(x * s) / s, with s chosen so that the largest magnitude lands near the format's largest value.
/// Finding that magnitude (amax) costs a pass over the tensor before the cast can start; delayed scaling takes s
/// from the amax of the same tensor in the last `historyLength` uses instead (s = largest / max(history) / 2^margin),
/// then records this use's amax. A tensor that suddenly grows past the history saturates at the format's largest
/// value until the history catches up; that is the recipe's bet, and usually a good one. (The cast saturates in
/// E5M2 too, although the format has an infinity: one infinite gradient would make the update NaN.)
public final class FP8Recipe: @unchecked Sendable {
  /// Which operand of a linear layer a scale belongs to.
  public enum Role: Int, Sendable, CaseIterable {
    case input, weight, outputGradient

    var name: String { ["input", "weight", "output_gradient"][rawValue] }

    var format: NumberFormat { self == .outputGradient ? .e5m2 : .e4m3 }
  }

  /// One operand's scale and the amaxes it comes from.
  public struct Scaling: Sendable {
    public internal(set) var history: [Float] = []
    /// What the next use multiplies by: 1 before the first.
    public internal(set) var scale: Float = 1
  }

  public let historyLength: Int
  /// Powers of two of headroom below the format's largest value.
  public let margin: Int
  private var scalings: [Key: Scaling] = [:]
  private let lock = NSLock()

  struct Key: Hashable {
    let weight: ObjectIdentifier
    let role: Role
  }

  public init(historyLength: Int = 16, margin: Int = 0) {
    precondition(historyLength >= 1 && margin >= 0, "FP8Recipe: history \(historyLength), margin \(margin)")
    self.historyLength = historyLength
    self.margin = margin
  }

  /// `values` as the product sees them: each scaled by the operand's current scale, rounded to its fp8 format,
  /// and scaled back; and that scale. With `update`, this use's amax joins the history and the scale is
  /// recomputed for the next.
  func quantize<Scalar: TensorScalar>(
    _ values: [Scalar], role: Role, of weight: Tensor<Scalar>, update: Bool
  )
    -> (values: [Scalar], scale: Float)
  {
    let key = Key(weight: ObjectIdentifier(weight), role: role)
    lock.lock()
    let scale = scalings[key]?.scale ?? 1
    lock.unlock()
    let (result, amax) = Self.cast(values, role: role, scale: scale)
    if update {
      lock.lock()
      var state = scalings[key] ?? Scaling()
      state.history.append(amax)
      if state.history.count > historyLength { state.history.removeFirst() }
      let next = role.format.largest / (state.history.max() ?? 0) / Float(sign: .plus, exponent: margin, significand: 1)
      if next.isFinite && next > 0 { state.scale = next }
      scalings[key] = state
      lock.unlock()
    }
    return (result, scale)
  }

  /// The cast itself, with a given scale (a product's backward casts its inputs again with forward's scales, rather
  /// than keep forward's casts), and the amax of `values`. It saturates in both formats, as Transformer Engine's
  /// does: E5M2's infinity would poison the update.
  static func cast<Scalar: TensorScalar>(_ values: [Scalar], role: Role, scale: Float) -> ([Scalar], amax: Float) {
    let format = role.format
    let largest = format.largest
    var amax: Float = 0
    let result = values.map { x -> Scalar in
      let value = Float(x)
      amax = max(amax, value.isFinite ? value.magnitude : amax)
      return Scalar(format.round(min(max(value * scale, -largest), largest)) / scale)
    }
    return (result, amax)
  }

  /// The operands' scales and histories as checkpoint tensors, "fp8.ROLE.NAME" for each named weight that has
  /// been used: [scale, count, the count amaxes, zeros up to `historyLength`].
  func checkpointTensors<Scalar>(_ named: [(String, Tensor<Scalar>)]) throws -> [String: SafeTensor] {
    lock.lock()
    defer { lock.unlock() }
    var tensors: [String: SafeTensor] = [:]
    for (name, weight) in named {
      for role in Role.allCases {
        guard let state = scalings[Key(weight: ObjectIdentifier(weight), role: role)] else { continue }
        let padding = [Float](repeating: 0, count: historyLength - state.history.count)
        tensors["fp8.\(role.name).\(name)"] = try SafeTensor(
          [state.scale, Float(state.history.count)] + state.history + padding, shape: [historyLength + 2])
      }
    }
    return tensors
  }

  /// Reads what `checkpointTensors` wrote for the weights `names` lists, each checked: a positive scale, a count
  /// up to the history's length, amaxes that are not negative.
  func readCheckpoint<Scalar>(
    _ reader: CheckpointReader, names: [String], named: [(String, Tensor<Scalar>)]
  ) throws
    -> [Key: Scaling]
  {
    let weights = Dictionary(named, uniquingKeysWith: { a, _ in a })
    var read: [Key: Scaling] = [:]
    for name in names {
      guard let weight = weights[name] else {
        throw reader.error("metadata 'fp8_weights' names '\(name)', which is not a parameter of this model")
      }
      for role in Role.allCases {
        let tensor = "fp8.\(role.name).\(name)"
        let values = try reader.floats(tensor, shape: [historyLength + 2])
        let count = Int(exactly: values[1]) ?? -1
        guard values[0] > 0, (0...historyLength).contains(count), values[2...].allSatisfy({ $0 >= 0 }) else {
          throw reader.error("tensor '\(tensor)' is not a scale, a count up to \(historyLength) and amaxes")
        }
        read[Key(weight: ObjectIdentifier(weight), role: role)] = Scaling(
          history: Array(values[2..<(2 + count)]), scale: values[0])
      }
    }
    return read
  }

  /// The names of the weights with scales, in `named`'s order.
  func usedWeights<Scalar>(_ named: [(String, Tensor<Scalar>)]) -> [String] {
    lock.lock()
    defer { lock.unlock() }
    return named.filter { scalings[Key(weight: ObjectIdentifier($0.1), role: .weight)] != nil }.map(\.0)
  }

  /// Replaces every scale (a checkpoint's).
  func restore(_ read: [Key: Scaling]) {
    lock.lock()
    scalings = read
    lock.unlock()
  }
}
