import ArgumentParser
import Datasets
import Foundation
import Support

/// `stage1 bench`: how fast the scalar engine is, and how that compares with micrograd itself, timed in the same
/// run on the same data when Python and the micrograd package are installed.
struct BenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract: "Measure graph throughput and the demo's wall time (against micrograd if installed).")

  @Option(parsing: .unconditional, help: "Training steps timed for the per-step figures.") var steps = 10
  @Option(parsing: .unconditional, help: "Training steps micrograd runs (it is slow).") var referenceSteps = 3
  @Flag(inversion: .prefixedNo, help: "Time micrograd too, when python3 has it.") var micrograd = true

  func validate() throws {
    try Check.count(steps, "--steps", in: 1...10_000)
    try Check.count(referenceSteps, "--reference-steps", in: 1...10_000)
  }

  func run() throws {
    let config = TrainConfig()
    let model = makeModel(config)
    let data = makeData(config)
    var optimizer = SGD(parameters: model.parameters(), learningRate: 0.01)

    // One step once, to count its nodes and warm up.
    let nodes = lossAndScores(model, data, alpha: config.alpha).loss.topologicalOrder().count
    var forward: [Double] = []
    var backward: [Double] = []
    var release: [Double] = []
    for _ in 0..<steps {
      var loss: Value? = nil
      forward.append(Stopwatch.time { loss = lossAndScores(model, data, alpha: config.alpha).loss })
      backward.append(
        Stopwatch.time {
          optimizer.zeroGrad()
          loss!.backward()
          optimizer.step()
        })
      release.append(Stopwatch.time { loss = nil })  // frees the step's graph (CPython's figure includes this too)
    }
    let step = median(zip(zip(forward, backward), release).map { $0.0 + $0.1 + $1 })
    print("MLP 2-16-16-1 on 100 moons points, one full-batch step = \(nodes) graph nodes")
    print(
      "  forward \(ms(median(forward))) ms + backward and update \(ms(median(backward))) ms "
        + "+ freeing the graph \(ms(median(release))) ms = \(ms(step)) ms per step (median of \(steps))")
    print("  throughput \(String(format: "%.2f", Double(nodes) / step / 1e6)) M graph nodes/s, all three phases")
    let demo = try Stopwatch.time { _ = try train(config) }
    print("  the demo (100 steps, no plots): \(String(format: "%.2f", demo)) s")

    guard micrograd, let perStep = timeMicrograd(data: data, steps: referenceSteps) else { return }
    print(
      "micrograd 0.1.0 (CPython), same model and data: \(ms(perStep)) ms per step, "
        + "\(String(format: "%.1f", perStep * Double(config.steps))) s for the 100-step demo")
    print("  stage1 is \(String(format: "%.0f", perStep / step))x faster per step (target: >= 100x)")
  }

  private func ms(_ seconds: Double) -> String { String(format: "%.2f", seconds * 1000) }

  /// micrograd's seconds per training step on the same points, or nil (with a note) when it cannot run.
  private func timeMicrograd(data: Points2D, steps: Int) -> Double? {
    guard let python = findExecutable("python3") else {
      print("note: python3 not found; install micrograd (pip install micrograd==0.1.0) to compare")
      return nil
    }
    let points = zip(data.points, data.labels).map { "[\($0[0]),\($0[1]),\($1 == 1 ? 1 : -1)]" }
    let input = "{\"steps\": \(steps), \"data\": [\(points.joined(separator: ","))]}"
    guard let run = try? runTool(python, ["-c", microgradScript], input: input), run.status == 0,
      let perStep = Double(run.output.trimmingCharacters(in: .whitespacesAndNewlines))
    else {
      print("note: micrograd is not installed for python3; `python3 -m pip install micrograd==0.1.0` to compare")
      return nil
    }
    return perStep
  }
}

/// The same training step written against micrograd's own API (Value, MLP): hinge loss + 1e-4 L2, SGD.
/// Reads the points on stdin; prints the median seconds per step.
private let microgradScript = """
  import json, sys, time
  from micrograd.engine import Value
  from micrograd.nn import MLP
  spec = json.load(sys.stdin)
  rows = spec["data"]
  import random
  random.seed(1337)
  model = MLP(2, [16, 16, 1])
  times = []
  for k in range(spec["steps"]):
      start = time.perf_counter()
      scores = [model([Value(x), Value(y)]) for x, y, _ in rows]
      losses = [(1 + -label * s).relu() for (_, _, label), s in zip(rows, scores)]
      loss = sum(losses) * (1.0 / len(losses)) + 1e-4 * sum(p * p for p in model.parameters())
      model.zero_grad()
      loss.backward()
      for p in model.parameters():
          p.data -= 0.01 * p.grad
      times.append(time.perf_counter() - start)
  times.sort()
  print(times[len(times) // 2])
  """
