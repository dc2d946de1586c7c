import Foundation

/// Makes `path` a directory the run can write into, or says in one line why it cannot.
public func prepareOutputDirectory(_ path: String) throws {
  let files = FileManager.default
  var isDirectory: ObjCBool = false
  if files.fileExists(atPath: path, isDirectory: &isDirectory) {
    guard isDirectory.boolValue else { throw UserError("'\(path)' is a file, not a directory") }
  } else {
    do {
      try files.createDirectory(atPath: path, withIntermediateDirectories: true)
    } catch {
      throw UserError("cannot create directory '\(path)'")
    }
  }
  guard files.isWritableFile(atPath: path) else { throw UserError("directory '\(path)' is not writable") }
}

/// Writes `contents` to `path` atomically: a temporary file beside it, then a rename, so that a reader never
/// sees half a file and a failed write loses nothing that was there before.
public func writeAtomically(_ contents: Data, to path: String) throws {
  let temporary = path + ".tmp-\(getpid())"
  guard FileManager.default.createFile(atPath: temporary, contents: contents) else {
    throw UserError("cannot write '\(path)'")
  }
  guard rename(temporary, path) == 0 else {
    try? FileManager.default.removeItem(atPath: temporary)
    throw UserError("cannot write '\(path)'")
  }
}

/// Writes text to `path` atomically (see `writeAtomically(_:to:)`).
public func writeAtomically(_ text: String, to path: String) throws {
  try writeAtomically(Data(text.utf8), to: path)
}

/// The full path of an executable found on PATH, or nil.
public func findExecutable(_ name: String) -> String? {
  let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
  for directory in path.split(separator: ":") {
    let candidate = "\(directory)/\(name)"
    if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
  }
  return nil
}

/// The result of running an external tool.
public struct ToolRun: Sendable {
  public let status: Int32
  public let output: String
  public let errorOutput: String
}

/// Runs `executable` with `arguments` (in `workingDirectory` if given), feeding it `input` on stdin, and waits.
/// Standard error goes to a temporary file rather than a second pipe: reading two pipes one after the other
/// can deadlock when the tool fills the one not being read.
public func runTool(
  _ executable: String, _ arguments: [String], input: String? = nil, workingDirectory: String? = nil
) throws -> ToolRun {
  let errorPath = NSTemporaryDirectory() + "tool-stderr-\(getpid())-\(Stopwatch.now())"
  guard FileManager.default.createFile(atPath: errorPath, contents: nil),
    let errorFile = FileHandle(forWritingAtPath: errorPath)
  else { throw UserError("cannot create a temporary file in \(NSTemporaryDirectory())") }
  defer { try? FileManager.default.removeItem(atPath: errorPath) }

  let process = Process()
  process.executableURL = URL(fileURLWithPath: executable)
  process.arguments = arguments
  if let workingDirectory { process.currentDirectoryURL = URL(fileURLWithPath: workingDirectory) }
  let stdout = Pipe()
  let stdin = Pipe()
  process.standardOutput = stdout
  process.standardError = errorFile
  process.standardInput = stdin
  try process.run()
  if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
  try stdin.fileHandleForWriting.close()
  let out = stdout.fileHandleForReading.readDataToEndOfFile()
  process.waitUntilExit()
  try errorFile.close()
  let err = FileManager.default.contents(atPath: errorPath) ?? Data()
  return ToolRun(
    status: process.terminationStatus, output: String(decoding: out, as: UTF8.self),
    errorOutput: String(decoding: err, as: UTF8.self))
}
