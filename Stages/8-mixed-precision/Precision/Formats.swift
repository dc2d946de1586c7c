import Support

/// The number formats of mixed precision, bit by bit. Every one is sign, exponent, fraction; they differ in how
/// many bits each part gets, which trades range (the exponent) against precision (the fraction):
///
///   fp32  1 + 8 + 23   max 3.4e38    ulp of 1: 2^-23   IEEE single, what the stages so far computed in
///   bf16  1 + 8 + 7    max 3.4e38    ulp of 1: 2^-7    fp32's range, a quarter of its precision (Google Brain's)
///   fp16  1 + 5 + 10   max 65504     ulp of 1: 2^-10   IEEE half: more precision than bf16, far less range
///   e4m3  1 + 4 + 3    max 448       ulp of 1: 2^-3    fp8 for weights and activations (no infinity)
///   e5m2  1 + 5 + 2    max 57344     ulp of 1: 2^-2    fp8 for gradients: fp16's range, two fraction bits
///
/// Converting down rounds to nearest, ties to even, as IEEE 754 and every framework's cast do. Converting up is
/// exact: every value of each format is a Float. So the kernels compute in Float, and a tensor stored in bf16 or
/// fp16 keeps its elements packed, 16 bits each (`PackedElements`), unpacked into Floats for each op that reads
/// them; a tensor rounded to an fp8 format (in training, a product's casts) holds them in Floats.

// MARK: - The formats

/// A format a tensor's elements may be stored in.
public enum NumberFormat: String, CaseIterable, Sendable, Codable {
  case fp32, bf16, fp16, e4m3, e5m2

  /// Bits per element.
  public var bits: Int {
    switch self {
    case .fp32: 32
    case .bf16, .fp16: 16
    case .e4m3, .e5m2: 8
    }
  }

  public var bytes: Int { bits / 8 }

  /// Exponent and fraction bits (the sign is one more).
  public var layout: (exponent: Int, fraction: Int) {
    switch self {
    case .fp32: (8, 23)
    case .bf16: (8, 7)
    case .fp16: (5, 10)
    case .e4m3: (4, 3)
    case .e5m2: (5, 2)
    }
  }

  /// The largest finite value.
  public var largest: Float {
    switch self {
    case .fp32: .greatestFiniteMagnitude
    case .bf16: Float(bitPattern: 0x7F7F_0000)
    case .fp16: 65504
    case .e4m3: 448
    case .e5m2: 57344
    }
  }

  /// The smallest positive normal value, 2^(1 - bias); below it the values are subnormal, evenly spaced by
  /// `smallestSubnormal`, and precision falls off one bit per halving.
  public var smallestNormal: Float {
    let bias = (1 << (layout.exponent - 1)) - 1
    return Float(sign: .plus, exponent: 1 - bias, significand: 1)
  }

  /// The smallest positive value: 2^(1 - bias - fraction bits).
  public var smallestSubnormal: Float {
    Float(sign: .plus, exponent: smallestNormal.exponent - layout.fraction, significand: 1)
  }

  /// The gap between 1 and the next value: 2^-fraction bits. Adding less than half of it to 1 changes nothing.
  public var ulpOfOne: Float { Float(sign: .plus, exponent: -layout.fraction, significand: 1) }

  /// `x` rounded to the nearest value of this format (ties to even), as a Float. NaN stays NaN; a value past the
  /// range becomes infinity (fp16, bf16, e5m2) or saturates at +-448 (e4m3, which has no infinity).
  public func round(_ x: Float) -> Float {
    switch self {
    case .fp32: x
    case .bf16: BFloat16.rounded(x)
    case .fp16: Float(Float16(x))
    case .e4m3: FP8.roundE4M3(x)
    case .e5m2: FP8.roundE5M2(x)
    }
  }

  /// Rounds every element of `values` to this format in place. One loop per format, with the rounding inlined,
  /// so that the compiler runs each 8 or 16 elements at a time.
  public func round(_ values: UnsafeMutableBufferPointer<Float>) {
    switch self {
    case .fp32: return
    case .fp16:  // vcvtps2ph and vcvtph2ps (F16C)
      for i in values.indices { values[i] = Float(Float16(values[i])) }
    case .bf16:
      for i in values.indices { values[i] = BFloat16.rounded(values[i]) }
    case .e4m3:
      for i in values.indices { values[i] = FP8.roundE4M3(values[i]) }
    case .e5m2:
      for i in values.indices { values[i] = FP8.roundE5M2(values[i]) }
    }
  }

  /// A rounded copy of `values`.
  public func rounded(_ values: [Float]) -> [Float] {
    guard self != .fp32 else { return values }
    var copy = values
    copy.withUnsafeMutableBufferPointer { round($0) }
    return copy
  }
}

// MARK: - 16-bit storage

/// A tensor's elements stored in 16 bits each: bf16's or fp16's bit patterns. Packing rounds (to nearest, ties to
/// even) and halves the memory; unpacking is exact. A bf16 or fp16 tensor that the graph keeps, or a weight's
/// working copy, keeps its elements so (Autograd/Engine.swift), and each op that reads them gets an fp32 copy for
/// its kernels, the way a GPU kernel loads 16-bit numbers into fp32 registers.
public struct PackedElements: Sendable {
  public let bits: [UInt16]
  public let format: NumberFormat

