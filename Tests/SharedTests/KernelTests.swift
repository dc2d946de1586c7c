import Foundation
import Support
import Testing

@testable import Kernels

/// Every fast kernel of Shared/Kernels against its plain-loop reference, in Float and Double, at sizes that
/// straddle the SIMD width (8 lanes), the register blocks of the head products (4 x 16) and the eight-lane sums.
/// The references are checked against the definitions (and, through the stages' golden checks, against finite
/// differences); these tests make sure the fast forms compute the same thing.
@Suite struct KernelTests {
  /// Sizes around 8 and 16 and a few larger ones.
  static let sizes = [1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100]

  /// n numbers in [low, high) from a seeded generator.
  func random<S: KernelScalar>(_ n: Int, _ rng: inout SeededRNG, low: Double = -2, high: Double = 2) -> [S] {
    (0..<n).map { _ in S(rng.uniform(low, high)) }
  }

  func expectClose<S: KernelScalar>(
    _ fast: [S], _ reference: [S], tolerance: Double, _ what: String, sourceLocation: SourceLocation = #_sourceLocation
  ) {
    #expect(fast.count == reference.count, "\(what): \(fast.count) vs \(reference.count) elements")
    var worst = 0.0
    for (f, r) in zip(fast, reference) {
      let (a, b) = (Double(f), Double(r))
      worst = max(worst, abs(a - b) / (1 + abs(b)))
    }
    #expect(worst <= tolerance, "\(what) (\(S.self)): off by \(worst)", sourceLocation: sourceLocation)
  }

  /// The fast form's result and the reference's. The references are called directly: the process-wide
  /// `KernelChoice` stays `.fast` here, since other suites run side by side in the same process (the stages'
  /// command-line tests run whole trainings on the references, each in a process of its own).
  func bothForms<R>(fast: () -> R, reference: () -> R) -> (fast: R, reference: R) { (fast(), reference()) }

  /// Tolerances: a few ulps of the type, times a size factor.
  func tolerance<S: KernelScalar>(_: S.Type) -> Double { S.self == Float.self ? 2e-5 : 1e-12 }

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

  @Test func fastTanhIsWithinAFewUlpsOfOne() {
    for u in stride(from: -12.0, through: 12.0, by: 0.01) {
      #expect(abs(fastTanh(u) - Foundation.tanh(u)) <= 4e-16, "Double at \(u)")
      #expect(abs(Double(fastTanh(Float(u))) - Foundation.tanh(Double(Float(u)))) <= 4e-7, "Float at \(u)")
    }
  }

  @Test func sumsAndMaximaInEightLanesEqualTheLoops() {
    func check<S: KernelScalar>(_ type: S.Type) {
      var rng = SeededRNG(seed: 1)
      for n in Self.sizes {
        let x: [S] = random(n, &rng)
        x.withUnsafeBufferPointer { x in
          let (lanes, loop) = (sum8(n) { x[$0] }, sumReference(n) { x[$0] })
          #expect(abs(Double(lanes - loop)) <= tolerance(S.self) * Double(n), "sum of \(n)")
          #expect(max8(x.start, n) == maxReference(x.start, n), "max of \(n)")
        }
      }
    }
    check(Float.self)
    check(Double.self)
  }

