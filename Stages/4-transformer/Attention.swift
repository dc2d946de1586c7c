import Support

/// Attention: every position looks at every (earlier) position and takes a weighted average of what it finds.
/// softmax(Q K^T / sqrt(d)) V, one fused op with a hand-written backward, then multi-head attention around it.

// MARK: - Scaled dot-product attention

/// Where the rows of one head's matrix sit in a buffer: head (b, h) starts at
/// offset + b * batchStride + h * headStride, and its consecutive positions are rowStride apart. The same
/// attention code then reads q, k and v as separate [B, H, T, D] tensors (rowStride D) or straight out of the
/// packed [B, T, 3C] output of the qkv projection (rowStride 3C), with no copy to split or merge the heads: the
/// products' row strides (`headProduct`'s, as BLAS's leading dimensions) step over the other heads' columns.
struct HeadLayout {
  var offset = 0
  var batchStride: Int
  var headStride: Int
  var rowStride: Int

  /// Contiguous [B, H, T, D].
  init(heads h: Int, positions t: Int, width d: Int) {
    (batchStride, headStride, rowStride) = (h * t * d, t * d, d)
  }

  /// Head columns inside rows of `rowWidth`: [B, T, rowWidth] with head h at columns offset + h * D.
  init(positions t: Int, width d: Int, rowWidth: Int, offset: Int) {
    (self.offset, batchStride, headStride, rowStride) = (offset, t * rowWidth, d, rowWidth)
  }

  @inline(__always)
  func start(_ b: Int, _ h: Int) -> Int { offset + b * batchStride + h * headStride }
}

/// The sizes and layouts of one attention call: B sequences, H heads, Tq queries against Tk keys, head width D.
struct AttentionShape {
  var b: Int, h: Int, tq: Int, tk: Int, d: Int
  var q: HeadLayout, k: HeadLayout, v: HeadLayout, out: HeadLayout
}

