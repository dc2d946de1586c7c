import Support

/// Making tensors, reading them, and changing their shape. The graph and backward are in Engine.swift; the maths
/// in Ops.swift.

// MARK: - Creation

extension Tensor {
  /// A tensor of shape [] holding one number.
  public convenience init(scalar: Scalar, requiresGrad: Bool = false) {
    self.init([scalar], shape: [], requiresGrad: requiresGrad)
  }

  /// Every element `value`.
  public static func full(_ shape: [Int], _ value: Scalar, requiresGrad: Bool = false) -> Tensor {
    Tensor([Scalar](repeating: value, count: elementCount(shape)), shape: shape, requiresGrad: requiresGrad)
  }

  public static func zeros(_ shape: [Int], requiresGrad: Bool = false) -> Tensor {
    full(shape, 0, requiresGrad: requiresGrad)
  }

  public static func ones(_ shape: [Int], requiresGrad: Bool = false) -> Tensor {
    full(shape, 1, requiresGrad: requiresGrad)
  }

  /// Elements drawn uniformly from [low, high), from a seeded generator.
  public static func uniform(
    _ shape: [Int], low: Scalar, high: Scalar, rng: inout SeededRNG, requiresGrad: Bool = false
  ) -> Tensor {
    let values = (0..<elementCount(shape)).map { _ in Scalar(rng.uniform(Double(low), Double(high))) }
    return Tensor(values, shape: shape, requiresGrad: requiresGrad)
  }

  /// Elements drawn from N(mean, std^2), from a seeded generator.
  public static func normal(
    _ shape: [Int], mean: Scalar = 0, std: Scalar = 1, rng: inout SeededRNG, requiresGrad: Bool = false
  ) -> Tensor {
    let values = (0..<elementCount(shape)).map { _ in Scalar(rng.normal(mean: Double(mean), std: Double(std))) }
    return Tensor(values, shape: shape, requiresGrad: requiresGrad)
  }

  /// The same numbers in another element type (Float <-> Double), as a new leaf.
  public func converted<Other: TensorScalar>(to type: Other.Type) -> Tensor<Other> {
    Tensor<Other>(storage.map { Other($0) }, shape: shape)
  }
}

// MARK: - Reading elements

extension Tensor {
  /// Row-major strides of this tensor.
  public var strides: [Int] { contiguousStrides(shape) }

  /// The element at a full index, e.g. `t[1, 2]`.
  public subscript(_ index: Int...) -> Scalar {
    precondition(index.count == rank, "subscript: \(index.count) indices for shape \(shape)")
    var offset = 0
    for (axis, (i, stride)) in zip(index, strides).enumerated() {
      precondition((0..<shape[axis]).contains(i), "subscript: index \(index) out of range for shape \(shape)")
      offset += i * stride
    }
    return element(offset)
  }

  /// The only element of a one-element tensor (PyTorch's `.item()`).
  public var item: Scalar {
    precondition(count == 1, "item: the tensor has shape \(shape), not one element")
    return element(0)
  }
}

// MARK: - Shape operations

extension Tensor {
  /// The same elements in another shape with the same count; one size may be -1 (inferred). No element moves:
  /// row-major storage reads the same in any shape, so only the shape changes (the array is shared, not copied,
  /// and 16-bit elements stay packed).
  public func reshape(_ newShape: [Int]) -> Tensor {
    var target = newShape
    if let hole = newShape.firstIndex(of: -1) {
      let known = newShape.filter { $0 != -1 }.reduce(1, *)
      precondition(known > 0 && count % known == 0, "reshape: cannot infer -1 in \(newShape) for shape \(shape)")
      target[hole] = count / known
    }
    precondition(
      target.allSatisfy { $0 >= 0 } && elementCount(target) == count, "reshape: \(shape) cannot become \(newShape)")
    return Tensor(packed == nil ? storage : [], packed: packed, shape: target, op: "reshape", parents: [self]) {
      out in
      self.passGradient(out.gradStorage!, from: out)
    }
  }

  /// The axes reordered: result axis k is this tensor's axis `axes[k]`. Elements move (a copy), so that storage
  /// stays contiguous; see the chapter for the strided alternative.
  public func permute(_ axes: [Int]) -> Tensor {
    precondition(axes.sorted() == Array(0..<rank), "permute: \(axes) is not a permutation of the axes of \(shape)")
    let newShape = axes.map { shape[$0] }
    let own = strides
    let readStrides = axes.map { own[$0] }  // stepping along result axis k steps along source axis axes[k]
    let write = contiguousStrides(newShape)
    var y = [Scalar](repeating: 0, count: count)
    let x = storage
    forEachOffset(newShape, readStrides, write) { _, from, to in y[to] = x[from] }
    return Tensor(y, shape: newShape, op: "permute", parents: [self]) { out in
      let dy = out.gradStorage!
      self.addToGrad { g in forEachOffset(newShape, readStrides, write) { _, from, to in g[from] += dy[to] } }
    }
  }

