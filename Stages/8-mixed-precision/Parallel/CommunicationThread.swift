import Foundation
import Support

/// A thread that runs one rank's collectives in the order they are handed to it, while the rank's own thread goes
/// on computing: how data parallelism overlaps the sending of early buckets with the rest of backward (PyTorch's
/// DDP hands its buckets to NCCL's stream the same way).
final class CommunicationThread: @unchecked Sendable {
  private let condition = NSCondition()
  private var jobs: [() throws -> Void] = []  // guarded by `condition`
  private var busy = false  // guarded by `condition`
  private var error: (any Error)?  // guarded by `condition`: the first job's failure; later jobs are skipped
  private var stopping = false  // guarded by `condition`
  /// When each job started and ended, in seconds since `origin` (for the timeline picture).
  private(set) var spans: [(start: Double, end: Double, label: String)] = []  // guarded by `condition`
  private let origin: UInt64

  init(name: String, origin: UInt64) {
    self.origin = origin
    let thread = Thread { [self] in serve() }
    thread.name = name
    thread.stackSize = 16 << 20
    thread.start()
  }

  /// Queues `job`; it runs after every job queued before it.
  func submit(_ label: String, _ job: @escaping () throws -> Void) {
    condition.lock()
    jobs.append { [self] in
      let start = elapsed()
      try job()
      let end = elapsed()
      condition.lock()
      spans.append((start, end, label))
      condition.unlock()
    }
    condition.broadcast()
    condition.unlock()
  }

  /// Seconds since `origin`.
  func elapsed() -> Double { Double(Stopwatch.now() &- origin) / 1e9 }

  /// Waits until every queued job has run; throws the first failure among them (and forgets it).
  func wait() throws {
    condition.lock()
    defer { condition.unlock() }
    while !jobs.isEmpty || busy { condition.wait() }
    if let failure = error {
      error = nil
      throw failure
    }
  }

  /// The spans recorded so far, and forgets them.
  func takeSpans() -> [(start: Double, end: Double, label: String)] {
    condition.lock()
    defer { condition.unlock() }
    defer { spans = [] }
    return spans
  }

  /// Ends the thread once the queue is empty.
  func stop() {
    condition.lock()
    stopping = true
    condition.broadcast()
    condition.unlock()
  }

  private func serve() {
    condition.lock()
    while true {
      while jobs.isEmpty && !stopping { condition.wait() }
      if jobs.isEmpty { break }
      let job = jobs.removeFirst()
      let skip = error != nil
      busy = true
      condition.unlock()
      var failure: (any Error)?
      if !skip {
        do { try job() } catch { failure = error }
      }
      condition.lock()
      if let failure, error == nil { error = failure }
      busy = false
      condition.broadcast()
    }
    condition.unlock()
  }
}