extension Tensor {
  /// Scaled dot-product attention: q [B, H, Tq, D], k and v [B, H, Tk, D] -> [B, H, Tq, D].
  /// Scores S = q k^T / sqrt(D); a masked score is -infinity, so its weight after the softmax is exactly 0:
  /// - `causal`: query i may only look at keys up to its own position. The queries are the last Tq positions
  ///   of the Tk keys, so the same op serves a whole sequence (Tq = Tk) and one new token against a KV cache
  ///   (Tq = 1, no key is in its future);
  /// - `keyPadding` [B, Tk]: 1 marks a key that is padding, which no query may look at.
  /// Weights P = softmax(S) along the keys; output O = P v. P is kept for backward.
  ///
  /// Backward, per (batch, head): dV = P^T dO;  dP = dO V^T;  dS = P * (dP - rowsum(dP * P)) (softmax's
  /// backward);  dQ = dS K / sqrt(D);  dK = dS^T Q / sqrt(D). Four products (`headProduct`) and one pass over P.
  ///
  /// With `dropout` (training), each weight is zeroed with probability p and the rest scaled by 1/(1 - p) before
  /// multiplying V (nanoGPT's attention dropout); backward applies the same mask to dP.
  public static func attention(
    _ q: Tensor, _ k: Tensor, _ v: Tensor, causal: Bool, keyPadding: Tensor? = nil,
    dropout: (p: Double, random: RandomSource)? = nil
  ) -> Tensor {
    precondition(q.rank == 4 && k.rank == 4 && v.rank == 4, "attention: q, k, v must be [B, H, T, D]")
    let (b, h, tq, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3])
    let tk = k.shape[2]
    precondition(
      k.shape == [b, h, tk, d] && v.shape == k.shape && tk >= tq,
      "attention: q \(q.shape), k \(k.shape), v \(v.shape) do not fit")
    let keys = HeadLayout(heads: h, positions: tk, width: d)
    let queries = HeadLayout(heads: h, positions: tq, width: d)
    let shape = AttentionShape(b: b, h: h, tq: tq, tk: tk, d: d, q: queries, k: keys, v: keys, out: queries)
    return attentionOp(
      q, k, v, shape, outputShape: [b, h, tq, d], causal: causal, keyPadding: keyPadding, dropout: dropout)
  }

  /// Self-attention straight from the packed output of a qkv projection: qkv [B, T, 3C] holds, in each row, the
  /// queries, keys and values of all H heads (head h of q at columns h * D..., of k at C + h * D..., of v at
  /// 2C + h * D..., C = H * D). The output is [B, T, C] with the heads side by side, ready for the output
  /// projection. The same op as `attention`, without the copies that splitting and merging the heads would make.
  public static func attention(
    packed qkv: Tensor, heads: Int, causal: Bool, keyPadding: Tensor? = nil,
    dropout: (p: Double, random: RandomSource)? = nil
  ) -> Tensor {
    precondition(
      qkv.rank == 3 && qkv.shape[2] % (3 * heads) == 0, "attention: packed qkv \(qkv.shape) for \(heads) heads")
    let (b, t, c) = (qkv.shape[0], qkv.shape[1], qkv.shape[2] / 3)
    let d = c / heads
    func part(_ index: Int) -> HeadLayout { HeadLayout(positions: t, width: d, rowWidth: 3 * c, offset: index * c) }
    let shape = AttentionShape(
      b: b, h: heads, tq: t, tk: t, d: d, q: part(0), k: part(1), v: part(2),
      out: HeadLayout(positions: t, width: d, rowWidth: c, offset: 0))
    return attentionOp(
      qkv, qkv, qkv, shape, outputShape: [b, t, c], causal: causal, keyPadding: keyPadding, dropout: dropout)
  }

  /// The op behind both forms: q, k and v are read through the layouts of `shape` (they may be one tensor).
  /// The (batch, head) pairs are independent, so they are shared out across the cores, forward and backward.
  private static func attentionOp(
    _ q: Tensor, _ k: Tensor, _ v: Tensor, _ shape: AttentionShape, outputShape: [Int], causal: Bool,
    keyPadding: Tensor?, dropout: (p: Double, random: RandomSource)?
  ) -> Tensor {
    let (b, h, tq, tk) = (shape.b, shape.h, shape.tq, shape.tk)
    precondition(keyPadding == nil || keyPadding!.shape == [b, tk], "attention: key padding \(keyPadding!.shape)")
    let square = tq * tk  // one head's weights
    // The dropout mask, scaled (keep / (1 - p)), drawn in order before the heads run in parallel.
    let keep = dropout.map { dropout in
      (0..<(b * h * square)).map { _ in dropout.random.rng.unit() >= dropout.p ? Scalar(1 / (1 - dropout.p)) : 0 }
    }
    let padding = keyPadding?.storage
    // Every head writes its own block of both in full.
    var weights: [Scalar] = uninitializedArray(b * h * square)
    var out: [Scalar] = uninitializedArray(outputShape.reduce(1, *))
    weights.withUnsafeMutableBufferPointer { pp in
      out.withUnsafeMutableBufferPointer { op in
        q.storage.withUnsafeBufferPointer { qp in
          k.storage.withUnsafeBufferPointer { kp in
            v.storage.withUnsafeBufferPointer { vp in
              let (pp, op, qp, kp, vp) = (
                pp.baseAddress!, op.baseAddress!, qp.baseAddress!, kp.baseAddress!, vp.baseAddress!
              )
              Parallel.forEach(b * h, grain: 1) { pairs in
                for bh in pairs {
                  let (bi, hi) = bh.quotientAndRemainder(dividingBy: h)
                  attentionHeadForward(
                    shape, q: qp + shape.q.start(bi, hi), k: kp + shape.k.start(bi, hi), v: vp + shape.v.start(bi, hi),
                    out: op + shape.out.start(bi, hi), weights: pp + bh * square,
                    keep: keep.map { Array($0[(bh * square)..<((bh + 1) * square)]) },
                    padding: padding.map { Array($0[(bi * tk)..<((bi + 1) * tk)]) }, causal: causal)
                }
              }
            }
          }
        }
      }
    }
    let parents = q === k && k === v ? [q] : [q, k, v]
    return Tensor(out, shape: outputShape, op: "attention", parents: parents) { result in
      let dO = result.gradStorage!
      withGradients([q, k, v]) { grads in
        weights.withUnsafeBufferPointer { pp in
          dO.withUnsafeBufferPointer { dop in
            q.storage.withUnsafeBufferPointer { qp in
              k.storage.withUnsafeBufferPointer { kp in
                v.storage.withUnsafeBufferPointer { vp in
                  let (pp, dop) = (pp.baseAddress!, dop.baseAddress!)
                  let (qp, kp, vp) = (qp.baseAddress!, kp.baseAddress!, vp.baseAddress!)
                  Parallel.forEach(b * h, grain: 1) { pairs in
                    for bh in pairs {
                      let (bi, hi) = bh.quotientAndRemainder(dividingBy: h)
                      let (qs, ks, vs) = (shape.q.start(bi, hi), shape.k.start(bi, hi), shape.v.start(bi, hi))
                      attentionHeadBackward(
                        shape, q: qp + qs, k: kp + ks, v: vp + vs, dOut: dop + shape.out.start(bi, hi),
                        weights: pp + bh * square, keep: keep.map { Array($0[(bh * square)..<((bh + 1) * square)]) },
                        causal: causal, dq: grads[0].map { $0 + qs }, dk: grads[1].map { $0 + ks },
                        dv: grads[2].map { $0 + vs })
                    }
                  }
                }
              }
            }
          }
        }
      }
    }
  }
}