  @Test func geluFastEqualsReference() {
    func check<S: KernelScalar>(_ type: S.Type) {
      var rng = SeededRNG(seed: 2)
      for n in Self.sizes + [70_001] {  // the last one is split across the cores
        let (x, dy): ([S], [S]) = (random(n, &rng, low: -6, high: 6), random(n, &rng))
        let forward = bothForms {
          makeArrays(n, n) { y, t in x.withUnsafeBufferPointer { geluForward($0.start, y, t, count: n) } } as ([S], [S])
        } reference: {
          makeArrays(n, n) { y, t in x.withUnsafeBufferPointer { geluForwardReference($0.start, y, t, 0..<n) } }
        }
        expectClose(forward.fast.0, forward.reference.0, tolerance: tolerance(S.self), "gelu y, n \(n)")
        let t = forward.reference.1
        let backward = bothForms {
          makeArray(n) { dx in withPointers(x, t, dy) { geluBackward($0, $1, $2, dx, count: n) } } as [S]
        } reference: {
          makeArray(n) { dx in withPointers(x, t, dy) { geluBackwardPiece($0, $1, $2, dx, 0..<n) } }
        }
        expectClose(backward.fast, backward.reference, tolerance: tolerance(S.self), "gelu dx, n \(n)")
      }
      // The reference is the formula: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
      let x: [S] = [-3, -0.5, 0, 0.5, 3]
      let y: [S] = makeArrays(5, 5) { y, t in x.withUnsafeBufferPointer { geluForwardReference($0.start, y, t, 0..<5) }
      }.0
      for (v, got) in zip(x, y) {
        let d = Double(v)
        let want = 0.5 * d * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (d + 0.044715 * d * d * d)))
        #expect(abs(Double(got) - want) <= tolerance(S.self), "gelu(\(v))")
      }
    }
    check(Float.self)
    check(Double.self)
  }

  @Test func softmaxFastEqualsReference() {
    func check<S: KernelScalar>(_ type: S.Type) {
      var rng = SeededRNG(seed: 3)
      for n in Self.sizes {
        for (outer, inner) in [(3, 1), (2, 3)] {
          let x: [S] = random(outer * n * inner, &rng, low: -8, high: 8)
          for log in [false, true] {
            let y = bothForms {
              makeArray(x.count) { y in
                x.withUnsafeBufferPointer { softmaxForward($0.start, y, outer: outer, n: n, inner: inner, log: log) }
              } as [S]
            } reference: {
              makeArray(x.count) { y in
                x.withUnsafeBufferPointer {
                  softmaxLoops($0.start, y, outer: outer, n: n, inner: inner, log: log, exp: { S.exp($0) })
                }
              }
            }
            expectClose(y.fast, y.reference, tolerance: tolerance(S.self), "softmax n \(n) log \(log)")
          }
        }
      }
    }
    check(Float.self)
    check(Double.self)
  }

  @Test func layerNormFastEqualsReference() {
    func check<S: KernelScalar>(_ type: S.Type) {
      var rng = SeededRNG(seed: 4)
      for n in Self.sizes {
        for rows in [1, 5, 70] {  // 70 rows: three blocks of backward's partial sums
          let (x, dy): ([S], [S]) = (random(rows * n, &rng), random(rows * n, &rng))
          let (gamma, beta): ([S], [S]) = (random(n, &rng, low: 0.5, high: 1.5), random(n, &rng))
          let forward = bothForms {
            makeArrays(rows * n, rows, rows) { y, mean, rstd in
              withPointers(x, gamma, beta) {
                layerNormForward($0, gamma: $1, beta: $2, y, mean: mean, rstd: rstd, rows: rows, n: n, eps: 1e-5)
              }
            } as ([S], [S], [S])
          } reference: {
            makeArrays(rows * n, rows, rows) { y, mean, rstd in
              withPointers(x, gamma, beta) {
                layerNormForwardReference(
                  $0, gamma: $1, beta: $2, y, mean: mean, rstd: rstd, rows: rows, n: n, eps: 1e-5)
              }
            }
          }
          expectClose(
            forward.fast.0, forward.reference.0, tolerance: 10 * tolerance(S.self), "layerNorm y \(rows)x\(n)")
          let (mean, rstd) = (forward.reference.1, forward.reference.2)
          let backward = bothForms {
            makeArrays(rows * n, n, n) { dx, dgamma, dbeta in
              withPointers(x, dy, gamma, mean, rstd) {
                layerNormBackward(
                  $0, $1, gamma: $2, mean: $3, rstd: $4, dx, dgamma: dgamma, dbeta: dbeta, rows: rows, n: n)
              }
            } as ([S], [S], [S])
          } reference: {
            makeArrays(rows * n, n, n) { dx, dgamma, dbeta in
              withPointers(x, dy, gamma, mean, rstd) {
                layerNormBackwardReference(
                  $0, $1, gamma: $2, mean: $3, rstd: $4, dx, dgamma: dgamma, dbeta: dbeta, rows: rows, n: n)
              }
            }
          }
          let what = "layerNorm backward \(rows)x\(n)"
          expectClose(backward.fast.0, backward.reference.0, tolerance: 10 * tolerance(S.self) * Double(n), what)
          expectClose(backward.fast.1, backward.reference.1, tolerance: 10 * tolerance(S.self) * Double(rows), what)
          expectClose(backward.fast.2, backward.reference.2, tolerance: 10 * tolerance(S.self) * Double(rows), what)
        }
      }
    }
    check(Float.self)
    check(Double.self)
  }

  @Test func layerNormEqualsItsDefinitionWithEpsInsideTheSquareRoot() {
    // Rows whose variance (about 1e-6) is of the order of eps: eps outside the square root would be off by a
    // factor of about 2 here, eps forgotten by about 1.4; the kernels must match the definition to 1e-12.
    let (rows, n, eps) = (4, 9, 1e-6)
    var rng = SeededRNG(seed: 5)
    let x: [Double] = (0..<(rows * n)).map { _ in 1 + 1e-3 * rng.uniform(-1.7, 1.7) }
    let (gamma, beta) = ([Double](repeating: 1, count: n), [Double](repeating: 0, count: n))
    let forms = bothForms {
      makeArrays(rows * n, rows, rows) { y, mean, rstd in
        withPointers(x, gamma, beta) {
          layerNormForward($0, gamma: $1, beta: $2, y, mean: mean, rstd: rstd, rows: rows, n: n, eps: eps)
        }
      }.0 as [Double]
    } reference: {
      makeArrays(rows * n, rows, rows) { y, mean, rstd in
        withPointers(x, gamma, beta) {
          layerNormForwardReference($0, gamma: $1, beta: $2, y, mean: mean, rstd: rstd, rows: rows, n: n, eps: eps)
        }
      }.0
    }
    for (choice, y) in [("fast", forms.fast), ("reference", forms.reference)] {
      for r in 0..<rows {
        let row = x[(r * n)..<((r + 1) * n)]
        let mean = row.reduce(0, +) / Double(n)
        let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(n)
        for j in 0..<n {
          let want = (x[r * n + j] - mean) / (variance + eps).squareRoot()
          #expect(abs(y[r * n + j] - want) <= 1e-9 * (1 + abs(want)), "\(choice) row \(r), \(j)")
        }
      }
    }
  }

  typealias CrossEntropyKernel<S: KernelScalar> = (
    UnsafePointer<S>, UnsafePointer<Int>, Int, Int, Int, S, UnsafeMutablePointer<S>, UnsafeMutablePointer<S>
  ) -> (loss: S, counted: Int)

  @Test func crossEntropyFastEqualsReferenceAndTheDefinition() {
    func check<S: KernelScalar>(_ type: S.Type) {
      var rng = SeededRNG(seed: 6)
      for classes in Self.sizes where classes > 1 {
        let rows = 6
        let logits: [S] = random(rows * classes, &rng, low: -5, high: 5)
        let targets = (0..<rows).map { $0 == 2 || $0 == 4 ? -100 : rng.index(below: classes) }
        for smoothing: S in [0, 0.1] {
          func run(_ kernel: CrossEntropyKernel<S>) -> ([S], [S], S, Int) {
            var sums: (loss: S, counted: Int) = (0, 0)
            let (rowLoss, d): ([S], [S]) = makeArrays(rows, rows * classes) { rowLoss, d in
              withPointers(logits, targets) { logits, targets in
                sums = kernel(logits, targets, rows, classes, -100, smoothing, rowLoss, d)
              }
            }
            return (rowLoss, d, sums.loss, sums.counted)
          }
          let run = bothForms {
            run {
              crossEntropy(
                $0, targets: $1, rows: $2, classes: $3, ignoreIndex: $4, smoothing: $5, rowLoss: $6, dlogits: $7)
            }
          } reference: {
            run {
              crossEntropyReference(
                $0, targets: $1, rows: $2, classes: $3, ignoreIndex: $4, smoothing: $5, rowLoss: $6, dlogits: $7)
            }
          }
          expectClose(run.fast.0, run.reference.0, tolerance: tolerance(S.self) * 10, "row losses, \(classes) classes")
          expectClose(run.fast.1, run.reference.1, tolerance: tolerance(S.self), "dlogits, \(classes) classes")
          #expect(run.fast.3 == 4 && run.reference.3 == 4, "four rows count")
          // The reference against -sum_c q_c log softmax_c, from scratch in Double.
          for r in 0..<rows {
            let row = (0..<classes).map { Double(logits[r * classes + $0]) }
            let logTotal = Foundation.log(row.map { Foundation.exp($0) }.reduce(0, +))
            var want = 0.0
            if targets[r] >= 0 {
              for c in 0..<classes {
                let q = (c == targets[r] ? 1 - Double(smoothing) : 0) + Double(smoothing) / Double(classes)
                want -= q * (row[c] - logTotal)
              }
            }
            #expect(abs(Double(run.reference.0[r]) - want) <= 1e-4 * (1 + want), "row \(r) of \(classes)")
          }
        }
      }
    }
    check(Float.self)
    check(Double.self)
  }

  @Test func optimizerUpdatesFastEqualReference() {
    func check<S: KernelScalar>(_ type: S.Type) {
      var rng = SeededRNG(seed: 7)
      for n in Self.sizes + [9000] {  // 9000: split into pieces
        let (w0, g, m0, v0): ([S], [S], [S], [S]) = (
          random(n, &rng), random(n, &rng), random(n, &rng), random(n, &rng, low: 0, high: 1)
        )
        let k = AdamConstants<S>(
          lr: 0.01, beta1: 0.9, beta2: 0.99, eps: 1e-8, correction1: 0.19, correction2: 0.0297, shrink: 0.999,
          coupled: 0.01)
        func adam(reference: Bool) -> [S] {
          var (w, m, v) = (w0, m0, v0)
          withMutablePointers(&w, &m, &v) { w, m, v in
            g.withUnsafeBufferPointer {
              if reference {
                adamReference(w, $0.start, m, v, k, 0..<n)
              } else {
                adamUpdate(w, $0.start, m, v, count: n, k)
              }
            }
          }
          return w + m + v
        }
        let adam = bothForms {
          adam(reference: false)
        } reference: {
          adam(reference: true)
        }
        expectClose(adam.fast, adam.reference, tolerance: tolerance(S.self), "adam, n \(n)")
        for (momentum, nesterov, first) in [(0.0, false, false), (0.9, false, true), (0.9, true, false)] {
          func sgd(reference: Bool) -> [S] {
            var (w, b, unused) = (w0, m0, [S]())
            withMutablePointers(&w, &b, &unused) { w, b, _ in
              g.withUnsafeBufferPointer { g in
                let buffer = momentum == 0 ? nil : b
                if reference {
                  sgdPiece(
                    w, g.start, buffer, lr: 0.1, weightDecay: 0.01, momentum: S(momentum), dampening: 0,
                    nesterov: nesterov, firstStep: first, 0..<n)
                } else {
                  sgdUpdate(
                    w, g.start, momentumBuffer: buffer, count: n, lr: 0.1, weightDecay: 0.01, momentum: S(momentum),
                    dampening: 0, nesterov: nesterov, firstStep: first)
                }
              }
            }
            return w + b
          }
          let sgd = bothForms {
            sgd(reference: false)
          } reference: {
            sgd(reference: true)
          }
          #expect(sgd.fast == sgd.reference, "sgd, n \(n), momentum \(momentum)")
        }
        let squares = bothForms {
          w0.withUnsafeBufferPointer { sumOfSquares($0.start, count: n) }
        } reference: {
          w0.withUnsafeBufferPointer { sumOfSquaresReference($0.start, count: n) }
        }
        #expect(abs(squares.fast - squares.reference) <= 1e-12 * squares.reference, "sum of squares, n \(n)")
      }
    }
    check(Float.self)
    check(Double.self)
  }

  @Test func aSplitProductEqualsTheTripleLoop() {
    // Large enough to be cut into pieces: every shape of op(A) and op(B), rows split (m >= n) and columns split.
    var rng = SeededRNG(seed: 4)
    // One row of C (a matrix-vector product in BLAS, cut by columns) and one column.
    for (m, n, k) in [(300, 40, 50), (40, 300, 50), (3, 5, 2), (1, 2000, 300), (1, 3, 2), (300, 1, 50)] {
      for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let a = (0..<(m * k)).map { _ in rng.uniform(-1, 1) }
        let b = (0..<(k * n)).map { _ in rng.uniform(-1, 1) }
        func product(reference: Bool) -> [Double] {
          var c = [Double](repeating: 0.5, count: m * n)
          withPointers(a, b) { a, b in
            c.withUnsafeMutableBufferPointer { c in
              let (lda, ldb) = (ta ? m : k, tb ? k : n)
              if reference {
                gemmReference(
                  transposeA: ta, transposeB: tb, m: m, n: n, k: k, alpha: 2, a: a, lda: lda, b: b, ldb: ldb, beta: 1,
                  c: c.start, ldc: n)
              } else {
                gemm(
                  transposeA: ta, transposeB: tb, m: m, n: n, k: k, alpha: 2, a: a, lda: lda, b: b, ldb: ldb, beta: 1,
                  c: c.start, ldc: n)
              }
            }
          }
          return c
        }
        let c = bothForms {
          product(reference: false)
        } reference: {
          product(reference: true)
        }
        for i in stride(from: 0, to: m, by: 7) {
          for j in stride(from: 0, to: n, by: 5) {
            var dot = 0.0
            for p in 0..<k { dot += (ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]) }
            let want = 0.5 + 2 * dot
            #expect(abs(c.fast[i * n + j] - want) <= 1e-12, "fast (\(m), \(n), \(k), \(ta), \(tb)) at [\(i), \(j)]")
            #expect(abs(c.reference[i * n + j] - want) <= 1e-12, "reference (\(m), \(n), \(k), \(ta), \(tb))")
          }
        }
      }
    }
    // beta = 0 never reads C: NaN there must not leak into the result (a 2 x 2 product, and a row of 2).
    for (m, want) in [(2, [Float](arrayLiteral: 1, 2, 3, 4)), (1, [1, 2])] {
      for reference in [false, true] {
        var c = [Float](repeating: .nan, count: 2 * m)
        let (a, b): ([Float], [Float]) = ([1, 2, 3, 4], [1, 0, 0, 1])
        withPointers(a, b) { a, b in
          c.withUnsafeMutableBufferPointer { c in
            if reference {
              gemmReference(
                transposeA: false, transposeB: false, m: m, n: 2, k: 2, alpha: 1, a: a, lda: 2, b: b, ldb: 2, beta: 0,
                c: c.start, ldc: 2)
            } else {
              gemm(
                transposeA: false, transposeB: false, m: m, n: 2, k: 2, alpha: 1, a: a, lda: 2, b: b, ldb: 2, beta: 0,
                c: c.start, ldc: 2)
            }
          }
        }
        #expect(c == want, "m \(m), reference \(reference)")
      }
    }
  }

  /// Runs `headProduct` and `headProductReference` on random operands (A read transposed when asked);
  /// `zeroed(i, p)` marks the entries of A that are zero (weights under a causal mask).
  func headProducts<S: KernelScalar>(
    _: S.Type, m: Int, n: Int, k: Int, part: CausalPart, transposedA: Bool, accumulate: Bool,
    zeroed: (Int, Int) -> Bool
  ) -> (fast: [S], reference: [S]) {
    var rng = SeededRNG(seed: 6)
    var a: [S] = random(m * k, &rng, low: -1, high: 1)  // A[i, p] at i * k + p, or p * m + i
    for i in 0..<m {
      for p in 0..<k where zeroed(i, p) { a[transposedA ? p * m + i : i * k + p] = 0 }
    }
    let ldb = n + 3  // B's rows with a gap, as the heads' rows in a packed projection
    let b: [S] = random(k * ldb, &rng, low: -1, high: 1)
    let before: [S] = random(m * n, &rng, low: -1, high: 1)
    func run(_ product: (StridedMatrix<S>, UnsafePointer<S>, UnsafeMutablePointer<S>) -> Void) -> [S] {
      var c = before
      withPointers(a, b) { a, b in
        c.withUnsafeMutableBufferPointer { c in
          let matrix =
            transposedA
            ? StridedMatrix(base: a, rowStride: 1, columnStride: m) : StridedMatrix(base: a, rowStride: k)
          product(matrix, b, c.start)
        }
      }
      return c
    }
    let fast = run { a, b, c in
      headProduct(m: m, n: n, k: k, part: part, alpha: 0.75, a, b, ldb: ldb, c, ldc: n, accumulate: accumulate)
    }
    let reference = run { a, b, c in
      headProductReference(m: m, n: n, k: k, alpha: 0.75, a, b, ldb: ldb, c, ldc: n, accumulate: accumulate)
    }
    return (fast, reference)
  }

  @Test func headProductsWideAndNarrowBlocksGiveTheSameBits() {
    // The 8 x 32 blocks (taken on AVX-512 CPUs) against the 4 x 16 ones, both forced whatever this CPU has: the
    // entries each part needs must agree to the bit, zero weights where a causal mask puts them.
    for (m, n, k) in [(21, 53, 9), (64, 64, 32), (256, 64, 64), (37, 37, 20)] {
      let parts: [(CausalPart, (Int, Int) -> Bool)] = [
        (.all, { _, _ in false }), (.columnsUpToRow(shift: 2), { _, _ in false }),
        (.innerUpToRow(shift: 2), { i, p in p > i + 2 }), (.innerFromRow(shift: 2), { i, p in i > p + 2 }),
      ]
      for (part, zeroed) in parts {
        for (transposedA, accumulate) in [(false, false), (true, true)] {
          func fast(wide: Bool) -> [Float] {
            HeadBlocks.with(wide: wide) {
              headProducts(
                Float.self, m: m, n: n, k: k, part: part, transposedA: transposedA, accumulate: accumulate,
                zeroed: zeroed
              ).fast
            }
          }
          let (wide, narrow) = (fast(wide: true), fast(wide: false))
          for i in 0..<m {
            let needed: Int
            if case .columnsUpToRow(let shift) = part { needed = min(n, i + shift + 1) } else { needed = n }
            let (got, want) = (wide[(i * n)..<(i * n + needed)], narrow[(i * n)..<(i * n + needed)])
            #expect(got.elementsEqual(want), "\(m) x \(n) x \(k) \(part) transposed \(transposedA) row \(i)")
          }
        }
      }
    }
  }

  @Test func headProductComputesThePartACausalMaskLeaves() {
    // Sizes with rows and columns left over after the 8 x 32 and 4 x 16 blocks (21 = 8 + 8 + 4 + 1 rows, 53 = 32 +
    // 16 + 5 columns), the 64 x 64 x 32 of nanoGPT's heads and the 256 x 64 x 64 of its Shakespeare model's.
    for (m, n, k) in [(13, 37, 19), (21, 53, 9), (64, 64, 32), (256, 64, 64), (3, 5, 2)] {
      for shift in [0, 4] {
        for accumulate in [false, true] {
          // Scores: only columns j <= i + shift are needed.
          let scores = headProducts(
            Float.self, m: m, n: n, k: k, part: .columnsUpToRow(shift: shift), transposedA: false,
            accumulate: accumulate
          ) { _, _ in false }
          for i in 0..<m {
            for j in 0..<min(n, i + shift + 1) {
              let (got, want) = (scores.fast[i * n + j], scores.reference[i * n + j])
              #expect(abs(got - want) <= 1e-5 * Float(k), "scores m \(m) n \(n) k \(k) at \(i), \(j)")
            }
          }
          // Weights times rows: row i's weights past i + shift are 0, and the whole of C is right.
          func check<S: KernelScalar>(_ type: S.Type) {
            let upTo = headProducts(
              type, m: m, n: n, k: k, part: .innerUpToRow(shift: shift), transposedA: false, accumulate: accumulate
            ) { i, p in p > i + shift }
            let from = headProducts(
              type, m: m, n: n, k: k, part: .innerFromRow(shift: shift), transposedA: true, accumulate: accumulate
            ) { j, p in p < j - shift }
            let all = headProducts(
              type, m: m, n: n, k: k, part: .all, transposedA: true, accumulate: accumulate
            ) { _, _ in false }
            for result in [upTo, from, all] {
              expectClose(
                result.fast, result.reference, tolerance: tolerance(S.self) * Double(k), "m \(m) n \(n) k \(k)")
            }
          }
          check(Float.self)
          check(Double.self)
        }
      }
    }
  }

  @Test func attentionHeadFastEqualsReference() {
    func check<S: KernelScalar>(_ type: S.Type) {
      var rng = SeededRNG(seed: 8)
      // 37 positions and width 20: blocks of 4 rows and 16 columns with rows and columns left over; 5 queries
      // against 37 keys is the KV-cache shape; 64 x 32 is nanoGPT's head. With a gap, each row of a head lies
      // within a wider row, as in the packed projection (the kernels then gather the rows they run down).
      for (tq, tk, d, gap) in [
        (37, 37, 20, 0), (5, 37, 20, 0), (64, 64, 32, 0), (3, 3, 2, 0), (37, 37, 20, 9), (12, 37, 20, 9),
        (5, 37, 20, 9),
      ] {
        let rowWidth = d + gap
        let layout = (
          q: HeadLayout(positions: tq, width: d, rowWidth: rowWidth, offset: 0),
          k: HeadLayout(positions: tk, width: d, rowWidth: rowWidth, offset: 0)
        )
        let shape = AttentionShape(
          b: 1, h: 1, tq: tq, tk: tk, d: d, q: layout.q, k: layout.k, v: layout.k, out: layout.q)
        let (q, k, v, dOut): ([S], [S], [S], [S]) = (
          random(tq * rowWidth, &rng), random(tk * rowWidth, &rng), random(tk * rowWidth, &rng),
          random(tq * rowWidth, &rng)
        )
        let keep: [S] = (0..<(tq * tk)).map { _ in rng.unit() < 0.2 ? 0 : 1.25 }
        let padding: [S] = (0..<tk).map { $0 % 7 == 3 ? 1 : 0 }
        for (causal, usePadding, useKeep) in [
          (true, false, false), (false, false, true), (false, true, false), (true, false, true),
        ] {
          func run(reference: Bool) -> [S] {
            let (weights, out): ([S], [S]) = makeArrays(tq * tk, tq * rowWidth) { weights, out in
              withPointers(q, k, v, keep, padding) { q, k, v, keepP, padP in
                let (keepP, padP) = (useKeep ? keepP : nil, usePadding ? padP : nil)
                if reference {
                  attentionHeadForwardReference(
                    shape, q: q, k: k, v: v, out: out, weights: weights, keep: keepP, padding: padP, causal: causal)
                } else {
                  attentionHeadForward(
                    shape, q: q, k: k, v: v, out: out, weights: weights, keep: keepP, padding: padP, causal: causal)
                }
              }
            }
            var (dq, dk, dv) = (
              [S](repeating: 0, count: tq * rowWidth), [S](repeating: 0, count: tk * rowWidth),
              [S](repeating: 0, count: tk * rowWidth)
            )
            withMutablePointers(&dq, &dk, &dv) { dq, dk, dv in
              withPointers(q, k, v, dOut, weights) { q, k, v, dOut, weights in
                keep.withUnsafeBufferPointer { keepP in
                  let keepP = useKeep ? keepP.start : nil
                  if reference {
                    attentionHeadBackwardReference(
                      shape, q: q, k: k, v: v, dOut: dOut, weights: weights, keep: keepP, causal: causal, dq: dq,
                      dk: dk,
                      dv: dv)
                  } else {
                    attentionHeadBackward(
                      shape, q: q, k: k, v: v, dOut: dOut, weights: weights, keep: keepP, causal: causal, dq: dq,
                      dk: dk,
                      dv: dv)
                  }
                }
              }
            }
            // out's gaps were never written (makeArrays clears nothing): only its heads' columns count.
            let heads = (0..<tq).flatMap { r in out[(r * rowWidth)..<(r * rowWidth + d)] }
            return weights + heads + dq + dk + dv
          }
          let run = bothForms {
            run(reference: false)
          } reference: {
            run(reference: true)
          }
          expectClose(
            run.fast, run.reference, tolerance: 4 * tolerance(S.self) * Double(tk),
            "attention head \(tq)x\(tk)x\(d) gap \(gap) causal \(causal) padding \(usePadding) dropout \(useKeep)")
        }
      }
    }
    check(Float.self)
    check(Double.self)
  }
}

/// Which OpenBLAS kernels a CPU deserves when OpenBLAS falls back to its generic ones.
@Suite struct BLASCoreTests {
  @Test func theBestCoreWhoseInstructionsTheCPUHas() {
    let avx512: Set<String> = ["avx512f", "avx512bw", "avx512dq", "avx512vl", "avx2", "fma", "sse4_2"]
    #expect(betterBLASCore(cpuFlags: avx512) == "SkylakeX")
    #expect(betterBLASCore(cpuFlags: avx512.subtracting(["avx512bw"])) == "Haswell")
    #expect(betterBLASCore(cpuFlags: ["avx2", "fma", "sse4_2"]) == "Haswell")
    #expect(betterBLASCore(cpuFlags: ["avx", "sse4_2"]) == nil)
    #expect(betterBLASCore(cpuFlags: []) == nil)
  }

}
