import RealModule
import Synchronization

/// The small products inside one attention head (64 x 64 x 32 in nanoGPT's CPU configuration): too small for
/// BLAS to pay, and half of each is masked away under a causal mask. `headProduct` is a register-blocked SIMD
/// kernel that computes only the part the mask leaves; `headProductReference` is the triple loop.

/// The part of a product inside one head that a causal mask leaves. Query i of Tq sees keys j <= i + shift,
/// shift = Tk - Tq: every other score is masked, and every weight and weight gradient there is exactly 0.
public enum CausalPart: Sendable {
  /// No mask: the whole product.
  case all
  /// Scores (Q K^T, dO V^T): row i needs only columns j <= i + shift.
  case columnsUpToRow(shift: Int)
  /// Weights times rows (P V, dS K): row i sums only over j <= i + shift (the other weights are 0).
  case innerUpToRow(shift: Int)
  /// Transposed weights times rows (P^T dO, dS^T Q): row j sums only over the queries i >= j - shift.
  case innerFromRow(shift: Int)
}

/// One operand of a head product, read element (row r, column c) at `base[r * rowStride + c * columnStride]`:
/// a weight matrix read transposed is the same numbers with the strides swapped, and needs no copy.
public struct StridedMatrix<Scalar> {
  public var base: UnsafePointer<Scalar>
  public var rowStride: Int
  public var columnStride: Int

  @inlinable
  public init(base: UnsafePointer<Scalar>, rowStride: Int, columnStride: Int = 1) {
    (self.base, self.rowStride, self.columnStride) = (base, rowStride, columnStride)
  }

  @inlinable @inline(__always)
  public subscript(_ r: Int, _ c: Int) -> Scalar { base[r * rowStride + c * columnStride] }
}

/// C[m, n] = alpha * A[m, k] @ B[k, n], or C += that with `accumulate`, for the small products of one attention
/// head (64 x 64 x 32 in nanoGPT's CPU configuration), computing only the `part` that a causal mask leaves:
/// half the multiply-adds. B's rows must be contiguous (`ldb` apart); C's rows are `ldc` apart.
///
/// The inner loop is a register block, as in a BLAS kernel: 4 rows x 16 columns of C stay in 8 SIMD registers
/// while k runs, each step loading 16 numbers of B, broadcasting 4 of A and doing 8 fused multiply-adds. On a CPU
/// with AVX-512 (32 registers of 16 floats), Float products take blocks of 8 rows x 32 columns instead
/// (`HeadBlocks`): 16 registers of sums, 16 fused multiply-adds of 16 lanes for each 2 loads of B and 8 broadcasts
/// (for a 256 x 256 x 64 product on one core of this project's Intel machine, 169 GFLOP/s against 79). Blocks of
/// rows share the widest inner range and column count of their rows; the extra terms are zeros (weights) or masked
/// scores that the softmax overwrites. Every element is the same chain of multiply-adds, in the same order, whatever
/// the block, plus those zero terms, which leave a finite sum as it was: the two shapes give the same bits (a test).
/// Leftover rows and columns (sizes not multiples of the block's) take narrower blocks, then plain loops.
@inlinable @inline(never)
public func headProduct<Scalar: KernelScalar>(
  m: Int, n: Int, k: Int, part: CausalPart, alpha: Scalar, _ a: StridedMatrix<Scalar>, _ b: UnsafePointer<Scalar>,
  ldb: Int, _ c: UnsafeMutablePointer<Scalar>, ldc: Int, accumulate: Bool
) {
  let wide = MemoryLayout<Scalar>.size == 4 && HeadBlocks.wide
  var i = 0
  while i < m {
    let rows = wide && m - i >= 8 ? 8 : m - i >= 4 ? 4 : 1
    let last = i + rows - 1
    var (columns, lo, hi) = (n, 0, k)
    switch part {
    case .all: break
    case .columnsUpToRow(let shift): columns = Swift.min(n, (last + shift + 1 + 15) / 16 * 16)
    case .innerUpToRow(let shift): hi = Swift.min(k, last + shift + 1)
    case .innerFromRow(let shift): lo = Swift.min(k, Swift.max(0, i - shift))
    }
    let block = (
      a: StridedMatrix(base: a.base + i * a.rowStride, rowStride: a.rowStride, columnStride: a.columnStride),
      c: c + i * ldc
    )
    var j = 0
    if rows == 8 {
      while j + 32 <= columns {
        productBlock8x32(block.a, b + j, ldb: ldb, block.c + j, ldc: ldc, lo: lo, hi: hi, alpha: alpha, accumulate)
        j += 32
      }
    }
    while j + 16 <= columns {
      if rows == 8 {
        productBlock4x16(block.a, b + j, ldb: ldb, block.c + j, ldc: ldc, lo: lo, hi: hi, alpha: alpha, accumulate)
        let lower = StridedMatrix(
          base: block.a.base + 4 * a.rowStride, rowStride: a.rowStride, columnStride: a.columnStride)
        productBlock4x16(
          lower, b + j, ldb: ldb, block.c + 4 * ldc + j, ldc: ldc, lo: lo, hi: hi, alpha: alpha, accumulate)
      } else if rows == 4 {
        productBlock4x16(block.a, b + j, ldb: ldb, block.c + j, ldc: ldc, lo: lo, hi: hi, alpha: alpha, accumulate)
      } else {
        productBlock1x16(block.a, b + j, ldb: ldb, block.c + j, lo: lo, hi: hi, alpha: alpha, accumulate)
      }
      j += 16
    }
    for r in 0..<rows {
      for column in j..<columns {
        var sum: Scalar = 0
        for p in lo..<hi { sum += block.a[r, p] * b[p * ldb + column] }
        let cell = block.c + r * ldc + column
        cell.pointee = accumulate ? cell.pointee + alpha * sum : alpha * sum
      }
    }
    i += rows
  }
}