/// Runs `body` with a pointer into the gradient of each tensor (made as zeros if needed), nil for a tensor that
/// requires none. A tensor that appears more than once (q, k and v packed in one) gets one pointer, so no
/// gradient is opened twice at once.
func withGradients<Scalar: TensorScalar>(
  _ tensors: [Tensor<Scalar>], _ body: ([UnsafeMutablePointer<Scalar>?]) -> Void
) {
  func open(_ index: Int, _ opened: [(Tensor<Scalar>, UnsafeMutablePointer<Scalar>?)]) {
    guard index < tensors.count else { return body(opened.map { $0.1 }) }
    let tensor = tensors[index]
    if let earlier = opened.first(where: { $0.0 === tensor }) { return open(index + 1, opened + [earlier]) }
    guard tensor.requiresGrad else { return open(index + 1, opened + [(tensor, nil)]) }
    tensor.addToGrad { g in open(index + 1, opened + [(tensor, g.baseAddress!)]) }
  }
  open(0, [])
}

/// One head's forward: S[tq, tk] = Q K^T / sqrt(D); P = softmax(S) with the masks, written to `weights`;
/// O[tq, D] = P' V, P' = P * keep with dropout. q, k, v and out point at the head's first row, with the row
/// strides of `shape`. Under a causal mask only the visible part of each product is computed (`headProduct`).
func attentionHeadForward<Scalar: TensorScalar>(
  _ shape: AttentionShape, q: UnsafePointer<Scalar>, k: UnsafePointer<Scalar>, v: UnsafePointer<Scalar>,
  out: UnsafeMutablePointer<Scalar>, weights: UnsafeMutablePointer<Scalar>, keep: [Scalar]?, padding: [Scalar]?,
  causal: Bool
) {
  let (tq, tk, d) = (shape.tq, shape.tk, shape.d)
  // The queries are the last tq of the tk positions: query i sees keys up to i + shift.
  let shift = tk - tq
  withUnsafeTemporaryAllocation(of: Scalar.self, capacity: d * tk) { kt in
    transpose(k, rowStride: shape.k.rowStride, rows: tk, columns: d, into: kt.baseAddress!)
    headProduct(
      m: tq, n: tk, k: d, part: causal ? .columnsUpToRow(shift: shift) : .all, alpha: 1 / Scalar.sqrt(Scalar(d)),
      StridedMatrix(base: q, rowStride: shape.q.rowStride), kt.baseAddress!, ldb: tk, weights, ldc: tk,
      accumulate: false)
  }
  for i in 0..<tq {
    softmaxRow(weights + i * tk, count: tk, visible: causal ? i + shift + 1 : tk, padding: padding)
  }
  var dropped = keep.map { keep in (0..<(tq * tk)).map { weights[$0] * keep[$0] } }
  withPointer(&dropped, else: weights) { used in
    headProduct(
      m: tq, n: d, k: tk, part: causal ? .innerUpToRow(shift: shift) : .all, alpha: 1,
      StridedMatrix(base: used, rowStride: tk), v, ldb: shape.v.rowStride, out, ldc: shape.out.rowStride,
      accumulate: false)
  }
}

