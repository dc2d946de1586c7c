import Kernels
import Support

/// The differentiable operations. Each computes its result with a kernel and records a backward closure that
/// adds (gradient at the output) x (its Jacobian) into each input's gradient. Shape mistakes are programming
/// errors: a precondition names the op and the shapes.

// MARK: - Elementwise, one input

extension Tensor {
  /// y = f(x) elementwise, with dy/dx = derivative(x, y) (whichever of the two is cheaper to use).
  /// Backward reads x and y from the tensors (the graph keeps both), as they are stored: under autocast (stage 8)
  /// that is in 16 bits, as PyTorch saves them.
  @inline(__always)
  func unary(
    _ op: String, _ f: (Scalar) -> Scalar, derivative: @escaping (_ x: Scalar, _ y: Scalar) -> Scalar
  ) -> Tensor {
    let y = mapKernel(storage, f)
    return Tensor(y, shape: shape, op: op, parents: [self]) { out in
      let (dy, x, y) = (out.gradStorage!, self.storage, out.storage)
      self.addToGrad { g in
        for i in g.indices { g[i] += dy[i] * derivative(x[i], y[i]) }
      }
    }
  }

  public static prefix func - (x: Tensor) -> Tensor { x.unary("neg", { -$0 }, derivative: { _, _ in -1 }) }

  /// x^p elementwise: d/dx = p x^(p-1). A whole-number p is defined for negative x too.
  public func pow(_ p: Scalar) -> Tensor {
    unary("pow \(p)", { power($0, p) }, derivative: { x, _ in p * power(x, p - 1) })
  }

  public func exp() -> Tensor { unary("exp", Scalar.exp, derivative: { _, y in y }) }
  public func log() -> Tensor { unary("log", { Scalar.log($0) }, derivative: { x, _ in 1 / x }) }
  public func sqrt() -> Tensor { unary("sqrt", Scalar.sqrt, derivative: { _, y in 1 / (2 * y) }) }
  public func tanh() -> Tensor { unary("tanh", Scalar.tanh, derivative: { _, y in 1 - y * y }) }
  public func sigmoid() -> Tensor { unary("sigmoid", logistic, derivative: { _, y in y * (1 - y) }) }
  public func relu() -> Tensor { unary("relu", { Swift.max($0, 0) }, derivative: { x, _ in x > 0 ? 1 : 0 }) }

  /// GELU in GPT-2's tanh form: 0.5 x (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3). One op that computes tanh
  /// once (see `geluForward` in Shared/Kernels) and keeps it for backward:
  /// d/dx = 0.5 (1 + t) + 0.5 x (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2).
  /// Under autocast (stage 8) it keeps only its 16-bit input and computes t again in backward: an fp32 t would
  /// take twice the memory the packed input saves.
  public func gelu() -> Tensor {
    let n = count
    let (y, t): ([Scalar], [Scalar]) = makeArrays(n, n) { y, t in
      storage.withUnsafeBufferPointer { x in geluForward(x.start, y, t, count: n) }
    }
    let kept = keepsAuxiliary(t, op: "gelu")
    let result = Tensor(y, shape: shape, op: "gelu", parents: [self]) { out in
      let (x, dy) = (self.storage, out.gradStorage!)
      let t = kept ?? makeArrays(n, n) { y, t in x.withUnsafeBufferPointer { geluForward($0.start, y, t, count: n) } }.1
      self.accumulateGrad(
        makeArray(n) { dx in withPointers(x, t, dy) { x, t, dy in geluBackward(x, t, dy, dx, count: n) } })
    }
    result.savedBytes = kept.map { $0.count * MemoryLayout<Scalar>.size } ?? 0
    return result
  }

