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

  /// Runs `body` on consecutive pieces of 0..<count, all at once on up to `cores` threads, and returns when every
  /// piece is done. Pieces hold at least `grain` items: below that a thread costs more than it saves (starting
  /// one is some microseconds), so a small loop runs on the calling thread alone.
  ///
  /// The pieces must touch disjoint memory. How the range is cut depends on the core count, so a result that
  /// sums across pieces would depend on the machine: keep sums inside an item.
  public static func forEach(_ count: Int, grain: Int, _ body: (Range<Int>) -> Void) {
    let pieces = min(cores, count / max(grain, 1))
    guard pieces > 1 else {
      if count > 0 { body(0..<count) }
      return
    }
    // The pieces share the caller's buffers, which Swift cannot prove safe to send to other threads; the
    // disjointness promised above is what makes it so.
    regions.add(1, ordering: .relaxed)
    defer { regions.subtract(1, ordering: .relaxed) }
    withoutActuallyEscaping(body) { body in
      nonisolated(unsafe) let work = body
      DispatchQueue.concurrentPerform(iterations: pieces) { piece in
        work((count * piece / pieces)..<(count * (piece + 1) / pieces))
      }
    }
  }
}
