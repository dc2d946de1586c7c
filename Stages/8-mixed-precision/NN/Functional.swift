import Kernels
import Support

/// The fused layers: one op each, with a hand-written backward, where composing them from smaller ops would keep
/// more intermediate tensors and run more backward closures. Each one's composed form is beside it, for the
/// tests and for reading.

// MARK: - Fused layers

extension Tensor {
  /// y = x @ W^T + b over the last axis: x [..., inputs], W [outputs, inputs], b [outputs] -> [..., outputs].
  /// One op instead of transpose + matmul + add: the transpose is a flag to gemm, and the bias is written into
  /// the output first so that gemm adds the product to it (beta = 1).
  ///
  /// Backward, with rows = every leading index: dx = dy @ W, dW += dy^T @ x, db += the sum of dy over the rows.
  ///
  /// Under autocast (stage 8) x, W and b are cast to the low format first and the product accumulates in fp32
  /// (gemm in Float); the result is stored in the low format, and the gradients for x and W are rounded to it. With
  /// fp8, x and W are scaled into E4M3 and dy into E5M2 by the recipe's per-tensor scales (Precision/FP8.swift).
  public func linear(_ weight: Tensor, _ bias: Tensor?) -> Tensor {
    let (outputs, inputs) = (weight.shape[0], weight.shape[1])
    precondition(
      rank >= 1 && shape[rank - 1] == inputs && weight.rank == 2,
      "linear: input \(shape) does not fit weight \(weight.shape)")
    precondition(bias == nil || bias!.shape == [outputs], "linear: bias \(bias?.shape ?? []) for \(outputs) outputs")
    let rows = count / inputs
    let scope = Autocast.current
    let low = scope?.format
    let fp8 = Autocast.current?.fp8.map { ($0, GradMode.isEnabled) }
    // The operands as the product sees them: the tensors' own elements outside autocast.
    let xq = fp8.map { $0.0.quantize(storage, role: .input, of: weight, update: $0.1) }
    let wq = fp8.map { $0.0.quantize(weight.storage, role: .weight, of: weight, update: $0.1) }
    let xs = xq?.values ?? cast(to: low)
    let ws = wq?.values ?? weight.cast(to: low)
    let bs = bias?.cast(to: low)
    var y: [Scalar] = uninitializedArray(rows * outputs)  // gemm with beta = 0 fills it, or the bias does
    if let bs {
      y.withUnsafeMutableBufferPointer { y in
        for r in 0..<rows { for j in 0..<outputs { y[r * outputs + j] = bs[j] } }
      }
    }
    y.withUnsafeMutableBufferPointer { yp in
      xs.withUnsafeBufferPointer { xp in
        ws.withUnsafeBufferPointer { wp in
          // y[rows, outputs] += x[rows, inputs] @ W[outputs, inputs]^T
          gemm(
            transposeA: false, transposeB: true, m: rows, n: outputs, k: inputs, alpha: 1, a: xp.baseAddress!,
            lda: inputs, b: wp.baseAddress!, ldb: inputs, beta: bias == nil ? 0 : 1, c: yp.baseAddress!, ldc: outputs)
        }
      }
    }
    let x = self
    // What backward multiplies by: the operands as forward saw them, cast again from the tensors' elements as they
    // are then (a cast is deterministic, and keeping it would hold a second copy of x), fp8's with the scales
    // forward used (they move after each use). Nothing may hold on to forward's arrays: ZeRO 3 lets a weight go
    // after forward and gathers it again for backward.
    let scales = xq.flatMap { xq in wq.map { (xq.scale, $0.scale) } }
    return Tensor(
      y, shape: Array(shape.dropLast()) + [outputs], op: "linear", parents: [x, weight] + (bias.map { [$0] } ?? [])
    ) {
      out in
      let dy =
        fp8.map { $0.0.quantize(out.gradStorage!, role: .outputGradient, of: weight, update: true).values }
        ?? out.gradStorage!
      let (xs, ws) =
        scales.map {
          (
            FP8Recipe.cast(x.storage, role: .input, scale: $0.0).0,
            FP8Recipe.cast(weight.storage, role: .weight, scale: $0.1).0
          )
        } ?? (x.cast(to: low), weight.cast(to: low))
      dy.withUnsafeBufferPointer { dp in
        let inputGrad = {
          x.addProductGradient(scope) { g in  // dx[rows, inputs] += dy[rows, outputs] @ W[outputs, inputs]
            ws.withUnsafeBufferPointer { wp in
              gemm(
                transposeA: false, transposeB: false, m: rows, n: inputs, k: outputs, alpha: 1, a: dp.baseAddress!,
                lda: outputs, b: wp.baseAddress!, ldb: inputs, beta: 1, c: g.baseAddress!, ldc: inputs)
            }
          }
        }
        let weightGrad = {
          weight.addProductGradient(scope) { g in  // dW[outputs, inputs] += dy[rows, outputs]^T @ x[rows, inputs]
            xs.withUnsafeBufferPointer { xp in
              gemm(
                transposeA: true, transposeB: false, m: outputs, n: inputs, k: rows, alpha: 1, a: dp.baseAddress!,
                lda: outputs, b: xp.baseAddress!, ldb: inputs, beta: 1, c: g.baseAddress!, ldc: inputs)
            }
          }
        }
        // The two products are independent and equally large: side by side, each whole on its own core, rather
        // than one after the other, each cut in two (each piece would pack the whole of the shared operand).
        if rows * inputs * outputs >= gemmGrain && x !== weight {
          Parallel.both(inputGrad, weightGrad)
        } else {
          inputGrad()
          weightGrad()
        }
        bias?.addProductGradient(scope) { g in
          for r in 0..<rows { for j in 0..<outputs { g[j] += dp[r * outputs + j] } }
        }
      }
    }
  }

