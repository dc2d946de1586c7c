import RealModule

/// One attention head, forward and backward, over raw buffers: softmax(Q K^T / sqrt(D)) V with causal and padding
/// masks and a dropout mask, and its backward. The stage's attention op shares the heads out across the cores and
/// calls these; a head never knows about the others.
///
/// Forward:  S = Q K^T / sqrt(D);  P = softmax(S) (a masked score counts as -infinity: weight exactly 0);
///           P' = P * keep (dropout's scaled mask, or P);  O = P' V.
/// Backward: dV = P'^T dO;  dP = (dO V^T) * keep;  dS = P * (dP - rowsum(dP * P));  dQ = dS K / sqrt(D);
///           dK = dS^T Q / sqrt(D).

/// Where the rows of one head's matrix sit in a buffer: head (b, h) starts at offset + b * batchStride +
/// h * headStride, and its consecutive positions are rowStride apart. The same kernels then read q, k and v as
/// separate [B, H, T, D] tensors (rowStride D) or straight out of the packed [B, T, 3C] output of the qkv
/// projection (rowStride 3C), with no copy to split or merge the heads.
public struct HeadLayout: Sendable {
  public var offset = 0
  public var batchStride: Int
  public var headStride: Int
  public var rowStride: Int

  /// Contiguous [B, H, T, D].
  public init(heads h: Int, positions t: Int, width d: Int) {
    (batchStride, headStride, rowStride) = (h * t * d, t * d, d)
  }

  /// Head columns inside rows of `rowWidth`: [B, T, rowWidth] with head h at columns offset + h * D.
  public init(positions t: Int, width d: Int, rowWidth: Int, offset: Int) {
    (self.offset, batchStride, headStride, rowStride) = (offset, t * rowWidth, d, rowWidth)
  }

  @inlinable @inline(__always)
  public func start(_ b: Int, _ h: Int) -> Int { offset + b * batchStride + h * headStride }
}

/// The sizes and layouts of one attention call: B sequences, H heads, Tq queries against Tk keys, head width D.
/// The queries are the last Tq of the Tk positions, so under a causal mask query i sees keys j <= i + Tk - Tq.
public struct AttentionShape: Sendable {
  public var b: Int, h: Int, tq: Int, tk: Int, d: Int
  public var q: HeadLayout, k: HeadLayout, v: HeadLayout, out: HeadLayout

  public init(b: Int, h: Int, tq: Int, tk: Int, d: Int, q: HeadLayout, k: HeadLayout, v: HeadLayout, out: HeadLayout) {
    (self.b, self.h, self.tq, self.tk, self.d) = (b, h, tq, tk, d)
    (self.q, self.k, self.v, self.out) = (q, k, v, out)
  }
}