  /// GELU in its exact form: x Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), Phi the standard normal's distribution
  /// function, as Hugging Face's BERT computes it. d/dx = Phi(x) + x phi(x), phi(x) = e^(-x^2 / 2) / sqrt(2 pi) the
  /// density. The tanh form above approximates it to within 5e-4 (4.7e-4 near x = -2.7); a checkpoint trained with
  /// one form and run with the other is slightly off, which is why Hugging Face's configs name the form ("gelu" is
  /// this one, "gelu_new" the tanh). One op that keeps Phi(x) for backward (`geluErfForward` in Shared/Kernels), or
  /// under autocast computes it again, as `gelu` does t.
  public func geluErf() -> Tensor {
    let n = count
    let (y, cdf): ([Scalar], [Scalar]) = makeArrays(n, n) { y, cdf in
      storage.withUnsafeBufferPointer { x in geluErfForward(x.start, y, cdf, count: n) }
    }
    let kept = keepsAuxiliary(cdf, op: "geluErf")
    let result = Tensor(y, shape: shape, op: "geluErf", parents: [self]) { out in
      let (x, dy) = (self.storage, out.gradStorage!)
      let cdf =
        kept
        ?? makeArrays(n, n) { y, cdf in x.withUnsafeBufferPointer { geluErfForward($0.start, y, cdf, count: n) } }.1
      self.accumulateGrad(
        makeArray(n) { dx in withPointers(x, cdf, dy) { x, cdf, dy in geluErfBackward(x, cdf, dy, dx, count: n) } })
    }
    result.savedBytes = kept.map { $0.count * MemoryLayout<Scalar>.size } ?? 0
    return result
  }
}

/// x^p, through the integer power when p is a whole number (the real `pow` is NaN for x < 0).
func power<Scalar: TensorScalar>(_ x: Scalar, _ p: Scalar) -> Scalar {
  if p == p.rounded(), abs(p) < 0x1p30 { return Scalar.pow(x, Int(p)) }
  return Scalar.pow(x, p)
}

/// The logistic sigmoid, written so that e^(-x) never overflows: for x < 0 use e^x / (1 + e^x).
func logistic<Scalar: TensorScalar>(_ x: Scalar) -> Scalar {
  if x >= 0 { return 1 / (1 + Scalar.exp(-x)) }
  let e = Scalar.exp(x)
  return e / (1 + e)
}

// MARK: - Elementwise, two inputs (broadcasting)

extension Tensor {
  /// f(a, b) elementwise over the broadcast shape, without recording anything.
  @inline(__always)
  static func broadcastMap(
    _ a: Tensor, _ b: Tensor, _ op: String, _ f: (Scalar, Scalar) -> Scalar
  ) -> (
    [Scalar], [Int]
  ) {
    guard let shape = broadcastShape(a.shape, b.shape) else {
      preconditionFailure("\(op): shapes \(a.shape) and \(b.shape) do not broadcast")
    }
    if a.shape == b.shape {  // the common case: one flat loop
      return (zipKernel(a.storage, b.storage, f), shape)
    }
    var out = [Scalar](repeating: 0, count: elementCount(shape))
    let (sa, sb) = (broadcastStrides(a.shape, to: shape), broadcastStrides(b.shape, to: shape))
    out.withUnsafeMutableBufferPointer { o in
      a.storage.withUnsafeBufferPointer { ap in
        b.storage.withUnsafeBufferPointer { bp in
          forEachOffset(shape, sa, sb) { i, j, k in o[i] = f(ap[j], bp[k]) }
        }
      }
    }
    return (out, shape)
  }

  /// A partial derivative of a two-input op: the constant 1 (the gradient passes through unchanged), or a
  /// function of the two inputs.
  enum Partial {
    case one
    case function((Scalar, Scalar) -> Scalar)
  }

