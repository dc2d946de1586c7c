import Foundation
import Testing

@testable import GradCheck

/// The checker on hand-written functions whose gradients are known, right and wrong.
@Suite struct CheckerTests {
  /// f(x, y) = [x^2 y, sin(x) + y] over x [3], y [3], elementwise; `wrong` perturbs the analytic gradient.
  func builder(wrong: Bool = false) -> CaseBuilder {
    { inputs in
      let (x, y) = (inputs[0], inputs[1])
      let n = x.count
      let output = (0..<n).map { x[$0] * x[$0] * y[$0] } + (0..<n).map { Foundation.sin(x[$0]) + y[$0] }
      return Evaluation(output: output) { seed in
        var gx = [Double](repeating: 0, count: n)
        var gy = [Double](repeating: 0, count: n)
        for i in 0..<n {
          gx[i] += seed[i] * 2 * x[i] * y[i] + seed[n + i] * Foundation.cos(x[i])
          gy[i] += seed[i] * x[i] * x[i] + seed[n + i]
        }
        if wrong { gy[1] = -gy[1] }
        return [gx, gy]
      }
    }
  }

  let testCase = GradCase(
    "test_case", stage: 1, inputs: [.init("x", [3], .uniform(-1, 1)), .init("y", [3], .uniform(0.5, 1))],
    "[x^2 y, sin(x) + y]")

  @Test func aCorrectGradientPassesTheFullJacobian() {
    let result = check(testCase, using: builder())
    #expect(result.passed)
    #expect(!result.directional)
    #expect(result.entries == 36)  // 6 outputs x 6 input elements
    #expect(result.maxAbsoluteError < 1e-8)
  }

  @Test func aWrongGradientIsCaughtAndNamed() throws {
    let result = check(testCase, using: builder(wrong: true))
    #expect(!result.passed)
    let mismatch = try #require(result.mismatches.first)
    #expect(mismatch.location == "y[1] of output[1]")
    #expect(mismatch.description.hasPrefix("test_case: y[1] of output[1] analytic "))
    #expect(mismatch.description.contains(" numeric "))
    #expect(mismatch.description.contains(" error "))
  }

  @Test func theDirectionalCheckPassesRightAndCatchesWrong() {
    var options = CheckOptions()
    options.fullJacobianLimit = 10
    let right = check(testCase, using: builder(), options: options)
    #expect(right.directional && right.passed && right.entries == 8)
    let wrong = check(testCase, using: builder(wrong: true), options: options)
    #expect(!wrong.passed)
  }

  @Test func aNaNGradientFails() {
    let nan: CaseBuilder = { inputs in
      Evaluation(output: [inputs[0][0]]) { _ in [[.nan], [0, 0, 0]] }
    }
    let oneInput = GradCase("nan_case", stage: 1, inputs: [.init("x", [], .uniform(0, 1))], "x")
    #expect(!check(oneInput, using: nan).passed)
  }
}

@Suite struct CatalogueTests {
  @Test func namesAreUniqueAndStagesAscend() {
    let names = catalogue.map(\.name)
    #expect(Set(names).count == names.count)
    #expect(catalogue.map(\.stage) == catalogue.map(\.stage).sorted())
  }

  @Test func drawsRespectTheDomains() {
    for gradCase in catalogue {
      let inputs = drawInputs(for: gradCase)
      #expect(inputs.count == gradCase.inputs.count)
      for (values, spec) in zip(inputs, gradCase.inputs) {
        #expect(values.count == spec.count)
        for v in values {
          switch spec.domain {
          case .uniform(let low, let high):
            #expect(v >= low && v < high)
          case .distinct(let low, let high):
            #expect(v >= low && v < high)
            #expect(values.filter { abs($0 - v) < kinkMargin }.count == 1, "\(gradCase.name)")
          case .uniformAvoiding(let low, let high, let kinks):
            #expect(v >= low && v < high && kinks.allSatisfy { abs(v - $0) >= kinkMargin }, "\(gradCase.name)")
          case .classes(let k):
            #expect(v == v.rounded() && v >= 0 && v < Double(k))
          case .signs:
            #expect(v == 1 || v == -1)
          }
        }
      }
    }
  }

  @Test func drawsAreTheSameEveryTime() {
    for gradCase in catalogue { #expect(drawInputs(for: gradCase) == drawInputs(for: gradCase)) }
  }

  @Test func coverageNamesMissingAndUnknownCases() {
    var adapter: Adapter = [:]
    for gradCase in cases(upToStage: 1) where gradCase.name != "mul" {
      adapter[gradCase.name] = { _ in Evaluation(output: []) { _ in [] } }
    }
    adapter["made_up"] = { _ in Evaluation(output: []) { _ in [] } }
    #expect(
      coverageProblems(of: adapter, stage: 1) == [
        "the adapter lacks case 'mul'", "the adapter builds 'made_up', which the catalogue does not have",
      ])
  }

  @Test func elementNamesAreRowMajor() {
    #expect(elementName(0, []) == "")
    #expect(elementName(4, [5]) == "[4]")
    #expect(elementName(5, [2, 3]) == "[1,2]")
  }

  @Test func theTableHasOneRowPerResult() {
    let result = CaseResult(
      name: "add", entries: 2, directional: false, maxAbsoluteError: 1.5e-10, maxRelativeError: 0,
      mismatches: [])
    let table = formatTable([result]).split(separator: "\n")
    #expect(table.count == 3)
    #expect(table[2].hasPrefix("add"))
    #expect(table[2].hasSuffix("PASS"))
    #expect(table[2].contains("1.50e-10"))
  }
}