  /// Layer normalisation over the last axis: each vector v becomes (v - mean) / sqrt(var + eps) * gamma + beta,
  /// var the biased variance (dividing by n). gamma and beta are [n], or nil for no affine part.
  /// Forward keeps each row's mean and 1/sqrt(var + eps) for backward (`layerNormForward` and
  /// `layerNormBackward` in Shared/Kernels have the formulas).
  public func layerNorm(_ gamma: Tensor?, _ beta: Tensor?, eps: Scalar) -> Tensor {
    let n = shape[rank - 1]
    precondition(n > 0, "layerNorm: empty last axis in \(shape)")
    precondition(gamma == nil || gamma!.shape == [n], "layerNorm: gamma \(gamma!.shape) for last axis \(n)")
    precondition(beta == nil || beta!.shape == [n], "layerNorm: beta \(beta!.shape) for last axis \(n)")
    let (x, rows) = (self, count / n)
    let ones = [Scalar](repeating: 1, count: n)
    let (y, mean, rstd): ([Scalar], [Scalar], [Scalar]) = makeArrays(count, rows, rows) { y, mean, rstd in
      withPointers(storage, gamma?.storage ?? ones, beta?.storage ?? [Scalar](repeating: 0, count: n)) {
        x, gamma, beta in
        layerNormForward(x, gamma: gamma, beta: beta, y, mean: mean, rstd: rstd, rows: rows, n: n, eps: eps)
      }
    }
    let parents = [x] + [gamma, beta].compactMap { $0 }
    let result = Tensor(y, shape: shape, op: "layerNorm", parents: parents) { out in
      let (dy, gains) = (out.gradStorage!, gamma?.storage ?? ones)
      let (dx, dgamma, dbeta): ([Scalar], [Scalar], [Scalar]) = makeArrays(x.count, n, n) { dx, dgamma, dbeta in
        withPointers(x.storage, dy, gains, mean, rstd) { x, dy, gamma, mean, rstd in
          layerNormBackward(
            x, dy, gamma: gamma, mean: mean, rstd: rstd, dx, dgamma: dgamma, dbeta: dbeta, rows: rows, n: n)
        }
      }
      x.accumulateGrad(dx)
      gamma?.accumulateGrad(dgamma)
      beta?.accumulateGrad(dbeta)
    }
    result.savedBytes = (mean.count + rstd.count + ones.count) * MemoryLayout<Scalar>.size
    return result
  }

  /// `layerNorm` composed from plain ops, its definition: five ops and their backward closures instead of one.
  public func layerNormComposed(_ gamma: Tensor?, _ beta: Tensor?, eps: Scalar) -> Tensor {
    let centered = self - mean(axis: -1, keepDims: true)
    let variance = (centered * centered).mean(axis: -1, keepDims: true)
    let normalized = centered / (variance + eps).sqrt()
    let scaled = gamma.map { normalized * $0 } ?? normalized
    return beta.map { scaled + $0 } ?? scaled
  }

  /// x * mask / (1 - p): dropout with a given mask of 0s and 1s (the Dropout layer draws the mask).
  public func dropout(mask: Tensor, p: Double) -> Tensor {
    precondition(mask.shape == shape, "dropout: mask \(mask.shape) for \(shape)")
    let keep = mask * Scalar(1 / (1 - p))
    keep.format = format  // a multiplier, not an input: a bf16 activation stays bf16 (stage 8), as in PyTorch
    return self * keep
  }

  /// `gelu` composed from plain ops: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
  public func geluComposed() -> Tensor {
    let inner = Scalar.sqrt(2 / Scalar.pi) * (self + 0.044_715 * self * self * self)
    return 0.5 * self * (1 + inner.tanh())
  }
}
