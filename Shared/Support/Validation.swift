import Foundation

/// Checks of what the user asked for, in one place: every command calls them before it allocates anything, so a
/// bad value ends in one line naming the option (a `UserError`) instead of a trap, a failed allocation or a run
/// that trains on nonsense.
public enum Check {
  /// A whole-number option such as `--steps`: at least `range.lowerBound`, at most `range.upperBound`. The upper
  /// bounds are generous; they are there so that no product of sizes can overflow and no loop runs for years.
  public static func count(_ value: Int, _ name: String, in range: ClosedRange<Int>) throws {
    guard !range.contains(value) else { return }
    let limits = "\(range.lowerBound) to \(range.upperBound)"
    throw UserError("\(name) must be a whole number from \(limits), got \(value)")
  }

  /// An optional whole-number option: nil (not given) passes.
  public static func count(_ value: Int?, _ name: String, in range: ClosedRange<Int>) throws {
    if let value { try count(value, name, in: range) }
  }

  /// Each width of a list such as `--hidden 16,16`, and how many there are.
  public static func widths(_ values: [Int], _ name: String, in range: ClosedRange<Int>, layers: Int = 16) throws {
    guard (1...layers).contains(values.count) else {
      throw UserError("\(name) takes 1 to \(layers) widths, got \(values.count)")
    }
    for value in values where !range.contains(value) {
      let limits = "\(range.lowerBound) to \(range.upperBound)"
      throw UserError("\(name) widths must be whole numbers from \(limits), got \(value)")
    }
  }

  /// A real-number option: finite and within `bounds`.
  public static func number(_ value: Double, _ name: String, in bounds: Bounds) throws {
    guard !(value.isFinite && bounds.contains(value)) else { return }
    throw UserError("\(name) must be a finite number \(bounds.phrase), got \(value)")
  }

  /// An optional real-number option: nil (not given) passes.
  public static func number(_ value: Double?, _ name: String, in bounds: Bounds) throws {
    if let value { try number(value, name, in: bounds) }
  }

  /// Refuses a run whose estimated memory exceeds the machine's: "this model needs 44 GB; the machine has 23 GB"
  /// is a better end than a failed allocation (or the kernel's OOM killer) minutes into the run. `what` names
  /// what needs it ("this model", "1000000 points"), `options` the options that decide it.
  public static func memory(bytes: Double, what: String, options: String) throws {
    let available = machineMemory
    guard bytes > available else { return }
    var message = "\(what) needs about \(formatBytes(bytes)) of memory; the machine has \(formatBytes(available))"
    message += " (make \(options) smaller)"
    throw UserError(message)
  }

  /// A training loss that is not a number stops the run: every step after it would only spread NaN into the
  /// weights, and a checkpoint of them is worth nothing. The message gives the step and the usual cure.
  /// `what` says which loss: the training loss of a step, or a held-out loss measured after it.
  public static func finiteLoss(
    _ loss: Double, step: Int, learningRate: Double, what: String = "the loss", option: String = "--lr"
  ) throws {
    guard !loss.isFinite else { return }
    let value = loss.isNaN ? "nan" : String(describing: loss)  // not "-nan": a NaN's sign means nothing
    var message = "training diverged: \(what) is \(value) at step \(step)"
    message += "; try a lower \(option) than " + formatNumber(learningRate)
    throw UserError(message)
  }
}

/// The memory this process may use, in bytes: the machine's, or a container's limit if that is lower (cgroup v2,
/// then v1; a container sees the host's memory as its own otherwise).
public var machineMemory: Double {
  var memory = Double(ProcessInfo.processInfo.physicalMemory)
  for path in ["/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"] {
    guard let data = FileManager.default.contents(atPath: path) else { continue }
    let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    if let limit = Double(text), limit > 0 { memory = min(memory, limit) }  // "max" means no limit
  }
  return memory
}

/// An interval of real numbers, each end included or not, printed as mathematicians write it: "[0, 1)".
public struct Bounds: Sendable, CustomStringConvertible {
  public let low: Double
  public let high: Double
  public let includesLow: Bool
  public let includesHigh: Bool

  public init(_ low: Double, _ high: Double, includesLow: Bool = true, includesHigh: Bool = true) {
    self.low = low
    self.high = high
    self.includesLow = includesLow
    self.includesHigh = includesHigh
  }

  /// (0, high]: a rate or a time, which must be above zero.
  public static func positive(upTo high: Double) -> Bounds { Bounds(0, high, includesLow: false) }

  /// Any finite number above zero (a learning rate: too large a one shows as divergence, not here).
  public static let positive = Bounds(0, .infinity, includesLow: false, includesHigh: false)

  public func contains(_ value: Double) -> Bool {
    let aboveLow = includesLow ? value >= low : value > low
    let belowHigh = includesHigh ? value <= high : value < high
    return aboveLow && belowHigh
  }

  public var description: String {
    let open = includesLow ? "[" : "("
    let close = includesHigh ? "]" : ")"
    return open + "\(formatNumber(low)), \(formatNumber(high))" + close
  }

  /// "in [0, 1)", or "above 0" when there is no upper end.
  public var phrase: String {
    guard high.isFinite else { return (includesLow ? "at least " : "above ") + formatNumber(low) }
    return "in " + description
  }
}

/// 0.5 as "0.5", 1e6 as "1e+06": short, and the same as the user would type.
func formatNumber(_ value: Double) -> String { String(format: "%g", value) }

/// Bytes as "44 GB", "512 MB" (powers of 1000, as memory is sold).
public func formatBytes(_ bytes: Double) -> String {
  if bytes >= 1e12 { return String(format: "%.0f TB", bytes / 1e12) }
  if bytes >= 1e9 { return String(format: "%.0f GB", bytes / 1e9) }
  return String(format: "%.0f MB", bytes / 1e6)
}

/// The number of elements of a shape, or nil when the product overflows Int or a dimension is negative.
@inlinable
public func checkedProduct<C: Collection>(_ shape: C) -> Int? where C.Element == Int {
  var product = 1
  for dimension in shape {
    guard dimension >= 0 else { return nil }
    let (next, overflow) = product.multipliedReportingOverflow(by: dimension)
    if overflow { return nil }
    product = next
  }
  return product
}

/// The number of elements of a shape. A shape whose product overflows is a bug in the caller (the command line
/// checks sizes before it builds anything), so it traps, but with a message naming the shape.
@inlinable
public func elementCount<C: Collection>(_ shape: C) -> Int where C.Element == Int {
  guard let count = checkedProduct(shape) else {
    preconditionFailure("shape \(Array(shape)) has a negative dimension or more elements than Int can count")
  }
  return count
}
