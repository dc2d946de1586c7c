import Foundation
import Support
import Testing

@testable import Datasets

@Suite struct ToyDatasetTests {
  @Test(arguments: ToyDataset.allCases)
  func everySetHasTheCountAndBothClasses(_ kind: ToyDataset) {
    let data = kind.make(count: 101, noise: 0.1, seed: 1)
    #expect(data.count == 101)
    #expect(data.labels.count == 101)
    #expect(data.points.allSatisfy { $0.count == 2 && $0.allSatisfy(\.isFinite) })
    #expect(Set(data.labels) == [0, 1])
  }

  @Test(arguments: ToyDataset.allCases)
  func theSameSeedGivesTheSamePoints(_ kind: ToyDataset) {
    let a = kind.make(count: 50, noise: 0.1, seed: 3)
    let b = kind.make(count: 50, noise: 0.1, seed: 3)
    let c = kind.make(count: 50, noise: 0.1, seed: 4)
    #expect(a.points == b.points && a.labels == b.labels)
    #expect(a.points != c.points)
  }

  @Test func moonsWithoutNoiseLieOnTheirHalfCircles() {
    let data = ToyDataset.moons.make(count: 100, noise: 0, seed: 1)
    #expect(data.labels.filter { $0 == 0 }.count == 50)
    for (p, label) in zip(data.points, data.labels) {
      // Class 0: the unit upper half circle about (0, 0); class 1: the lower one about (1, 0.5).
      let (cx, cy) = label == 0 ? (0.0, 0.0) : (1.0, 0.5)
      let radius = ((p[0] - cx) * (p[0] - cx) + (p[1] - cy) * (p[1] - cy)).squareRoot()
      #expect(abs(radius - 1) < 1e-12)
      #expect(label == 0 ? p[1] >= -1e-12 : p[1] <= 0.5 + 1e-12)
    }
  }

  @Test func circlesWithoutNoiseHaveRadiusOneAndOneHalf() {
    let data = ToyDataset.circles.make(count: 60, noise: 0, seed: 1)
    for (p, label) in zip(data.points, data.labels) {
      let radius = (p[0] * p[0] + p[1] * p[1]).squareRoot()
      #expect(abs(radius - (label == 0 ? 1 : 0.5)) < 1e-12)
    }
  }

  @Test func xorWithoutNoiseLabelsByQuadrant() {
    let data = ToyDataset.xor.make(count: 200, noise: 0, seed: 1)
    for (p, label) in zip(data.points, data.labels) {
      #expect(label == (p[0] * p[1] < 0 ? 1 : 0))
    }
  }

  @Test func spiralsSplitThePointsOverTheArms() {
    let data = ToyDataset.spirals.make(count: 100, noise: 0.1, classes: 3, seed: 1)
    #expect(data.classes == 3)
    #expect([0, 1, 2].map { k in data.labels.filter { $0 == k }.count } == [34, 33, 33])
  }
}

@Suite struct DigitsTests {
  @Test func theShippedDigitsLoad() throws {
    let digits = try Digits()
    #expect(digits.count == 1797)
    #expect(digits.images.allSatisfy { $0.count == 64 && $0.allSatisfy { (0...1).contains($0) } })
    #expect(Set(digits.labels) == Set(0...9))
    #expect(digits.labels[0] == 0 && digits.images[0][2] == 5.0 / 16)  // the first row: 0,0,5,13,...,0
  }

  @Test func aBadFileSaysWhichLine() throws {
    let path = NSTemporaryDirectory() + "digits-bad-\(getpid()).csv"
    try writeAtomically(String(repeating: "0,", count: 64) + "3\n1,2,3\n", to: path)
    do {
      _ = try Digits(path: path)
      Issue.record("no error")
    } catch {
      #expect("\(error)" == "'\(path)' line 2: expected 65 whole numbers separated by commas")
    }
    #expect(throws: UserError.self) { try Digits(path: "/nonexistent/digits.csv") }
  }

  @Test func theSplitIsSeededDisjointAndComplete() {
    let parts = seededSplit(count: 100, fractions: [0.7, 0.15, 0.15], seed: 1)
    #expect(parts.map(\.count) == [70, 15, 15])
    #expect(Set(parts.joined()) == Set(0..<100))
    #expect(parts == seededSplit(count: 100, fractions: [0.7, 0.15, 0.15], seed: 1))
    #expect(parts != seededSplit(count: 100, fractions: [0.7, 0.15, 0.15], seed: 2))
  }
}
