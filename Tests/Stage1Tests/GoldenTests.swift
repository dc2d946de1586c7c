import Foundation
import GradCheck
import Testing

@testable import Stage1

/// The golden gradient checks of stage 1, and the checker checking itself.
@Suite struct GoldenTests {
  @Test func theAdapterBuildsEveryCatalogueCaseOfStage1() {
    for problem in coverageProblems(of: goldenAdapter, stage: 1) { Issue.record(Comment(rawValue: problem)) }
  }

  @Test(arguments: cases(upToStage: 1).map(\.name))
  func gradientsMatchFiniteDifferences(_ name: String) throws {
    let gradCase = try #require(catalogue.first { $0.name == name })
    let build = try #require(goldenAdapter[name], "the adapter lacks case '\(name)'")
    let result = check(gradCase, using: build)
    #expect(result.entries > 0)
    for mismatch in result.mismatches { Issue.record(Comment(rawValue: mismatch.description)) }
  }

  /// micrograd's tests compare against PyTorch; these are the numbers PyTorch gives there.
  @Test func microgradsFirstTestMatchesPyTorch() {
    let x = Value(-4)
    let y = microgradSanity(x)
    y.backward()
    #expect(y.data == -20)
    #expect(x.grad == 46)
  }

  @Test func microgradsSecondTestMatchesPyTorch() {
    let a = Value(-4)
    let b = Value(2)
    let g = microgradMoreOps(a, b)
    g.backward()
    #expect(abs(g.data - 24.70408163265306) < 1e-6)
    #expect(abs(a.grad - 138.83381924198252) < 1e-6)
    #expect(abs(b.grad - 645.5772594752186) < 1e-6)
  }
}

/// Deliberately wrong backward passes: the checker must catch every one of them, or it proves nothing.
@Suite struct CheckerCatchesWrongBackwards {
  func caseNamed(_ name: String) -> GradCase { catalogue.first { $0.name == name }! }

  /// Runs `backward` (a possibly wrong version of `Value.backward`) on each output to fill in the leaves' grads.
  func builder(
    _ f: @escaping ([Value]) -> Value, backward: @escaping (Value) -> Void = { $0.backward() }
  ) -> CaseBuilder {
    { inputs in
      let leaves = inputs.map { Value($0[0]) }
      let y = f(leaves)
      return Evaluation(output: [y.data]) { seed in
        for leaf in leaves { leaf.grad = 0 }
        backward(y)
        return leaves.map { [seed[0] * $0.grad] }
      }
    }
  }

  @Test func theRightBackwardPasses() {
    #expect(check(caseNamed("mul"), using: builder { $0[0] * $0[1] }).passed)
    #expect(check(caseNamed("reuse"), using: builder { $0[0] * $0[0] + $0[0] }).passed)
  }

  @Test func aSignFlipIsCaught() {
    // tanh whose derivative has the wrong sign: -(1 - t^2).
    let wrongTanh = { (x: Value) -> Value in
      let t = Foundation.tanh(x.data)
      return Value(t, op: "tanh", edges: [Edge(x, -(1 - t * t))])
    }
    #expect(!check(caseNamed("tanh"), using: builder { wrongTanh($0[0]) }).passed)
  }

  @Test func theDerivativeOfTheWrongInputIsCaught() {
    // a * b passing d/da = a (the wrong input's value) instead of b.
    let wrongMul = { (a: Value, b: Value) -> Value in
      Value(a.data * b.data, op: "*", edges: [Edge(a, a.data), Edge(b, a.data)])
    }
    #expect(!check(caseNamed("mul"), using: builder { wrongMul($0[0], $0[1]) }).passed)
  }

  @Test func overwritingInsteadOfAccumulatingIsCaught() {
    // A backward pass that assigns each parent's gradient instead of adding to it: x * x + x loses paths.
    let overwriting = { (root: Value) in
      let order = root.topologicalOrder()
      for node in order { node.grad = 0 }
      root.grad = 1
      for node in order.reversed() {
        for edge in node.edges { edge.parent.grad = edge.derivative * node.grad }
      }
    }
    #expect(!check(caseNamed("reuse"), using: builder({ $0[0] * $0[0] + $0[0] }, backward: overwriting)).passed)
  }

  @Test func aMissingTermIsCaught() {
    // A backward pass that skips the last edge of every node (forgets one operand's share).
    let forgetful = { (root: Value) in
      let order = root.topologicalOrder()
      for node in order where !node.isLeaf { node.grad = 0 }
      root.grad = 1
      for node in order.reversed() {
        for edge in node.edges.dropLast() { edge.parent.grad += edge.derivative * node.grad }
      }
    }
    #expect(!check(caseNamed("add"), using: builder({ $0[0] + $0[1] }, backward: forgetful)).passed)
  }
}
