import Foundation
import Support

/// A 2-D classifier's view of the plane: its output on a regular grid, with the data points on top.
public struct DecisionBoundary: Sendable {
  public var title: String
  /// Grid coordinates; `values[i][j]` is the model's output at (xs[j], ys[i]).
  public var xs: [Double]
  public var ys: [Double]
  public var values: [[Double]]
  /// The data: coordinates and class label (0, 1, 2, ...).
  public var points: [(x: Double, y: Double, label: Int)]
  /// How values map to colour: a score whose sign is the class, or a class index.
  public var coloring: Coloring
  /// What the two coordinates are.
  public var xLabel: String
  public var yLabel: String
  /// The key's name for each class, by label; a class without one is called "class N". With `.score` colouring
  /// the key adds the sign of the output that stands for the class.
  public var classNames: [String]

  public enum Coloring: Sendable {
    /// Values in [-limit, limit]: negative is class 0, positive class 1, white the boundary.
    case score(limit: Double)
    /// Values are class indices 0..<count.
    case classes(Int)
  }

  public init(
    title: String, xs: [Double], ys: [Double], values: [[Double]], points: [(x: Double, y: Double, label: Int)],
    coloring: Coloring, xLabel: String = "x", yLabel: String = "y", classNames: [String] = []
  ) {
    self.title = title
    self.xs = xs
    self.ys = ys
    self.values = values
    self.points = points
    self.coloring = coloring
    self.xLabel = xLabel
    self.yLabel = yLabel
    self.classNames = classNames
  }

  /// How many classes the key lists: those the colouring knows, and any label the data has beyond them.
  var classCount: Int {
    let colored: Int
    switch coloring {
    case .score: colored = 2
    case .classes(let count): colored = count
    }
    return max(colored, (points.map(\.label).max() ?? -1) + 1)
  }

  func className(_ label: Int) -> String {
    let name = label < classNames.count ? classNames[label] : "class \(label)"
    guard case .score = coloring, label < 2 else { return name }
    return name + (label == 0 ? " (output < 0)" : " (output > 0)")
  }

  /// The gnuplot commands that draw the grid from `gridFile` and the points from `pointsFile`.
  func script(gridFile: String, pointsFile: String) -> String {
    var lines: [String] = [
      "set title \(quoted(title)) noenhanced",
      "set xlabel \(quoted(xLabel)) noenhanced",
      "set ylabel \(quoted(yLabel)) noenhanced",
      "set xrange [\(xs.first ?? 0):\(xs.last ?? 1)]",
      "set yrange [\(ys.first ?? 0):\(ys.last ?? 1)]",
      "set size ratio -1",
      keyBelow,
    ]
    switch coloring {
    case .score(let limit):
      lines += [
        "set cbrange [\(-limit):\(limit)]", "set cblabel 'model output'",
        "set palette defined (0 '\(lightClassColors[0])', 0.5 'white', 1 '\(lightClassColors[1])')",
      ]
    case .classes(let count):
      let stops = (0..<count).map { "\($0) '\(lightClassColors[$0 % lightClassColors.count])'" }
      lines += [
        "set cbrange [-0.5:\(Double(count) - 0.5)]", "unset colorbox",
        "set palette maxcolors \(count)", "set palette defined (" + stops.joined(separator: ", ") + ")",
      ]
    }
    // Every point is a black disc with its class's colour inside, one plot per class; the key shows each class's
    // colour on a larger disc than the points' own, which are small so as not to hide the boundary.
    var plots: [String] = [
      "'\(gridFile)' skip 1 using 1:2:3 with image notitle",
      "'\(pointsFile)' skip 1 using 1:2 with points pt 7 ps 1.3 lc rgb 'black' notitle",
    ]
    for label in 0..<classCount {
      let color = classColors[label % classColors.count]
      plots += [
        "'\(pointsFile)' skip 1 using 1:($3 == \(label) ? $2 : NaN) with points pt 7 ps 0.9 lc rgb '\(color)' notitle",
        "keyentry with points pt 7 ps 1.6 lc rgb '\(color)' title \(quoted(className(label)))",
      ]
    }
    lines.append("plot " + plots.joined(separator: ", \\\n     "))
    return lines.joined(separator: "\n")
  }
}

/// Class colours: red, blue, green, then more.
private let classColors = ["#b2182b", "#2166ac", "#1b7837", "#762a83", "#e08214"]
private let lightClassColors = ["#f4a582", "#92c5de", "#a6dba0", "#c2a5cf", "#fdb863"]

/// Writes `name`-grid.csv, `name`-points.csv and `name`.gp, and renders `name`.png with `gnuplot` if there is one.
public func writeDecisionBoundary(
  _ plot: DecisionBoundary, name: String, directory: String, gnuplot: String? = installedGnuplot()
) throws -> PlotReport {
  try prepareOutputDirectory(directory)
  var grid = Table(columns: ["x", "y", "value"])
  for (i, y) in plot.ys.enumerated() {
    for (j, x) in plot.xs.enumerated() { grid.append([x, y, plot.values[i][j]]) }
  }
  var points = Table(columns: ["x", "y", "label"])
  for point in plot.points { points.append([point.x, point.y, Double(point.label)]) }
  let gridFile = name + "-grid.csv"
  let pointsFile = name + "-points.csv"
  try writeAtomically(grid.csv, to: directory + "/" + gridFile, as: plotWriter)
  try writeAtomically(points.csv, to: directory + "/" + pointsFile, as: plotWriter)
  let body = plot.script(gridFile: gridFile, pointsFile: pointsFile)
  var report = try renderPNG(body: body, name: name, directory: directory, size: (800, 600), gnuplot: gnuplot)
  report.written.insert(contentsOf: [directory + "/" + gridFile, directory + "/" + pointsFile], at: 0)
  return report
}
