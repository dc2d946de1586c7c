import Foundation
import Support

/// Plots of training runs: every chart is written as data (CSV) plus a gnuplot script beside it, and rendered to
/// PNG when gnuplot is installed. Without gnuplot the run still succeeds and says how to render the files later.
/// This file is the part every kind of chart shares: the table, the report and the gnuplot driver; the charts
/// themselves are in LineChart.swift and DecisionBoundary.swift.

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

/// `text` as a gnuplot string literal: in single quotes nothing is special but the quote itself, written twice.
func quoted(_ text: String) -> String {
  "'" + text.replacingOccurrences(of: "'", with: "''") + "'"
}

/// The key of every picture: outside the plot, under the x label, in one row, so that it never covers a curve or
/// a data point; `Left reverse` puts each sample before its title, where a title cannot run into the next sample.
let keyBelow = "set key outside below center horizontal Left reverse noenhanced width 3 samplen 4 height 1"

/// The gnuplot executable on PATH, or nil. The plot functions take it as a parameter so that a caller (or a test)
/// can choose it, or say there is none.
public func installedGnuplot() -> String? { findExecutable("gnuplot") }

/// Writes `name`.gp (a PNG script) and runs `gnuplot` on it when there is one.
func renderPNG(
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
