import Foundation
import Support

/// Plots of training runs: every chart is written as data (CSV) plus a gnuplot script beside it, and rendered to
/// PNG when gnuplot is installed. Without gnuplot the run still succeeds and says how to render the files later.

/// What a plot call wrote, and anything the user should know (gnuplot missing or failing).
public struct PlotReport: Sendable {
  public var written: [String] = []
  public var notes: [String] = []

  public init() {}

  public mutating func merge(_ other: PlotReport) {
    written += other.written
    notes += other.notes
  }
}

/// A table of numbers with named columns, written as CSV with a header line and six significant digits.
public struct Table: Sendable {
  public let columns: [String]
  public private(set) var rows: [[Double]] = []

  public init(columns: [String]) { self.columns = columns }

  public mutating func append(_ row: [Double]) {
    precondition(row.count == columns.count, "Table.append: \(row.count) values for \(columns.count) columns")
    rows.append(row)
  }

  public var csv: String {
    ([columns.joined(separator: ",")] + rows.map { $0.map { String(format: "%.6g", $0) }.joined(separator: ",") })
      .joined(separator: "\n") + "\n"
  }

  /// The 1-based column number gnuplot uses for `name`.
  func gnuplotColumn(_ name: String) -> Int {
    guard let index = columns.firstIndex(of: name) else {
      preconditionFailure("no column '\(name)' in \(columns)")
    }
    return index + 1
  }
}

/// One curve of a line chart: a column of the table against the first column.
public struct Curve: Sendable {
  public let column: String
  public let title: String
  public let rightAxis: Bool

  public init(_ column: String, title: String? = nil, rightAxis: Bool = false) {
    self.column = column
    self.title = title ?? column
    self.rightAxis = rightAxis
  }
}

/// A line chart of some columns of a table against its first column (a step or an epoch).
public struct LineChart: Sendable {
  public var title: String
  public var xLabel: String
  public var yLabel: String
  public var y2Label: String? = nil
  public var logY = false
  public var table: Table
  public var curves: [Curve]

  public init(
    title: String, xLabel: String, yLabel: String, y2Label: String? = nil, logY: Bool = false, table: Table,
    curves: [Curve]
  ) {
    self.title = title
    self.xLabel = xLabel
    self.yLabel = yLabel
    self.y2Label = y2Label
    self.logY = logY
    self.table = table
    self.curves = curves
  }

  func script(dataFile: String) -> String {
    var lines = [
      "set title '\(title)' noenhanced",
      "set xlabel '\(xLabel)' noenhanced",
      "set ylabel '\(yLabel)' noenhanced",
      "set grid",
      "set key below noenhanced",
    ]
    if logY { lines.append("set logscale y") }
    if let y2Label {
      lines += ["set y2label '\(y2Label)' noenhanced", "set y2tics", "set ytics nomirror"]
    }
    let plots = curves.map { curve in
      "'\(dataFile)' skip 1 using 1:\(table.gnuplotColumn(curve.column))"
        + (curve.rightAxis ? " axes x1y2" : "") + " with lines lw 2 title '\(curve.title)'"
    }
    lines.append("plot " + plots.joined(separator: ", \\\n     "))
    return lines.joined(separator: "\n")
  }
}

/// The gnuplot executable on PATH, or nil. The plot functions take it as a parameter so that a caller (or a test)
/// can choose it, or say there is none.
public func installedGnuplot() -> String? { findExecutable("gnuplot") }

/// Writes `name`.csv and `name`.gp into `directory` and renders `name`.png with `gnuplot` when there is one.
public func writeLineChart(
  _ chart: LineChart, name: String, directory: String, gnuplot: String? = installedGnuplot()
) throws -> PlotReport {
  try prepareOutputDirectory(directory)
  let dataFile = name + ".csv"
  try writeAtomically(chart.table.csv, to: directory + "/" + dataFile)
  var report = try renderPNG(body: chart.script(dataFile: dataFile), name: name, directory: directory, gnuplot: gnuplot)
  report.written.insert(directory + "/" + dataFile, at: 0)
  return report
}

