import Foundation
import Support

/// The checker: compares a stage's analytic gradients with central finite differences, in Double.
///
/// A case's output may be a vector y = f(x1, ..., xk). The full check builds the whole Jacobian both ways: row j
/// analytically by a backward pass seeded with the unit vector e_j, column by column numerically from
/// (f(x + h e) - f(x - h e)) / 2h. A large case instead compares random directional derivatives v^T J u.
/// An entry passes when |analytic - numeric| <= atol + rtol * |numeric| (PyTorch's gradcheck criterion).

/// What a stage's adapter returns for one case, evaluated at some inputs.
public struct Evaluation {
  /// The forward output, flattened.
  public let output: [Double]
  /// The vector-Jacobian product: given a seed over the outputs, the gradient with respect to every input
  /// (flattened, one array per input; held-fixed inputs may return anything, they are not compared).
  public let vectorJacobianProduct: ([Double]) -> [[Double]]

  public init(output: [Double], vectorJacobianProduct: @escaping ([Double]) -> [[Double]]) {
    self.output = output
    self.vectorJacobianProduct = vectorJacobianProduct
  }
}

/// Builds a case at the given inputs (one flattened array per input of the case, in its order).
public typealias CaseBuilder = ([[Double]]) -> Evaluation

/// Tolerances and method of the check.
public struct CheckOptions: Sendable {
  public var absoluteTolerance = 1e-5
  public var relativeTolerance = 1e-3
  /// The finite-difference step. Central differences have error O(h^2) from the Taylor series and about
  /// eps * |f| / h from rounding; 1e-6 keeps both far below the tolerance in Double.
  public var step = 1e-6
  /// Above this many Jacobian entries (outputs x differentiated input elements), check directional derivatives.
  public var fullJacobianLimit = 20_000
  /// How many random directions a directional check uses.
  public var directions = 8

  public init() {}
}

/// One entry where the analytic and numeric gradients disagree.
public struct Mismatch: Sendable, CustomStringConvertible {
  public let caseName: String
  /// The input and element, e.g. "w1[2,1]", or "direction 3" for a directional check.
  public let location: String
  public let analytic: Double
  public let numeric: Double
  public let allowed: Double

  public var error: Double { abs(analytic - numeric) }

  public var description: String {
    "\(caseName): \(location) analytic \(analytic) numeric \(numeric) error \(error) (allowed \(allowed))"
  }
}

/// The outcome of checking one case.
public struct CaseResult: Sendable {
  public let name: String
  public let entries: Int
  public let directional: Bool
  public let maxAbsoluteError: Double
  public let maxRelativeError: Double
  public let mismatches: [Mismatch]

  public var passed: Bool { mismatches.isEmpty }
}

/// Draws the inputs of a case from its domains, seeded by the case name (the same inputs on every run).
public func drawInputs(for gradCase: GradCase) -> [[Double]] {
  var rng = SeededRNG(seed: stableHash(gradCase.name))
  return gradCase.inputs.map { spec in
    guard case .distinct(let low, let high) = spec.domain else {
      return (0..<spec.count).map { _ in draw(spec.domain, &rng) }
    }
    var values: [Double] = []
    while values.count < spec.count {
      let value = rng.uniform(low, high)
      if values.allSatisfy({ abs(value - $0) >= kinkMargin }) { values.append(value) }
    }
    return values
  }
}

private func draw(_ domain: Domain, _ rng: inout SeededRNG) -> Double {
  switch domain {
  case .uniform(let low, let high), .distinct(let low, let high):
    return rng.uniform(low, high)
  case .uniformAvoiding(let low, let high, let kinks):
    while true {
      let value = rng.uniform(low, high)
      if kinks.allSatisfy({ abs(value - $0) >= kinkMargin }) { return value }
    }
  case .classes(let count):
    return Double(rng.index(below: count))
  case .signs:
    return rng.index(below: 2) == 0 ? -1 : 1
  }
}

