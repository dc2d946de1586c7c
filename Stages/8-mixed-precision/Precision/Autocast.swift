import Foundation
import Support

/// Autocast, as PyTorch's `torch.autocast`: inside a scope, each op picks the format it computes and stores its
/// result in by a policy, so that nobody rewrites the model.
///
/// - The products (linear, matmul, attention) cast their operands to the low format and accumulate in fp32, as a
///   tensor core does (it multiplies 16-bit numbers and adds in fp32); their result is rounded to the low format.
///   These are where the time goes and where 16 bits are safe: a dot product's error grows with the square root
///   of its length, and fp32 accumulation keeps the sum itself exact enough.
/// - Softmax, LayerNorm, the losses and the reductions run in fp32 and give fp32: they subtract nearly equal
///   numbers, sum long rows, or take exp and log, where 8 fraction bits lose too much.
/// - Everything else (GELU, sums of tensors, reshapes) runs in the widest format of its inputs: a bf16 tensor plus
///   a bf16 tensor stays bf16, plus an fp32 one becomes fp32. A plain number (a tensor of one element that is a
///   constant) does not widen, as a Python scalar does not in PyTorch.
///
/// Backward needs no scope: a tensor keeps its format, and its gradient is stored in that format too (rounded
/// after every addition, Autograd/Engine.swift). A product's gradients for its inputs are rounded to the low format
/// first, because they are the gradients of its casts, which PyTorch's graph holds as separate low-format nodes.
public final class Autocast: @unchecked Sendable {
  /// The format the products cast to and store in.
  public let format: NumberFormat
  /// fp8 (Transformer Engine's recipe): the linear layers' operands in E4M3 forward and E5M2 backward, each with
  /// a per-tensor scale; everything else as under `format` (bf16). Nil: no fp8.
  public let fp8: FP8Recipe?
  /// Where the low-format gradients of the scope's results count what rounding loses; nil: uncounted.
  public let census: GradientCensus?
  /// (op, format) of every result made in the scope, in order, while `recording` (for the policy's test).
  private var log: [(op: String, format: NumberFormat)]?
  private let lock = NSLock()

  /// The scope the current thread is in (a task-local: nested scopes restore it, threads do not share it).
  @TaskLocal public static var current: Autocast?

  public init(
    _ format: NumberFormat, fp8: FP8Recipe? = nil, census: GradientCensus? = nil, recording: Bool = false
  ) {
    precondition(format != .fp32, "Autocast: fp32 is no autocast; run outside a scope")
    self.format = format
    self.fp8 = fp8
    self.census = census
    log = recording ? [] : nil
  }

  /// The ops that cast their operands to the low format and store their result in it.
  public static let lowPrecisionOps: Set = ["linear", "matmul", "attention"]
  /// The ops that compute in fp32 and give fp32, whatever their inputs.
  public static let fp32Ops: Set = [
    "softmax", "logSoftmax", "layerNorm", "crossEntropy", "vocabParallelCrossEntropy", "bce", "sum", "mean", "max",
  ]
  /// Ops that only move or pick the elements of one input: their result holds values of its format already, and
  /// a result nothing keeps needs no rounding (a reshape's shares its input's array, which rounding would copy).
  /// The ops that also bring in values of their own (maskedFill's fill, a constant piece of a concatenation or of
  /// `where`) are rounded like any other.
  static let movingOps: Set = ["reshape", "permute", "slice", "split", "gatherRows", "gather", "f", "g"]

  /// The format an op's result is stored in, by the policy (and, while `recording`, logged). The result's
  /// elements are then packed into 16 bits if the graph keeps it, or else rounded in place (Autograd/Engine.swift).
  func resultFormat<Scalar: TensorScalar>(of op: String, parents: [Tensor<Scalar>]) -> NumberFormat {
    let result = policy(op, parents)
    if log != nil {
      lock.lock()
      log?.append((op, result))
      lock.unlock()
    }
    return result
  }

  /// The policy: the format of `op`'s result on `parents`.
  func policy<Scalar: TensorScalar>(_ op: String, _ parents: [Tensor<Scalar>]) -> NumberFormat {
    if Self.lowPrecisionOps.contains(op) { return format }
    if Self.fp32Ops.contains(op) { return .fp32 }
    // The widest of the inputs', leaving out constant plain numbers. Two different low formats meet in fp32.
    let formats = Set(parents.filter { !($0.count == 1 && $0.isLeaf && !$0.requiresGrad) }.map(\.format))
    return formats.count == 1 ? formats.first! : .fp32
  }

  /// What ran in which format while `recording`.
  public var recorded: [(op: String, format: NumberFormat)] {
    lock.lock()
    defer { lock.unlock() }
    return log ?? []
  }
}

/// Runs `body` under autocast to `format` (PyTorch's `with torch.autocast("cpu", dtype=torch.bfloat16):`).
/// fp32 runs `body` as it is.
public func autocast<R>(
  _ format: NumberFormat, fp8: FP8Recipe? = nil, census: GradientCensus? = nil, _ body: () throws -> R
) rethrows -> R {
  guard format != .fp32 else { return try body() }
  return try Autocast.$current.withValue(Autocast(format, fp8: fp8, census: census), operation: body)
}

