import ArgumentParser
import Foundation
import Support

/// `stage8 formats`: each number format's range and precision, and a value as each one stores it, bit by bit.
struct FormatsCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "formats",
    abstract: "What each number format keeps and loses: its range, its precision, and --value in its bits.")

  @Option(parsing: .unconditionalSingleValue, help: "Values to show in every format's bits.") var value: [Double] = [
    0.1, 1000,
  ]

  func validate() throws {
    for v in value { try Check.number(v, "--value", in: Bounds(-1e38, 1e38)) }
  }

  func run() throws {
    print("format  bits  sign exponent fraction        largest  smallest normal  smallest subnormal  ulp of 1")
    for format in NumberFormat.allCases {
      let (e, f) = format.layout
      print(
        format.rawValue.padding(toLength: 6, withPad: " ", startingAt: 0)
          + pad(String(format.bits), 6) + pad("1", 5) + pad(String(e), 9) + pad(String(f), 9)
          + pad(scientific(format.largest), 15) + pad(scientific(format.smallestNormal), 17)
          + pad(scientific(format.smallestSubnormal), 20) + pad(scientific(format.ulpOfOne), 10))
    }
    for v in value {
      print("\n\(v) as each format stores it (sign | exponent | fraction = value, relative error):")
      for format in NumberFormat.allCases {
        let stored = format.round(Float(v))
        let error = Double(stored) == v ? 0 : (Double(stored) - v) / v  // never -0
        print(
          "  " + format.rawValue.padding(toLength: 5, withPad: " ", startingAt: 0)
            + bitString(Float(v), format).padding(toLength: 40, withPad: " ", startingAt: 0)
            + " = \(stored)" + (stored.isFinite ? String(format: "  (%+.2e)", error) : "  (out of range)"))
      }
    }
  }

  func pad(_ text: String, _ width: Int) -> String {
    String(repeating: " ", count: max(0, width - text.count)) + text
  }

  func scientific(_ x: Float) -> String { String(format: "%.3g", Double(x)) }

  /// The bits `format` stores `x` in, as sign | exponent | fraction.
  func bitString(_ x: Float, _ format: NumberFormat) -> String {
    let pattern: UInt32
    switch format {
    case .fp32: pattern = x.bitPattern
    case .bf16: pattern = UInt32(BFloat16(x).bitPattern)
    case .fp16: pattern = UInt32(Float16(x).bitPattern)
    case .e4m3: pattern = UInt32(FP8.e4m3.encode(x))
    case .e5m2: pattern = UInt32(FP8.e5m2.encode(x))
    }
    let (e, f) = format.layout
    let bits = String(pattern, radix: 2)
    let padded = String(repeating: "0", count: format.bits - bits.count) + bits
    let sign = padded.prefix(1)
    let exponent = padded.dropFirst().prefix(e)
    let fraction = padded.suffix(f)
    return "\(sign) | \(exponent) | \(fraction)"
  }
}