  /// y = f(a, b) elementwise over the broadcast shape, with partial derivatives da and db.
  /// Backward adds dy * da into a's gradient at a's offset for every output element: a broadcast element
  /// collects the sum over all its copies, which is the reduce-to-shape of broadcasting's backward.
  /// Without broadcasting it is one flat loop, or none at all: a partial of 1 hands dy on as it is.
  @inline(__always)
  static func binary(
    _ a: Tensor, _ b: Tensor, _ op: String, _ f: (Scalar, Scalar) -> Scalar, da: Partial, db: Partial
  )
    -> Tensor
  {
    let (y, shape) = broadcastMap(a, b, op, f)
    return Tensor(y, shape: shape, op: op, parents: [a, b]) { out in
      let dy = out.gradStorage!
      // The inputs' values, only when a partial needs them (a sum's do not: no unpacking for a residual add).
      let needed = [da, db].contains { if case .function = $0 { true } else { false } }
      let (av, bv) = needed ? (a.storage, b.storage) : ([], [])
      if a.shape == b.shape {
        for (x, partial) in [(a, da), (b, db)] where x.requiresGrad {
          switch partial {
          case .one: x.passGradient(dy, from: out)
          case .function(let d):
            x.accumulateGrad(
              [Scalar](unsafeUninitializedCapacity: dy.count) { g, written in
                for i in 0..<dy.count { g[i] = dy[i] * d(av[i], bv[i]) }
                written = dy.count
              })
          }
        }
        return
      }
      let (sa, sb) = (broadcastStrides(a.shape, to: shape), broadcastStrides(b.shape, to: shape))
      for (x, partial, onA) in [(a, da, true), (b, db, false)] {
        x.addToGrad { g in
          switch partial {
          case .one: forEachOffset(shape, sa, sb) { i, j, k in g[onA ? j : k] += dy[i] }
          case .function(let d): forEachOffset(shape, sa, sb) { i, j, k in g[onA ? j : k] += dy[i] * d(av[j], bv[k]) }
          }
        }
      }
    }
  }

  public static func + (a: Tensor, b: Tensor) -> Tensor { binary(a, b, "+", +, da: .one, db: .one) }
  public static func - (a: Tensor, b: Tensor) -> Tensor { binary(a, b, "-", -, da: .one, db: .function { _, _ in -1 }) }
  public static func * (a: Tensor, b: Tensor) -> Tensor {
    binary(a, b, "*", *, da: .function { _, b in b }, db: .function { a, _ in a })
  }
  public static func / (a: Tensor, b: Tensor) -> Tensor {
    binary(a, b, "/", /, da: .function { _, b in 1 / b }, db: .function { a, b in -a / (b * b) })
  }

  // A plain number on either side is a constant tensor of shape [], broadcast to the other's shape.
  public static func + (a: Tensor, b: Scalar) -> Tensor { a + Tensor(scalar: b) }
  public static func + (a: Scalar, b: Tensor) -> Tensor { Tensor(scalar: a) + b }
  public static func - (a: Tensor, b: Scalar) -> Tensor { a - Tensor(scalar: b) }
  public static func - (a: Scalar, b: Tensor) -> Tensor { Tensor(scalar: a) - b }
  public static func * (a: Tensor, b: Scalar) -> Tensor { a * Tensor(scalar: b) }
  public static func * (a: Scalar, b: Tensor) -> Tensor { Tensor(scalar: a) * b }
  public static func / (a: Tensor, b: Scalar) -> Tensor { a / Tensor(scalar: b) }
  public static func / (a: Scalar, b: Tensor) -> Tensor { Tensor(scalar: a) / b }

  public static func += (a: inout Tensor, b: Tensor) { a = a + b }
}

// MARK: - Comparisons and selection

extension Tensor {
  /// 1 where a > b, else 0 (broadcasting; no gradient flows through a comparison).
  public func greater(_ other: Tensor) -> Tensor { comparison(other, ">") { $0 > $1 } }
  /// 1 where a < b, else 0.
  public func less(_ other: Tensor) -> Tensor { comparison(other, "<") { $0 < $1 } }
  /// 1 where a == b, else 0.
  public func equal(_ other: Tensor) -> Tensor { comparison(other, "==") { $0 == $1 } }