  /// Elements per piece when packing or unpacking runs on several cores.
  static let grain = 1 << 15

  /// `values` rounded to `format`, which must be bf16 or fp16. Large tensors are shared out across the cores.
  public init(_ values: UnsafeBufferPointer<Float>, format: NumberFormat) {
    precondition(format.bits == 16, "PackedElements: \(format) is not a 16-bit format")
    self.format = format
    bits = [UInt16](unsafeUninitializedCapacity: values.count) { buffer, written in
      written = values.count
      guard let out = buffer.baseAddress, let x = values.baseAddress else { return }  // plain pointers: SIMD loops
      Parallel.forEach(values.count, grain: Self.grain) { piece in
        if format == .bf16 {
          for i in piece { out[i] = BFloat16.pattern(x[i]) }
        } else {  // vcvtps2ph (F16C)
          for i in piece { out[i] = Float16(x[i]).bitPattern }
        }
      }
    }
  }

  public var count: Int { bits.count }

  /// The elements as Floats, exactly, into `out` (`count` of them).
  public func unpack(into out: UnsafeMutableBufferPointer<Float>) {
    bits.withUnsafeBufferPointer { bits in
      guard let b = bits.baseAddress, let out = out.baseAddress else { return }
      Parallel.forEach(bits.count, grain: Self.grain) { piece in
        if format == .bf16 {
          for i in piece { out[i] = Float(bitPattern: UInt32(b[i]) << 16) }
        } else {  // vcvtph2ps (F16C)
          for i in piece { out[i] = Float(Float16(bitPattern: b[i])) }
        }
      }
    }
  }

  /// Element `i` as a Float.
  public subscript(i: Int) -> Float {
    format == .bf16 ? Float(bitPattern: UInt32(bits[i]) << 16) : Float(Float16(bitPattern: bits[i]))
  }
}

// MARK: - bf16

/// bfloat16: the top half of a Float. Converting down rounds the bottom half away, to nearest with ties to even;
/// converting up appends 16 zero bits.
public struct BFloat16: Equatable, Sendable {
  public var bitPattern: UInt16

  public init(bitPattern: UInt16) { self.bitPattern = bitPattern }

  /// The nearest bf16 to `x`. Adding 0x7FFF plus the lowest kept bit to the Float's bits and cutting the bottom
  /// 16 rounds to nearest, ties to even: below half a unit the carry never reaches the kept bits, above it always
  /// does, and at exactly half it does only when the kept part is odd. A carry out of the fraction raises the
  /// exponent, which is right (1.1111111|1 rounds to 10.0000000), and past the largest value it reaches infinity.
  /// A NaN keeps its sign and becomes the quiet NaN 0x7FC0 (adding could carry a NaN into infinity).
  public init(_ x: Float) {
    let bits = x.bitPattern
    if x.isNaN {
      bitPattern = UInt16(truncatingIfNeeded: bits >> 16) & 0x8000 | 0x7FC0
    } else {
      bitPattern = UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
    }
  }

  public var float: Float { Float(bitPattern: UInt32(bitPattern) << 16) }

  /// `BFloat16(x).bitPattern` without a branch (a select), so that a loop of it runs in SIMD lanes.
  @inline(__always)
  static func pattern(_ x: Float) -> UInt16 {
    let bits = x.bitPattern
    let rounded = UInt16(truncatingIfNeeded: (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16)
    let quietNaN = UInt16(truncatingIfNeeded: bits >> 16) & 0x8000 | 0x7FC0
    return bits & 0x7FFF_FFFF > 0x7F80_0000 ? quietNaN : rounded
  }

  /// `Float(BFloat16(x))` without leaving the Float registers, for loops the compiler vectorizes.
  @inline(__always)
  public static func rounded(_ x: Float) -> Float {
    let bits = x.bitPattern
    let even = (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) & 0xFFFF_0000
    return x.isNaN ? Float(bitPattern: bits & 0x8000_0000 | 0x7FC0_0000) : Float(bitPattern: even)
  }
}

// MARK: - fp8

/// An 8-bit float: 1 sign bit, `exponentBits`, `fractionBits`. The two of the fp8 paper (Micikevicius et al.,
/// 2022), which NVIDIA's Hopper and Transformer Engine use: E4M3 gives up infinity (and all but one NaN) to reach
/// 448; E5M2 is IEEE-like, with infinities and NaNs, and reaches 57344.
public struct FP8: Sendable {
  public let exponentBits: Int
  public let fractionBits: Int
  /// The largest finite pattern's magnitude bits (0x7E for E4M3, 0x7B for E5M2).
  let largestPattern: UInt8
  /// What a value past the range becomes: the largest pattern (saturation) or infinity.
  let saturates: Bool
  /// Every pattern's value, for decoding by lookup.
  let values: [Float]

