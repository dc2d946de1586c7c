import CBLAS
import RealModule
import Support
import Synchronization

/// Nanoseconds spent inside gemm since the program started: `stage3 bench` reads it to report the share of a
/// training step that is matrix products. Two clock reads per call, a few tens of nanoseconds against
/// microseconds of gemm.
let gemmNanoseconds = Atomic<UInt64>(0)

/// Runs a gemm call and adds its time to `gemmNanoseconds`.
@inline(__always)
func timedGemm(_ call: () -> Void) {
  let start = Stopwatch.now()
  call()
  gemmNanoseconds.add(Stopwatch.now() &- start, ordering: .relaxed)
}

/// The element types a tensor can hold: Float, for training, and Double, for gradient checks.
///
/// Elementwise maths comes from swift-numerics' `Real` (`Scalar.exp(x)`, `Scalar.tanh(x)`), so every kernel is
/// written once for both. Matrix products go to BLAS, whose routines are per type: `gemm` picks the right one.
public protocol TensorScalar: Real, BinaryFloatingPoint, Sendable, CustomStringConvertible {
  /// C = alpha * op(A) @ op(B) + beta * C on row-major buffers, op(X) = X or X^T; C is m x n, the inner size k.
  /// `lda`, `ldb`, `ldc` are the row strides of A, B and C as they are stored.
  static func gemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Self, a: UnsafePointer<Self>, lda: Int,
    b: UnsafePointer<Self>, ldb: Int, beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)
}

extension Float: TensorScalar {
  public static func gemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    timedGemm {
      cblas_sgemm(
        CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans, Int32(m),
        Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
  }
}

extension Double: TensorScalar {
  public static func gemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Double, a: UnsafePointer<Double>, lda: Int,
    b: UnsafePointer<Double>, ldb: Int, beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int
  ) {
    timedGemm {
      cblas_dgemm(
        CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans, Int32(m),
        Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
  }
}
