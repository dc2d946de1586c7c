/// Flat pointer plumbing: the kernels take pointers, and these open several arrays at once, so that an op reads as
/// one call instead of five nested `withUnsafe...` closures. The pointers are valid only inside the closure.

extension UnsafeBufferPointer {
  /// The first element's address; for an empty buffer a non-null address that must not be read (a kernel given
  /// a count of 0 reads nothing).
  @inlinable
  public var start: UnsafePointer<Element> {
    baseAddress ?? UnsafePointer(bitPattern: MemoryLayout<Element>.alignment)!
  }
}

extension UnsafeMutableBufferPointer {
  /// The first element's address; for an empty buffer a non-null address that must not be written.
  @inlinable
  public var start: UnsafeMutablePointer<Element> {
    baseAddress ?? UnsafeMutablePointer(bitPattern: MemoryLayout<Element>.alignment)!
  }
}

/// `body` with read pointers to the elements of two arrays.
@inlinable
public func withPointers<A, B, R>(
  _ a: [A], _ b: [B], _ body: (UnsafePointer<A>, UnsafePointer<B>) throws -> R
) rethrows -> R {
  try a.withUnsafeBufferPointer { a in try b.withUnsafeBufferPointer { b in try body(a.start, b.start) } }
}

/// `body` with read pointers to the elements of three arrays.
@inlinable
public func withPointers<A, B, C, R>(
  _ a: [A], _ b: [B], _ c: [C], _ body: (UnsafePointer<A>, UnsafePointer<B>, UnsafePointer<C>) throws -> R
) rethrows -> R {
  try withPointers(a, b) { a, b in try c.withUnsafeBufferPointer { c in try body(a, b, c.start) } }
}

/// `body` with read pointers to the elements of four arrays.
@inlinable
public func withPointers<A, B, C, D, R>(
  _ a: [A], _ b: [B], _ c: [C], _ d: [D],
  _ body: (UnsafePointer<A>, UnsafePointer<B>, UnsafePointer<C>, UnsafePointer<D>) throws -> R
) rethrows -> R {
  try withPointers(a, b, c) { a, b, c in try d.withUnsafeBufferPointer { d in try body(a, b, c, d.start) } }
}

/// `body` with read pointers to the elements of five arrays.
@inlinable
public func withPointers<A, B, C, D, E, R>(
  _ a: [A], _ b: [B], _ c: [C], _ d: [D], _ e: [E],
  _ body: (UnsafePointer<A>, UnsafePointer<B>, UnsafePointer<C>, UnsafePointer<D>, UnsafePointer<E>) throws -> R
) rethrows -> R {
  try withPointers(a, b, c, d) { a, b, c, d in try e.withUnsafeBufferPointer { e in try body(a, b, c, d, e.start) } }
}

/// `body` with write pointers to the elements of three arrays (which must be three different arrays).
@inlinable
public func withMutablePointers<A, B, C, R>(
  _ a: inout [A], _ b: inout [B], _ c: inout [C],
  _ body: (UnsafeMutablePointer<A>, UnsafeMutablePointer<B>, UnsafeMutablePointer<C>) throws -> R
) rethrows -> R {
  try a.withUnsafeMutableBufferPointer { a in
    try b.withUnsafeMutableBufferPointer { b in
      try c.withUnsafeMutableBufferPointer { c in try body(a.start, b.start, c.start) }
    }
  }
}

/// A new array of `count` elements that `body` fills through a pointer. Nothing is cleared first: body must write
/// every element.
@inlinable
public func makeArray<S>(_ count: Int, _ body: (UnsafeMutablePointer<S>) throws -> Void) rethrows -> [S] {
  try [S](unsafeUninitializedCapacity: count) { buffer, written in
    try body(buffer.start)
    written = count
  }
}

/// Two new arrays of the given sizes that `body` fills through pointers (nothing cleared first).
@inlinable
public func makeArrays<S>(
  _ first: Int, _ second: Int, _ body: (UnsafeMutablePointer<S>, UnsafeMutablePointer<S>) throws -> Void
) rethrows -> ([S], [S]) {
  var other: [S] = []
  let one = try makeArray(first) { p in other = try makeArray(second) { q in try body(p, q) } }
  return (one, other)
}

/// Three new arrays of the given sizes that `body` fills through pointers (nothing cleared first).
@inlinable
public func makeArrays<S>(
  _ first: Int, _ second: Int, _ third: Int,
  _ body: (UnsafeMutablePointer<S>, UnsafeMutablePointer<S>, UnsafeMutablePointer<S>) throws -> Void
) rethrows -> ([S], [S], [S]) {
  var last: [S] = []
  let (one, two) = try makeArrays(first, second) { p, q in last = try makeArray(third) { r in try body(p, q, r) } }
  return (one, two, last)
}
