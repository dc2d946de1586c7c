import Support

/// Shapes and strides: where element [i, j, k] of a row-major array sits, how broadcasting reads a smaller operand
/// as a larger one without a copy, and the loops that walk two operands side by side. The fast numeric loops are in
/// Shared/Kernels; these are the bookkeeping every op shares.

// MARK: - Shapes and strides

/// Row-major strides: how far apart neighbours are along each axis. [2, 3, 4] -> [12, 4, 1].
func contiguousStrides(_ shape: [Int]) -> [Int] {
  var strides = [Int](repeating: 1, count: shape.count)
  var step = 1
  for axis in shape.indices.reversed() {
    strides[axis] = step
    step *= shape[axis]
  }
  return strides
}

/// The shape two operands broadcast to, by NumPy's rule: align the shapes at the right; along each axis the
/// sizes must be equal or one of them 1 (a missing axis counts as 1). Nil when they do not fit.
func broadcastShape(_ a: [Int], _ b: [Int]) -> [Int]? {
  let rank = max(a.count, b.count)
  var shape = [Int](repeating: 1, count: rank)
  for k in 0..<rank {
    let x = k < rank - a.count ? 1 : a[k - (rank - a.count)]
    let y = k < rank - b.count ? 1 : b[k - (rank - b.count)]
    guard x == y || x == 1 || y == 1 else { return nil }
    shape[k] = x == 1 ? y : x
  }
  return shape
}

/// Strides that read an operand of `shape` as if it had the larger shape `target`: 0 along every axis where
/// the operand has size 1 or no axis at all, so the same element is read again and again. That is broadcasting:
/// no copy is made.
func broadcastStrides(_ shape: [Int], to target: [Int]) -> [Int] {
  let own = contiguousStrides(shape)
  let offset = target.count - shape.count
  return target.indices.map { k in
    k < offset || shape[k - offset] == 1 ? 0 : own[k - offset]
  }
}

/// The axes a reduction runs over, made non-negative and checked (-1 is the last axis).
func normalizedAxes(_ axes: [Int], rank: Int, op: String) -> [Int] {
  let result = axes.map { $0 < 0 ? $0 + rank : $0 }
  precondition(result.allSatisfy { (0..<rank).contains($0) }, "\(op): axes \(axes) out of range for rank \(rank)")
  precondition(Set(result).count == result.count, "\(op): repeated axis in \(axes)")
  return result.sorted()
}

// MARK: - Iteration

/// Visits every element of a row-major array of `shape` in order, with the matching offsets into two operands
/// read with strides `sa` and `sb` (from `broadcastStrides`): body(out, a, b).
///
/// Forward broadcasting reads a[a-offset]; backward writes gradient into the same a-offset, and since a
/// broadcast element is visited once for each copy, its gradient is the sum over the copies. That sum over
/// the broadcast axes, "unbroadcasting", needs no separate step.
@inline(__always)
func forEachOffset(_ shape: [Int], _ sa: [Int], _ sb: [Int], _ body: (_ out: Int, _ a: Int, _ b: Int) -> Void) {
  let rank = shape.count
  if rank == 0 {
    body(0, 0, 0)
    return
  }
  let inner = shape[rank - 1]
  let total = elementCount(shape)
  if total == 0 { return }
  let (ia, ib) = (sa[rank - 1], sb[rank - 1])
  var index = [Int](repeating: 0, count: rank)
  var (a, b, out) = (0, 0, 0)
  while out < total {
    for j in 0..<inner { body(out + j, a + j * ia, b + j * ib) }
    out += inner
    // Step the outer axes like an odometer.
    var axis = rank - 2
    while axis >= 0 {
      index[axis] += 1
      a += sa[axis]
      b += sb[axis]
      if index[axis] < shape[axis] { break }
      a -= sa[axis] * shape[axis]
      b -= sb[axis] * shape[axis]
      index[axis] = 0
      axis -= 1
    }
  }
}

/// A copy of `x` (shape `shape`) broadcast to `target`.
func expand<Scalar: TensorScalar>(_ x: [Scalar], _ shape: [Int], to target: [Int]) -> [Scalar] {
  if shape == target { return x }
  let strides = broadcastStrides(shape, to: target)
  var out = [Scalar](repeating: 0, count: elementCount(target))
  out.withUnsafeMutableBufferPointer { o in
    x.withUnsafeBufferPointer { xp in forEachOffset(target, strides, strides) { i, s, _ in o[i] = xp[s] } }
  }
  return out
}

// MARK: - Reductions

/// The shape of a reduction over `axes` of `shape`: those axes become 1 (keepDims) or disappear.
func reducedShape(_ shape: [Int], axes: [Int], keepDims: Bool) -> [Int] {
  keepDims
    ? shape.indices.map { axes.contains($0) ? 1 : shape[$0] }
    : shape.indices.filter { !axes.contains($0) }.map { shape[$0] }
}

/// out[o] = sum of x over the reduced axes. x: `shape`; out: `shape` with `axes` set to 1, row-major.
func sumOverAxes<Scalar: TensorScalar>(_ x: [Scalar], _ shape: [Int], axes: [Int]) -> [Scalar] {
  let kept = reducedShape(shape, axes: axes, keepDims: true)
  var out = [Scalar](repeating: 0, count: elementCount(kept))
  let read = contiguousStrides(shape)
  let write = broadcastStrides(kept, to: shape)
  out.withUnsafeMutableBufferPointer { o in
    x.withUnsafeBufferPointer { xp in forEachOffset(shape, read, write) { _, i, w in o[w] += xp[i] } }
  }
  return out
}

/// out[o] = max of x over the reduced axes, and the index in x of the first maximum (for backward).
func maxOverAxes<Scalar: TensorScalar>(
  _ x: [Scalar], _ shape: [Int], axes: [Int]
) -> (
  values: [Scalar], argmax: [Int]
) {
  let kept = reducedShape(shape, axes: axes, keepDims: true)
  var values = [Scalar](repeating: -Scalar.infinity, count: elementCount(kept))
  var argmax = [Int](repeating: -1, count: values.count)
  let read = contiguousStrides(shape)
  let write = broadcastStrides(kept, to: shape)
  x.withUnsafeBufferPointer { xp in
    forEachOffset(shape, read, write) { _, i, w in
      if xp[i] > values[w] || argmax[w] < 0 {
        values[w] = xp[i]
        argmax[w] = i
      }
    }
  }
  return (values, argmax)
}

// MARK: - Axes

/// A shape seen as [outer, n, inner] around `axis`: element (o, k, i) is at (o * n + k) * inner + i.
func splitAround(_ shape: [Int], axis: Int) -> (outer: Int, n: Int, inner: Int) {
  (elementCount(shape[..<axis]), shape[axis], elementCount(shape[(axis + 1)...]))
}
