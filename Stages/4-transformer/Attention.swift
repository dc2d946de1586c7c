import Support

/// Attention: every position looks at every (earlier) position and takes a weighted average of what it finds.
/// softmax(Q K^T / sqrt(d)) V, one fused op with a hand-written backward, then multi-head attention around it.

// MARK: - Scaled dot-product attention

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
  /// backward);  dQ = dS K / sqrt(D);  dK = dS^T Q / sqrt(D). Four gemms and one pass over P.
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
    precondition(keyPadding == nil || keyPadding!.shape == [b, tk], "attention: key padding \(keyPadding!.shape)")
    let scale = 1 / Scalar.sqrt(Scalar(d))
    var p = [Scalar](repeating: 0, count: b * h * tq * tk)
    var keep = [Scalar](repeating: 1, count: dropout == nil ? 0 : p.count)
    var out = [Scalar](repeating: 0, count: b * h * tq * d)
    p.withUnsafeMutableBufferPointer { pp in
      out.withUnsafeMutableBufferPointer { op in
        q.storage.withUnsafeBufferPointer { qp in
          k.storage.withUnsafeBufferPointer { kp in
            v.storage.withUnsafeBufferPointer { vp in
              for bh in 0..<(b * h) {
                let (qs, ks, ps) = (
                  qp.baseAddress! + bh * tq * d, kp.baseAddress! + bh * tk * d, pp.baseAddress! + bh * tq * tk
                )
                // S[tq, tk] = scale * Q[tq, d] @ K[tk, d]^T
                Scalar.gemm(
                  transposeA: false, transposeB: true, m: tq, n: tk, k: d, alpha: scale, a: qs, lda: d, b: ks, ldb: d,
                  beta: 0, c: ps, ldc: tk)
                let padding = keyPadding.map { Array($0.storage[(bh / h * tk)..<(bh / h * tk + tk)]) }
                for i in 0..<tq {
                  let last = causal ? tk - tq + i : tk - 1  // the last key query i may see
                  softmaxRow(ps + i * tk, count: tk) { j in j > last || (padding?[j] ?? 0) != 0 }
                }
                if let dropout {  // the mask, scaled: P' = P * keep / (1 - p)
                  for i in 0..<(tq * tk) {
                    keep[bh * tq * tk + i] = dropout.random.rng.unit() >= dropout.p ? Scalar(1 / (1 - dropout.p)) : 0
                  }
                }
                // O[tq, d] = P'[tq, tk] @ V[tk, d], P' = P or its dropped-out copy
                let used = dropout == nil ? ps : dropped(ps, keep, from: bh * tq * tk, count: tq * tk)
                Scalar.gemm(
                  transposeA: false, transposeB: false, m: tq, n: d, k: tk, alpha: 1, a: used, lda: tk,
                  b: vp.baseAddress! + bh * tk * d, ldb: d, beta: 0, c: op.baseAddress! + bh * tq * d, ldc: d)
                if dropout != nil { used.deallocate() }
              }
            }
          }
        }
      }
    }
    let (weights, mask) = (p, keep)
    return Tensor(out, shape: [b, h, tq, d], op: "attention", parents: [q, k, v]) { result in
      let dO = result.gradStorage!
      var dS = [Scalar](repeating: 0, count: weights.count)
      dS.withUnsafeMutableBufferPointer { ds in
        weights.withUnsafeBufferPointer { pp in
          dO.withUnsafeBufferPointer { dop in
            for bh in 0..<(b * h) {
              let (ps, dss, dos) = (
                pp.baseAddress! + bh * tq * tk, ds.baseAddress! + bh * tq * tk, dop.baseAddress! + bh * tq * d
              )
              v.storage.withUnsafeBufferPointer { vp in  // dP[tq, tk] = dO[tq, d] @ V[tk, d]^T
                Scalar.gemm(
                  transposeA: false, transposeB: true, m: tq, n: tk, k: d, alpha: 1, a: dos, lda: d,
                  b: vp.baseAddress! + bh * tk * d, ldb: d, beta: 0, c: dss, ldc: tk)
              }
              if !mask.isEmpty {  // dP = dP' * mask
                for i in 0..<(tq * tk) { dss[i] *= mask[bh * tq * tk + i] }
              }
              for i in 0..<tq {  // dS = P * (dP - sum_j dP_j P_j), row by row
                var dot: Scalar = 0
                for j in 0..<tk { dot += dss[i * tk + j] * ps[i * tk + j] }
                for j in 0..<tk { dss[i * tk + j] = ps[i * tk + j] * (dss[i * tk + j] - dot) }
              }
              v.addToGrad { g in  // dV[tk, d] += P'[tq, tk]^T @ dO[tq, d]
                let used =
                  mask.isEmpty
                  ? UnsafeMutablePointer(mutating: ps) : dropped(ps, mask, from: bh * tq * tk, count: tq * tk)
                Scalar.gemm(
                  transposeA: true, transposeB: false, m: tk, n: d, k: tq, alpha: 1, a: used, lda: tk, b: dos, ldb: d,
                  beta: 1, c: g.baseAddress! + bh * tk * d, ldc: d)
                if !mask.isEmpty { used.deallocate() }
              }
              q.addToGrad { g in  // dQ[tq, d] += scale * dS[tq, tk] @ K[tk, d]
                k.storage.withUnsafeBufferPointer { kp in
                  Scalar.gemm(
                    transposeA: false, transposeB: false, m: tq, n: d, k: tk, alpha: scale, a: dss, lda: tk,
                    b: kp.baseAddress! + bh * tk * d, ldb: d, beta: 1, c: g.baseAddress! + bh * tq * d, ldc: d)
                }
              }
              k.addToGrad { g in  // dK[tk, d] += scale * dS[tq, tk]^T @ Q[tq, d]
                q.storage.withUnsafeBufferPointer { qp in
                  Scalar.gemm(
                    transposeA: true, transposeB: false, m: tk, n: d, k: tq, alpha: scale, a: dss, lda: tk,
                    b: qp.baseAddress! + bh * tq * d, ldb: d, beta: 1, c: g.baseAddress! + bh * tk * d, ldc: d)
                }
              }
            }
          }
        }
      }
    }
  }
}

