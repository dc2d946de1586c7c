import Foundation
import GradCheck
import Kernels
import Testing

@testable import Stage8

/// The golden gradient checks of stages 1 to 6, Float against Double, and the checker checking itself.
@Suite struct GoldenTests {
  @Test func theAdapterBuildsEveryCatalogueCaseOfStages1To6() {
    for problem in coverageProblems(of: goldenAdapter, stage: 8) { Issue.record(Comment(rawValue: problem)) }
  }

  @Test(arguments: cases(upToStage: 5).map(\.name))
  func gradientsMatchFiniteDifferences(_ name: String) throws {
    let gradCase = try #require(catalogue.first { $0.name == name })
    let build = try #require(goldenAdapter[name], "the adapter lacks case '\(name)'")
    let result = check(gradCase, using: build)
    #expect(result.entries > 0)
    for mismatch in result.mismatches { Issue.record(Comment(rawValue: mismatch.description)) }
  }

  /// A consistency check, not a correctness test: it runs the same code twice, in Float and in Double, so a wrong
  /// formula passes it (both precisions compute the same wrong value). What it does catch is a precision problem:
  /// training runs in Float, and every case's Float forward must agree with its Double forward, to 1e-5 relative
  /// (or 1e-5 absolute where the value is below 1, where a relative figure means nothing). The value tests
  /// against the definitions (LayersTests, the composed forms) are the correctness tests of the forwards.
  @Test(arguments: cases(upToStage: 5).map(\.name))
  func floatForwardAgreesWithDouble(_ name: String) throws {
    let gradCase = try #require(catalogue.first { $0.name == name })
    let inputs = drawInputs(for: gradCase)
    let double = try #require(goldenOutput(name, goldenLeaves(gradCase, inputs) as [Tensor<Double>]))
    let float = try #require(goldenOutput(name, goldenLeaves(gradCase, inputs) as [Tensor<Float>]))
    #expect(float.shape == double.shape)
    for (f, d) in zip(float.storage, double.storage) {
      #expect(abs(Double(f) - d) <= 1e-5 * max(abs(d), 1), "\(name): Float \(f) vs Double \(d)")
    }
  }

  /// micrograd's tests compare against PyTorch; these are the numbers PyTorch gives there.
  @Test func microgradsTestsMatchPyTorchOnTensors() {
    let x = Tensor<Double>([-4], shape: [1], requiresGrad: true)
    let y = microgradSanity(x)
    y.sum().backward()
    #expect(y.storage == [-20] && x.gradStorage! == [46])
    let a = Tensor<Double>(scalar: -4, requiresGrad: true)
    let b = Tensor<Double>(scalar: 2, requiresGrad: true)
    let g = microgradMoreOps(a, b)
    g.backward()
    #expect(abs(g.item - 24.70408163265306) < 1e-6)
    #expect(abs(a.gradStorage![0] - 138.83381924198252) < 1e-6)
    #expect(abs(b.gradStorage![0] - 645.5772594752186) < 1e-6)
  }
}

/// Deliberately wrong backward passes: the checker must catch every one of them, or it proves nothing.
@Suite struct CheckerCatchesWrongBackwards {
  typealias T = Tensor<Double>

  func caseNamed(_ name: String) -> GradCase { catalogue.first { $0.name == name }! }

  /// A builder for catalogue case `name` whose output comes from `f` (a possibly wrong op) on the case's leaves.
  func builder(_ name: String, _ f: @escaping ([T]) -> T) -> CaseBuilder {
    let gradCase = caseNamed(name)
    return { inputs in
      let leaves: [T] = goldenLeaves(gradCase, inputs)
      let output = f(leaves)
      return Evaluation(output: output.storage) { seed in
        for leaf in leaves { leaf.zeroGrad() }
        output.backward(gradient: seed)
        return leaves.map { $0.gradStorage ?? [Double](repeating: 0, count: $0.count) }
      }
    }
  }

