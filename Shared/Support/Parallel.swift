import Dispatch

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
    withoutActuallyEscaping(body) { body in
      nonisolated(unsafe) let work = body
      DispatchQueue.concurrentPerform(iterations: pieces) { piece in
        work((count * piece / pieces)..<(count * (piece + 1) / pieces))
      }
    }
  }
}
