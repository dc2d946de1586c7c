import Foundation
import Support
import Testing

@testable import Plotting

@Suite struct PlottingTests {
  let directory = NSTemporaryDirectory() + "plotting-tests-\(getpid())-\(Stopwatch.now())"

  func chart() -> LineChart {
    var table = Table(columns: ["step", "loss", "accuracy"])
    for step in 1...20 { table.append([Double(step), 1 / Double(step), Double(step) / 20]) }
    return LineChart(
      title: "test", xLabel: "step", yLabel: "loss", y2Label: "accuracy", table: table,
      curves: [Curve("loss"), Curve("accuracy", rightAxis: true)])
  }

  @Test func tableWritesAHeaderAndOneLinePerRow() {
    var table = Table(columns: ["step", "loss"])
    table.append([1, 0.5])
    table.append([2, 0.25])
    #expect(table.csv == "step,loss\n1,0.5\n2,0.25\n")
  }

  @Test func theScriptPlotsTheNamedColumnsOnTheirAxes() {
    let script = chart().script(dataFile: "loss.csv")
    #expect(script.contains("'loss.csv' skip 1 using 1:2 with lines"))
    #expect(script.contains("'loss.csv' skip 1 using 1:3 axes x1y2 with lines"))
    #expect(script.contains("set y2label 'accuracy'"))
  }

  @Test func withoutGnuplotTheDataAndScriptAreWrittenAndTheNoteSaysHowToRender() throws {
    let report = try writeLineChart(chart(), name: "loss", directory: directory, gnuplot: nil)
    #expect(report.written == [directory + "/loss.csv", directory + "/loss.gp"])
    #expect(
      report.notes == [
        "gnuplot is not installed: wrote the data and loss.gp; render with `cd \(directory) && gnuplot loss.gp`"
      ])
    let csv = try String(contentsOfFile: directory + "/loss.csv", encoding: .utf8)
    #expect(csv.hasPrefix("step,loss,accuracy\n1,1,0.05\n"))
  }

  @Test(.enabled(if: installedGnuplot() != nil, "needs gnuplot"))
  func withGnuplotAPNGIsRendered() throws {
    let report = try writeLineChart(chart(), name: "rendered", directory: directory)
    #expect(report.notes.isEmpty)
    let png = try #require(FileManager.default.contents(atPath: directory + "/rendered.png"))
    #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]))  // the PNG signature
  }

  @Test(.enabled(if: installedGnuplot() != nil, "needs gnuplot"))
  func theTerminalPlotIsAPictureOfCharacters() throws {
    let picture = try #require(terminalPlot(chart()))
    #expect(picture.contains("test"))
    #expect(picture.split(separator: "\n").count > 10)
    #expect(terminalPlot(chart(), gnuplot: nil) == nil)
  }

  @Test func decisionBoundaryWritesTheGridAndThePoints() throws {
    let plot = DecisionBoundary(
      title: "b", xs: [0, 1], ys: [0, 1, 2], values: [[1, 2], [3, 4], [5, 6]],
      points: [(x: 0.5, y: 0.5, label: 1)], coloring: .score(limit: 2))
    let report = try writeDecisionBoundary(plot, name: "boundary", directory: directory, gnuplot: nil)
    #expect(report.written.count == 3)
    let grid = try String(contentsOfFile: directory + "/boundary-grid.csv", encoding: .utf8)
    #expect(grid == "x,y,value\n0,0,1\n1,0,2\n0,1,3\n1,1,4\n0,2,5\n1,2,6\n")
    let points = try String(contentsOfFile: directory + "/boundary-points.csv", encoding: .utf8)
    #expect(points == "x,y,label\n0.5,0.5,1\n")
  }

  @Test func anUnwritableDirectoryIsAUserError() {
    #expect(throws: UserError.self) {
      _ = try writeLineChart(chart(), name: "x", directory: "/proc/no-such-dir", gnuplot: nil)
    }
  }
}