/// Checks one case: analytic gradients from `build` against central differences.
public func check(_ gradCase: GradCase, using build: CaseBuilder, options: CheckOptions = CheckOptions()) -> CaseResult
{
  let inputs = drawInputs(for: gradCase)
  let base = build(inputs)
  let outputCount = base.output.count
  let differentiated = gradCase.inputs.indices.filter { gradCase.inputs[$0].domain.isDifferentiable }
  let elementCount = differentiated.reduce(0) { $0 + gradCase.inputs[$1].count }
  var tally = Tally(caseName: gradCase.name, options: options)

  // Evaluates f at the inputs moved by `scale * direction` (direction given per differentiated input).
  func output(movedBy direction: [Int: [Double]], scale: Double) -> [Double] {
    var moved = inputs
    for (input, delta) in direction {
      for k in delta.indices { moved[input][k] += scale * delta[k] }
    }
    return build(moved).output
  }

  if outputCount * elementCount <= options.fullJacobianLimit {
    // Analytic Jacobian, one row per output.
    let rows: [[[Double]]] = (0..<outputCount).map { j in
      var seed = [Double](repeating: 0, count: outputCount)
      seed[j] = 1
      return base.vectorJacobianProduct(seed)
    }
    // Numeric Jacobian, one column per input element, compared entry by entry.
    for input in differentiated {
      let spec = gradCase.inputs[input]
      for k in 0..<spec.count {
        var unit = [Double](repeating: 0, count: spec.count)
        unit[k] = 1
        let plus = output(movedBy: [input: unit], scale: options.step)
        let minus = output(movedBy: [input: unit], scale: -options.step)
        for j in 0..<outputCount {
          let numeric = (plus[j] - minus[j]) / (2 * options.step)
          let name = outputCount == 1 ? "" : " of output[\(j)]"
          tally.compare(rows[j][input][k], numeric, at: spec.name + elementName(k, spec.shape) + name)
        }
      }
    }
  } else {
    // Directional derivatives: v^T J u analytically (one backward pass) and numerically (two forward passes).
    var rng = SeededRNG(seed: stableHash(gradCase.name) ^ 0x5EED)
    for d in 0..<options.directions {
      let v = (0..<outputCount).map { _ in rng.normal() }
      var u: [Int: [Double]] = [:]
      for input in differentiated { u[input] = (0..<gradCase.inputs[input].count).map { _ in rng.normal() } }
      let gradients = base.vectorJacobianProduct(v)
      var analytic = 0.0
      for (input, direction) in u {
        for k in direction.indices { analytic += gradients[input][k] * direction[k] }
      }
      let plus = output(movedBy: u, scale: options.step)
      let minus = output(movedBy: u, scale: -options.step)
      var numeric = 0.0
      for j in 0..<outputCount { numeric += v[j] * (plus[j] - minus[j]) / (2 * options.step) }
      tally.compare(analytic, numeric, at: "direction \(d)")
    }
  }
  return CaseResult(
    name: gradCase.name, entries: tally.entries, directional: outputCount * elementCount > options.fullJacobianLimit,
    maxAbsoluteError: tally.maxAbsolute, maxRelativeError: tally.maxRelative, mismatches: tally.mismatches)
}

/// Running totals of one case's comparisons.
private struct Tally {
  let caseName: String
  let options: CheckOptions
  var entries = 0
  var maxAbsolute = 0.0
  var maxRelative = 0.0
  var mismatches: [Mismatch] = []

  init(caseName: String, options: CheckOptions) {
    self.caseName = caseName
    self.options = options
  }

  mutating func compare(_ analytic: Double, _ numeric: Double, at location: String) {
    entries += 1
    let error = abs(analytic - numeric)
    let allowed = options.absoluteTolerance + options.relativeTolerance * abs(numeric)
    maxAbsolute = max(maxAbsolute, error.isNaN ? .infinity : error)
    let scale = max(abs(analytic), abs(numeric))
    if scale > 0 { maxRelative = max(maxRelative, error.isNaN ? .infinity : error / scale) }
    // Written so that a NaN on either side fails.
    if !(error <= allowed) {
      mismatches.append(
        Mismatch(caseName: caseName, location: location, analytic: analytic, numeric: numeric, allowed: allowed))
    }
  }
}

/// "[i]" or "[i,j,...]" for element k of a tensor of the given shape; "" for a scalar.
func elementName(_ k: Int, _ shape: [Int]) -> String {
  if shape.isEmpty { return "" }
  var index: [Int] = []
  var rest = k
  for size in shape.reversed() {
    index.append(rest % size)
    rest /= size
  }
  return "[" + index.reversed().map(String.init).joined(separator: ",") + "]"
}

// MARK: - Running a whole stage

/// A stage's adapter: a builder for each case it knows, by case name.
public typealias Adapter = [String: CaseBuilder]

/// Catalogue cases of stages 1...stage that the adapter lacks, and adapter entries the catalogue does not know.
public func coverageProblems(of adapter: Adapter, stage: Int) -> [String] {
  let expected = Set(cases(upToStage: stage).map(\.name))
  let missing = expected.subtracting(adapter.keys).sorted().map { "the adapter lacks case '\($0)'" }
  let unknown = Set(adapter.keys).subtracting(catalogue.map(\.name)).sorted().map {
    "the adapter builds '\($0)', which the catalogue does not have"
  }
  return missing + unknown
}

/// Checks every case of stages 1...stage that the adapter builds, in catalogue order.
public func checkStage(_ stage: Int, adapter: Adapter, options: CheckOptions = CheckOptions()) -> [CaseResult] {
  cases(upToStage: stage).compactMap { gradCase in
    adapter[gradCase.name].map { check(gradCase, using: $0, options: options) }
  }
}

/// The results as a plain-text table: case, stage, entries compared, max errors, PASS or FAIL.
public func formatTable(_ results: [CaseResult]) -> String {
  let stageOf = Dictionary(uniqueKeysWithValues: catalogue.map { ($0.name, $0.stage) })
  let header = ["case", "stage", "entries", "max abs err", "max rel err", "result"]
  let rows = results.map { result -> [String] in
    [
      result.name, String(stageOf[result.name] ?? 0),
      String(result.entries) + (result.directional ? " dir" : ""),
      scientific(result.maxAbsoluteError), scientific(result.maxRelativeError), result.passed ? "PASS" : "FAIL",
    ]
  }
  let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max() ?? 0 }
  func line(_ cells: [String]) -> String {
    cells.indices.map { column in
      let cell = cells[column]
      let padding = String(repeating: " ", count: widths[column] - cell.count)
      return column == 0 ? cell + padding : padding + cell
    }.joined(separator: "  ")
  }
  let rule = widths.map { String(repeating: "-", count: $0) }.joined(separator: "  ")
  return ([line(header), rule] + rows.map(line)).joined(separator: "\n")
}

/// A number as d.dde-NN.
public func scientific(_ value: Double) -> String {
  value == 0 ? "0" : String(format: "%.2e", value)
}