@inlinable @inline(__always)
public func load8<Scalar: KernelScalar>(_ p: UnsafePointer<Scalar>) -> SIMD8<Scalar> {
  UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Scalar>.self)
}

@inlinable @inline(__always)
public func store8<Scalar: KernelScalar>(
  _ v: SIMD8<Scalar>, _ p: UnsafeMutablePointer<Scalar>, alpha: Scalar, _ accumulate: Bool
) {
  let scaled = v * SIMD8(repeating: alpha)
  UnsafeMutableRawPointer(p).storeBytes(of: accumulate ? load8(p) + scaled : scaled, as: SIMD8<Scalar>.self)
}

/// C[0..<4, 0..<16] (+)= alpha * A[0..<4, lo..<hi] @ B[lo..<hi, 0..<16].
@inlinable @inline(__always)
public func productBlock4x16<Scalar: KernelScalar>(
  _ a: StridedMatrix<Scalar>, _ b: UnsafePointer<Scalar>, ldb: Int, _ c: UnsafeMutablePointer<Scalar>, ldc: Int,
  lo: Int, hi: Int, alpha: Scalar, _ accumulate: Bool
) {
  var (c00, c01, c10, c11) = (SIMD8<Scalar>(), SIMD8<Scalar>(), SIMD8<Scalar>(), SIMD8<Scalar>())
  var (c20, c21, c30, c31) = (SIMD8<Scalar>(), SIMD8<Scalar>(), SIMD8<Scalar>(), SIMD8<Scalar>())
  // Pointers that step along k, and wrapping index arithmetic: no overflow check in the loop.
  let (r1, r2, r3) = (a.rowStride, a.rowStride &* 2, a.rowStride &* 3)
  var (ap, bp) = (a.base + lo &* a.columnStride, b + lo &* ldb)
  for _ in lo..<hi {
    let (b0, b1) = (load8(bp), load8(bp + 8))
    let a0 = SIMD8(repeating: ap[0])
    c00.addProduct(a0, b0)
    c01.addProduct(a0, b1)
    let a1 = SIMD8(repeating: ap[r1])
    c10.addProduct(a1, b0)
    c11.addProduct(a1, b1)
    let a2 = SIMD8(repeating: ap[r2])
    c20.addProduct(a2, b0)
    c21.addProduct(a2, b1)
    let a3 = SIMD8(repeating: ap[r3])
    c30.addProduct(a3, b0)
    c31.addProduct(a3, b1)
    ap += a.columnStride
    bp += ldb
  }
  store8(c00, c, alpha: alpha, accumulate)
  store8(c01, c + 8, alpha: alpha, accumulate)
  store8(c10, c + ldc, alpha: alpha, accumulate)
  store8(c11, c + ldc + 8, alpha: alpha, accumulate)
  store8(c20, c + 2 * ldc, alpha: alpha, accumulate)
  store8(c21, c + 2 * ldc + 8, alpha: alpha, accumulate)
  store8(c30, c + 3 * ldc, alpha: alpha, accumulate)
  store8(c31, c + 3 * ldc + 8, alpha: alpha, accumulate)
}

@inlinable @inline(__always)
public func load16<Scalar: KernelScalar>(_ p: UnsafePointer<Scalar>) -> SIMD16<Scalar> {
  UnsafeRawPointer(p).loadUnaligned(as: SIMD16<Scalar>.self)
}

