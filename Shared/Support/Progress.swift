import Foundation
import Synchronization

/// The progress display of long work: on a terminal one line that rewrites itself (step/total, the caller's
/// figures, throughput, ETA); otherwise plain log lines, `logEvery` steps apart, that read well in a file.
public struct Progress {
  public let total: Int
  public let unit: String
  private let interactive: Bool
  private let logEvery: Int
  private let clock = Stopwatch()

  public init(total: Int, unit: String = "steps", logLines: Int = 10) {
    self.total = total
    self.unit = unit
    interactive = isatty(STDOUT_FILENO) == 1
    logEvery = max(1, total / max(1, logLines))
  }

  /// Reports that `step` (1-based) of `total` is done, with the caller's figures, e.g. "loss 0.123 acc 98.0%".
  public func update(step: Int, _ figures: String) {
    let elapsed = clock.seconds
    let rate = Double(step) / max(elapsed, 1e-9)
    let eta = Double(total - step) / max(rate, 1e-9)
    let line =
      "step \(pad(step))/\(total)  \(figures)  \(String(format: "%.1f", rate)) \(unit)/s  ETA \(clockTime(eta))"
    if interactive {
      print("\r\u{1B}[2K" + line, terminator: step == total ? "\n" : "")
      fflush(nil)  // flush every output stream (naming `stdout` is not concurrency-safe in Swift 6)
      progressLineIsOpen.store(step != total, ordering: .relaxed)
    } else if step % logEvery == 0 || step == total || step == 1 {
      print(line)
    }
  }

  private func pad(_ step: Int) -> String {
    let width = String(total).count
    let text = String(step)
    return String(repeating: " ", count: max(0, width - text.count)) + text
  }
}

/// Whether the terminal's last line is a progress line still waiting for its end.
private let progressLineIsOpen = Atomic<Bool>(false)

/// Ends a progress line that a run left open when it stopped early (a diverged loss, say), so that the error
/// after it starts a line of its own instead of trailing the ETA.
public func closeProgressLine() {
  if progressLineIsOpen.exchange(false, ordering: .relaxed) {
    print("")
    fflush(nil)
  }
}

/// Shows `text` as a line that rewrites itself on a terminal (progress without a step count, such as a tokenizer's
/// training); nothing when the output is a file. `closeProgressLine` ends it.
public func showProgressLine(_ text: String) {
  guard isatty(STDOUT_FILENO) == 1 else { return }
  print("\r\u{1B}[2K" + text, terminator: "")
  fflush(nil)
  progressLineIsOpen.store(true, ordering: .relaxed)
}

/// Seconds as m:ss (or h:mm:ss).
public func clockTime(_ seconds: Double) -> String {
  guard seconds.isFinite else { return "?" }
  let total = Int(seconds.rounded())
  let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60)
  let two = { (n: Int) in n < 10 ? "0\(n)" : "\(n)" }
  return h > 0 ? "\(h):\(two(m)):\(two(s))" : "\(m):\(two(s))"
}
