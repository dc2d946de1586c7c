import Foundation
import Support

/// Small 2-D classification sets, drawn from a seeded generator: the playgrounds of stages 1 and 2.

/// Points in the plane with a class label each.
public struct Points2D: Sendable {
  /// Coordinates, one [x, y] per point.
  public var points: [[Double]]
  /// Class of each point, 0..<classes.
  public var labels: [Int]
  public let classes: Int

  public var count: Int { points.count }
}

/// The toy sets, by the name the command line uses.
public enum ToyDataset: String, CaseIterable, Sendable {
  case moons, circles, spirals, xor

  /// Draws `count` points with Gaussian noise of standard deviation `noise`, seeded.
  /// `classes` is used by spirals only (the arms); the others have two classes.
  public func make(count: Int, noise: Double, classes: Int = 2, seed: UInt64) -> Points2D {
    precondition(count >= 2 && noise >= 0 && classes >= 2, "ToyDataset.make: count \(count), noise \(noise)")
    var rng = SeededRNG(seed: seed)
    var data: Points2D
    switch self {
    case .moons: data = drawMoons(count)
    case .circles: data = drawCircles(count)
    case .spirals: data = drawSpirals(count, classes: classes, noise: noise, &rng)
    case .xor: data = drawXor(count, &rng)
    }
    if self != .spirals {
      for i in data.points.indices {
        data.points[i][0] += rng.normal(std: noise)
        data.points[i][1] += rng.normal(std: noise)
      }
    }
    return shuffled(data, &rng)
  }
}

/// Evenly spaced values from `start` to `end`, both included (NumPy's linspace).
private func linspace(_ start: Double, _ end: Double, _ count: Int) -> [Double] {
  count == 1 ? [start] : (0..<count).map { start + (end - start) * Double($0) / Double(count - 1) }
}

/// Two interleaving half circles (as scikit-learn's make_moons draws them).
private func drawMoons(_ count: Int) -> Points2D {
  let (outer, inner) = (count / 2, count - count / 2)
  let first = linspace(0, .pi, outer).map { [cos($0), sin($0)] }
  let second = linspace(0, .pi, inner).map { [1 - cos($0), 0.5 - sin($0)] }
  return twoClasses(first, second)
}

/// A small circle inside a large one (radius 0.5 and 1).
private func drawCircles(_ count: Int) -> Points2D {
  let angles = { (n: Int) in (0..<n).map { 2 * Double.pi * Double($0) / Double(n) } }
  let outer = angles(count / 2).map { [cos($0), sin($0)] }
  let inner = angles(count - count / 2).map { [0.5 * cos($0), 0.5 * sin($0)] }
  return twoClasses(outer, inner)
}

/// Class 0 for the first points, class 1 for the second.
private func twoClasses(_ first: [[Double]], _ second: [[Double]]) -> Points2D {
  Points2D(
    points: first + second, labels: [Int](repeating: 0, count: first.count) + [Int](repeating: 1, count: second.count),
    classes: 2)
}

/// `classes` spiral arms winding out from the origin; noise perturbs the angle (CS231n's classic set).
private func drawSpirals(_ count: Int, classes: Int, noise: Double, _ rng: inout SeededRNG) -> Points2D {
  var points: [[Double]] = []
  var labels: [Int] = []
  for arm in 0..<classes {
    let n = count / classes + (arm < count % classes ? 1 : 0)
    let radii = linspace(0.05, 1, n)
    let base = Double(arm) * 2 * .pi / Double(classes)
    for (k, r) in radii.enumerated() {
      let angle = base + 1.75 * .pi * Double(k) / Double(max(n - 1, 1)) + rng.normal(std: 2 * noise)
      points.append([r * cos(angle), r * sin(angle)])
      labels.append(arm)
    }
  }
  return Points2D(points: points, labels: labels, classes: classes)
}

/// Uniform points in the square [-1, 1]^2, class 1 where x and y have different signs.
private func drawXor(_ count: Int, _ rng: inout SeededRNG) -> Points2D {
  var points: [[Double]] = []
  var labels: [Int] = []
  for _ in 0..<count {
    let (x, y) = (rng.uniform(-1, 1), rng.uniform(-1, 1))
    points.append([x, y])
    labels.append(x * y < 0 ? 1 : 0)
  }
  return Points2D(points: points, labels: labels, classes: 2)
}

/// The same points in a seeded random order (Fisher-Yates).
private func shuffled(_ data: Points2D, _ rng: inout SeededRNG) -> Points2D {
  var order = Array(data.points.indices)
  for i in stride(from: order.count - 1, to: 0, by: -1) { order.swapAt(i, rng.index(below: i + 1)) }
  return Points2D(points: order.map { data.points[$0] }, labels: order.map { data.labels[$0] }, classes: data.classes)
}