@inlinable @inline(__always)
public func store16<Scalar: KernelScalar>(
  _ v: SIMD16<Scalar>, _ p: UnsafeMutablePointer<Scalar>, alpha: Scalar, _ accumulate: Bool
) {
  let scaled = v * SIMD16(repeating: alpha)
  UnsafeMutableRawPointer(p).storeBytes(of: accumulate ? load16(p) + scaled : scaled, as: SIMD16<Scalar>.self)
}

/// Which register blocks `headProduct` takes for Float products: 8 x 32 where the CPU has AVX-512's 32 registers
/// of 16 floats, else 4 x 16. Both give the same bits; tests set it both ways to hold them to that (elsewhere the
/// wide block would be emulated with pairs of narrower registers: right, but slower).
public enum HeadBlocks {
  @usableFromInline static let wideFlag = Atomic<Bool>(cpuFlags().contains("avx512f"))

  /// Whether Float products take blocks of 8 x 32.
  @inlinable
  public static var wide: Bool { wideFlag.load(ordering: .relaxed) }

  /// Runs `body` with the blocks chosen, then puts the machine's choice back.
  public static func with<R>(wide: Bool, _ body: () throws -> R) rethrows -> R {
    let previous = wideFlag.exchange(wide, ordering: .relaxed)
    defer { wideFlag.store(previous, ordering: .relaxed) }
    return try body()
  }
}

/// C[0..<8, 0..<32] (+)= alpha * A[0..<8, lo..<hi] @ B[lo..<hi, 0..<32]: each step along k loads two vectors of
/// B and broadcasts one number of A per row, 16 multiply-adds into 16 vectors of sums.
@inlinable @inline(__always)
public func productBlock8x32<Scalar: KernelScalar>(
  _ a: StridedMatrix<Scalar>, _ b: UnsafePointer<Scalar>, ldb: Int, _ c: UnsafeMutablePointer<Scalar>, ldc: Int,
  lo: Int, hi: Int, alpha: Scalar, _ accumulate: Bool
) {
  typealias V = SIMD16<Scalar>
  var (c00, c01, c10, c11, c20, c21, c30, c31) = (V(), V(), V(), V(), V(), V(), V(), V())
  var (c40, c41, c50, c51, c60, c61, c70, c71) = (V(), V(), V(), V(), V(), V(), V(), V())
  let s = a.rowStride
  var (ap, bp) = (a.base + lo &* a.columnStride, b + lo &* ldb)
  for _ in lo..<hi {
    let (b0, b1) = (load16(bp), load16(bp + 16))
    var x = V(repeating: ap[0])
    c00.addProduct(x, b0)
    c01.addProduct(x, b1)
    x = V(repeating: ap[s])
    c10.addProduct(x, b0)
    c11.addProduct(x, b1)
    x = V(repeating: ap[s &* 2])
    c20.addProduct(x, b0)
    c21.addProduct(x, b1)
    x = V(repeating: ap[s &* 3])
    c30.addProduct(x, b0)
    c31.addProduct(x, b1)
    x = V(repeating: ap[s &* 4])
    c40.addProduct(x, b0)
    c41.addProduct(x, b1)
    x = V(repeating: ap[s &* 5])
    c50.addProduct(x, b0)
    c51.addProduct(x, b1)
    x = V(repeating: ap[s &* 6])
    c60.addProduct(x, b0)
    c61.addProduct(x, b1)
    x = V(repeating: ap[s &* 7])
    c70.addProduct(x, b0)
    c71.addProduct(x, b1)
    ap += a.columnStride
    bp += ldb
  }
  store16(c00, c, alpha: alpha, accumulate)
  store16(c01, c + 16, alpha: alpha, accumulate)
  store16(c10, c + ldc, alpha: alpha, accumulate)
  store16(c11, c + ldc + 16, alpha: alpha, accumulate)
  store16(c20, c + 2 * ldc, alpha: alpha, accumulate)
  store16(c21, c + 2 * ldc + 16, alpha: alpha, accumulate)
  store16(c30, c + 3 * ldc, alpha: alpha, accumulate)
  store16(c31, c + 3 * ldc + 16, alpha: alpha, accumulate)
  store16(c40, c + 4 * ldc, alpha: alpha, accumulate)
  store16(c41, c + 4 * ldc + 16, alpha: alpha, accumulate)
  store16(c50, c + 5 * ldc, alpha: alpha, accumulate)
  store16(c51, c + 5 * ldc + 16, alpha: alpha, accumulate)
  store16(c60, c + 6 * ldc, alpha: alpha, accumulate)
  store16(c61, c + 6 * ldc + 16, alpha: alpha, accumulate)
  store16(c70, c + 7 * ldc, alpha: alpha, accumulate)
  store16(c71, c + 7 * ldc + 16, alpha: alpha, accumulate)
}

