import Kernels
import Support

/// Attention: every position looks at every (earlier) position and takes a weighted average of what it finds.
/// softmax(Q K^T / sqrt(d)) V, one fused op with a hand-written backward (its per-head loops are
/// `attentionHeadForward` and `attentionHeadBackward` in Shared/Kernels), the same maths composed from plain ops one
/// `if` away, then multi-head attention around it.

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
  /// backward);  dQ = dS K / sqrt(D);  dK = dS^T Q / sqrt(D).
  ///
  /// With `dropout` (training), each weight is zeroed with probability p and the rest scaled by 1/(1 - p) before
  /// multiplying V (nanoGPT's attention dropout); backward applies the same mask to dP. The mask is
  /// `attentionDropoutMask`'s, drawn before the heads run.
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
  /// projection. The same op as `attention`, without the copies that splitting and merging the heads would make:
  /// the kernels read each head through strides (`HeadLayout`).
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

  /// Attention dropout's scaled mask for `count` weights: keep / (1 - p), keep = 1 with probability 1 - p, drawn
  /// in order from `random`. The fused op and the composed form draw the same mask from the same generator state.
  public static func attentionDropoutMask(count: Int, p: Double, random: RandomSource) -> [Scalar] {
    (0..<count).map { _ in random.rng.unit() >= p ? Scalar(1 / (1 - p)) : 0 }
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
    let keep = dropout.map { attentionDropoutMask(count: b * h * square, p: $0.p, random: $0.random) }
    let (keepValues, padding) = (keep ?? [], keyPadding?.storage ?? [])
    // A row without padding takes the kernel's unmasked path, which runs in SIMD lanes (the padded one tests each key).
    let padded = (0..<b).map { bi in keyPadding != nil && padding[(bi * tk)..<((bi + 1) * tk)].contains { $0 != 0 } }
    // Every head writes its own block of both in full.
    // Under autocast (stage 8) q, k and v are cast to the low format (packed, they are one cast); the softmax
    // and both products accumulate in fp32, and P stays fp32, as a fused kernel keeps it in fp32 registers.
    let scope = Autocast.current
    let low = scope?.format
    let (qValues, kValues, vValues) = castOperands(q, k, v, to: low)
    let (weights, out): ([Scalar], [Scalar]) = makeArrays(b * h * square, elementCount(outputShape)) { pp, op in
      withPointers(qValues, kValues, vValues, keepValues, padding) { qp, kp, vp, keepP, padP in
        Parallel.forEach(b * h, grain: 1) { pairs in
          for bh in pairs {
            let (bi, hi) = bh.quotientAndRemainder(dividingBy: h)
            attentionHeadForward(
              shape, q: qp + shape.q.start(bi, hi), k: kp + shape.k.start(bi, hi), v: vp + shape.v.start(bi, hi),
              out: op + shape.out.start(bi, hi), weights: pp + bh * square,
              keep: keep == nil ? nil : keepP + bh * square, padding: padded[bi] ? padP + bi * tk : nil,
              causal: causal)
          }
        }
      }
    }
    let parents = q === k && k === v ? [q] : [q, k, v]
    let result = Tensor(out, shape: outputShape, op: "attention", parents: parents) { result in
      let dO = result.gradStorage!
      let (qValues, kValues, vValues) = castOperands(q, k, v, to: low)  // cast again, not kept (see `linear`)
      withProductGradients([q, k, v], scope) { grads in
        withPointers(weights, dO, qValues, kValues, vValues) { pp, dop, qp, kp, vp in
          keepValues.withUnsafeBufferPointer { keepP in
            Parallel.forEach(b * h, grain: 1) { pairs in
              for bh in pairs {
                let (bi, hi) = bh.quotientAndRemainder(dividingBy: h)
                let (qs, ks, vs) = (shape.q.start(bi, hi), shape.k.start(bi, hi), shape.v.start(bi, hi))
                attentionHeadBackward(
                  shape, q: qp + qs, k: kp + ks, v: vp + vs, dOut: dop + shape.out.start(bi, hi),
                  weights: pp + bh * square, keep: keep == nil ? nil : keepP.start + bh * square, causal: causal,
                  dq: grads[0].map { $0 + qs }, dk: grads[1].map { $0 + ks }, dv: grads[2].map { $0 + vs })
              }
            }
          }
        }
      }
    }
    result.savedBytes = (weights.count + keepValues.count) * MemoryLayout<Scalar>.size
    return result
  }

  /// q, k and v as the kernels read them under autocast to `low` (one cast when they are one packed tensor).
  private static func castOperands(
    _ q: Tensor, _ k: Tensor, _ v: Tensor, to low: NumberFormat?
  ) -> (
    [Scalar], [Scalar], [Scalar]
  ) {
    let qValues = q.cast(to: low)
    let kValues = k === q ? qValues : k.cast(to: low)
    return (qValues, kValues, v === q ? qValues : v === k ? kValues : v.cast(to: low))
  }

  /// The same attention composed from plain ops, nanoGPT's "manual implementation": scores by matmul, the masks by
  /// `maskedFill`, softmax, the dropout mask (`keep`, [B, H, Tq, Tk], scaled, from `attentionDropoutMask`) as a
  /// product, and the weighted sum by matmul. Four intermediate tensors and five backward closures where the fused
  /// op keeps only P. One difference: a query with every key masked gets NaN here (softmax of all -infinity) and
  /// zeros from the fused op.
  public static func attentionComposed(
    _ q: Tensor, _ k: Tensor, _ v: Tensor, causal: Bool, keyPadding: Tensor? = nil, keep: Tensor? = nil
  ) -> Tensor {
    let (b, tq, tk, d) = (q.shape[0], q.shape[2], k.shape[2], q.shape[3])
    var scores = q.matmul(k.transposed()) / Scalar.sqrt(Scalar(d))
    if causal {  // query i sees keys j <= i + tk - tq
      let future = (0..<(tq * tk)).map { $0 % tk > $0 / tk + (tk - tq) ? Scalar(1) : 0 }
      scores = scores.maskedFill(Tensor(future, shape: [tq, tk]), value: -.infinity)
    }
    if let keyPadding { scores = scores.maskedFill(keyPadding.reshape([b, 1, 1, tk]), value: -.infinity) }
    let weights = scores.softmax(axis: -1)
    return (keep.map { weights * $0 } ?? weights).matmul(v)
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

/// `withGradients` for a product's inputs: under an autocast `scope`, each input's gradient is made on its own
/// from zeros, rounded to the scope's format and then added (`addProductGradient`).
func withProductGradients<Scalar: TensorScalar>(
  _ tensors: [Tensor<Scalar>], _ scope: Autocast?, _ body: ([UnsafeMutablePointer<Scalar>?]) -> Void
) {
  guard let scope else { return withGradients(tensors, body) }
  var distinct: [Tensor<Scalar>] = []
  for t in tensors where t.requiresGrad && !distinct.contains(where: { $0 === t }) { distinct.append(t) }
  var pending = distinct
  var pointers: [ObjectIdentifier: UnsafeMutablePointer<Scalar>] = [:]
  func open() {
    guard let t = pending.popLast() else {
      return body(tensors.map { pointers[ObjectIdentifier($0)] })
    }
    t.addProductGradient(scope) { g in
      pointers[ObjectIdentifier(t)] = g.baseAddress!
      open()
    }
  }
  open()
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
  /// IA3's learned scales [C] of the keys and of the values (FineTuning/Methods.swift); nil unless IA3 is on.
  public var keyScale: Tensor<Scalar>?
  public var valueScale: Tensor<Scalar>?
  public var isTraining = true
  /// The fused attention op (the default), or the same maths composed from plain ops (nanoGPT's manual path):
  /// slower and hungrier for memory, and a check on the fused op.
  public var fused = true

  public init(qkv: Linear<Scalar>, projection: Linear<Scalar>, heads: Int, causal: Bool, dropout: Dropout<Scalar>?) {
    precondition(qkv.weight.shape[1] % heads == 0, "MultiHeadAttention: width \(qkv.weight.shape[1]) by \(heads) heads")
    self.qkv = qkv
    self.projection = projection
    self.heads = heads
    self.causal = causal
    self.dropout = dropout
  }

  public func callAsFunction(_ x: Tensor<Scalar>) -> Tensor<Scalar> { attend(x, keyPadding: nil, cache: nil) }

  /// x [B, T, C] -> [B, T, C]. With a cache, x holds only the new positions: their keys and values are appended
  /// to the cache and the queries attend to everything cached so far. A `prefix` (prefix tuning's keys and values,
  /// [B, H, P, D] each) stands before the keys and values of x: every query may look at it, as at its own past.
  public func attend(
    _ x: Tensor<Scalar>, keyPadding: Tensor<Scalar>?, cache: LayerCache<Scalar>?,
    prefix: (keys: Tensor<Scalar>, values: Tensor<Scalar>)? = nil
  ) -> Tensor<Scalar> {
    let (b, t, c) = (x.shape[0], x.shape[1], x.shape[2])
    let d = c / heads
    var packed = qkv(x)  // [B, T, 3C]
    if let keyScale, let valueScale {  // IA3: queries as they are, keys and values scaled feature by feature
      packed = packed * Tensor.concatenate([Tensor.ones([c]), keyScale, valueScale], axis: 0)
    }
    let drop = dropout.flatMap { $0.isTraining && $0.p > 0 ? (p: $0.p, random: $0.random) : nil }
    if fused && cache == nil && prefix == nil {
      let y = Tensor.attention(packed: packed, heads: heads, causal: causal, keyPadding: keyPadding, dropout: drop)
      return residualDropout(projection(y))
    }
    // The heads split out: [B, T, 3C] -> [B, T, 3, H, D] -> [3, B, H, T, D] -> q, k, v each [B, H, T, D].
    let parts = packed.reshape([b, t, 3, heads, d]).permute([2, 0, 3, 1, 4]).split([1, 1, 1], axis: 0)
    let q = parts[0].reshape([b, heads, t, d])
    var (k, v) = (parts[1].reshape([b, heads, t, d]), parts[2].reshape([b, heads, t, d]))
    var keyPadding = keyPadding
    if let prefix {  // the causal rule lets query i see key j <= i + P: the whole prefix, then its own past
      k = Tensor.concatenate([prefix.keys, k], axis: 2)
      v = Tensor.concatenate([prefix.values, v], axis: 2)
      let p = prefix.keys.shape[2]
      keyPadding = keyPadding.map { Tensor.concatenate([Tensor.zeros([b, p]), $0], axis: 1) }
    }
    // Decoding: the new keys and values join the cache, and the queries attend to everything cached so far.
    let (keys, values) = cache?.append(k, v) ?? (k, v)
    let y: Tensor<Scalar>
    if fused {
      y = Tensor.attention(q, keys, values, causal: causal, keyPadding: keyPadding, dropout: drop)
    } else {
      let tk = keys.shape[2]
      let keep = drop.map {
        Tensor<Scalar>(
          Tensor<Scalar>.attentionDropoutMask(count: b * heads * t * tk, p: $0.p, random: $0.random),
          shape: [b, heads, t, tk])
      }
      y = Tensor.attentionComposed(q, keys, values, causal: causal, keyPadding: keyPadding, keep: keep)
    }
    // [B, H, T, D] -> [B, T, H, D] -> [B, T, C]
    return residualDropout(projection(y.permute([0, 2, 1, 3]).reshape([b, t, c])))
  }

  private func residualDropout(_ x: Tensor<Scalar>) -> Tensor<Scalar> { dropout.map { $0(x) } ?? x }
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
