import Support

/// Reverse-mode automatic differentiation over tensors. The graph is stage 1's: nodes, their parents, a
/// topological order, the chain rule applied from the output back. What changes is the node: a whole tensor,
/// whose local derivative is a Jacobian matrix. For y = tanh(x) with a million elements that matrix has 10^12
/// entries, almost all zero, so no op stores it. Each op records a closure instead, which takes the gradient
/// arriving at its output and adds the gradient it implies to each input: a vector-Jacobian product, computed
/// without ever forming the Jacobian.

// MARK: - Tensor

/// An n-dimensional array of numbers that remembers how it was computed.
///
/// Storage is contiguous and row-major: element [i, j, k] of a [A, B, C] tensor is at index (i * B + j) * C + k.
/// A tensor is a class, like PyTorch's: a parameter is one object that the model, the optimizer and the graph
/// all share, and an in-place update of it is seen by all of them.
public final class Tensor<Scalar: TensorScalar> {
  /// The elements, row-major. Since stage 8 they are held in one of two ways: as Scalars (`wide`), or, for a
  /// tensor whose format is bf16 or fp16, 16 bits each (`packed`), which halves its memory. Reading `storage` of a
  /// packed tensor unpacks a copy (exactly: every 16-bit value is a Float); writing it, or changing it in place,
  /// stores the elements as Scalars again.
  public internal(set) var storage: [Scalar] {
    get { packed == nil ? wide : unpacked() }
    set {
      wide = newValue
      packed = nil
    }
    _modify {
      if packed != nil {
        wide = unpacked()
        packed = nil
      }
      yield &wide
    }
  }
  /// The elements as Scalars; empty while they are `packed`.
  private var wide: [Scalar]
  /// The elements in 16 bits; nil while they are `wide`.
  public private(set) var packed: PackedElements?
  /// The size along each axis; [] for a single number.
  public let shape: [Int]
  /// d(output)/d(self) after `backward()`, row-major like `storage`; nil until a backward pass reaches the tensor.
  public internal(set) var gradStorage: [Scalar]?
  /// Whether backward computes a gradient for this tensor. Set it on parameters; an op's result requires grad
  /// when one of its inputs does and grad mode is on (see `noGrad`).
  public internal(set) var requiresGrad: Bool
  /// The tensors this one was computed from, when it requires grad (empty for a leaf).
  public internal(set) var parents: [Tensor]
  /// The operation that made this tensor ("matmul", "+", ...), for graph pictures; "" for a leaf.
  public let op: String
  /// A name for graph pictures, e.g. "w1" or "loss".
  public var label = ""
  /// Adds this tensor's gradient, pulled back through the op, into its parents' gradients. Nil for a leaf.
  var localBackward: ((Tensor) -> Void)?
  /// Set while `topologicalOrder()` runs.
  var visited = false
  /// Whether backward keeps this result's gradient after passing it on (see `retainGrad`).
  public private(set) var retainsGrad = false
  /// The format the elements and the gradient hold values of (stage 8): fp32, or under `autocast` a 16- or 8-bit
  /// format. A bf16 or fp16 tensor's elements are `packed` in 16 bits (a parameter's working copy, a result the
  /// graph keeps); its gradient is a Float buffer rounded to the format after every addition. A parameter's is set
  /// by `MixedPrecision`; an op's result's by the autocast policy (Precision/Autocast.swift).
  public internal(set) var format = NumberFormat.fp32
  /// Bytes the op that made this tensor keeps for its backward besides its inputs and its own elements (attention's
  /// weights, LayerNorm's statistics): with `storageBytes`, what the memory ledger counts (`keptBytes`).
  public internal(set) var savedBytes = 0
  /// Where rounding this tensor's gradient to `format` counts what it loses (the mixed-precision run's); nil: uncounted.
  var census: GradientCensus?

  /// A leaf tensor: data, an input, or a parameter (`requiresGrad: true`).
  public convenience init(_ storage: [Scalar], shape: [Int], requiresGrad: Bool = false) {
    self.init(wide: storage, packed: nil, shape: shape, requiresGrad: requiresGrad)
  }