/// C[0, 0..<16] (+)= alpha * A[0, lo..<hi] @ B[lo..<hi, 0..<16]: the rows left over after blocks of 4.
@inlinable @inline(__always)
public func productBlock1x16<Scalar: KernelScalar>(
  _ a: StridedMatrix<Scalar>, _ b: UnsafePointer<Scalar>, ldb: Int, _ c: UnsafeMutablePointer<Scalar>,
  lo: Int, hi: Int, alpha: Scalar, _ accumulate: Bool
) {
  var (c0, c1) = (SIMD8<Scalar>(), SIMD8<Scalar>())
  var (ap, bp) = (a.base + lo &* a.columnStride, b + lo &* ldb)
  for _ in lo..<hi {
    let a0 = SIMD8(repeating: ap[0])
    c0.addProduct(a0, load8(bp))
    c1.addProduct(a0, load8(bp + 8))
    ap += a.columnStride
    bp += ldb
  }
  store8(c0, c, alpha: alpha, accumulate)
  store8(c1, c + 8, alpha: alpha, accumulate)
}

/// dst[c * ldd + r] = src[r * rowStride + c] for r < rows, c < columns: a head's keys or values turned on their
/// side, so that the score products read B along contiguous rows. It writes each row of dst in order and reads
/// down a column of src, whose cache lines stay for the next 15 columns; the indices step by pointers, with no
/// overflow checks.
@inlinable @inline(__always)
public func transpose<Scalar>(
  _ src: UnsafePointer<Scalar>, rowStride: Int, rows: Int, columns: Int, into dst: UnsafeMutablePointer<Scalar>,
  ldd: Int
) {
  for c in 0..<columns {
    var (from, to) = (src + c, dst + c &* ldd)
    for _ in 0..<rows {
      to.pointee = from.pointee
      from += rowStride
      to += 1
    }
  }
}

/// dst[r * columns + c] = src[r * rowStride + c]: a head's rows, which lie a whole row of the packed projection
/// apart (4.6 KB in nanoGPT's Shakespeare model, a page of memory each), gathered into one contiguous block, so
/// that a product that runs down all of them touches a few pages instead of one per row.
/// Returns the rows to read and their stride: dst and `columns`, or src itself when its rows are contiguous
/// already or when fewer than 8 rows of C (`uses`) would read the copy (a decoding step's one query: the copy
/// would cost as much as the product).
@inlinable @inline(__always)
public func packRows<Scalar>(
  _ src: UnsafePointer<Scalar>, rowStride: Int, rows: Int, columns: Int, into dst: UnsafeMutablePointer<Scalar>,
  uses: Int
) -> (rows: UnsafePointer<Scalar>, stride: Int) {
  guard rowStride != columns && uses >= 8 else { return (src, rowStride) }
  for r in 0..<rows { (dst + r &* columns).update(from: src + r &* rowStride, count: columns) }
  return (UnsafePointer(dst), columns)
}

/// The row stride of a head's keys or values turned on their side: a row of `rows` numbers and one cache line
/// more. At 256 keys a row is 1 KB, and rows a power of two apart fall into the same few sets of the core's
/// cache, which holds only 12 lines of each set: the products' loads of B then miss where 64 rows would fit.
@inlinable @inline(__always)
public func transposedStride(_ rows: Int) -> Int { rows + 16 }

/// The reference of `headProduct`: C[i, j] (+)= alpha * sum_p A[i, p] B[p, j], every entry, the plain triple loop.
/// Where `part` leaves entries out, `headProduct` leaves them unwritten (scores the softmax overwrites) or sums only
/// the terms whose weights are not 0; on the entries and terms it keeps, the two agree.
@inlinable
public func headProductReference<Scalar: KernelScalar>(
  m: Int, n: Int, k: Int, alpha: Scalar, _ a: StridedMatrix<Scalar>, _ b: UnsafePointer<Scalar>, ldb: Int,
  _ c: UnsafeMutablePointer<Scalar>, ldc: Int, accumulate: Bool
) {
  for i in 0..<m {
    for j in 0..<n {
      var sum: Scalar = 0
      for p in 0..<k { sum += a[i, p] * b[p * ldb + j] }
      let cell = c + i * ldc + j
      cell.pointee = accumulate ? cell.pointee + alpha * sum : alpha * sum
    }
  }
}
