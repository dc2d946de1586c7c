import Datasets
import Foundation
import Support
import Testing

/// The digits reader takes the files a user makes (Windows line ends, blank lines, a byte-order mark) and still
/// names the right line of a bad one.
@Suite struct DigitsInputTests {
  let row = String(repeating: "0,", count: 64) + "3"

  func read(_ text: String) throws -> Digits {
    let path = NSTemporaryDirectory() + "digits-input-\(getpid())-\(Stopwatch.now()).csv"
    try writeAtomically(text, to: path)
    defer { try? FileManager.default.removeItem(atPath: path) }
    return try Digits(path: path)
  }

  @Test func windowsLineEndsBlankLinesAndAByteOrderMarkAreNotData() throws {
    #expect(try read(row + "\r\n" + row + "\r\n").count == 2)
    #expect(try read("\u{FEFF}" + row + "\n\n  \n" + row + "\n\n").count == 2)
    #expect(try read(row).labels == [3])  // no line end at the end
  }

  @Test func aBadLineAfterBlankLinesIsNamedByItsNumberInTheFile() throws {
    do {
      _ = try read(row + "\r\n\r\n" + row + ",\r\n")
      Issue.record("no error")
    } catch {
      #expect("\(error)".hasSuffix("line 3: expected 65 whole numbers separated by commas"))
    }
  }

  @Test func theSplitSizesAndTheFewestRowsThatFillEveryPart() {
    let fractions = [0.7, 0.15, 0.15]
    #expect(splitSizes(count: 1797, fractions: fractions) == [1258, 270, 269])
    #expect(splitSizes(count: 5, fractions: fractions) == [4, 1, 0])
    #expect(splitSizes(count: 2, fractions: fractions) == [1, 0, 1])
    #expect(minimumSplitCount(fractions: fractions) == 6)
    #expect(minimumSplitCount(fractions: [0.5, 0.5]) == 2)
  }
}

/// The checks every command runs on its options.
@Suite struct CheckTests {
  func message(_ body: () throws -> Void) -> String {
    do {
      try body()
      return ""
    } catch { return "\(error)" }
  }

  @Test func eachCheckNamesTheOptionAndTheRange() {
    #expect(
      message { try Check.count(0, "--steps", in: 1...10) } == "--steps must be a whole number from 1 to 10, got 0")
    #expect(message { try Check.count(5, "--steps", in: 1...10) } == "")
    #expect(message { try Check.count(nil, "--top-k", in: 1...10) } == "")
    #expect(
      message { try Check.number(.nan, "--lr", in: .positive) } == "--lr must be a finite number above 0, got nan")
    #expect(message { try Check.number(1e300, "--lr", in: .positive) } == "")
    #expect(
      message { try Check.number(1, "--dropout", in: Bounds(0, 1, includesHigh: false)) }
        == "--dropout must be a finite number in [0, 1), got 1.0")
    #expect(message { try Check.number(0, "--dropout", in: Bounds(0, 1, includesHigh: false)) } == "")
    #expect(
      message { try Check.widths([16, -4], "--hidden", in: 1...100) }
        == "--hidden widths must be whole numbers from 1 to 100, got -4")
    #expect(message { try Check.widths([], "--hidden", in: 1...100) } == "--hidden takes 1 to 16 widths, got 0")
  }

  @Test func theMemoryCheckComparesWithThisMachine() {
    let machine = machineMemory
    #expect(machine > 0 && machine <= Double(ProcessInfo.processInfo.physicalMemory))
    #expect(message { try Check.memory(bytes: machine / 2, what: "this model", options: "--width") } == "")
    let refused = message { try Check.memory(bytes: 44e12, what: "this model", options: "--width") }
    #expect(refused.hasPrefix("this model needs about 44 TB of memory; the machine has "))
    #expect(refused.hasSuffix(" (make --width smaller)"))
  }

  @Test func aLossThatIsNotFiniteStopsTheRun() {
    #expect(message { try Check.finiteLoss(2.3, step: 1, learningRate: 0.1) } == "")
    #expect(
      message { try Check.finiteLoss(.nan, step: 7, learningRate: 1e12) }
        == "training diverged: the loss is nan at step 7; try a lower --lr than 1e+12")
    #expect(message { try Check.finiteLoss(.infinity, step: 1, learningRate: 1) }.contains("the loss is inf"))
  }

  @Test func shapeProductsThatOverflowAreCaught() {
    #expect(checkedProduct([2, 3, 4]) == 24)
    #expect(checkedProduct([Int]()) == 1)
    #expect(checkedProduct([4_294_967_296, 4_294_967_296]) == nil)
    #expect(checkedProduct([3, -1]) == nil)
    #expect(elementCount([5, 7]) == 35)
  }
}
