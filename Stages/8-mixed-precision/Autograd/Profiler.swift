import Kernels
import Support

/// Where the time of a training step goes, op by op (PyTorch's autograd profiler, in small): `stage8 bench
/// --profile` prints its table. Ops run one after another on one thread, so an op's forward time is the time since
/// the previous op finished (or since `mark()`), and its backward time is the call of its backward closure.
/// The share of each spent inside gemm comes from `gemmNanoseconds`.
final class OpProfiler {
  struct Entry {
    var calls = 0
    var forward: UInt64 = 0
    var backward: UInt64 = 0
    var gemm: UInt64 = 0
  }

  /// The profiler that ops report to, or nil (the usual case: one load and a branch per op).
  nonisolated(unsafe) static var current: OpProfiler?

  private(set) var entries: [String: Entry] = [:]
  private var clock: UInt64 = 0
  private var gemmClock: UInt64 = 0

  /// Starts the clock for whatever runs next.
  func mark() {
    clock = Stopwatch.now()
    gemmClock = gemmNanoseconds.load(ordering: .relaxed)
  }

  /// Charges the time since the last mark to `name`, forward or backward, and restarts the clock.
  func charge(_ name: String, backward: Bool) {
    let (now, gemmNow) = (Stopwatch.now(), gemmNanoseconds.load(ordering: .relaxed))
    entries[name, default: Entry()].gemm += gemmNow &- gemmClock
    if backward {
      entries[name, default: Entry()].backward += now &- clock
    } else {
      entries[name, default: Entry()].forward += now &- clock
      entries[name, default: Entry()].calls += 1
    }
    (clock, gemmClock) = (now, gemmNow)
  }

  func forwardEnded(_ op: String) { charge(op, backward: false) }
  func backwardEnded(_ op: String) { charge(op, backward: true) }
}