  @Test func theRightOpsPass() {
    #expect(check(caseNamed("broadcast_add_vector"), using: builder("broadcast_add_vector") { $0[0] + $0[1] }).passed)
    #expect(check(caseNamed("matmul_2d"), using: builder("matmul_2d") { $0[0].matmul($0[1]) }).passed)
  }

  @Test func aSignFlipIsCaught() {
    let wrongTanh = { (x: T) -> T in
      let y = x.storage.map { Foundation.tanh($0) }
      return T(y, shape: x.shape, op: "tanh", parents: [x]) { out in
        let dy = out.gradStorage!
        x.addToGrad { g in for i in g.indices { g[i] -= dy[i] * (1 - y[i] * y[i]) } }
      }
    }
    #expect(!check(caseNamed("tanh"), using: builder("tanh") { wrongTanh($0[0]) }).passed)
  }

  @Test func overwritingInsteadOfAccumulatingIsCaught() {
    // a * b whose backward assigns into the gradients: x * x loses one of its two paths.
    let overwritingMul = { (a: T, b: T) -> T in
      T(zip(a.storage, b.storage).map(*), shape: a.shape, op: "*", parents: [a, b]) { out in
        let dy = out.gradStorage!
        a.addToGrad { g in for i in g.indices { g[i] = dy[i] * b.storage[i] } }
        b.addToGrad { g in for i in g.indices { g[i] = dy[i] * a.storage[i] } }
      }
    }
    #expect(!check(caseNamed("reuse"), using: builder("reuse") { overwritingMul($0[0], $0[0]) + $0[0] }).passed)
  }

  @Test func theDerivativeOfTheWrongInputIsCaught() {
    let wrongMul = { (a: T, b: T) -> T in
      T(zip(a.storage, b.storage).map(*), shape: a.shape, op: "*", parents: [a, b]) { out in
        let dy = out.gradStorage!
        a.addToGrad { g in for i in g.indices { g[i] += dy[i] * a.storage[i] } }  // should be b
        b.addToGrad { g in for i in g.indices { g[i] += dy[i] * a.storage[i] } }
      }
    }
    #expect(!check(caseNamed("mul"), using: builder("mul") { wrongMul($0[0], $0[1]) }).passed)
  }

  @Test func aMissingReduceToShapeIsCaught() {
    // x [2, 3] + y [3] whose backward hands y only the first row's gradient instead of the sum over the rows.
    let unreduced = { (x: T, y: T) -> T in
      let (sum, shape) = T.broadcastMap(x, y, "+", +)
      return T(sum, shape: shape, op: "+", parents: [x, y]) { out in
        let dy = out.gradStorage!
        x.addToGrad { g in for i in g.indices { g[i] += dy[i] } }
        y.addToGrad { g in for i in g.indices { g[i] += dy[i] } }
      }
    }
    #expect(
      !check(caseNamed("broadcast_add_vector"), using: builder("broadcast_add_vector") { unreduced($0[0], $0[1]) })
        .passed)
  }

  @Test func aTransposedMatmulGradientIsCaught() {
    // a [3, 4] @ b [4, 5] with dB computed as (A^T dC) read in the wrong (transposed) order.
    let wrongMatmul = { (a: T, b: T) -> T in
      let c = naiveMatmul(a.storage, b.storage, m: 3, k: 4, n: 5)
      return T(c, shape: [3, 5], op: "matmul", parents: [a, b]) { out in
        let dc = out.gradStorage!
        let bT = b.transposed().storage  // [5, 4]
        a.addToGrad { g in
          let da = naiveMatmul(dc, bT, m: 3, k: 5, n: 4)
          for i in g.indices { g[i] += da[i] }
        }
        b.addToGrad { g in
          let aT = a.transposed().storage  // [4, 3]
          let db = naiveMatmul(aT, dc, m: 4, k: 3, n: 5)  // [4, 5], right values...
          let dbT = T(db, shape: [4, 5]).transposed().storage  // ...laid out transposed: the bug
          for i in g.indices { g[i] += dbT[i] }
        }
      }
    }
    #expect(!check(caseNamed("matmul_2d"), using: builder("matmul_2d") { wrongMatmul($0[0], $0[1]) }).passed)
  }
}
