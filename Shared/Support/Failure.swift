import Foundation

/// An error in what the user asked for (a bad option value, a missing or corrupt file): the command line prints
/// its message as one line on stderr and exits non-zero. Errors inside the framework are preconditions instead.
public struct UserError: Error, CustomStringConvertible, Sendable {
  public let description: String
  public init(_ message: String) { description = message }
}

/// Flushes standard output and throws if any of it could not be written (a full disk, a closed pipe): output the
/// user asked for and did not get is a failure, not a success. The last thing a command line does before exit 0.
public func finishStandardOutput() throws {
  // Every stream, since naming `stdout` is not concurrency-safe in Swift 6; a stream whose earlier write failed
  // keeps its bytes buffered, so this flush fails too.
  if fflush(nil) != 0 {
    throw UserError("the output could not be written: \(String(cString: strerror(errno)))")
  }
}