  private func comparison(_ other: Tensor, _ op: String, _ test: (Scalar, Scalar) -> Bool) -> Tensor {
    let (y, shape) = Tensor.broadcastMap(self, other, op) { test($0, $1) ? 1 : 0 }
    return Tensor(y, shape: shape)
  }

  /// where(condition, a, b): a where the condition is non-zero, else b (all three broadcast together).
  /// The gradient goes to a where the condition holds and to b elsewhere.
  public static func `where`(_ condition: Tensor, _ a: Tensor, _ b: Tensor) -> Tensor {
    guard let ab = broadcastShape(a.shape, b.shape), let shape = broadcastShape(ab, condition.shape) else {
      preconditionFailure("where: shapes \(condition.shape), \(a.shape), \(b.shape) do not broadcast")
    }
    let take = expand(condition.storage, condition.shape, to: shape).map { $0 != 0 }
    let (sa, sb) = (broadcastStrides(a.shape, to: shape), broadcastStrides(b.shape, to: shape))
    var y = [Scalar](repeating: 0, count: take.count)
    let (av, bv) = (a.storage, b.storage)
    forEachOffset(shape, sa, sb) { i, j, k in y[i] = take[i] ? av[j] : bv[k] }
    return Tensor(y, shape: shape, op: "where", parents: [a, b]) { out in
      let dy = out.gradStorage!
      a.addToGrad { g in forEachOffset(shape, sa, sb) { i, j, _ in if take[i] { g[j] += dy[i] } } }
      b.addToGrad { g in forEachOffset(shape, sa, sb) { i, _, k in if !take[i] { g[k] += dy[i] } } }
    }
  }

  /// A copy with `value` wherever `mask` (broadcast to this shape) is non-zero: attention's masking. The masked
  /// elements get no gradient. Unlike `x * (1 - mask) + mask * value`, it works for value = -infinity.
  public func maskedFill(_ mask: Tensor, value: Scalar) -> Tensor {
    precondition(broadcastShape(mask.shape, shape) == shape, "maskedFill: mask \(mask.shape) vs tensor \(shape)")
    let masked = expand(mask.storage, mask.shape, to: shape).map { $0 != 0 }
    let y = zip(storage, masked).map { $1 ? value : $0 }
    return Tensor(y, shape: shape, op: "maskedFill", parents: [self]) { out in
      let dy = out.gradStorage!
      self.addToGrad { g in for i in g.indices where !masked[i] { g[i] += dy[i] } }
    }
  }
}

// MARK: - Reductions

extension Tensor {
  /// The sum over `axes` (negative counts from the end), which disappear or, with `keepDims`, stay as size 1.
  /// Backward: every element of a summed group receives the group's gradient.
  public func sum(axes: [Int], keepDims: Bool = false) -> Tensor {
    let axes = normalizedAxes(axes, rank: rank, op: "sum")
    let kept = reducedShape(shape, axes: axes, keepDims: true)
    let y = sumOverAxes(storage, shape, axes: axes)
    return Tensor(y, shape: reducedShape(shape, axes: axes, keepDims: keepDims), op: "sum", parents: [self]) { out in
      let dy = out.gradStorage!
      let (read, spread) = (contiguousStrides(self.shape), broadcastStrides(kept, to: self.shape))
      self.addToGrad { g in forEachOffset(self.shape, read, spread) { _, i, o in g[i] += dy[o] } }
    }
  }

  /// The sum along one axis.
  public func sum(axis: Int, keepDims: Bool = false) -> Tensor { sum(axes: [axis], keepDims: keepDims) }

  /// The sum of every element, a tensor of shape [].
  public func sum() -> Tensor { sum(axes: Array(0..<rank)) }

  /// The mean over `axes`: the sum divided by how many elements each group has.
  public func mean(axes: [Int], keepDims: Bool = false) -> Tensor {
    let group = normalizedAxes(axes, rank: rank, op: "mean").reduce(1) { $0 * shape[$1] }
    return sum(axes: axes, keepDims: keepDims) / Scalar(group)
  }

