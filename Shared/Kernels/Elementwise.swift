/// Elementwise loops over whole arrays, and the arrays they write.

/// Elements per thread below which an elementwise loop stays on one core.
public let elementwiseGrain = 32_768

/// An array of `count` elements whose memory is not cleared first: for a result that a kernel or a BLAS call with
/// beta = 0 writes in full before anything reads it. Filling with zeros only to overwrite them is a pass over
/// memory for nothing.
@inlinable @inline(__always)
public func uninitializedArray<S>(_ count: Int) -> [S] {
  [S](unsafeUninitializedCapacity: count) { _, written in written = count }
}

/// y[i] = f(x[i]) into a fresh array, written once (no zero fill first). x, y: [n].
@inlinable @inline(__always)
public func mapKernel<S>(_ x: [S], _ f: (S) -> S) -> [S] {
  [S](unsafeUninitializedCapacity: x.count) { y, written in
    x.withUnsafeBufferPointer { xp in
      for i in 0..<xp.count { y[i] = f(xp[i]) }
    }
    written = x.count
  }
}

/// y[i] = f(a[i], b[i]) into a fresh array. a, b, y: [n].
@inlinable @inline(__always)
public func zipKernel<S>(_ a: [S], _ b: [S], _ f: (S, S) -> S) -> [S] {
  [S](unsafeUninitializedCapacity: a.count) { y, written in
    a.withUnsafeBufferPointer { ap in
      b.withUnsafeBufferPointer { bp in
        for i in 0..<ap.count { y[i] = f(ap[i], bp[i]) }
      }
    }
    written = a.count
  }
}