/// One head's backward, added into dq, dk, dv (nil: not needed):
/// dV = P'^T dO;  dP = (dO V^T) * keep;  dS = P * (dP - rowsum(dP * P));  dQ = dS K / sqrt(D);
/// dK = dS^T Q / sqrt(D). dP, then dS, sit in a [tq, tk] scratch of the head's own (16 KB at 64 x 64, so it
/// stays in the core's cache), 0 wherever a causal mask hides the key.
func attentionHeadBackward<Scalar: TensorScalar>(
  _ shape: AttentionShape, q: UnsafePointer<Scalar>, k: UnsafePointer<Scalar>, v: UnsafePointer<Scalar>,
  dOut: UnsafePointer<Scalar>, weights: UnsafePointer<Scalar>, keep: [Scalar]?, causal: Bool,
  dq: UnsafeMutablePointer<Scalar>?, dk: UnsafeMutablePointer<Scalar>?, dv: UnsafeMutablePointer<Scalar>?
) {
  let (tq, tk, d) = (shape.tq, shape.tk, shape.d)
  let (scale, shift) = (1 / Scalar.sqrt(Scalar(d)), tk - tq)
  let rowsUpTo: CausalPart = causal ? .columnsUpToRow(shift: shift) : .all
  let innerUpTo: CausalPart = causal ? .innerUpToRow(shift: shift) : .all
  let innerFrom: CausalPart = causal ? .innerFromRow(shift: shift) : .all
  if let dv {  // dV[tk, d] += P'[tq, tk]^T @ dO[tq, d]
    var dropped = keep.map { keep in (0..<(tq * tk)).map { weights[$0] * keep[$0] } }
    withPointer(&dropped, else: weights) { used in
      headProduct(
        m: tk, n: d, k: tq, part: innerFrom, alpha: 1, StridedMatrix(base: used, rowStride: 1, columnStride: tk),
        dOut, ldb: shape.out.rowStride, dv, ldc: shape.v.rowStride, accumulate: true)
    }
  }
  guard dq != nil || dk != nil else { return }
  withUnsafeTemporaryAllocation(of: Scalar.self, capacity: tq * tk + d * tk) { buffer in
    let (scratch, vt) = (buffer.baseAddress!, buffer.baseAddress! + tq * tk)
    // dP[tq, tk] = dO[tq, d] @ V[tk, d]^T
    transpose(v, rowStride: shape.v.rowStride, rows: tk, columns: d, into: vt)
    headProduct(
      m: tq, n: tk, k: d, part: rowsUpTo, alpha: 1, StridedMatrix(base: dOut, rowStride: shape.out.rowStride), vt,
      ldb: tk, scratch, ldc: tk, accumulate: false)
    for i in 0..<tq {
      let (row, visible) = (scratch + i * tk, causal ? i + shift + 1 : tk)
      let end = paddedToBlock(visible, tk)  // whole blocks of 8, as in `softmaxRow`: the masked keys count 0
      for j in visible..<tk { row[j] = 0 }
      if let keep {
        for j in 0..<end { row[j] *= keep[i * tk + j] }
      }
      softmaxBackwardRow(weights + i * tk, row, count: end)
    }
    if let dq {  // dQ[tq, d] += scale * dS[tq, tk] @ K[tk, d]
      headProduct(
        m: tq, n: d, k: tk, part: innerUpTo, alpha: scale, StridedMatrix(base: scratch, rowStride: tk), k,
        ldb: shape.k.rowStride, dq, ldc: shape.q.rowStride, accumulate: true)
    }
    if let dk {  // dK[tk, d] += scale * dS[tq, tk]^T @ Q[tq, d]
      headProduct(
        m: tk, n: d, k: tq, part: innerFrom, alpha: scale,
        StridedMatrix(base: scratch, rowStride: 1, columnStride: tk), q, ldb: shape.q.rowStride, dk,
        ldc: shape.k.rowStride, accumulate: true)
    }
  }
}