  public func mean(axis: Int, keepDims: Bool = false) -> Tensor { mean(axes: [axis], keepDims: keepDims) }
  public func mean() -> Tensor { mean(axes: Array(0..<rank)) }

  /// The maximum over `axes`. Backward sends each group's gradient to its maximal element (the first one on a
  /// tie: the golden checks draw inputs without ties).
  public func max(axes: [Int], keepDims: Bool = false) -> Tensor {
    let axes = normalizedAxes(axes, rank: rank, op: "max")
    precondition(axes.allSatisfy { shape[$0] > 0 }, "max: empty axis in shape \(shape)")
    let (y, argmax) = maxOverAxes(storage, shape, axes: axes)
    return Tensor(y, shape: reducedShape(shape, axes: axes, keepDims: keepDims), op: "max", parents: [self]) { out in
      let dy = out.gradStorage!
      self.addToGrad { g in for (o, i) in argmax.enumerated() { g[i] += dy[o] } }
    }
  }

  public func max(axis: Int, keepDims: Bool = false) -> Tensor { max(axes: [axis], keepDims: keepDims) }
  public func max() -> Tensor { max(axes: Array(0..<rank)) }
}

// MARK: - Matrix product

extension Tensor {
  /// The matrix product over the last two axes, a [..., m, k] @ b [..., k, n] -> [..., m, n], with the leading
  /// (batch) axes broadcast. Each matrix product is one BLAS gemm call.
  ///
  /// Backward, per batch: dA = dC @ B^T and dB = A^T @ dC. The transposes are flags to gemm, never copies, and
  /// gemm adds into the gradient (beta = 1), so a broadcast batch accumulates over the batches that used it.
  /// Under autocast (stage 8) the operands are cast to the low format and the product accumulates in fp32.
  public func matmul(_ other: Tensor) -> Tensor {
    let (a, b) = (self, other)
    precondition(a.rank >= 2 && b.rank >= 2, "matmul: needs rank >= 2, got \(a.shape) @ \(b.shape)")
    let (m, k, n) = (a.shape[a.rank - 2], a.shape[a.rank - 1], b.shape[b.rank - 1])
    precondition(b.shape[b.rank - 2] == k, "matmul: inner sizes differ in \(a.shape) @ \(b.shape)")
    let (batchA, batchB) = (Array(a.shape.dropLast(2)), Array(b.shape.dropLast(2)))
    guard let batch = broadcastShape(batchA, batchB) else {
      preconditionFailure("matmul: batch shapes of \(a.shape) @ \(b.shape) do not broadcast")
    }
    // Offsets are counted in whole matrices along the batch axes.
    let (sa, sb) = (broadcastStrides(batchA, to: batch), broadcastStrides(batchB, to: batch))
    let scope = Autocast.current
    let low = scope?.format
    let (aValues, bValues) = (a.cast(to: low), b.cast(to: low))
    var c = [Scalar](repeating: 0, count: elementCount(batch) * m * n)
    c.withUnsafeMutableBufferPointer { cp in
      aValues.withUnsafeBufferPointer { ap in
        bValues.withUnsafeBufferPointer { bp in
          forEachOffset(batch, sa, sb) { o, i, j in
            gemm(
              transposeA: false, transposeB: false, m: m, n: n, k: k, alpha: 1, a: ap.baseAddress! + i * m * k, lda: k,
              b: bp.baseAddress! + j * k * n, ldb: n, beta: 0, c: cp.baseAddress! + o * m * n, ldc: n)
          }
        }
      }
    }
    return Tensor(c, shape: batch + [m, n], op: "matmul", parents: [a, b]) { out in
      let dc = out.gradStorage!
      let (aValues, bValues) = (a.cast(to: low), b.cast(to: low))  // cast again, not kept (see `linear`)
      dc.withUnsafeBufferPointer { dp in
        a.addProductGradient(scope) { ga in
          bValues.withUnsafeBufferPointer { bp in
            forEachOffset(batch, sa, sb) { o, i, j in  // dA[m, k] += dC[m, n] @ B[k, n]^T
              gemm(
                transposeA: false, transposeB: true, m: m, n: k, k: n, alpha: 1, a: dp.baseAddress! + o * m * n,
                lda: n, b: bp.baseAddress! + j * k * n, ldb: n, beta: 1, c: ga.baseAddress! + i * m * k, ldc: k)
            }
          }
        }
        b.addProductGradient(scope) { gb in
          aValues.withUnsafeBufferPointer { ap in
            forEachOffset(batch, sa, sb) { o, i, j in  // dB[k, n] += A[m, k]^T @ dC[m, n]
              gemm(
                transposeA: true, transposeB: false, m: k, n: n, k: m, alpha: 1, a: ap.baseAddress! + i * m * k,
                lda: k, b: dp.baseAddress! + o * m * n, ldb: n, beta: 1, c: gb.baseAddress! + j * k * n, ldc: n)
            }
          }
        }
      }
    }
  }
}