// MARK: - Rounding tensors' elements and gradients

/// Rounds Float elements to `format`. Autocast runs on Float tensors only: a Double would be rounded twice
/// (to Float, then to the format), which can break a tie the wrong way.
func roundElements<Scalar: TensorScalar>(_ values: inout [Scalar], to format: NumberFormat) {
  guard format != .fp32 else { return }
  values.withUnsafeMutableBufferPointer { roundElements($0, to: format, census: nil) }
}

/// Rounds in place; with a census, counts what the rounding lost.
func roundElements<Scalar: TensorScalar>(
  _ values: UnsafeMutableBufferPointer<Scalar>, to format: NumberFormat, census: GradientCensus?
) {
  precondition(Scalar.self == Float.self, "autocast to \(format) runs on Float tensors, not \(Scalar.self)")
  values.withMemoryRebound(to: Float.self) { floats in
    if let census { return census.count(floats, format) }
    Parallel.forEach(floats.count, grain: PackedElements.grain) { piece in
      format.round(UnsafeMutableBufferPointer(rebasing: floats[piece]))
    }
  }
}

extension Tensor {
  /// Rounds the gradient to `format`, counting into the tensor's census when it has one.
  func roundGradient(to format: NumberFormat) {
    gradStorage!.withUnsafeMutableBufferPointer { roundElements($0, to: format, census: census) }
  }

  /// The elements a product computes with under autocast to `low`: this tensor's, rounded to `low` unless they
  /// are stored in it already (a parameter's working copy, another product's result). Nil `low`: as they are.
  func cast(to low: NumberFormat?) -> [Scalar] {
    guard let low, low != format else { return storage }
    var copy = storage
    roundElements(&copy, to: low)
    return copy
  }

  /// What an op on this tensor keeps for its backward besides the tensors (`values`, such as GELU's tanh): kept
  /// outside autocast, nil under it when the op's result is stored in a low format. The op then computes them
  /// again in backward from its 16-bit input, as PyTorch's autocast GELU does, rather than keep fp32 numbers that
  /// would take twice the memory the packed input saves.
  func keepsAuxiliary(_ values: [Scalar], op: String) -> [Scalar]? {
    guard let scope = Autocast.current, scope.policy(op, [self]) != .fp32 else { return values }
    return nil
  }

  /// Adds a product's gradient for this input: into the gradient directly outside autocast (`body` adds to what
  /// is there), or, under the autocast `scope` the product was made in, made on its own from zeros, rounded to
  /// the scope's format (it is the gradient of the input's low-format cast) and then added.
  func addProductGradient(_ scope: Autocast?, _ body: (UnsafeMutableBufferPointer<Scalar>) -> Void) {
    guard requiresGrad else { return }
    guard let scope else { return addToGrad(body) }
    var contribution = [Scalar](repeating: 0, count: count)
    contribution.withUnsafeMutableBufferPointer { c in
      body(c)
      roundElements(c, to: scope.format, census: scope.census)
    }
    // Rounded already: a first contribution in the tensor's own format is stored as it is (rounding it again
    // would change nothing and cost a pass); a sum with an earlier one, or another format, is rounded.
    accumulateGrad(contribution, rounding: gradStorage != nil || format != scope.format)
  }
}

// MARK: - The gradient census

/// What storing gradients in a low format loses, counted over every gradient element rounded during a step that
/// was not zero and not already a value of the format (so that a gradient passed on unchanged, through a
/// reshape or a residual sum, is counted once, where it was made): how many became zero (underflow), how many
/// subnormal (kept, with fewer bits), and how many finite ones overflowed to infinity. Loss scaling exists to
/// move the first two into the normal range without causing the third.
public final class GradientCensus: @unchecked Sendable {
  public private(set) var elements = 0
  public private(set) var nonzero = 0
  public private(set) var underflow = 0
  public private(set) var subnormal = 0
  public private(set) var overflow = 0
  private let lock = NSLock()
  /// With `recordsExponents`, how many non-zero finite elements had each binary exponent floor(log2 |g|) before
  /// rounding, from `exponentRange.lowerBound` (and below) to its upper bound (and above), over every step since
  /// it was set: where a run's gradients lie against the format's range. `reset` leaves it.
  public private(set) var exponents = [Int](repeating: 0, count: exponentRange.count)
  public var recordsExponents = false
  public static let exponentRange = -40...16

  public init() {}