/// `body` with a pointer to `array`'s elements, or to `fallback` when there is no array.
@inline(__always)
func withPointer<Scalar>(
  _ array: inout [Scalar]?, else fallback: UnsafePointer<Scalar>, _ body: (UnsafePointer<Scalar>) -> Void
) {
  if array == nil { return body(fallback) }
  array!.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// Softmax of one row of `count` scores in place over the first `visible` keys, skipping keys marked 1 in
/// `padding`: every other key counts as -infinity and gets weight exactly 0. A row with no key left becomes all
/// zeros (it attends to nothing) instead of 0/0.
@inline(__always)
func softmaxRow<Scalar: TensorScalar>(
  _ row: UnsafeMutablePointer<Scalar>, count: Int, visible: Int, padding: [Scalar]?
) {
  for j in visible..<count { row[j] = 0 }
  if let padding {  // the rare case: per-key test
    var top = -Scalar.infinity
    for j in 0..<visible where padding[j] == 0 { top = max(top, row[j]) }
    guard top > -Scalar.infinity else { return (0..<visible).forEach { row[$0] = 0 } }
    var total: Scalar = 0
    for j in 0..<visible {
      row[j] = padding[j] == 0 ? Scalar.kernelExp(row[j] - top) : 0
      total += row[j]
    }
    for j in 0..<visible { row[j] /= total }
    return
  }
  guard visible > 0 else { return }
  let top = max8(row, visible)
  // Whole blocks of 8, so the loops have no scalar tail: the few masked keys past `visible` in the last block
  // are exponentiated too, then set back to 0.
  let end = paddedToBlock(visible, count)
  for j in 0..<end { row[j] = Scalar.kernelExp(row[j] - top) }
  for j in visible..<end { row[j] = 0 }
  let inverse = 1 / sum8(end) { row[$0] }
  for j in 0..<end { row[j] *= inverse }
}

/// `visible` rounded up to a multiple of 8, at most `count`.
@inline(__always)
func paddedToBlock(_ visible: Int, _ count: Int) -> Int { Swift.min(count, (visible + 7) / 8 * 8) }

/// Softmax's backward on one row, in place: d holds dP and becomes dS = P * (dP - sum_j dP_j P_j).
@inline(__always)
func softmaxBackwardRow<Scalar: TensorScalar>(
  _ p: UnsafePointer<Scalar>, _ d: UnsafeMutablePointer<Scalar>, count: Int
) {
  let dot = sum8(count) { d[$0] * p[$0] }
  for j in 0..<count { d[j] = p[j] * (d[j] - dot) }
}

// MARK: - Products inside one head

/// The part of a product inside one head that a causal mask leaves. Query i of Tq sees keys j <= i + shift,
/// shift = Tk - Tq: every other score is masked, and every weight and weight gradient there is exactly 0.
enum CausalPart {
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
struct StridedMatrix<Scalar> {
  var base: UnsafePointer<Scalar>
  var rowStride: Int
  var columnStride = 1

  @inline(__always)
  subscript(_ r: Int, _ c: Int) -> Scalar { base[r * rowStride + c * columnStride] }
}

/// C[m, n] = alpha * A[m, k] @ B[k, n], or C += that with `accumulate`, for the small products of one attention
/// head (64 x 64 x 32 in nanoGPT's CPU configuration), computing only the `part` that a causal mask leaves:
/// half the multiply-adds. B's rows must be contiguous (`ldb` apart); C's rows are `ldc` apart.
///
/// The inner loop is a register block, as in a BLAS kernel: 4 rows x 16 columns of C stay in 8 SIMD registers
/// while k runs, each step loading 16 numbers of B, broadcasting 4 of A and doing 8 fused multiply-adds. Blocks
/// of rows share the widest inner range and column count of their rows; the extra terms are zeros (weights) or
/// masked scores that the softmax overwrites. Leftover rows and columns (sizes not multiples of 4 and 16) take
/// plain loops.
@inline(never)
func headProduct<Scalar: TensorScalar>(
  m: Int, n: Int, k: Int, part: CausalPart, alpha: Scalar, _ a: StridedMatrix<Scalar>, _ b: UnsafePointer<Scalar>,
  ldb: Int, _ c: UnsafeMutablePointer<Scalar>, ldc: Int, accumulate: Bool
) {
  var i = 0
  while i < m {
    let rows = m - i >= 4 ? 4 : 1
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
    while j + 16 <= columns {
      if rows == 4 {
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

@inline(__always)
func load8<Scalar: TensorScalar>(_ p: UnsafePointer<Scalar>) -> SIMD8<Scalar> {
  UnsafeRawPointer(p).loadUnaligned(as: SIMD8<Scalar>.self)
}

@inline(__always)
func store8<Scalar: TensorScalar>(
  _ v: SIMD8<Scalar>, _ p: UnsafeMutablePointer<Scalar>, alpha: Scalar, _ accumulate: Bool
) {
  let scaled = v * SIMD8(repeating: alpha)
  UnsafeMutableRawPointer(p).storeBytes(of: accumulate ? load8(p) + scaled : scaled, as: SIMD8<Scalar>.self)
}

/// C[0..<4, 0..<16] (+)= alpha * A[0..<4, lo..<hi] @ B[lo..<hi, 0..<16].
@inline(__always)
func productBlock4x16<Scalar: TensorScalar>(
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

/// C[0, 0..<16] (+)= alpha * A[0, lo..<hi] @ B[lo..<hi, 0..<16]: the rows left over after blocks of 4.
@inline(__always)
func productBlock1x16<Scalar: TensorScalar>(
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

/// dst[c, r] = src[r * rowStride + c] for r < rows, c < columns: a head's keys or values turned on their side,
/// so that the score products read B along contiguous rows.
@inline(__always)
func transpose<Scalar>(
  _ src: UnsafePointer<Scalar>, rowStride: Int, rows: Int, columns: Int, into dst: UnsafeMutablePointer<Scalar>
) {
  for r in 0..<rows {
    for c in 0..<columns { dst[c * rows + r] = src[r * rowStride + c] }
  }
}

// MARK: - Multi-head attention

/// Multi-head self-attention, as GPT-2 builds it: one Linear makes queries, keys and values for all heads at once
/// (c_attn, [3C, C]); they are split into H heads of C/H; each head attends on its own; the heads are joined and
/// mixed by an output projection (c_proj). Dropout on the attention weights, and (residual dropout) on the output.
public final class MultiHeadAttention<Scalar: TensorScalar>: Layer {
  public let qkv: Linear<Scalar>
  public let projection: Linear<Scalar>
  public let heads: Int
  public let causal: Bool
  public let dropout: Dropout<Scalar>?
  public var isTraining = true

  public init(qkv: Linear<Scalar>, projection: Linear<Scalar>, heads: Int, causal: Bool, dropout: Dropout<Scalar>?) {
    precondition(qkv.weight.shape[1] % heads == 0, "MultiHeadAttention: width \(qkv.weight.shape[1]) by \(heads) heads")
    self.qkv = qkv
    self.projection = projection
    self.heads = heads
    self.causal = causal
    self.dropout = dropout
  }

  @_specialize(where Scalar == Float)
  @_specialize(where Scalar == Double)
  public func callAsFunction(_ x: Tensor<Scalar>) -> Tensor<Scalar> { attend(x, keyPadding: nil, cache: nil) }

  /// x [B, T, C] -> [B, T, C]. With a cache, x holds only the new positions: their keys and values are appended
  /// to the cache and the queries attend to everything cached so far.
  @_specialize(where Scalar == Float)
  @_specialize(where Scalar == Double)
  public func attend(_ x: Tensor<Scalar>, keyPadding: Tensor<Scalar>?, cache: LayerCache<Scalar>?) -> Tensor<Scalar> {
    let (b, t, c) = (x.shape[0], x.shape[1], x.shape[2])
    let d = c / heads
    let packed = qkv(x)  // [B, T, 3C]
    let drop = dropout.flatMap { $0.isTraining && $0.p > 0 ? (p: $0.p, random: $0.random) : nil }
    let y: Tensor<Scalar>
    if let cache {
      // Decoding: the new keys and values join the cache as [B, H, T, D], so here the heads are split out:
      // [B, T, 3C] -> [B, T, 3, H, D] -> [3, B, H, T, D] -> q, k, v each [B, H, T, D].
      let parts = packed.reshape([b, t, 3, heads, d]).permute([2, 0, 3, 1, 4]).split([1, 1, 1], axis: 0)
      let (q, k, v) = (
        parts[0].reshape([b, heads, t, d]), parts[1].reshape([b, heads, t, d]), parts[2].reshape([b, heads, t, d])
      )
      let (keys, values) = cache.append(k, v)
      // [B, H, T, D] -> [B, T, H, D] -> [B, T, C]
      y = Tensor.attention(q, keys, values, causal: causal, keyPadding: keyPadding, dropout: drop)
        .permute([0, 2, 1, 3]).reshape([b, t, c])
    } else {
      y = Tensor.attention(packed: packed, heads: heads, causal: causal, keyPadding: keyPadding, dropout: drop)
    }
    let out = projection(y)
    return dropout.map { $0(out) } ?? out
  }
}

/// One layer's keys and values of the positions seen so far, for decoding one token at a time: the new token's
/// query needs every earlier key and value, which would otherwise be recomputed from scratch at every step.
/// Memory: 2 x layers x heads x positions x head width numbers, growing with the sequence.
public final class LayerCache<Scalar: TensorScalar> {
  var keys: [Scalar] = []
  var values: [Scalar] = []
  var shape: [Int] = []  // [B, H, T, D] of what is cached

  public init() {}

  /// Positions cached so far.
  public var count: Int { shape.isEmpty ? 0 : shape[2] }

  /// Appends new keys and values [B, H, Tnew, D]; returns everything cached, [B, H, T, D] each, as constants.
  func append(_ k: Tensor<Scalar>, _ v: Tensor<Scalar>) -> (Tensor<Scalar>, Tensor<Scalar>) {
    let (b, h, tNew, d) = (k.shape[0], k.shape[1], k.shape[2], k.shape[3])
    let tOld = count
    func joined(_ old: [Scalar], _ new: [Scalar]) -> [Scalar] {
      var result = [Scalar](repeating: 0, count: b * h * (tOld + tNew) * d)
      for bh in 0..<(b * h) {
        for i in 0..<(tOld * d) { result[bh * (tOld + tNew) * d + i] = old[bh * tOld * d + i] }
        for i in 0..<(tNew * d) { result[bh * (tOld + tNew) * d + tOld * d + i] = new[bh * tNew * d + i] }
      }
      return result
    }
    keys = joined(keys, k.storage)
    values = joined(values, v.storage)
    shape = [b, h, tOld + tNew, d]
    return (Tensor(keys, shape: shape), Tensor(values, shape: shape))
  }
}