/// One head's forward: weights P [tq, tk] and output O (rows `shape.out.rowStride` apart) from q, k, v, which point
/// at the head's first row. keep [tq, tk]: dropout's mask scaled by 1/(1 - p), or nil; padding [tk]: 1 marks a key
/// no query may look at, or nil. Fast: `headProduct` computes only what a causal mask leaves, the softmax runs in
/// blocks of 8. Reference: `attentionHeadForwardReference`.
@inlinable
public func attentionHeadForward<Scalar: KernelScalar>(
  _ shape: AttentionShape, q: UnsafePointer<Scalar>, k: UnsafePointer<Scalar>, v: UnsafePointer<Scalar>,
  out: UnsafeMutablePointer<Scalar>, weights: UnsafeMutablePointer<Scalar>, keep: UnsafePointer<Scalar>?,
  padding: UnsafePointer<Scalar>?, causal: Bool
) {
  if KernelChoice.useReference {
    return attentionHeadForwardReference(
      shape, q: q, k: k, v: v, out: out, weights: weights, keep: keep, padding: padding, causal: causal)
  }
  let (tq, tk, d) = (shape.tq, shape.tk, shape.d)
  let shift = tk - tq
  let ldt = transposedStride(tk)
  withUnsafeTemporaryAllocation(of: Scalar.self, capacity: d * ldt + tq * tk + tk * d) { buffer in
    // K turned on its side; P times dropout's mask; V gathered into contiguous rows (`packRows`).
    let (kt, dropped, packed) = (
      buffer.baseAddress!, buffer.baseAddress! + d * ldt, buffer.baseAddress! + d * ldt + tq * tk
    )
    transpose(k, rowStride: shape.k.rowStride, rows: tk, columns: d, into: kt, ldd: ldt)
    headProduct(
      m: tq, n: tk, k: d, part: causal ? .columnsUpToRow(shift: shift) : .all, alpha: 1 / Scalar.sqrt(Scalar(d)),
      StridedMatrix(base: q, rowStride: shape.q.rowStride), kt, ldb: ldt, weights, ldc: tk, accumulate: false)
    let vRows = packRows(v, rowStride: shape.v.rowStride, rows: tk, columns: d, into: packed, uses: tq)
    for i in 0..<tq {
      softmaxRow(weights + i * tk, count: tk, visible: causal ? i + shift + 1 : tk, padding: padding)
    }
    var used = UnsafePointer(weights)
    if let keep {
      for j in 0..<(tq * tk) { dropped[j] = weights[j] * keep[j] }
      used = UnsafePointer(dropped)
    }
    headProduct(
      m: tq, n: d, k: tk, part: causal ? .innerUpToRow(shift: shift) : .all, alpha: 1,
      StridedMatrix(base: used, rowStride: tk), vRows.rows, ldb: vRows.stride, out, ldc: shape.out.rowStride,
      accumulate: false)
  }
}

/// One head's backward, added into dq, dk, dv (nil: not needed), from the forward's weights. dP, then dS, sit in a
/// [tq, tk] scratch of the head's own (16 KB at 64 x 64, so it stays in the core's cache), 0 wherever a causal
/// mask hides the key. Reference: `attentionHeadBackwardReference`.
@inlinable
public func attentionHeadBackward<Scalar: KernelScalar>(
  _ shape: AttentionShape, q: UnsafePointer<Scalar>, k: UnsafePointer<Scalar>, v: UnsafePointer<Scalar>,
  dOut: UnsafePointer<Scalar>, weights: UnsafePointer<Scalar>, keep: UnsafePointer<Scalar>?, causal: Bool,
  dq: UnsafeMutablePointer<Scalar>?, dk: UnsafeMutablePointer<Scalar>?, dv: UnsafeMutablePointer<Scalar>?
) {
  if KernelChoice.useReference {
    return attentionHeadBackwardReference(
      shape, q: q, k: k, v: v, dOut: dOut, weights: weights, keep: keep, causal: causal, dq: dq, dk: dk, dv: dv)
  }
  let (tq, tk, d) = (shape.tq, shape.tk, shape.d)
  let (scale, shift) = (1 / Scalar.sqrt(Scalar(d)), tk - tq)
  let rowsUpTo: CausalPart = causal ? .columnsUpToRow(shift: shift) : .all
  let innerUpTo: CausalPart = causal ? .innerUpToRow(shift: shift) : .all
  let innerFrom: CausalPart = causal ? .innerFromRow(shift: shift) : .all
  let ldt = transposedStride(tk)
  withUnsafeTemporaryAllocation(of: Scalar.self, capacity: tq * tk + d * ldt + Swift.max(tq, tk) * d) { buffer in
    // dP and dS; V turned on its side; one of dO, K or Q gathered into contiguous rows (`packRows`).
    let (scratch, vt, packed) = (
      buffer.baseAddress!, buffer.baseAddress! + tq * tk, buffer.baseAddress! + tq * tk + d * ldt
    )
    if let dv {  // dV[tk, d] += P'[tq, tk]^T @ dO[tq, d]
      var used = weights
      if let keep {
        for j in 0..<(tq * tk) { scratch[j] = weights[j] * keep[j] }
        used = UnsafePointer(scratch)
      }
      let dOutRows = packRows(dOut, rowStride: shape.out.rowStride, rows: tq, columns: d, into: packed, uses: tk)
      headProduct(
        m: tk, n: d, k: tq, part: innerFrom, alpha: 1, StridedMatrix(base: used, rowStride: 1, columnStride: tk),
        dOutRows.rows, ldb: dOutRows.stride, dv, ldc: shape.v.rowStride, accumulate: true)
    }
    guard dq != nil || dk != nil else { return }
    // dP[tq, tk] = dO[tq, d] @ V[tk, d]^T
    transpose(v, rowStride: shape.v.rowStride, rows: tk, columns: d, into: vt, ldd: ldt)
    headProduct(
      m: tq, n: tk, k: d, part: rowsUpTo, alpha: 1, StridedMatrix(base: dOut, rowStride: shape.out.rowStride), vt,
      ldb: ldt, scratch, ldc: tk, accumulate: false)
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
      let kRows = packRows(k, rowStride: shape.k.rowStride, rows: tk, columns: d, into: packed, uses: tq)
      headProduct(
        m: tq, n: d, k: tk, part: innerUpTo, alpha: scale, StridedMatrix(base: scratch, rowStride: tk), kRows.rows,
        ldb: kRows.stride, dq, ldc: shape.q.rowStride, accumulate: true)
    }
    if let dk {  // dK[tk, d] += scale * dS[tq, tk]^T @ Q[tq, d]
      let qRows = packRows(q, rowStride: shape.q.rowStride, rows: tq, columns: d, into: packed, uses: tk)
      headProduct(
        m: tk, n: d, k: tq, part: innerFrom, alpha: scale,
        StridedMatrix(base: scratch, rowStride: 1, columnStride: tk), qRows.rows, ldb: qRows.stride, dk,
        ldc: shape.k.rowStride, accumulate: true)
    }
  }
}

