import CBLAS
import Support
import Synchronization

/// Matrix products: BLAS, cut into pieces across the cores, and the triple loop that defines them.

/// Nanoseconds spent inside gemm since the program started: `bench` reads it to report the share of a training
/// step that is matrix products. Two clock reads per call, a few tens of nanoseconds against microseconds of gemm.
public let gemmNanoseconds = Atomic<UInt64>(0)

/// BLAS runs on one thread: the framework splits work across the cores itself (`Parallel`), one piece of C per
/// core, so BLAS's own threads would only compete with it. Set once, before the first product, for the whole
/// process: the thread count changes how BLAS blocks a product, and so the rounding of its sums.
@usableFromInline let singleThreadedBLAS: Void = openblas_set_num_threads(1)

/// Runs `body` with BLAS's own threads, one per core, then single-threaded again: for a bench's reference figure
/// (sgemm as BLAS runs it by itself), never for the framework's products.
public func withBLASThreads<R>(_ body: () -> R) -> R {
  _ = singleThreadedBLAS  // its one-time setting happens now, not later in the middle of a measurement
  openblas_set_num_threads(Int32(Parallel.cores))
  defer { openblas_set_num_threads(1) }
  return body()
}

/// Multiply-adds in a product below which it runs on one core (BLAS's own threshold is about 2^18).
public let gemmGrain = 1 << 18

/// C[m, n] = alpha * op(A) @ op(B) + beta * C on row-major buffers, op(X) = X or X^T, inner size k; `lda`, `ldb`,
/// `ldc` are the row strides of A, B and C as they are stored. beta = 0 never reads C (it may be uninitialised).
///
/// Fast: BLAS, the product cut into pieces along its longer side, each piece one single-threaded BLAS call on its
/// own core. A piece of rows of C needs the same rows of op(A) and all of op(B); a piece of columns the reverse.
/// Reference: `gemmReference`, the triple loop.
@inlinable
public func gemm<S: KernelScalar>(
  transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: S, a: UnsafePointer<S>, lda: Int,
  b: UnsafePointer<S>, ldb: Int, beta: S, c: UnsafeMutablePointer<S>, ldc: Int
) {
  // Inside a parallel loop (attention's heads) each core runs its own products at the same time: a core's share
  // of the wall-clock time is its time divided by the cores.
  let cores: UInt64 = Parallel.isInsideRegion ? UInt64(Parallel.cores) : 1
  let start = Stopwatch.now()
  defer { gemmNanoseconds.add((Stopwatch.now() &- start) / cores, ordering: .relaxed) }
  if KernelChoice.useReference {
    return gemmReference(
      transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
      beta: beta, c: c, ldc: ldc)
  }
  _ = singleThreadedBLAS
  if m == 1 && n > 1 {
    // One row of C (a decoding step's every product): a matrix-vector product. gemm would first copy all of B into
    // its packed layout, which for one row costs more than the product itself; gemv streams B once. C's row is
    // cut into pieces, each the product of op(A)'s row with some columns of op(B), which are rows of B when B is
    // stored transposed (a Linear layer's weight) and a band of B's columns otherwise.
    Parallel.forEach(n, grain: Swift.max(1, gemmGrain / Swift.max(1, k))) { columns in
      let y = c + columns.lowerBound
      if beta == 0 { y.update(repeating: 0, count: columns.count) }  // so that gemv never reads what C held
      S.blasGemv(
        transpose: !transposeB, rows: transposeB ? columns.count : k, columns: transposeB ? k : columns.count,
        alpha: alpha, matrix: b + columns.lowerBound * (transposeB ? ldb : 1), ld: ldb, x: a,
        incx: transposeA ? lda : 1, beta: beta, y: y)
    }
    return
  }
  if m >= n {
    Parallel.forEach(m, grain: Swift.max(1, gemmGrain / Swift.max(1, n * k))) { rows in
      S.blasGemm(
        transposeA: transposeA, transposeB: transposeB, m: rows.count, n: n, k: k, alpha: alpha,
        a: a + rows.lowerBound * (transposeA ? 1 : lda), lda: lda, b: b, ldb: ldb, beta: beta,
        c: c + rows.lowerBound * ldc, ldc: ldc)
    }
  } else {
    Parallel.forEach(n, grain: Swift.max(1, gemmGrain / Swift.max(1, m * k))) { columns in
      S.blasGemm(
        transposeA: transposeA, transposeB: transposeB, m: m, n: columns.count, k: k, alpha: alpha, a: a, lda: lda,
        b: b + columns.lowerBound * (transposeB ? ldb : 1), ldb: ldb, beta: beta, c: c + columns.lowerBound,
        ldc: ldc)
    }
  }
}

/// The reference of `gemm`: C[i, j] = alpha * sum_p op(A)[i, p] op(B)[p, j] + beta * C[i, j], the textbook triple
/// loop. op(A)[i, p] is A[i * lda + p], or A[p * lda + i] transposed: element (i, p) is i * rowA + p * columnA
/// apart from the start, with the two strides swapped by a transpose (and the same for B).
@inlinable
public func gemmReference<S: KernelScalar>(
  transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, alpha: S, a: UnsafePointer<S>, lda: Int,
  b: UnsafePointer<S>, ldb: Int, beta: S, c: UnsafeMutablePointer<S>, ldc: Int
) {
  let (rowA, columnA) = transposeA ? (1, lda) : (lda, 1)
  let (rowB, columnB) = transposeB ? (1, ldb) : (ldb, 1)
  for i in 0..<m {
    for j in 0..<n {
      var total: S = 0
      for p in 0..<k { total += a[i * rowA + p * columnA] * b[p * rowB + j * columnB] }
      let cell = c + i * ldc + j
      cell.pointee = beta == 0 ? alpha * total : alpha * total + beta * cell.pointee
    }
  }
}

/// C[m, n] = A[m, k] @ B[k, n] on whole arrays: the definition, for tests and the chapter's timing.
@inlinable
public func naiveMatmul<S: KernelScalar>(_ a: [S], _ b: [S], m: Int, k: Int, n: Int) -> [S] {
  var c = [S](repeating: 0, count: m * n)
  a.withUnsafeBufferPointer { a in
    b.withUnsafeBufferPointer { b in
      c.withUnsafeMutableBufferPointer { c in
        gemmReference(
          transposeA: false, transposeB: false, m: m, n: n, k: k, alpha: 1, a: a.baseAddress!, lda: k,
          b: b.baseAddress!, ldb: n, beta: 0, c: c.baseAddress!, ldc: n)
      }
    }
  }
  return c
}
