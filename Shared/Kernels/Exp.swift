import RealModule

extension Float {
  /// e^x for Float, within 2 ulps of the true value, as plain arithmetic with no branch and no call, so that a
  /// loop over an array of it compiles to SIMD instructions (libm's expf is a call per element). Reference:
  /// `Float.exp` (libm).
  ///
  /// e^x = 2^k e^r with k = round(x / ln 2) and r = x - k ln 2, so |r| <= ln(2)/2:
  /// - adding 1.5 * 2^23 to x / ln 2 rounds it to an integer k and leaves k in the low bits of the sum;
  /// - k ln 2 is subtracted in two parts (a short `hi` whose product with k is exact, then the rest), so r keeps
  ///   its precision;
  /// - e^r is its Taylor series to r^7 (the first term left out is below 6e-9 relative);
  /// - 2^k is built directly as the bits of a float: exponent field k + 127, mantissa 0.
  /// Inputs are clamped to [-88, 88.8]: e^x rounds to 0 below about -87.3 (no subnormals) and becomes
  /// infinity above about 88.4; NaN stays NaN.
  @inlinable @inline(__always)
  public static func vectorExp(_ x: Float) -> Float {
    let x = Swift.min(Swift.max(x, -88), 88.8)
    let shifted = x * 1.442_695_04 + 12_582_912  // 1.5 * 2^23 + x log2(e)
    let k = shifted - 12_582_912
    let r = (x - k * 0.693_145_751_953_125) - k * 1.428_606_765_330_187e-6  // ln 2 = hi + lo
    var p: Float = 1.0 / 5040
    p = p * r + 1.0 / 720
    p = p * r + 1.0 / 120
    p = p * r + 1.0 / 24
    p = p * r + 1.0 / 6
    p = p * r + 0.5
    p = p * r + 1
    p = p * r + 1
    let scale = Float(bitPattern: (shifted.bitPattern &- 0x4B40_0000 &+ 127) << 23)
    return p * scale
  }
}

/// tanh(u) = sign(u) (1 - e) / (1 + e) with e = e^(-2|u|) <= 1: one exp instead of libm's tanh (several times
/// slower, and a call the compiler cannot vectorise), and no overflow for large |u|. The absolute error is a few
/// ulps of 1, which is what GELU's 1 + tanh(u) can resolve anyway (the relative error near u = 0 is larger, so
/// this is not a general-purpose tanh). Reference: `S.tanh` (libm).
@inlinable @inline(__always)
public func fastTanh<S: KernelScalar>(_ u: S) -> S {
  let e = S.fastExp(-2 * abs(u))
  let magnitude = (1 - e) / (1 + e)
  return u < 0 ? -magnitude : magnitude
}

/// erf(x) inside the fast kernels. Float: 1 - erfc(|x|) with sign, erfc from the Chebyshev-fitted form of Numerical
/// Recipes (section 6.2: t = 1 / (1 + |x| / 2), erfc = t e^(-x^2 + P(t)) with P of degree 9, relative error below
/// 1.2e-7), one `fastExp` and no branch the compiler cannot turn into a select, so the loop runs in SIMD lanes;
/// the absolute error is a few ulps of 1, which is what GELU's 1 + erf can resolve. Double: libm's erf, exact to
/// the last bit, which the gradient checks and the comparisons with PyTorch need.
@inlinable @inline(__always)
public func fastErf<S: KernelScalar>(_ x: S) -> S {
  guard S.self == Float.self else { return S.erf(x) }
  let z = abs(x)
  let t = 1 / (1 + 0.5 * z)
  var p: S = 0.170_872_77
  p = p * t - 0.822_152_23
  p = p * t + 1.488_515_87
  p = p * t - 1.135_203_98
  p = p * t + 0.278_868_07
  p = p * t - 0.186_288_06
  p = p * t + 0.096_784_18
  p = p * t + 0.374_091_96
  p = p * t + 1.000_023_68
  p = p * t - 1.265_512_23
  let erfc = t * S.fastExp(-z * z + p)
  return x < 0 ? erfc - 1 : 1 - erfc
}