/// Softmax of one row of `count` scores in place over the first `visible` keys, skipping keys marked 1 in
/// `padding`: every other key counts as -infinity and gets weight exactly 0. A row with no key left becomes all
/// zeros (it attends to nothing) instead of 0/0.
@inlinable @inline(__always)
public func softmaxRow<Scalar: KernelScalar>(
  _ row: UnsafeMutablePointer<Scalar>, count: Int, visible: Int, padding: UnsafePointer<Scalar>?
) {
  for j in visible..<count { row[j] = 0 }
  if let padding {  // the rare case: per-key test
    var top = -Scalar.infinity
    for j in 0..<visible where padding[j] == 0 { top = max(top, row[j]) }
    guard top > -Scalar.infinity else { return (0..<visible).forEach { row[$0] = 0 } }
    var total: Scalar = 0
    for j in 0..<visible {
      row[j] = padding[j] == 0 ? Scalar.fastExp(row[j] - top) : 0
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
  for j in 0..<end { row[j] = Scalar.fastExp(row[j] - top) }
  for j in visible..<end { row[j] = 0 }
  let inverse = 1 / sum8(end) { row[$0] }
  for j in 0..<end { row[j] *= inverse }
}

/// `visible` rounded up to a multiple of 8, at most `count`.
@inlinable @inline(__always)
public func paddedToBlock(_ visible: Int, _ count: Int) -> Int { Swift.min(count, (visible + 7) / 8 * 8) }

/// Softmax's backward on one row, in place: d holds dP and becomes dS = P * (dP - sum_j dP_j P_j).
@inlinable @inline(__always)
public func softmaxBackwardRow<Scalar: KernelScalar>(
  _ p: UnsafePointer<Scalar>, _ d: UnsafeMutablePointer<Scalar>, count: Int
) {
  let dot = sum8(count) { d[$0] * p[$0] }
  for j in 0..<count { d[j] = p[j] * (d[j] - dot) }
}

// MARK: - References

/// The reference of `attentionHeadForward`: the formulas of the file's comment as plain loops, every score
/// computed, libm's exp.
@inlinable
public func attentionHeadForwardReference<Scalar: KernelScalar>(
  _ shape: AttentionShape, q: UnsafePointer<Scalar>, k: UnsafePointer<Scalar>, v: UnsafePointer<Scalar>,
  out: UnsafeMutablePointer<Scalar>, weights: UnsafeMutablePointer<Scalar>, keep: UnsafePointer<Scalar>?,
  padding: UnsafePointer<Scalar>?, causal: Bool
) {
  let (tq, tk, d) = (shape.tq, shape.tk, shape.d)
  let (rq, rk, rv, ro) = (shape.q.rowStride, shape.k.rowStride, shape.v.rowStride, shape.out.rowStride)
  let scale = 1 / Scalar.sqrt(Scalar(d))
  for i in 0..<tq {
    let p = weights + i * tk
    func visible(_ j: Int) -> Bool { (!causal || j <= i + tk - tq) && (padding == nil || padding![j] == 0) }
    var top = -Scalar.infinity
    for j in 0..<tk {
      var s: Scalar = 0
      for c in 0..<d { s += q[i * rq + c] * k[j * rk + c] }
      p[j] = visible(j) ? s * scale : -Scalar.infinity
      top = Swift.max(top, p[j])
    }
    var total: Scalar = 0
    for j in 0..<tk {
      p[j] = visible(j) ? Scalar.exp(p[j] - top) : 0
      total += p[j]
    }
    for j in 0..<tk { p[j] = total > 0 ? p[j] / total : 0 }
    for c in 0..<d {
      var o: Scalar = 0
      for j in 0..<tk { o += p[j] * (keep?[i * tk + j] ?? 1) * v[j * rv + c] }
      out[i * ro + c] = o
    }
  }
}

/// The reference of `attentionHeadBackward`: the formulas of the file's comment as plain loops.
@inlinable
public func attentionHeadBackwardReference<Scalar: KernelScalar>(
  _ shape: AttentionShape, q: UnsafePointer<Scalar>, k: UnsafePointer<Scalar>, v: UnsafePointer<Scalar>,
  dOut: UnsafePointer<Scalar>, weights: UnsafePointer<Scalar>, keep: UnsafePointer<Scalar>?, causal: Bool,
  dq: UnsafeMutablePointer<Scalar>?, dk: UnsafeMutablePointer<Scalar>?, dv: UnsafeMutablePointer<Scalar>?
) {
  let (tq, tk, d) = (shape.tq, shape.tk, shape.d)
  let (rq, rk, rv, ro) = (shape.q.rowStride, shape.k.rowStride, shape.v.rowStride, shape.out.rowStride)
  let scale = 1 / Scalar.sqrt(Scalar(d))
  var dS = [Scalar](repeating: 0, count: tk)
  for i in 0..<tq {
    let p = weights + i * tk
    func kept(_ j: Int) -> Scalar { keep?[i * tk + j] ?? 1 }
    // dP_ij = keep_ij * sum_c dO_ic V_jc, then dS_ij = P_ij (dP_ij - sum_j' dP_ij' P_ij').
    var dot: Scalar = 0
    for j in 0..<tk {
      var dp: Scalar = 0
      for c in 0..<d { dp += dOut[i * ro + c] * v[j * rv + c] }
      dS[j] = dp * kept(j)
      dot += dS[j] * p[j]
    }
    for j in 0..<tk { dS[j] = p[j] * (dS[j] - dot) }
    for j in 0..<tk {
      for c in 0..<d {
        dv?[j * rv + c] += p[j] * kept(j) * dOut[i * ro + c]
        dq?[i * rq + c] += scale * dS[j] * k[j * rk + c]
        dk?[j * rk + c] += scale * dS[j] * q[i * rq + c]
      }
    }
  }
}
