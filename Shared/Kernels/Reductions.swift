import RealModule

/// Sums and maxima in eight running lanes, the building blocks of the row kernels.

/// term(0) + term(1) + ... + term(n - 1) in eight running sums, added together at the end. One running sum is a
/// chain of additions that each wait for the one before (floating-point addition is not reassociated by the
/// compiler, since that changes the rounding); eight independent ones run side by side in one SIMD register.
/// The rounding differs from a left-to-right sum (`sumReference`), and is the same on every run.
@inlinable @inline(__always)
public func sum8<S: KernelScalar>(_ n: Int, _ term: (Int) -> S) -> S {
  var s: (S, S, S, S, S, S, S, S) = (0, 0, 0, 0, 0, 0, 0, 0)
  var i = 0
  while i + 8 <= n {
    s.0 += term(i)
    s.1 += term(i + 1)
    s.2 += term(i + 2)
    s.3 += term(i + 3)
    s.4 += term(i + 4)
    s.5 += term(i + 5)
    s.6 += term(i + 6)
    s.7 += term(i + 7)
    i += 8
  }
  var total = ((s.0 + s.1) + (s.2 + s.3)) + ((s.4 + s.5) + (s.6 + s.7))
  while i < n {
    total += term(i)
    i += 1
  }
  return total
}

/// The reference of `sum8`: term(0) + term(1) + ... + term(n - 1), left to right.
@inlinable @inline(__always)
public func sumReference<S: KernelScalar>(_ n: Int, _ term: (Int) -> S) -> S {
  var total: S = 0
  for i in 0..<n { total += term(i) }
  return total
}

/// The largest of x[0..<n] (n >= 1), in eight running maxima like `sum8`. Reference: `maxReference`.
@inlinable @inline(__always)
public func max8<S: KernelScalar>(_ x: UnsafePointer<S>, _ n: Int) -> S {
  var m = (x[0], x[0], x[0], x[0], x[0], x[0], x[0], x[0])
  var i = 0
  while i + 8 <= n {
    m.0 = Swift.max(m.0, x[i])
    m.1 = Swift.max(m.1, x[i + 1])
    m.2 = Swift.max(m.2, x[i + 2])
    m.3 = Swift.max(m.3, x[i + 3])
    m.4 = Swift.max(m.4, x[i + 4])
    m.5 = Swift.max(m.5, x[i + 5])
    m.6 = Swift.max(m.6, x[i + 6])
    m.7 = Swift.max(m.7, x[i + 7])
    i += 8
  }
  var top = Swift.max(
    Swift.max(Swift.max(m.0, m.1), Swift.max(m.2, m.3)), Swift.max(Swift.max(m.4, m.5), Swift.max(m.6, m.7)))
  while i < n {
    top = Swift.max(top, x[i])
    i += 1
  }
  return top
}

/// The reference of `max8`: the largest of x[0..<n], one at a time (-infinity for n = 0).
@inlinable @inline(__always)
public func maxReference<S: KernelScalar>(_ x: UnsafePointer<S>, _ n: Int) -> S {
  var top = -S.infinity
  for i in 0..<n { top = Swift.max(top, x[i]) }
  return top
}