  /// A leaf holding `wide` elements, or `packed` ones (then `wide` is empty).
  init(wide: [Scalar], packed: PackedElements?, shape: [Int], requiresGrad: Bool = false) {
    let count = packed?.count ?? wide.count
    precondition(shape.allSatisfy { $0 >= 0 }, "Tensor: negative size in shape \(shape)")
    precondition(count == elementCount(shape), "Tensor: \(count) elements do not fill shape \(shape)")
    precondition(
      packed == nil || Scalar.self == Float.self, "Tensor: 16-bit elements must be Floats, not \(Scalar.self)")
    self.wide = wide
    self.packed = packed
    self.shape = shape
    self.requiresGrad = requiresGrad
    self.parents = []
    self.op = ""
  }

  /// The result of operation `op` on `parents`. It joins the graph (keeps its parents and `backward`) only when a
  /// gradient can flow through it: grad mode is on and some parent requires grad. Otherwise it is a plain leaf
  /// and the parents can be freed as soon as nothing else holds them.
  ///
  /// Under autocast (stage 8) the policy picks the result's format, and a bf16 or fp16 result that joins the graph
  /// is packed into 16 bits here. `packed` gives a result whose elements are already packed (a reshape's, which shares its input's).
  init(
    _ storage: [Scalar], packed: PackedElements? = nil, shape: [Int], op: String, parents: [Tensor],
    backward: @escaping (Tensor) -> Void
  ) {
    self.wide = storage
    self.packed = packed
    self.shape = shape
    self.op = op
    OpProfiler.current?.forwardEnded(op)
    if GradMode.isEnabled && parents.contains(where: \.requiresGrad) {
      self.requiresGrad = true
      self.parents = parents
      self.localBackward = backward
    } else {
      self.requiresGrad = false
      self.parents = []
    }
    if let autocast = Autocast.current {
      format = autocast.resultFormat(of: op, parents: parents)
      if format != .fp32 {
        census = autocast.census
        // Packed (so rounded) when the graph keeps the result for backward. One it does not keep (under noGrad, in
        // an evaluation) lives only until the next op reads it, which would have to unpack a copy: it is rounded
        // in place instead, to the same values (and so is an 8-bit scope's; a moving op's holds them already).
        if format.bits == 16 && requiresGrad {
          pack()
        } else if packed == nil && !Autocast.movingOps.contains(op) {
          roundElements(&wide, to: format)
        }
      }
    }
  }

  /// How many elements.
  public var count: Int { packed?.count ?? wide.count }

  /// Bytes the elements take (16-bit ones 2 each).
  public var storageBytes: Int { packed != nil ? 2 * count : count * MemoryLayout<Scalar>.size }

  /// Stores the elements in 16 bits, rounded, when the tensor's format is bf16 or fp16 (and they are Floats).
  func pack() {
    guard packed == nil, format.bits == 16 else { return }
    precondition(Scalar.self == Float.self, "autocast to \(format) runs on Float tensors, not \(Scalar.self)")
    packed = wide.withUnsafeBufferPointer {
      $0.withMemoryRebound(to: Float.self) { PackedElements($0, format: format) }
    }
    wide = []
  }

  /// The packed elements as Scalars (Floats).
  private func unpacked() -> [Scalar] {
    let packed = packed!
    return [Scalar](unsafeUninitializedCapacity: packed.count) { out, written in
      out.withMemoryRebound(to: Float.self) { packed.unpack(into: $0) }
      written = packed.count
    }
  }

  /// Element `offset` of the row-major storage, without unpacking the rest.
  func element(_ offset: Int) -> Scalar {
    guard let packed else { return wide[offset] }
    return Scalar(packed[offset])
  }
  /// How many axes.
  public var rank: Int { shape.count }
  /// Not produced by a recorded operation: an input, a parameter, a constant, or anything made under `noGrad`.
  public var isLeaf: Bool { localBackward == nil }

  /// The gradient as a tensor of the same shape, or nil (PyTorch's `.grad`).
  public var grad: Tensor? { gradStorage.map { Tensor($0, shape: shape) } }

  /// Marks a leaf as a parameter whose gradient backward should compute (PyTorch's `requires_grad_()`).
  @discardableResult
  public func requiringGrad(_ flag: Bool = true) -> Tensor {
    precondition(isLeaf, "requiringGrad: only a leaf's flag can be set; use detach() for a result")
    requiresGrad = flag
    return self
  }

  /// Keeps this result's gradient after backward (PyTorch's `retain_grad()`): by default backward frees the
  /// gradient of every tensor that is not a leaf as soon as it has passed it on to the tensor's inputs, so that
  /// the gradients of a whole model's activations are never held at once. A leaf's gradient is always kept.
  public func retainGrad() { retainsGrad = true }

