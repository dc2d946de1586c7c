/// An error in what the user asked for (a bad option value, a missing or corrupt file): the command line prints
/// its message as one line on stderr and exits non-zero. Errors inside the framework are preconditions instead.
public struct UserError: Error, CustomStringConvertible, Sendable {
  public let description: String
  public init(_ message: String) { description = message }
}