// MARK: - Softmax

extension Tensor {
  /// softmax along `axis`: e^x_k / sum_j e^x_j, computed stably (see `softmaxForward` in Shared/Kernels).
  public func softmax(axis: Int = -1) -> Tensor { softmaxFamily(axis: axis, log: false) }

  /// log softmax along `axis`: x_k - log sum_j e^x_j, computed stably.
  public func logSoftmax(axis: Int = -1) -> Tensor { softmaxFamily(axis: axis, log: true) }

  private func softmaxFamily(axis: Int, log: Bool) -> Tensor {
    let axis = normalizedAxes([axis], rank: rank, op: log ? "logSoftmax" : "softmax")[0]
    let (outer, n, inner) = splitAround(shape, axis: axis)
    let y: [Scalar] = makeArray(count) { y in
      storage.withUnsafeBufferPointer { x in softmaxForward(x.start, y, outer: outer, n: n, inner: inner, log: log) }
    }
    return Tensor(y, shape: shape, op: log ? "logSoftmax" : "softmax", parents: [self]) { out in
      let dy = out.gradStorage!
      self.addToGrad { g in
        withPointers(y, dy) { y, dy in softmaxBackward(y, dy, g.start, outer: outer, n: n, inner: inner, log: log) }
      }
    }
  }
}

// MARK: - Gathering rows

extension Tensor {
  /// Rows of this table picked by index: an embedding lookup. A table [rows, d...] and indices of `indexShape`
  /// give [indexShape..., d...]. Backward adds each output row's gradient into the row it came from, so an index
  /// that repeats accumulates.
  public func gatherRows(_ indices: [Int], indexShape: [Int]? = nil) -> Tensor {
    precondition(rank >= 1, "gatherRows: the table needs rank >= 1, got \(shape)")
    let rows = shape[0]
    let width = count / Swift.max(rows, 1)
    for index in indices where !(0..<rows).contains(index) {
      preconditionFailure("gatherRows: index \(index) out of range for a table of \(rows) rows")
    }
    let indexShape = indexShape ?? [indices.count]
    precondition(elementCount(indexShape) == indices.count, "gatherRows: \(indices.count) indices for \(indexShape)")
    var y = [Scalar](repeating: 0, count: indices.count * width)
    let table = storage
    for (r, index) in indices.enumerated() {
      for j in 0..<width { y[r * width + j] = table[index * width + j] }
    }
    return Tensor(y, shape: indexShape + shape.dropFirst(), op: "gatherRows", parents: [self]) { out in
      let dy = out.gradStorage!
      self.addToGrad { g in
        for (r, index) in indices.enumerated() {
          for j in 0..<width { g[index * width + j] += dy[r * width + j] }
        }
      }
    }
  }
}