  /// Rounds `values` to `format` and counts.
  func count(_ values: UnsafeMutableBufferPointer<Float>, _ format: NumberFormat) {
    if recordsExponents {
      var bins = [Int](repeating: 0, count: Self.exponentRange.count)
      let (low, high) = (Self.exponentRange.lowerBound, Self.exponentRange.upperBound)
      for x in values where x != 0 && x.isFinite && format.round(x) != x {  // the elements `tally` counts
        bins[min(max(Int(x.exponent), low), high) - low] += 1
      }
      lock.lock()
      for i in bins.indices { exponents[i] += bins[i] }
      lock.unlock()
    }
    guard format != .fp32 else { return }
    // Shared out across the cores in blocks; each block's counts are whole numbers, so their sum is the same
    // however the blocks fall.
    let blocks = (values.count + Self.block - 1) / Self.block
    var perBlock = [Counts](repeating: (0, 0, 0, 0), count: blocks)
    perBlock.withUnsafeMutableBufferPointer { perBlock in
      let totals = perBlock.baseAddress!
      Parallel.forEach(blocks, grain: 2) { range in
        for b in range {
          let piece = UnsafeMutableBufferPointer(
            rebasing: values[(b * Self.block)..<min((b + 1) * Self.block, values.count)])
          totals[b] =
            switch format {
            case .fp32: (0, 0, 0, 0)
            case .bf16: Self.tally(piece, format) { BFloat16.rounded($0) }
            case .fp16: Self.tally(piece, format) { Float(Float16($0)) }
            case .e4m3: Self.tally(piece, format) { FP8.roundE4M3($0) }
            case .e5m2: Self.tally(piece, format) { FP8.roundE5M2($0) }
            }
        }
      }
    }
    var counts: Counts = (0, 0, 0, 0)
    for c in perBlock {
      counts = (
        counts.nonzero + c.nonzero, counts.underflow + c.underflow, counts.subnormal + c.subnormal,
        counts.overflow + c.overflow
      )
    }
    lock.lock()
    elements += values.count
    nonzero += counts.nonzero
    underflow += counts.underflow
    subnormal += counts.subnormal
    overflow += counts.overflow
    lock.unlock()
  }

  typealias Counts = (nonzero: Int, underflow: Int, subnormal: Int, overflow: Int)
  /// Elements per block of `tally` (its 32-bit lanes count at most this many).
  static let block = 1 << 14

  /// The rounding loop with its counts, in SIMD lanes: each test is a comparison of bit patterns that gives 0 or
  /// 1 (a `&&` would branch), summed in 32-bit lanes a block at a time. Overflow counts finite values that became
  /// infinite (E4M3, which saturates instead, is never a gradient's format here).
  @inline(__always)
  static func tally(
    _ values: UnsafeMutableBufferPointer<Float>, _ format: NumberFormat, _ round: (Float) -> Float
  ) -> Counts {
    let smallest = format.smallestNormal.bitPattern
    let infinity = Float.infinity.bitPattern
    var totals: Counts = (0, 0, 0, 0)
    for start in stride(from: 0, to: values.count, by: block) {
      var (nonzero, underflow, subnormal, overflow): (UInt32, UInt32, UInt32, UInt32) = (0, 0, 0, 0)
      for i in start..<min(start + block, values.count) {
        let before = values[i]
        let after = round(before)
        values[i] = after
        let (b, a) = (before.bitPattern & 0x7FFF_FFFF, after.bitPattern & 0x7FFF_FFFF)
        // Counted: not zero, not NaN, and not a value of the format already (a gradient an op passes on as it
        // is, a residual sum's, was counted where it was made).
        let counted: UInt32 = (b &- 1 < infinity ? 1 : 0) & (before.bitPattern != after.bitPattern ? 1 : 0)
        nonzero &+= counted
        underflow &+= counted & (a == 0 ? 1 : 0)
        subnormal &+= counted & (a &- 1 < smallest &- 1 ? 1 : 0)
        overflow &+= counted & (b < infinity ? 1 : 0) & (a == infinity ? 1 : 0)
      }
      totals.nonzero += Int(nonzero)
      totals.underflow += Int(underflow)
      totals.subnormal += Int(subnormal)
      totals.overflow += Int(overflow)
    }
    return totals
  }

  /// Starts counting afresh.
  public func reset() {
    lock.lock()
    (elements, nonzero, underflow, subnormal, overflow) = (0, 0, 0, 0, 0)
    lock.unlock()
  }

  /// The counts so far.
  public var counts: GradientCounts {
    lock.lock()
    defer { lock.unlock() }
    return GradientCounts(
      elements: elements, nonzero: nonzero, underflow: underflow, subnormal: subnormal, overflow: overflow)
  }
}

/// A census's counts at one moment, with the shares of the non-zero elements (0 when there were none).
public struct GradientCounts: Sendable, Equatable {
  public var elements = 0
  public var nonzero = 0
  public var underflow = 0
  public var subnormal = 0
  public var overflow = 0

  public var underflowShare: Double { nonzero == 0 ? 0 : Double(underflow) / Double(nonzero) }
  public var subnormalShare: Double { nonzero == 0 ? 0 : Double(subnormal) / Double(nonzero) }
  public var overflowShare: Double { nonzero == 0 ? 0 : Double(overflow) / Double(nonzero) }
}