/// The chart's left-axis curves drawn with characters (gnuplot's `dumb` terminal); nil without gnuplot.
public func terminalPlot(
  _ chart: LineChart, width: Int = 78, height: Int = 18, gnuplot: String? = installedGnuplot()
) -> String? {
  guard let gnuplot else { return nil }
  var chart = chart
  chart.curves.removeAll(where: \.rightAxis)  // two axes of characters are unreadable
  chart.y2Label = nil
  let dataFile = NSTemporaryDirectory() + "plot-\(getpid())-\(Stopwatch.now()).csv"
  guard (try? writeAtomically(chart.table.csv, to: dataFile)) != nil else { return nil }
  defer { try? FileManager.default.removeItem(atPath: dataFile) }
  let script =
    "set datafile separator ','\nset terminal dumb size \(width),\(height)\n"
    + chart.script(dataFile: dataFile) + "\n"
  guard let run = try? runTool(gnuplot, [], input: script), run.status == 0 else { return nil }
  // The dumb terminal pads with a form feed and blank lines; keep just the picture.
  return run.output.replacingOccurrences(of: "\u{0C}", with: "")
    .split(separator: "\n", omittingEmptySubsequences: false)
    .filter { !$0.allSatisfy(\.isWhitespace) }
    .joined(separator: "\n")
}

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

  public enum Coloring: Sendable {
    /// Values in [-limit, limit]: negative is class 0, positive class 1, white the boundary.
    case score(limit: Double)
    /// Values are class indices 0..<count.
    case classes(Int)
  }

  public init(
    title: String, xs: [Double], ys: [Double], values: [[Double]], points: [(x: Double, y: Double, label: Int)],
    coloring: Coloring
  ) {
    self.title = title
    self.xs = xs
    self.ys = ys
    self.values = values
    self.points = points
    self.coloring = coloring
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
  try writeAtomically(grid.csv, to: directory + "/" + gridFile)
  try writeAtomically(points.csv, to: directory + "/" + pointsFile)

  var lines = [
    "set title '\(plot.title)' noenhanced",
    "set xrange [\(plot.xs.first ?? 0):\(plot.xs.last ?? 1)]",
    "set yrange [\(plot.ys.first ?? 0):\(plot.ys.last ?? 1)]",
    "set size ratio -1",
    "unset key",
  ]
  switch plot.coloring {
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
  for (k, color) in classColors.enumerated() { lines.append("set linetype \(k + 1) lc rgb '\(color)'") }
  lines.append(
    "plot '\(gridFile)' skip 1 using 1:2:3 with image, \\\n"
      + "     '\(pointsFile)' skip 1 using 1:2 with points pt 7 ps 1.3 lc rgb 'black', \\\n"
      + "     '\(pointsFile)' skip 1 using 1:2:(int($3)+1) with points pt 7 ps 0.9 lc variable")
  var report = try renderPNG(
    body: lines.joined(separator: "\n"), name: name, directory: directory, size: (800, 560), gnuplot: gnuplot)
  report.written.insert(contentsOf: [directory + "/" + gridFile, directory + "/" + pointsFile], at: 0)
  return report
}

/// Writes `name`.gp (a PNG script) and runs `gnuplot` on it when there is one.
private func renderPNG(
  body: String, name: String, directory: String, size: (Int, Int) = (900, 540), gnuplot: String?
) throws -> PlotReport {
  let scriptFile = name + ".gp"
  let script = """
    # Render with: gnuplot \(scriptFile)   (in this folder)
    set datafile separator ','
    set terminal pngcairo size \(size.0),\(size.1)
    set output '\(name).png'
    \(body)

    """
  try writeAtomically(script, to: directory + "/" + scriptFile)
  var report = PlotReport()
  report.written.append(directory + "/" + scriptFile)
  guard let gnuplot else {
    report.notes.append(
      "gnuplot is not installed: wrote the data and \(scriptFile); render with `cd \(directory) && gnuplot \(scriptFile)`"
    )
    return report
  }
  let run = try runTool(gnuplot, [scriptFile], workingDirectory: directory)
  if run.status == 0 {
    report.written.append(directory + "/" + name + ".png")
  } else {
    let reason = run.errorOutput.split(separator: "\n").last.map(String.init) ?? "exit \(run.status)"
    report.notes.append("gnuplot could not render \(scriptFile): \(reason)")
  }
  return report
}