  /// The last two axes swapped (a matrix transpose, batched).
  public func transposed() -> Tensor {
    precondition(rank >= 2, "transposed: needs rank >= 2, got \(shape)")
    return permute(Array(0..<rank - 2) + [rank - 1, rank - 2])
  }

  /// Rows `range` along the first axis. They are contiguous in row-major storage, so this is one slice copy.
  public subscript(_ range: Range<Int>) -> Tensor {
    precondition(rank >= 1 && range.lowerBound >= 0 && range.upperBound <= shape[0], "slice: \(range) of \(shape)")
    let width = count / Swift.max(shape[0], 1)
    let start = range.lowerBound * width
    let y = Array(storage[start..<(range.upperBound * width)])
    return Tensor(y, shape: [range.count] + shape.dropFirst(), op: "slice", parents: [self]) { out in
      let dy = out.gradStorage!
      self.addToGrad { g in for i in dy.indices { g[start + i] += dy[i] } }
    }
  }

  /// The tensors joined along `axis`; all other sizes must agree.
  public static func concatenate(_ tensors: [Tensor], axis: Int) -> Tensor {
    precondition(!tensors.isEmpty, "concatenate: no tensors")
    let first = tensors[0]
    let axis = normalizedAxes([axis], rank: first.rank, op: "concatenate")[0]
    for t in tensors {
      precondition(
        t.rank == first.rank && (0..<t.rank).allSatisfy { $0 == axis || t.shape[$0] == first.shape[$0] },
        "concatenate: shapes \(tensors.map(\.shape)) differ off axis \(axis)")
    }
    // Seen as [outer, size along axis * inner]: each tensor contributes one run per outer index.
    let outer = elementCount(first.shape[..<axis])
    let runs = tensors.map { $0.count / Swift.max(outer, 1) }
    let total = runs.reduce(0, +)
    var y = [Scalar](repeating: 0, count: outer * total)
    var start = 0
    for (t, run) in zip(tensors, runs) {
      let x = t.storage
      for o in 0..<outer {
        for j in 0..<run { y[o * total + start + j] = x[o * run + j] }
      }
      start += run
    }
    var shape = first.shape
    shape[axis] = tensors.reduce(0) { $0 + $1.shape[axis] }
    return Tensor(y, shape: shape, op: "concatenate", parents: tensors) { out in
      let dy = out.gradStorage!
      var start = 0
      for (t, run) in zip(tensors, runs) {
        t.addToGrad { g in
          for o in 0..<outer {
            for j in 0..<run { g[o * run + j] += dy[o * total + start + j] }
          }
        }
        start += run
      }
    }
  }

  /// Pieces of the given sizes along `axis`, which must add up to its size (the inverse of `concatenate`).
  public func split(_ sizes: [Int], axis: Int) -> [Tensor] {
    let axis = normalizedAxes([axis], rank: rank, op: "split")[0]
    precondition(sizes.reduce(0, +) == shape[axis], "split: sizes \(sizes) do not add up to \(shape[axis])")
    // Moving the axis to the front makes every piece a leading slice.
    let order = [axis] + (0..<rank).filter { $0 != axis }
    let inverse = (0..<rank).map { order.firstIndex(of: $0)! }
    let front = axis == 0 ? self : permute(order)
    var start = 0
    return sizes.map { size in
      defer { start += size }
      let piece = front[start..<(start + size)]
      return axis == 0 ? piece : piece.permute(inverse)
    }
  }
}

// MARK: - Printing

extension Tensor: CustomStringConvertible {
  /// Like PyTorch's repr: nested brackets, four decimals, at most three elements at each end of a long axis.
  public var description: String {
    func format(_ x: Scalar) -> String {
      let d = Double(x)
      guard d.isFinite else { return String(describing: d) }
      let rounded = (d * 10_000).rounded() / 10_000
      let text = String(describing: rounded == 0 ? 0 : rounded)
      let decimals = text.split(separator: ".").last.map(\.count) ?? 0
      return text + String(repeating: "0", count: Swift.max(0, 4 - decimals))
    }
    func render(_ axis: Int, _ offset: Int) -> String {
      if axis == rank { return format(element(offset)) }
      let size = shape[axis]
      let stride = strides[axis]
      let shown = size > 6 ? Array(0..<3) + [-1] + Array((size - 3)..<size) : Array(0..<size)
      let parts = shown.map { $0 < 0 ? "..." : render(axis + 1, offset + $0 * stride) }
      let separator = axis == rank - 1 ? ", " : ",\n" + String(repeating: " ", count: axis + 8)
      return "[" + parts.joined(separator: separator) + "]"
    }
    let body = count == 0 ? "[]" : render(0, 0)
    return "tensor(\(body), shape \(shape)\(requiresGrad ? ", requiresGrad" : ""))"
  }
}
