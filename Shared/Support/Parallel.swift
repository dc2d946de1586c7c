import Dispatch
import Synchronization

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Work split across the cores, for the loops BLAS does not already spread: elementwise kernels, layer norm,
/// attention's heads, the optimizer. (BLAS threads its own large calls.)
public enum Parallel {
  /// The cores this process may use, at most 8 (more threads than that do not pay for these small loops).
  public static let cores = max(1, min(8, sysconf(Int32(_SC_NPROCESSORS_ONLN))))

  /// How many `forEach` calls are running their pieces on several threads right now (in the whole process).
  private static let regions = Atomic<Int>(0)

  /// Whether some `forEach` is running pieces on several threads: code that times itself (gemm's clock) divides
  /// its time by the cores sharing it.
  public static var isInsideRegion: Bool { regions.load(ordering: .relaxed) > 0 }

  /// The cores a `forEach` started on this thread may use. A thread outside any loop may use them all; a loop
  /// cut into p pieces gives each piece 1/p of its own share (at least one core), so a loop nested in a piece
  /// (two products side by side, each split by rows) divides that piece's cores instead of starting more
  /// threads than there are cores. Kept per thread, as a thread-specific value: 0, the value a new thread
  /// starts with, means all of them.
  public static var coresHere: Int {
    let share = Int(bitPattern: pthread_getspecific(shareKey))
    return share == 0 ? cores : share
  }

  private static let shareKey: pthread_key_t = {
    var key = pthread_key_t()
    precondition(pthread_key_create(&key, nil) == 0, "Parallel: no thread-specific key left")
    return key
  }()

  /// Runs `body` with this thread's share of the cores set to `share`, then puts the old share back.
  public static func withShare(_ share: Int, _ body: () -> Void) {
    let old = pthread_getspecific(shareKey)
    pthread_setspecific(shareKey, UnsafeRawPointer(bitPattern: share))
    defer { pthread_setspecific(shareKey, old) }
    body()
  }

  /// Runs `body` on consecutive pieces of 0..<count, all at once on up to `coresHere` threads, and returns when
  /// every piece is done. Pieces hold at least `grain` items: below that a thread costs more than it saves
  /// (starting one is some microseconds), so a small loop runs on the calling thread alone.
  ///
  /// The pieces must touch disjoint memory. How the range is cut depends on the core count, so a result that
  /// sums across pieces would depend on the machine: keep sums inside an item.
  public static func forEach(_ count: Int, grain: Int, _ body: (Range<Int>) -> Void) {
    let available = coresHere
    let pieces = min(available, count / max(grain, 1))
    guard pieces > 1 else {
      if count > 0 { body(0..<count) }
      return
    }
    // The pieces share the caller's buffers, which Swift cannot prove safe to send to other threads; the
    // disjointness promised above is what makes it so.
    regions.add(1, ordering: .relaxed)
    defer { regions.subtract(1, ordering: .relaxed) }
    let share = max(1, available / pieces)
    let run = { (piece: Int) in body((count * piece / pieces)..<(count * (piece + 1) / pieces)) }
    if pool.run(pieces: pieces, share: share, run) { return }
    // The pool is busy with another thread's loop (tests run side by side; a loop nested in a piece on a machine
    // with cores to spare): Dispatch's threads take this one.
    withoutActuallyEscaping(run) { run in
      nonisolated(unsafe) let work = run
      DispatchQueue.concurrentPerform(iterations: pieces) { piece in withShare(share) { work(piece) } }
    }
  }

  /// The threads that run the pieces of loops with the caller, one per core besides it.
  private static let pool = WorkerPool(workers: cores - 1)

  /// Runs two independent jobs side by side, each with half of this thread's cores (one after the other when
  /// there is one). They must touch disjoint memory, as the pieces of `forEach` do.
  public static func both(_ first: () -> Void, _ second: () -> Void) {
    forEach(2, grain: 1) { jobs in
      for job in jobs { job == 0 ? first() : second() }
    }
  }
}