  /// Forgets the gradient (PyTorch's `zero_grad(set_to_none=True)`): the next backward starts from nothing.
  public func zeroGrad() { gradStorage = nil }

  /// The same numbers as a new leaf, cut off from the graph: no gradient flows back through it.
  /// The storage is shared until one of them is written (Swift arrays copy on write).
  public func detach() -> Tensor { Tensor(wide: wide, packed: packed, shape: shape) }

  /// Adds into this tensor's gradient (made as zeros on first use), if it requires grad.
  /// A gradient stored in 16 or 8 bits is rounded to its format after every addition (`roundGradient`).
  func addToGrad(_ body: (UnsafeMutableBufferPointer<Scalar>) -> Void) {
    guard requiresGrad else { return }
    if gradStorage == nil { gradStorage = [Scalar](repeating: 0, count: count) }
    gradStorage!.withUnsafeMutableBufferPointer { body($0) }
    if format != .fp32 { roundGradient(to: format) }
  }

  /// Adds a whole gradient of this tensor's shape, if it requires grad. The first one is not added to zeros but
  /// becomes the gradient itself, with no copy: the array is shared (a reshape or an addition passes its
  /// gradient on for free), and copy on write copies it only if either side is written later.
  ///
  /// Since stage 8 a gradient stored in a low format is rounded to it after the addition, unless `rounding` is
  /// false: backward adds a pass's finished gradient to the earlier passes' (gradient accumulation) without
  /// rounding, so that micro-batches accumulate in fp32, as Megatron's main_grad does and as data parallelism's
  /// fp32 all-reduce sums the ranks' gradients; and a first contribution that holds values of the format already
  /// (`passGradient`, `addProductGradient`) is stored without a second rounding.
  func accumulateGrad(_ contribution: consuming [Scalar], rounding: Bool = true) {
    guard requiresGrad else { return }
    precondition(contribution.count == count, "accumulateGrad: \(contribution.count) values for shape \(shape)")
    guard gradStorage != nil else {
      gradStorage = contribution
      if format != .fp32 && rounding { roundGradient(to: format) }
      return
    }
    gradStorage!.withUnsafeMutableBufferPointer { g in
      contribution.withUnsafeBufferPointer { c in for i in 0..<g.count { g[i] += c[i] } }
    }
    if format != .fp32 && rounding { roundGradient(to: format) }
  }

  /// `accumulateGrad` of the gradient of `out` passed on unchanged (a reshape's, an addition's). It holds values of
  /// out's format already, so when that is this tensor's and there is nothing to add it to, it is stored without
  /// rounding it again (and so without a copy: the array stays shared).
  func passGradient(_ gradient: [Scalar], from out: Tensor) {
    accumulateGrad(gradient, rounding: gradStorage != nil || out.format != format)
  }

  /// As in stage 1, freeing the output of a long chain must not recurse once per node: a node hands its parents
  /// to a work list (after dropping its closure, which holds them too) and frees the chain one node at a time.
  deinit {
    localBackward = nil
    var pending = parents
    parents = []
    while var node = pending.popLast() {
      if isKnownUniquelyReferenced(&node) {
        node.localBackward = nil
        pending.append(contentsOf: node.parents)
        node.parents = []
      }
    }
  }
}

// MARK: - Grad mode

/// Whether operations record the graph. Off inside `noGrad { }`: evaluation and parameter updates need no
/// gradients, and not recording them saves the memory of every intermediate result.
public enum GradMode {
  /// A task-local value: nested `noGrad` scopes restore it on the way out, and threads do not share it.
  @TaskLocal public static var isEnabled = true
}

/// Runs `body` without recording the graph (PyTorch's `with torch.no_grad():`).
public func noGrad<R>(_ body: () throws -> R) rethrows -> R {
  try GradMode.$isEnabled.withValue(false, operation: body)
}

// MARK: - Backward

extension Tensor {
  /// Every tensor this one depends on through recorded ops, itself last, each after its parents.
  /// An explicit stack, as in stage 1, so a long chain cannot overflow the call stack.
  public func topologicalOrder() -> [Tensor] {
    var order: [Tensor] = []
    var stack: [(node: Tensor, parentsDone: Bool)] = [(self, false)]
    while let (node, parentsDone) = stack.popLast() {
      if parentsDone {
        order.append(node)
        continue
      }
      if node.visited { continue }
      node.visited = true
      stack.append((node, true))
      for parent in node.parents where !parent.visited {
        stack.append((parent, false))
      }
    }
    for node in order { node.visited = false }
    return order
  }

