import Foundation
import Support
import Testing

@testable import Stage3

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
