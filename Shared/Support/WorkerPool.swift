import Foundation
import Synchronization

/// The threads behind `Parallel.forEach`: one per core besides the caller's, started at the first parallel loop
/// and kept for the life of the process.
///
/// A worker that has finished a loop watches for the next one for `spinSeconds` before it goes to sleep. Waking a
/// sleeping thread costs the kernel tens of microseconds (on the 2-core machine of the chapters, a loop of two
/// 20 µs pieces took 33 µs back to back and 50 µs after a millisecond of idleness, nearly the time of running both
/// pieces on one core; with watching workers it takes 21.5 µs), and a training step runs a hundred loops of
/// 10-300 µs pieces a few microseconds apart. OpenMP's threads, under PyTorch, wait the same way. Watching longer
/// than the gaps of a step only takes a core from other threads (a test run sharing the machine).
final class WorkerPool: @unchecked Sendable {
  /// How long a worker keeps watching for a new loop before it sleeps.
  static let spinSeconds = 0.000_2

  /// One posted loop. Its pieces are claimed one at a time by whichever thread comes first (the caller too), so
  /// a worker that arrives late finds nothing left and no piece waits for it.
  final class Job: @unchecked Sendable {
    let pieces: Int
    let share: Int
    /// Set to nil by the caller once every piece is done: a worker may keep the job, never the body.
    var body: ((Int) -> Void)?
    let next = Atomic<Int>(0)
    let done = Atomic<Int>(0)

    init(pieces: Int, share: Int, body: @escaping (Int) -> Void) {
      (self.pieces, self.share, self.body) = (pieces, share, body)
    }

    /// Claims and runs pieces until none is left.
    func work() {
      while true {
        let piece = next.wrappingAdd(1, ordering: .relaxed).oldValue
        guard piece < pieces else { return }
        Parallel.withShare(share) { body!(piece) }
        done.add(1, ordering: .releasing)
      }
    }
  }

  private let condition = NSCondition()
  private var posted: Job?  // guarded by `condition`
  private var generation = 0  // guarded by `condition`: how many jobs have been posted
  private let published = Atomic<Int>(0)  // `generation`, for workers watching without the lock
  private let busy = Atomic<Bool>(false)  // a caller's job is in flight

  init(workers: Int) {
    for _ in 0..<workers {
      let thread = Thread { [unowned self] in self.serve() }
      thread.name = "Parallel worker"
      thread.start()
    }
  }

  /// Runs body(0), ..., body(pieces - 1) on the workers and the calling thread, each piece with `share` cores
  /// for loops nested in it, and returns when all are done. Returns false, having run nothing, when the pool is
  /// busy with another thread's loop (the caller then finds threads elsewhere).
  func run(pieces: Int, share: Int, _ body: (Int) -> Void) -> Bool {
    guard busy.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
    defer { busy.store(false, ordering: .releasing) }
    withoutActuallyEscaping(body) { body in
      let job = Job(pieces: pieces, share: share, body: body)
      condition.lock()
      posted = job
      generation += 1
      published.store(generation, ordering: .releasing)
      condition.broadcast()
      condition.unlock()
      job.work()
      while job.done.load(ordering: .acquiring) < pieces {}
      job.body = nil
      condition.lock()
      if posted === job { posted = nil }
      condition.unlock()
    }
    return true
  }

  /// A worker's life: watch for a job (spinning, then asleep), help with it, repeat.
  private func serve() {
    var seen = 0
    while true {
      let deadline = Stopwatch.now() + UInt64(WorkerPool.spinSeconds * 1e9)
      var spins = 0
      while published.load(ordering: .acquiring) == seen {
        spins &+= 1
        if spins % 64 == 0 && Stopwatch.now() >= deadline { break }  // the clock costs more than a look
      }
      condition.lock()
      while generation == seen { condition.wait() }
      seen = generation
      let job = posted
      condition.unlock()
      job?.work()
    }
  }
}