  /// Computes the gradient of this tensor with respect to every tensor of its graph that requires grad.
  ///
  /// A one-element output is seeded with 1. For any other output pass `gradient` (its shape, row-major): backward
  /// then computes v^T J, the gradient of sum(v * self), as PyTorch's `y.backward(v)` does.
  ///
  /// As in stage 1, gradients accumulate into leaves (a second call without `zeroGrad()` adds them again), and
  /// every other tensor's gradient is recomputed from nothing on each call. Since stage 5 a result's gradient is
  /// freed once it has been passed on (unless `retainGrad()` asked to keep it), as PyTorch frees them: in a GPT's
  /// training step the activations' gradients would otherwise all be alive at the end of backward, as much
  /// memory again as the activations.
  ///
  /// Since stage 7, a leaf that already holds a gradient gets this pass's gradient summed on its own first and
  /// then added to the old one, as PyTorch's AccumulateGrad does. For a leaf used twice (GPT's tied embedding),
  /// gradient accumulation then computes old + (a + b), not (old + a) + b: the same sums, in the same order, as
  /// data parallelism, which adds the ranks' finished gradients. And `whenLeafReady` is called for each leaf as
  /// soon as its gradient is final, the moment the last op that uses it has passed its gradient back (PyTorch's
  /// post-accumulate-grad hook), while the ops before it are still to run: data parallelism starts sending a
  /// gradient then, and the sending overlaps the rest of backward. A leaf no op reached is called at the end.
  public func backward(gradient: [Scalar]? = nil, whenLeafReady: ((Tensor) -> Void)? = nil) {
    precondition(requiresGrad, "backward: the tensor does not require grad (no input does, or it was made in noGrad)")
    let seed: [Scalar]
    if let gradient {
      precondition(gradient.count == count, "backward: gradient of \(gradient.count) elements for shape \(shape)")
      seed = gradient
    } else {
      precondition(count == 1, "backward: an output of shape \(shape) needs an explicit gradient")
      seed = [1]
    }
    let order = topologicalOrder()
    for node in order where !node.isLeaf { node.gradStorage = nil }
    // The leaves that require grad, each with the step after which no op adds to it (its last user in the
    // reversed order) and the gradient it held before this pass.
    var leaves: [Tensor] = []
    var earlier: [ObjectIdentifier: [Scalar]] = [:]
    var lastUser: [ObjectIdentifier: Int] = [:]
    for (step, node) in order.reversed().enumerated() {
      if node.isLeaf && node.requiresGrad {
        leaves.append(node)
        if let old = node.gradStorage { earlier[ObjectIdentifier(node)] = old }
        node.gradStorage = nil
      }
      for parent in node.parents where parent.isLeaf && parent.requiresGrad {
        lastUser[ObjectIdentifier(parent)] = step
      }
    }
    var readyAfter: [Int: [Tensor]] = [:]
    for leaf in leaves { readyAfter[lastUser[ObjectIdentifier(leaf)] ?? -1, default: []].append(leaf) }
    func finish(_ leaf: Tensor) {
      if let old = earlier[ObjectIdentifier(leaf)] {
        if let new = leaf.gradStorage {
          leaf.gradStorage = old
          leaf.accumulateGrad(new, rounding: false)
        } else {
          leaf.gradStorage = old
        }
      }
      whenLeafReady?(leaf)
    }
    addToGrad { g in for i in g.indices { g[i] += seed[i] } }
    // Reverse order: a tensor passes its gradient on only once every tensor that uses it has added to it.
    let profiler = OpProfiler.current
    for (step, node) in order.reversed().enumerated() {
      defer { for leaf in readyAfter[step] ?? [] { finish(leaf) } }
      guard node.gradStorage != nil, let pullBack = node.localBackward else { continue }
      profiler?.mark()
      pullBack(node)
      if !node.retainsGrad { node.gradStorage = nil }  // passed on; a leaf has no pull-back and never gets here
      profiler?.backwardEnded(node.op)
    }
    for leaf in readyAfter[-1] ?? [] { finish(leaf) }
  }
}