/// A fresh buffer with p[i] * mask[from + i] for i < count (the caller deallocates it).
func dropped<Scalar: TensorScalar>(
  _ p: UnsafePointer<Scalar>, _ mask: [Scalar], from: Int, count: Int
)
  -> UnsafeMutablePointer<Scalar>
{
  let buffer = UnsafeMutablePointer<Scalar>.allocate(capacity: count)
  for i in 0..<count { buffer[i] = p[i] * mask[from + i] }
  return buffer
}

/// Softmax of one row of `count` scores in place, with `masked(j)` scores counting as -infinity. A row with every
/// score masked becomes all zeros (it attends to nothing) instead of 0/0.
@inline(__always)
func softmaxRow<Scalar: TensorScalar>(
  _ row: UnsafeMutablePointer<Scalar>, count: Int, masked: (Int) -> Bool
) {
  var top = -Scalar.infinity
  for j in 0..<count where !masked(j) { top = max(top, row[j]) }
  guard top > -Scalar.infinity else {
    for j in 0..<count { row[j] = 0 }
    return
  }
  var total: Scalar = 0
  for j in 0..<count {
    row[j] = masked(j) ? 0 : Scalar.exp(row[j] - top)
    total += row[j]
  }
  for j in 0..<count { row[j] /= total }
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
    // [B, T, 3C] -> [B, T, 3, H, D] -> [3, B, H, T, D] -> q, k, v each [B, H, T, D]
    let parts = qkv(x).reshape([b, t, 3, heads, d]).permute([2, 0, 3, 1, 4]).split([1, 1, 1], axis: 0)
    let (q, k, v) = (
      parts[0].reshape([b, heads, t, d]), parts[1].reshape([b, heads, t, d]), parts[2].reshape([b, heads, t, d])
    )
    var (keys, values) = (k, v)
    if let cache {
      (keys, values) = cache.append(k, v)
    }
    let drop = dropout.flatMap { $0.isTraining && $0.p > 0 ? (p: $0.p, random: $0.random) : nil }
    let y = Tensor.attention(q, keys, values, causal: causal, keyPadding: keyPadding, dropout: drop)
    // [B, H, T, D] -> [B, T, H, D] -> [B, T, C]
    let out = projection(y.permute([0, 2, 1, 3]).reshape([b, t, c]))
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
