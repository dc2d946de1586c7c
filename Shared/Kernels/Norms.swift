import RealModule
import Support

/// The squared norm behind gradient clipping (PyTorch's clip_grad_norm_), summed in Double.

/// sum_i x_i^2 over n elements, in Double. Fast: four running sums, which the compiler keeps in SIMD lanes,
/// instead of one long chain of dependent additions. Reference: one running sum.
@inlinable
public func sumOfSquares<S: KernelScalar>(_ x: UnsafePointer<S>, count n: Int) -> Double {
  if KernelChoice.useReference { return sumOfSquaresReference(x, count: n) }
  var partial = (0.0, 0.0, 0.0, 0.0)
  let whole = n / 4 * 4
  for i in stride(from: 0, to: whole, by: 4) {
    partial.0 += Double(x[i]) * Double(x[i])
    partial.1 += Double(x[i + 1]) * Double(x[i + 1])
    partial.2 += Double(x[i + 2]) * Double(x[i + 2])
    partial.3 += Double(x[i + 3]) * Double(x[i + 3])
  }
  for i in whole..<n { partial.0 += Double(x[i]) * Double(x[i]) }
  return partial.0 + partial.1 + partial.2 + partial.3
}

/// The reference of `sumOfSquares`: left to right.
@inlinable
public func sumOfSquaresReference<S: KernelScalar>(_ x: UnsafePointer<S>, count n: Int) -> Double {
  var total = 0.0
  for i in 0..<n { total += Double(x[i]) * Double(x[i]) }
  return total
}

/// x_i *= scale over n elements, in pieces across the cores (one form: a loop the compiler vectorises as it is,
/// and each element's product is the same on any core).
@inlinable
public func scale<S: KernelScalar>(_ x: UnsafeMutablePointer<S>, count n: Int, by factor: S) {
  Parallel.forEach(n, grain: elementwiseGrain) { range in
    for i in range { x[i] *= factor }
  }
}
