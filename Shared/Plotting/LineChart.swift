import Foundation
import Support

/// One curve of a line chart: a column of the table against the first column.
public struct Curve: Sendable {
  public let column: String
  public let title: String
  public let rightAxis: Bool
  /// The column is a fraction in [0, 1] (an accuracy) drawn as a percentage, as the console prints it; the CSV
  /// keeps the fraction.
  public let percent: Bool

  public init(_ column: String, title: String? = nil, rightAxis: Bool = false, percent: Bool = false) {
    self.column = column
    self.title = title ?? column
    self.rightAxis = rightAxis
    self.percent = percent
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

  /// The gnuplot commands that draw the chart from `dataFile`. A PNG tells its curves apart by colour, dash,
  /// width and marker; `forTerminal` draws plain lines, the only kind a picture of characters shows.
  func script(dataFile: String, forTerminal: Bool = false) -> String {
    var lines: [String] = [
      "set title \(quoted(title)) noenhanced",
      "set xlabel \(quoted(xLabel)) noenhanced",
      "set ylabel \(quoted(yLabel)) noenhanced",
      "set grid",
      forTerminal ? "set key below noenhanced" : keyBelow,
    ]
    if logY { lines.append("set logscale y") }
    if let y2Label {
      lines += ["set y2label \(quoted(y2Label)) noenhanced", "set y2tics", "set ytics nomirror"]
    }
    lines += percentAxis("y", curves.filter { !$0.rightAxis }, logScale: logY)
    lines += percentAxis("y2", curves.filter(\.rightAxis), logScale: false)
    var plots: [String] = []
    for (k, curve) in curves.enumerated() {
      plots += forTerminal ? [plainPlot(curve, dataFile: dataFile)] : styledPlot(k, dataFile: dataFile)
    }
    lines.append("plot " + plots.joined(separator: ", \\\n     "))
    return lines.joined(separator: "\n")
  }

  /// `using 1:N` for the curve's column, scaled to percent when it is a fraction, and its axes.
  private func using(_ curve: Curve) -> String {
    let column = table.gnuplotColumn(curve.column)
    let y = curve.percent ? "(100*$\(column))" : "\(column)"
    return "using 1:" + y + (curve.rightAxis ? " axes x1y2" : "")
  }

  private func plainPlot(_ curve: Curve, dataFile: String) -> String {
    "'\(dataFile)' skip 1 \(using(curve)) with lines lw 2 title \(quoted(curve.title))"
  }

  /// Curve `k` as a line, its markers and its key entry. Each later curve is drawn thinner, on top of the earlier
  /// ones, and every second one dashed, so that two curves that coincide (adam and adamw) both stay visible; the
  /// markers of different curves sit at different rows, so that they do not cover each other either.
  private func styledPlot(_ k: Int, dataFile: String) -> [String] {
    let curve = curves[k]
    let width = 2 + 0.75 * Double(curves.count - 1 - k)
    let line = "dt \(k % 2 == 0 ? 1 : 2) lw \(String(format: "%g", width)) lc \(k + 1)"
    let markerShapes = [7, 5, 9, 13, 11, 15]  // filled circle, square, triangles, diamond, pentagon
    let marker = "pt \(markerShapes[k % markerShapes.count]) ps 1.2"
    let every = max(table.rows.count / 6, curves.count)  // about six markers a curve, and a row of its own
    let offset = k * every / curves.count
    let source = "'\(dataFile)' skip 1"
    return [
      "\(source) \(using(curve)) with lines \(line) notitle",
      "\(source) every \(every)::\(offset) \(using(curve)) with points \(marker) lc \(k + 1) notitle",
      "keyentry with linespoints \(line) \(marker) title \(quoted(curve.title))",
    ]
  }
}

/// The lines that draw `axis` from 0% to 100% when every curve on it is a percentage.
private func percentAxis(_ axis: String, _ curves: [Curve], logScale: Bool) -> [String] {
  guard !curves.isEmpty, curves.allSatisfy(\.percent) else { return [] }
  let format = "set format \(axis) '%g%%'"
  return logScale ? [format] : ["set \(axis)range [0:100]", format]
}

/// Writes `name`.csv and `name`.gp into `directory` and renders `name`.png with `gnuplot` when there is one.
public func writeLineChart(
  _ chart: LineChart, name: String, directory: String, gnuplot: String? = installedGnuplot()
) throws -> PlotReport {
  try prepareOutputDirectory(directory)
  let dataFile = name + ".csv"
  try writeAtomically(chart.table.csv, to: directory + "/" + dataFile, as: plotWriter)
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
    + chart.script(dataFile: dataFile, forTerminal: true) + "\n"
  guard let run = try? runTool(gnuplot, [], input: script), run.status == 0 else { return nil }
  // The dumb terminal pads with a form feed and blank lines; keep just the picture.
  return run.output.replacingOccurrences(of: "\u{0C}", with: "")
    .split(separator: "\n", omittingEmptySubsequences: false)
    .filter { !$0.allSatisfy(\.isWhitespace) }
    .joined(separator: "\n")
}
