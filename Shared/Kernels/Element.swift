import CBLAS
import RealModule

/// The fast loops of every stage, once, as plain functions over pointers and sizes (llm.c's style), each with its
/// plain-loop reference beside it in the same file. A kernel never knows a stage's Tensor: a stage's ops open the
/// tensors' storage and hand the kernel pointers. `KernelChoice` picks the fast forms or the references for a whole
/// run (`--kernels reference`).

/// The element types the kernels run on: Float, for training, and Double, for gradient checks.
///
/// Elementwise maths comes from swift-numerics' `Real` (`S.exp(x)`, `S.tanh(x)`), so every kernel is written once
/// for both. Matrix products go to BLAS, whose routines are per type (`blasGemm`).
public protocol KernelScalar: Real, BinaryFloatingPoint, SIMDScalar, Codable, Sendable {
  /// BLAS's gemm for this type on row-major buffers: C = alpha * op(A) @ op(B) + beta * C, op(X) = X or X^T,
  /// C m x n, inner size k, row strides lda, ldb, ldc. One call on the calling thread (see `gemm` for the split).
  static func blasGemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Self, a: UnsafePointer<Self>, lda: Int,
    b: UnsafePointer<Self>, ldb: Int, beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)

  /// BLAS's gemv for this type on a row-major matrix M (rows x columns, row stride ld): y = alpha * op(M) x + beta * y,
  /// op(M) = M or M^T, x read every `incx` elements, y contiguous. One call on the calling thread.
  static func blasGemv(
    transpose: Bool, rows: Int, columns: Int, alpha: Self, matrix: UnsafePointer<Self>, ld: Int,
    x: UnsafePointer<Self>, incx: Int, beta: Self, y: UnsafeMutablePointer<Self>)

  /// e^x inside the fast kernels (softmax, attention, GELU, cross-entropy). Double: libm's exp, exact to the last
  /// bit, which the gradient checks need. Float: `vectorExp`, which the compiler can run 8 lanes at a time.
  static func fastExp(_ x: Self) -> Self
}

extension Float: KernelScalar {
  @inlinable
  public static func blasGemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Float, a: UnsafePointer<Float>, lda: Int,
    b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
  ) {
    cblas_sgemm(
      CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans, Int32(m),
      Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
  }

  @inlinable
  public static func blasGemv(
    transpose: Bool, rows: Int, columns: Int, alpha: Float, matrix: UnsafePointer<Float>, ld: Int,
    x: UnsafePointer<Float>, incx: Int, beta: Float, y: UnsafeMutablePointer<Float>
  ) {
    cblas_sgemv(
      CblasRowMajor, transpose ? CblasTrans : CblasNoTrans, Int32(rows), Int32(columns), alpha, matrix, Int32(ld), x,
      Int32(incx), beta, y, 1)
  }

  @inlinable @inline(__always)
  public static func fastExp(_ x: Float) -> Float { vectorExp(x) }
}

extension Double: KernelScalar {
  @inlinable
  public static func blasGemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: Double, a: UnsafePointer<Double>, lda: Int,
    b: UnsafePointer<Double>, ldb: Int, beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int
  ) {
    cblas_dgemm(
      CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans, Int32(m),
      Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
  }

  @inlinable
  public static func blasGemv(
    transpose: Bool, rows: Int, columns: Int, alpha: Double, matrix: UnsafePointer<Double>, ld: Int,
    x: UnsafePointer<Double>, incx: Int, beta: Double, y: UnsafeMutablePointer<Double>
  ) {
    cblas_dgemv(
      CblasRowMajor, transpose ? CblasTrans : CblasNoTrans, Int32(rows), Int32(columns), alpha, matrix, Int32(ld), x,
      Int32(incx), beta, y, 1)
  }

  @inlinable @inline(__always)
  public static func fastExp(_ x: Double) -> Double { exp(x) }
}
