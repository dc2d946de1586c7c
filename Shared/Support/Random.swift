#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Seeded random numbers, so that every run, test and plot of the project can be reproduced exactly.
///
/// The generator is xoshiro256** (Blackman and Vigna, 2018), seeded through SplitMix64 as its authors recommend:
/// SplitMix64 spreads any 64-bit seed, even 0 or 1, over the 256 bits of xoshiro's state.

/// SplitMix64: a tiny generator that turns one 64-bit seed into a well-mixed stream. Used to seed xoshiro.
public struct SplitMix64: RandomNumberGenerator, Sendable {
  public private(set) var state: UInt64

  public init(seed: UInt64) { state = seed }

  public mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// The project's random number generator: xoshiro256** with a SplitMix64-expanded seed.
///
/// Its whole state is four words, so a checkpoint can save and restore it (`state`, `init(state:)`).
public struct SeededRNG: RandomNumberGenerator, Sendable {
  public private(set) var state: (UInt64, UInt64, UInt64, UInt64)

  public init(seed: UInt64) {
    var mixer = SplitMix64(seed: seed)
    state = (mixer.next(), mixer.next(), mixer.next(), mixer.next())
  }

  public init(state: (UInt64, UInt64, UInt64, UInt64)) { self.state = state }

  public mutating func next() -> UInt64 {
    let result = rotateLeft(state.1 &* 5, by: 7) &* 9
    let t = state.1 << 17
    state.2 ^= state.0
    state.3 ^= state.1
    state.1 ^= state.2
    state.0 ^= state.3
    state.2 ^= t
    state.3 = rotateLeft(state.3, by: 45)
    return result
  }

  /// A double drawn uniformly from [0, 1), from the top 53 bits of the next output.
  public mutating func unit() -> Double {
    Double(next() >> 11) * 0x1.0p-53
  }

  /// A double drawn uniformly from [low, high).
  public mutating func uniform(_ low: Double, _ high: Double) -> Double {
    low + (high - low) * unit()
  }

  /// A normal draw N(mean, std^2) by the Box-Muller transform (one of the pair is used, so a draw is stateless).
  public mutating func normal(mean: Double = 0, std: Double = 1) -> Double {
    let u1 = 1 - unit()  // in (0, 1], so the log is finite
    let u2 = unit()
    return mean + std * (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
  }

  /// An integer drawn uniformly from 0..<upperBound, without modulo bias.
  public mutating func index(below upperBound: Int) -> Int {
    Int.random(in: 0..<upperBound, using: &self)
  }

  /// Puts `elements` in a random order (Fisher-Yates, from the last place down: each place swaps with one drawn
  /// from those up to it), drawing one index per place but the first.
  public mutating func shuffle<Element>(_ elements: inout [Element]) {
    for i in stride(from: elements.count - 1, to: 0, by: -1) { elements.swapAt(i, index(below: i + 1)) }
  }
}

/// One generator shared by everything that draws during training (batch order, dropout masks), like PyTorch's
/// global generator but explicit: a checkpoint saves its `state`, and a resumed run draws exactly what the
/// uninterrupted run would have.
public final class RandomSource {
  public var rng: SeededRNG

  public init(seed: UInt64) { rng = SeededRNG(seed: seed) }
}

@inline(__always)
private func rotateLeft(_ x: UInt64, by k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

/// A stable 64-bit hash of a string (FNV-1a). Swift's own `Hasher` is seeded per process, so it cannot seed a
/// reproducible draw; this one can (the gradient checks seed each case by its name).
public func stableHash(_ text: String) -> UInt64 {
  var hash: UInt64 = 0xCBF2_9CE4_8422_2325
  for byte in text.utf8 {
    hash ^= UInt64(byte)
    hash = hash &* 0x0000_0100_0000_01B3
  }
  return hash
}