  /// E4M3 ("fn": finite, with NaN only at S.1111.111): bias 7, max 1.75 x 2^8 = 448, saturating.
  public static let e4m3 = FP8(exponentBits: 4, fractionBits: 3, largestPattern: 0x7E, saturates: true)
  /// E5M2: bias 15, max 1.75 x 2^15 = 57344, infinity at S.11111.00, NaN above it.
  public static let e5m2 = FP8(exponentBits: 5, fractionBits: 2, largestPattern: 0x7B, saturates: false)

  init(exponentBits: Int, fractionBits: Int, largestPattern: UInt8, saturates: Bool) {
    (self.exponentBits, self.fractionBits) = (exponentBits, fractionBits)
    (self.largestPattern, self.saturates) = (largestPattern, saturates)
    let bias = (1 << (exponentBits - 1)) - 1
    values = (0..<256).map { pattern -> Float in
      let magnitude = pattern & 0x7F
      let sign: Float = pattern & 0x80 == 0 ? 1 : -1
      if magnitude > Int(largestPattern) {  // E4M3: only 0x7F, NaN; E5M2: 0x7C infinity, above it NaN
        return saturates || magnitude > 0x7C ? .nan : sign * .infinity
      }
      let (exponent, fraction) = (magnitude >> fractionBits, magnitude & ((1 << fractionBits) - 1))
      let scale = Float(sign: .plus, exponent: (exponent == 0 ? 1 : exponent) - bias - fractionBits, significand: 1)
      return sign * Float(exponent == 0 ? fraction : fraction | 1 << fractionBits) * scale
    }
  }

  var bias: Int { (1 << (exponentBits - 1)) - 1 }

  /// `decode(encode(x))` computed in Float's own bits, for loops over tensors. A normal value keeps its top
  /// `fraction` bits, rounded to nearest even by the carry trick of `BFloat16`; below the format's smallest normal
  /// the spacing is fixed, so the value is rounded to a multiple of the smallest subnormal instead; past the
  /// largest value it saturates (E4M3) or becomes infinity (E5M2).
  @inline(__always)
  static func round(
    _ x: Float, fraction: UInt32, smallestNormal: Float, smallestSubnormal: Float, largest: Float, overflow: Float
  ) -> Float {
    let magnitude = x.magnitude
    let drop = 23 - fraction
    let bits = magnitude.bitPattern
    let half = (UInt32(1) << (drop - 1)) - 1
    let normal = Float(bitPattern: (bits &+ half &+ ((bits >> drop) & 1)) & ~((UInt32(1) << drop) - 1))
    let subnormal = (magnitude / smallestSubnormal).rounded(.toNearestOrEven) * smallestSubnormal
    let rounded = magnitude < smallestNormal ? subnormal : normal
    let result = rounded > largest ? overflow : rounded
    return x.isNaN ? x : Float(bitPattern: result.bitPattern | (x.bitPattern & 0x8000_0000))
  }

  @inline(__always)
  static func roundE4M3(_ x: Float) -> Float {
    round(x, fraction: 3, smallestNormal: 0x1p-6, smallestSubnormal: 0x1p-9, largest: 448, overflow: 448)
  }

  @inline(__always)
  static func roundE5M2(_ x: Float) -> Float {
    round(x, fraction: 2, smallestNormal: 0x1p-14, smallestSubnormal: 0x1p-16, largest: 57344, overflow: .infinity)
  }

  /// The value of a pattern.
  public func decode(_ pattern: UInt8) -> Float { values[Int(pattern)] }

  /// The pattern nearest to `x`, ties to even. The value is scaled so that its last kept fraction bit is the
  /// unit, rounded to a whole number in Float (exact: a power-of-two scale), and the whole number is the pattern's
  /// fraction (a subnormal) or its fraction with the leading 1 (a normal, whose exponent goes in front). A
  /// rounding that carries into a new binade carries into the exponent by itself: the patterns of one sign are
  /// in the order of their values.
  public func encode(_ x: Float) -> UInt8 {
    let sign: UInt8 = x.sign == .minus ? 0x80 : 0
    if x.isNaN { return sign | (saturates ? 0x7F : 0x7E) }
    let magnitude = x.magnitude
    if magnitude.isInfinite { return sign | (saturates ? largestPattern : 0x7C) }
    let minimumExponent = 1 - bias  // of the normals; the subnormals share its unit
    let exponent = max(Int(magnitude.exponent), minimumExponent)
    if exponent > bias + 1 { return sign | (saturates ? largestPattern : 0x7C) }  // far past the range
    let unit = Float(sign: .plus, exponent: exponent - fractionBits, significand: 1)
    let whole = Int((magnitude / unit).rounded(.toNearestOrEven))
    // A subnormal's whole number is its fraction (exponent field 0); a normal's is 1.fraction, and adding the
    // exponent field just above the fraction (minus the leading 1) spells its pattern.
    let pattern =
      exponent == minimumExponent ? whole : ((exponent + bias) << fractionBits) + whole - (1 << fractionBits)
    if pattern > Int(largestPattern) { return sign | (saturates ? largestPattern : 0x7C) }
    return sign | UInt8(pattern)
  }
}
