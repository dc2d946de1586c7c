import Foundation
import Support

/// Plots of training runs: every chart is written as data (CSV) plus a gnuplot script beside it, and rendered to
/// PNG when gnuplot is installed. Without gnuplot the run still succeeds and says how to render the files later.
/// This file is the part every kind of chart shares: the table, the report and the gnuplot driver; the charts
/// themselves are in LineChart.swift and DecisionBoundary.swift.

/// What a plot call wrote, and anything the user should know (gnuplot missing).
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
  // A line break would end the command and start another (a file name may hold one): control characters become
  // spaces, so the title stays one string on one line.
  let oneLine = String(
    String.UnicodeScalarView(text.unicodeScalars.map { $0.value < 0x20 || $0.value == 0x7F ? " " : $0 }))
  return "'" + oneLine.replacingOccurrences(of: "'", with: "''") + "'"
}

/// The key of every picture: outside the plot, under the x label, in one row, so that it never covers a curve or
/// a data point; `Left reverse` puts each sample before its title, where a title cannot run into the next sample.
let keyBelow = "set key outside below center horizontal Left reverse noenhanced width 3 samplen 4 height 1"

/// The gnuplot executable on PATH, or nil. The plot functions take it as a parameter so that a caller (or a test)
/// can choose it, or say there is none.
public func installedGnuplot() -> String? { findExecutable("gnuplot") }

/// The option plot files are written under: `reserveOutput` and `writeAtomically` name it.
let plotWriter = "--plot-dir"

/// Reserves, before any work, the files a line chart `name` will write in `directory` (CSV, script, PNG), so that
/// a checkpoint or an input named like one of them is found before training instead of destroyed after it.
public func reserveLineChartFiles(name: String, directory: String) throws {
  for suffix in [".csv", ".gp", ".png"] { try reserveOutput(directory + "/" + name + suffix, for: plotWriter) }
}

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
  try refuseOverwriting(directory + "/" + name + ".png", as: plotWriter)  // gnuplot writes it, not this file
  try writeAtomically(script, to: directory + "/" + scriptFile, as: plotWriter)
  var report = PlotReport()
  report.written.append(directory + "/" + scriptFile)
  guard let gnuplot else {
    report.notes.append(
      "gnuplot is not installed: wrote the data and \(scriptFile); render with `cd \(directory) && gnuplot \(scriptFile)`"
    )
    return report
  }
  let run = try runTool(gnuplot, [scriptFile], workingDirectory: directory)
  // An installed gnuplot that fails is an error, not a note: the picture the run promised is not there. The data
  // and the script are written, so nothing is lost, and the message says where they are.
  guard run.status == 0 else {
    let reason = run.errorOutput.split(separator: "\n").last.map(String.init) ?? "exit \(run.status)"
    throw UserError("gnuplot could not render \(directory)/\(scriptFile) (its data is beside it): \(reason)")
  }
  report.written.append(directory + "/" + name + ".png")
  return report
}
