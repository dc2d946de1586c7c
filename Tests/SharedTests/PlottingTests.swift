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
      curves: [Curve("loss"), Curve("accuracy", rightAxis: true, percent: true)])
  }

  /// Four curves on one axis, as `stage3 compare` draws them; the last two are the same numbers.
  func fourCurves() -> LineChart {
    var table = Table(columns: ["epoch", "sgd", "momentum", "adam", "adamw"])
    for epoch in 1...12 {
      let loss = 1 / Double(epoch)
      table.append([Double(epoch), 2 * loss, 1.5 * loss, loss, loss])
    }
    return LineChart(
      title: "compare", xLabel: "epoch", yLabel: "validation loss", logY: true, table: table,
      curves: ["sgd", "momentum", "adam", "adamw"].map { Curve($0) })
  }

  /// The style each curve's line is drawn with: what follows "with lines" up to "notitle".
  func lineStyles(_ script: String) -> [String] {
    script.components(separatedBy: " with lines ").dropFirst().map { $0.components(separatedBy: " notitle")[0] }
  }

  func boundary(_ coloring: DecisionBoundary.Coloring, labels: [Int], classNames: [String] = []) -> DecisionBoundary {
    DecisionBoundary(
      title: "b", xs: [0, 1], ys: [0, 1], values: [[0, 1], [1, 0]],
      points: labels.map { (x: 0.5, y: 0.5, label: $0) }, coloring: coloring, xLabel: "input x1",
      yLabel: "input x2", classNames: classNames)
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
    #expect(script.contains("'loss.csv' skip 1 using 1:(100*$3) axes x1y2 with lines"))
    #expect(script.contains("set y2label 'accuracy'"))
    #expect(script.contains("set xlabel 'step'"))
    #expect(script.contains("set ylabel 'loss'"))
  }

  @Test func aPercentCurveIsScaledOnAZeroToHundredPercentAxisAndTheCSVKeepsTheFraction() {
    let script = chart().script(dataFile: "loss.csv")
    #expect(script.contains("using 1:(100*$3) axes x1y2"))
    #expect(script.contains("set y2range [0:100]"))
    #expect(script.contains("set format y2 '%g%%'"))
    #expect(!script.contains("set format y "))  // the loss axis stays as it is
    #expect(chart().table.csv.contains("\n20,0.05,1\n"))
    // Not every curve on the axis a percentage: no % axis, and the fraction curve is not scaled.
    var mixed = chart()
    mixed.curves.append(Curve("loss", title: "loss again", rightAxis: true))
    let mixedScript = mixed.script(dataFile: "loss.csv")
    #expect(!mixedScript.contains("y2range"))
    #expect(mixedScript.contains("using 1:2 axes x1y2"))
  }

  @Test func theKeyIsOutsideBelowThePlot() {
    #expect(fourCurves().script(dataFile: "compare.csv").contains("set key outside below"))
    #expect(
      boundary(.score(limit: 2), labels: [0, 1]).script(gridFile: "g", pointsFile: "p").contains(
        "set key outside below"))
  }

  @Test func everyCurveHasItsOwnDashWidthAndMarkerAndTheLaterOnesAreThinner() {
    let script = fourCurves().script(dataFile: "compare.csv")
    let styles = lineStyles(script)
    #expect(styles == ["dt 1 lw 4.25 lc 1", "dt 2 lw 3.5 lc 2", "dt 1 lw 2.75 lc 3", "dt 2 lw 2 lc 4"])
    // adam and adamw are the same numbers: adamw goes on top, dashed and thinner, so adam shows beside it.
    #expect(script.contains("using 1:4 with lines dt 1 lw 2.75"))
    #expect(script.contains("using 1:5 with lines dt 2 lw 2"))
    // The markers: a shape each, at rows of their own (every 2nd row, from rows 0, 0, 1, 1, would collide).
    for (marker, every) in [
      ("pt 7", "every 4::0"), ("pt 5", "every 4::1"), ("pt 9", "every 4::2"), ("pt 13", "every 4::3"),
    ] {
      #expect(script.contains("\(every) using"), "\(every)")
      #expect(script.contains("with points \(marker)"), "\(marker)")
    }
    #expect(script.contains("keyentry with linespoints dt 2 lw 2 lc 4 pt 13 ps 1.2 title 'adamw'"))
  }

  @Test func theTerminalPictureKeepsPlainLines() {
    let script = fourCurves().script(dataFile: "compare.csv", forTerminal: true)
    #expect(lineStyles(script).allSatisfy { $0.hasPrefix("lw 2 title") })
    #expect(!script.contains("keyentry"))
  }

  @Test func titlesWithAQuoteStayOneGnuplotString() {
    var chart = chart()
    chart.title = "the model's loss"
    #expect(chart.script(dataFile: "loss.csv").contains("set title 'the model''s loss' noenhanced"))
  }

  @Test func aDecisionBoundaryHasAxisLabelsAndAKeyEntryPerClass() {
    let score = boundary(.score(limit: 2), labels: [0, 1]).script(gridFile: "g.csv", pointsFile: "p.csv")
    #expect(score.contains("set xlabel 'input x1'"))
    #expect(score.contains("set ylabel 'input x2'"))
    #expect(score.contains("title 'class 0 (output < 0)'"))
    #expect(score.contains("title 'class 1 (output > 0)'"))
    #expect(score.contains("'p.csv' skip 1 using 1:($3 == 1 ? $2 : NaN) with points"))
    let classes = boundary(.classes(3), labels: [0, 1, 2], classNames: ["arm a", "arm b"])
      .script(gridFile: "g.csv", pointsFile: "p.csv")
    #expect(classes.contains("title 'arm a'"))
    #expect(classes.contains("title 'arm b'"))
    #expect(classes.contains("title 'class 2'"))  // no name given: its label
    #expect(!classes.contains("output <"))
    // A label beyond what the colouring knows still gets its entry.
    let extra = boundary(.classes(2), labels: [0, 3]).script(gridFile: "g.csv", pointsFile: "p.csv")
    #expect(extra.contains("title 'class 3'"))
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

  @Test(.enabled(if: installedGnuplot() != nil, "needs gnuplot"))
  func withGnuplotEveryKindOfChartRenders() throws {
    var report = try writeLineChart(fourCurves(), name: "four", directory: directory)
    report.merge(
      try writeDecisionBoundary(boundary(.score(limit: 2), labels: [0, 1]), name: "score", directory: directory))
    report.merge(
      try writeDecisionBoundary(boundary(.classes(3), labels: [0, 1, 2]), name: "classes", directory: directory))
    #expect(report.notes.isEmpty)  // gnuplot accepted every script
    for name in ["four", "score", "classes"] {
      #expect(FileManager.default.fileExists(atPath: directory + "/" + name + ".png"), "\(name)")
    }
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

  @Test func aGnuplotThatFailsIsAUserErrorAndTheDataStays() throws {
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    let fake = directory + "/failing-gnuplot"
    try "#!/bin/sh\necho 'line 3: all points y value undefined!' >&2\nexit 1\n".write(
      toFile: fake, atomically: false, encoding: .utf8)
    chmod(fake, 0o755)
    let error = try #require(throws: UserError.self) {
      _ = try writeLineChart(chart(), name: "loss", directory: directory, gnuplot: fake)
    }
    #expect(
      error.description
        == "gnuplot could not render \(directory)/loss.gp (its data is beside it): line 3: all points y value undefined!"
    )
    #expect(FileManager.default.fileExists(atPath: directory + "/loss.csv"))
  }

  @Test func anUnwritableDirectoryIsAUserError() {
    #expect(throws: UserError.self) {
      _ = try writeLineChart(chart(), name: "x", directory: "/proc/no-such-dir", gnuplot: nil)
    }
  }
}

/// A title from outside (a file name) cannot end the gnuplot command it is part of and start another.
@Suite struct GnuplotStringTests {
  @Test func quotesAreDoubledAndLineBreaksBecomeSpaces() {
    #expect(quoted("it's") == "'it''s'")
    #expect(quoted("a\nsystem \"touch PWNED\"\n#") == "'a system \"touch PWNED\" #'")
    #expect(quoted("tab\there\r") == "'tab here '")
  }
}
