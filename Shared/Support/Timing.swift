#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Wall-clock time from a monotonic clock, for benchmarks and progress lines.
public struct Stopwatch: Sendable {
  private var start: UInt64

  public init() { start = Stopwatch.now() }

  /// Seconds since the stopwatch was made or last reset.
  public var seconds: Double { Double(Stopwatch.now() &- start) / 1e9 }

  public mutating func reset() { start = Stopwatch.now() }

  /// Nanoseconds on the monotonic clock.
  public static func now() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
  }

  /// Runs `body` once and returns how many seconds it took.
  public static func time(_ body: () throws -> Void) rethrows -> Double {
    let watch = Stopwatch()
    try body()
    return watch.seconds
  }
}

/// The median of some measurements (the middle one, or the mean of the middle two).
public func median(_ values: [Double]) -> Double {
  precondition(!values.isEmpty, "median of no values")
  let sorted = values.sorted()
  let mid = sorted.count / 2
  return sorted.count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/// Peak resident memory of this process in bytes (Linux `ru_maxrss` is in KiB).
public func peakResidentBytes() -> Int {
  var usage = rusage()
  getrusage(RUSAGE_SELF.rawValue, &usage)
  #if os(Linux)
    return Int(usage.ru_maxrss) * 1024
  #else
    return Int(usage.ru_maxrss)
  #endif
}
