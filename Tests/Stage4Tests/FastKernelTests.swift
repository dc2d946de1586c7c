import Foundation
import Support
import Testing

@testable import Stage4

/// The speed-ups of chapter 4's "Making it fast", held to the numbers they replace.
@Suite struct FastKernelTests {
  @Test func vectorExpIsWithinTwoUlpsOfExp() {
    var worst = 0.0
    for i in 0...20_000 {
      let x = Float(-87 + Double(i) * (175.0 / 20_000))  // -87 ... 88
      let exact = Foundation.exp(Double(x))
      worst = max(worst, abs(Double(Float.vectorExp(x)) - exact) / exact)
    }
    #expect(worst <= 2 * 0x1p-24, "worst relative error \(worst)")
    #expect(Float.vectorExp(0) == 1)
    #expect(Float.vectorExp(-100) == 0 && Float.vectorExp(-.infinity) == 0)
    #expect(Float.vectorExp(89) == .infinity && Float.vectorExp(.infinity) == .infinity)
    #expect(Float.vectorExp(.nan).isNaN)
  }

  @Test func floatGELUAgreesWithDoubleGELU() {
    let values = (0..<2001).map { Double($0) / 100 - 10 }  // -10 ... 10
    let double = Tensor<Double>(values, shape: [values.count]).gelu().storage
    let float = Tensor<Float>(values.map { Float($0) }, shape: [values.count]).gelu().storage
    for (f, d) in zip(float, double) { #expect(abs(Double(f) - d) <= 1e-6 + 1e-6 * abs(d), "\(f) vs \(d)") }
  }

  /// Runs `headProduct` on random operands (A read transposed when asked) and returns C and the product by its
  /// definition, in Double, over the whole matrix; `zeroed(i, p)` marks the entries of A that are zero.
  func headProductAndDefinition<Scalar: TensorScalar>(
    _: Scalar.Type, m: Int, n: Int, k: Int, part: CausalPart, transposedA: Bool, accumulate: Bool,
    zeroed: (Int, Int) -> Bool
  ) -> (c: [Scalar], definition: [Double]) {
    var rng = SeededRNG(seed: 6)
    var a = (0..<(m * k)).map { _ in Scalar(rng.uniform(-1, 1)) }  // A[i, p] at i * k + p, or p * m + i
    for i in 0..<m {
      for p in 0..<k where zeroed(i, p) { a[transposedA ? p * m + i : i * k + p] = 0 }
    }
    let ldb = n + 3  // B's rows with a gap, as the heads' rows in a packed projection
    let b = (0..<(k * ldb)).map { _ in Scalar(rng.uniform(-1, 1)) }
    var c = (0..<(m * n)).map { _ in Scalar(rng.uniform(-1, 1)) }
    let before = c
    let alpha: Scalar = 0.75
    a.withUnsafeBufferPointer { ap in
      b.withUnsafeBufferPointer { bp in
        c.withUnsafeMutableBufferPointer { cp in
          let matrix =
            transposedA
            ? StridedMatrix(base: ap.baseAddress!, rowStride: 1, columnStride: m)
            : StridedMatrix(base: ap.baseAddress!, rowStride: k)
          headProduct(
            m: m, n: n, k: k, part: part, alpha: alpha, matrix, bp.baseAddress!, ldb: ldb, cp.baseAddress!, ldc: n,
            accumulate: accumulate)
        }
      }
    }
    var definition = [Double](repeating: 0, count: m * n)
    for i in 0..<m {
      for j in 0..<n {
        var sum = 0.0
        for p in 0..<k { sum += Double(a[transposedA ? p * m + i : i * k + p]) * Double(b[p * ldb + j]) }
        definition[i * n + j] = Double(alpha) * sum + (accumulate ? Double(before[i * n + j]) : 0)
      }
    }
    return (c, definition)
  }

  @Test func headProductComputesThePartACausalMaskLeaves() {
    // Sizes with rows and columns left over after the 4 x 16 blocks, and the 64 x 64 x 32 of nanoGPT's heads.
    for (m, n, k) in [(13, 37, 19), (64, 64, 32), (3, 5, 2)] {
      for shift in [0, 4] {
        for accumulate in [false, true] {
          // Scores: only columns j <= i + shift are needed.
          let scores = headProductAndDefinition(
            Float.self, m: m, n: n, k: k, part: .columnsUpToRow(shift: shift), transposedA: false,
            accumulate: accumulate
          ) { _, _ in false }
          for i in 0..<m {
            for j in 0..<min(n, i + shift + 1) {
              let (got, want) = (Double(scores.c[i * n + j]), scores.definition[i * n + j])
              #expect(abs(got - want) <= 1e-5 * Double(k), "scores m \(m) n \(n) k \(k) at \(i), \(j)")
            }
          }
          // Weights times rows: row i's weights past i + shift are 0, and the whole of C is right.
          func check<S: TensorScalar>(_ type: S.Type, tolerance: Double) {
            let upTo = headProductAndDefinition(
              type, m: m, n: n, k: k, part: .innerUpToRow(shift: shift), transposedA: false, accumulate: accumulate
            ) { i, p in p > i + shift }
            let from = headProductAndDefinition(
              type, m: m, n: n, k: k, part: .innerFromRow(shift: shift), transposedA: true, accumulate: accumulate
            ) { j, p in p < j - shift }
            let all = headProductAndDefinition(
              type, m: m, n: n, k: k, part: .all, transposedA: true, accumulate: accumulate
            ) { _, _ in false }
            for result in [upTo, from, all] {
              let worst = zip(result.c, result.definition).map { abs(Double($0) - $1) }.max()!
              #expect(worst <= tolerance, "\(S.self) m \(m) n \(n) k \(k) shift \(shift): off by \(worst)")
            }
          }
          check(Float.self, tolerance: 1e-5 * Double(k))
          check(Double.self, tolerance: 1e-13 * Double(k))
        }
      }
    }
  }

  @Test func aSplitProductEqualsOneBLASCall() {
    // Large enough to be cut into pieces: every shape of op(A) and op(B), rows split (m >= n) and columns split.
    var rng = SeededRNG(seed: 4)
    for (m, n, k) in [(300, 40, 50), (40, 300, 50)] {
      for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a = (0..<(m * k)).map { _ in rng.uniform(-1, 1) }
        let b = (0..<(k * n)).map { _ in rng.uniform(-1, 1) }
        var c = [Double](repeating: 0.5, count: m * n)
        c.withUnsafeMutableBufferPointer { c in
          Double.gemm(
            transposeA: ta, transposeB: tb, m: m, n: n, k: k, alpha: 2, a: a, lda: ta ? m : k, b: b, ldb: tb ? k : n,
            beta: 1, c: c.baseAddress!, ldc: n)
        }
        for i in stride(from: 0, to: m, by: 7) {
          for j in stride(from: 0, to: n, by: 5) {
            var dot = 0.0
            for p in 0..<k { dot += (ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]) }
            #expect(abs(c[i * n + j] - (0.5 + 2 * dot)) <= 1e-12, "(\(m), \(n), \(k), \(ta), \(tb)) at [\(i), \(j)]")
          }
        }
      }
    }
  }

  @Test func aGradientHandedOnIsNotSharedWhenWrittenLater() {
    // a + b hands the same gradient array to both; a later backward adds into a's alone.
    let a = Tensor<Double>([1, 2, 3], shape: [3], requiresGrad: true)
    let b = Tensor<Double>([4, 5, 6], shape: [3], requiresGrad: true)
    (a + b).sum().backward()
    (a * 2).sum().backward()
    #expect(a.gradStorage == [3, 3, 3])
    #expect(b.gradStorage == [1, 1, 1])
  }
}
