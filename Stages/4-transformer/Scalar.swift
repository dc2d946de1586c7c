import CBLAS
import RealModule
import Support
import Synchronization

/// Nanoseconds spent inside gemm since the program started: `bench` reads it to report the share of a
/// training step that is matrix products. Two clock reads per call, a few tens of nanoseconds against
/// microseconds of gemm.
let gemmNanoseconds = Atomic<UInt64>(0)

/// The element types a tensor can hold: Float, for training, and Double, for gradient checks.
///
/// Elementwise maths comes from swift-numerics' `Real` (`Scalar.exp(x)`, `Scalar.tanh(x)`), so every kernel is
/// written once for both. Matrix products go to BLAS, whose routines are per type: `gemm` picks the right one.
public protocol TensorScalar: Real, BinaryFloatingPoint, SIMDScalar, Codable, Sendable, CustomStringConvertible {
  /// C = alpha * op(A) @ op(B) + beta * C on row-major buffers, op(X) = X or X^T; C is m x n, the inner size k.
  /// `lda`, `ldb`, `ldc` are the row strides of A, B and C as they are stored.
  static func gemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Self, a: UnsafePointer<Self>, lda: Int,
    b: UnsafePointer<Self>, ldb: Int, beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)

  /// e^x inside the hot loops (softmax, attention, GELU). Double: libm's exp, exact to the last bit, which the
  /// gradient checks need. Float: `vectorExp`, which the compiler can run 8 lanes at a time.
  static func kernelExp(_ x: Self) -> Self
}

extension Float: TensorScalar {
  public static func gemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    splitGemm(
      transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc
    ) {
      tA, tB, m, n, a, b, c in
      cblas_sgemm(
        CblasRowMajor, tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans, Int32(m),
        Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
  }
}

extension Float {
  /// e^x for Float, within 2 ulps of the true value, as plain arithmetic with no branch and no call, so that a
  /// loop over an array of it compiles to SIMD instructions (libm's expf is a call per element).
  ///
  /// e^x = 2^k e^r with k = round(x / ln 2) and r = x - k ln 2, so |r| <= ln(2)/2:
  /// - adding 1.5 * 2^23 to x / ln 2 rounds it to an integer k and leaves k in the low bits of the sum;
  /// - k ln 2 is subtracted in two parts (a short `hi` whose product with k is exact, then the rest), so r keeps
  ///   its precision;
  /// - e^r is its Taylor series to r^7 (the first term left out is below 6e-9 relative);
  /// - 2^k is built directly as the bits of a float: exponent field k + 127, mantissa 0.
  /// Inputs are clamped to [-88, 88.8]: e^x rounds to 0 below about -87.3 (no subnormals) and becomes
  /// infinity above about 88.4; NaN stays NaN.
  @inline(__always)
  static func vectorExp(_ x: Float) -> Float {
    let x = Swift.min(Swift.max(x, -88), 88.8)
    let shifted = x * 1.442_695_04 + 12_582_912  // 1.5 * 2^23 + x log2(e)
    let k = shifted - 12_582_912
    let r = (x - k * 0.693_145_751_953_125) - k * 1.428_606_765_330_187e-6  // ln 2 = hi + lo
    var p: Float = 1.0 / 5040
    p = p * r + 1.0 / 720
    p = p * r + 1.0 / 120
    p = p * r + 1.0 / 24
    p = p * r + 1.0 / 6
    p = p * r + 0.5
    p = p * r + 1
    p = p * r + 1
    let scale = Float(bitPattern: (shifted.bitPattern &- 0x4B40_0000 &+ 127) << 23)
    return p * scale
  }

  @inline(__always)
  public static func kernelExp(_ x: Float) -> Float { vectorExp(x) }
}

extension Double: TensorScalar {
  @inline(__always)
  public static func kernelExp(_ x: Double) -> Double { exp(x) }

  public static func gemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Double, a: UnsafePointer<Double>, lda: Int,
    b: UnsafePointer<Double>, ldb: Int, beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int
  ) {
    splitGemm(
      transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc
    ) {
      tA, tB, m, n, a, b, c in
      cblas_dgemm(
        CblasRowMajor, tA ? CblasTrans : CblasNoTrans, tB ? CblasTrans : CblasNoTrans, Int32(m),
        Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
  }
}

/// BLAS runs on one thread: the framework splits work across the cores itself (`Parallel`), one piece of C per
/// core, so BLAS's own threads would only compete with it. Set once, before the first product, for the whole
/// process: the thread count changes how BLAS blocks a product, and so the rounding of its sums.
let singleThreadedBLAS: Void = openblas_set_num_threads(1)

/// Runs `body` with BLAS's own threads, one per core, then single-threaded again: for a bench's reference figure
/// (sgemm as BLAS runs it by itself), never for the framework's products.
func withBLASThreads<R>(_ body: () -> R) -> R {
  _ = singleThreadedBLAS  // its one-time setting happens now, not later in the middle of a measurement
  openblas_set_num_threads(Int32(Parallel.cores))
  defer { openblas_set_num_threads(1) }
  return body()
}

/// Multiply-adds in a product below which it runs on one core (BLAS's own threshold is about 2^18).
let gemmGrain = 1 << 18

/// A product C[m, n] cut into pieces along its longer side, each piece one BLAS call on its own core. A piece
/// of rows of C needs the same rows of op(A) and all of op(B); a piece of columns the reverse.
@inline(__always)
func splitGemm<Scalar>(
  transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, a: UnsafePointer<Scalar>, lda: Int,
  b: UnsafePointer<Scalar>, ldb: Int, c: UnsafeMutablePointer<Scalar>, ldc: Int,
  _ call: (Bool, Bool, Int, Int, UnsafePointer<Scalar>, UnsafePointer<Scalar>, UnsafeMutablePointer<Scalar>) -> Void
) {
  _ = singleThreadedBLAS
  // Inside a parallel loop (attention's heads) each core runs its own products at the same time: a core's share
  // of the wall-clock time is its time divided by the cores.
  let cores: UInt64 = Parallel.isInsideRegion ? UInt64(Parallel.cores) : 1
  let start = Stopwatch.now()
  if m >= n {
    Parallel.forEach(m, grain: Swift.max(1, gemmGrain / Swift.max(1, n * k))) { rows in
      call(
        transposeA, transposeB, rows.count, n, a + rows.lowerBound * (transposeA ? 1 : lda), b,
        c + rows.lowerBound * ldc)
    }
  } else {
    Parallel.forEach(n, grain: Swift.max(1, gemmGrain / Swift.max(1, m * k))) { columns in
      call(
        transposeA, transposeB, m, columns.count, a, b + columns.lowerBound * (transposeB ? ldb : 1),
        c + columns.lowerBound)
    }
  }
  gemmNanoseconds.add((Stopwatch.now() &- start) / cores, ordering: .relaxed)
}
