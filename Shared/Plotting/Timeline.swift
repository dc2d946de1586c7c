import Foundation
import Support

/// A timeline: one row per worker, a box for each piece of work from its start to its end, coloured by kind (a
/// pipeline's forwards and backwards, a bucket's all-reduce beside backward). Gaps are idle time.
public struct Timeline: Sendable {
  public struct Box: Sendable {
    public let row: Int
    public let start: Double
    public let end: Double
    /// Which colour: an index into `kinds`.
    public let kind: Int
    /// Written inside the box when it is wide enough (a micro-batch's number).
    public let label: String

    public init(row: Int, start: Double, end: Double, kind: Int, label: String) {
      (self.row, self.start, self.end, self.kind, self.label) = (row, start, end, kind, label)
    }
  }

  public var title: String
  public var rows: [String]
  /// The kinds' names, for the key.
  public var kinds: [String]
  public var boxes: [Box]
  public var xLabel = "time (ms)"

  public init(title: String, rows: [String], kinds: [String], boxes: [Box]) {
    (self.title, self.rows, self.kinds, self.boxes) = (title, rows, kinds, boxes)
  }

  /// row, start, end, kind, label per box; times in the unit of the x axis.
  var table: String {
    "row,start,end,kind,label\n"
      + boxes.map { "\($0.row),\($0.start),\($0.end),\($0.kind),\($0.label)" }.joined(separator: "\n") + "\n"
  }

  func script(dataFile: String) -> String {
    let colours = ["#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3"]
    let tics = rows.enumerated().map { "'\($1.replacingOccurrences(of: "'", with: "''"))' \($0)" }.joined(
      separator: ", ")
    let keys = kinds.indices.map { "NaN with boxes lt \($0 + 1) title '\(kinds[$0])'" }
    let types = colours.enumerated().map { "set linetype \($0 + 1) lc rgb '\($1)'" }
    let end = boxes.map(\.end).max() ?? 1
    return """
      set title '\(title.replacingOccurrences(of: "'", with: "''"))'
      set xlabel '\(xLabel)'
      set ytics (\(tics))
      set yrange [\(Double(rows.count) - 0.4):-0.6]
      set xrange [0:\(end * 1.02)]
      set style fill solid 0.9 border lc rgb 'white'
      set key outside bottom center horizontal
      set grid x
      \(types.joined(separator: "\n"))
      plot '\(dataFile)' skip 1 using (($2 + $3) / 2):1:(($3 - $2) / 2):(0.35):($4 + 1) with boxxyerror \\
        lc variable notitle, \\
        '' skip 1 using (($2 + $3) / 2):1:5 with labels tc rgb 'white' font ',8' notitle, \\
        \(keys.joined(separator: ", \\\n  "))
      """
  }
}

/// Writes `name`.csv and `name`.gp into `directory` and renders `name`.png with `gnuplot` when there is one.
public func writeTimeline(
  _ timeline: Timeline, name: String, directory: String, gnuplot: String? = installedGnuplot()
) throws -> PlotReport {
  try prepareOutputDirectory(directory)
  let dataFile = name + ".csv"
  try writeAtomically(timeline.table, to: directory + "/" + dataFile, as: plotWriter)
  var report = try renderPNG(
    body: timeline.script(dataFile: dataFile), name: name, directory: directory,
    size: (900, 120 + 50 * timeline.rows.count), gnuplot: gnuplot)
  report.written.insert(directory + "/" + dataFile, at: 0)
  return report
}
