import Foundation

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

// MARK: - Output paths, checked before the work starts

/// Makes `path` a directory the run can write into, or says in one line why it cannot. Writability is tried, not
/// asked: `access(2)` says yes to root for a directory under /proc that refuses every new file.
public func prepareOutputDirectory(_ path: String) throws {
  guard !path.isEmpty else { throw UserError("the output directory is an empty path") }
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
  removeStaleTemporaries(of: "write-probe", in: path)  // a run killed between creating and removing its probe
  let probe = path + "/" + temporaryName(for: "write-probe")
  guard let problem = tryCreating(probe) else { return }
  throw UserError("directory '\(path)' is not writable (\(problem))")
}

/// Checks, before any work, that the run can write the file `path` named by `option` (such as "--checkpoint"):
/// not empty, not a directory, not a device or a pipe, in a directory that exists or can be made and takes a new
/// file, and not one of the run's inputs (`markAsInput`) or another output's file (`reserveOutput`). An existing
/// file is replaced only when `replaceable` says it is one of the option's own (an old checkpoint), never a file
/// the user keeps for something else. The probe is a real file, created and removed at once.
public func prepareOutputFile(
  _ path: String, option: String, replaceable: ((String) -> Bool)? = nil, kind: String = "file"
) throws {
  guard !path.isEmpty else { throw UserError("\(option) is an empty path") }
  guard !path.hasSuffix("/") else { throw UserError("\(option) '\(path)' ends in '/'; it needs a file name") }
  try refuseOverwriting(path, as: option)  // the most telling reason first: an input, or another output's file
  var info = stat()
  if stat(path, &info) == 0 {
    let type = info.st_mode & S_IFMT
    guard type != S_IFDIR else { throw UserError("\(option) '\(path)' is a directory; it needs a file name") }
    guard type == S_IFREG else {
      throw UserError("\(option) '\(path)' is a device, pipe or socket, not a file; it needs a file name")
    }
    if let replaceable, !replaceable(path) {
      throw UserError(
        "\(option) '\(path)' exists and is not a \(kind); it is not replaced (remove it or choose another name)")
    }
  }
  try reserveOutput(path, for: option)
  let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
  do {
    try prepareOutputDirectory(directory)
  } catch {
    throw UserError("\(option) '\(path)': \(error)")
  }
  let name = URL(fileURLWithPath: path).lastPathComponent
  removeStaleTemporaries(of: name, in: directory)  // the probe's name is the one a killed write may have left
  let probe = directory + "/" + temporaryName(for: name)
  if let problem = tryCreating(probe) { throw UserError("\(option): cannot write '\(path)' (\(problem))") }
}

/// Creates and removes `path`; nil on success, else the system's reason.
private func tryCreating(_ path: String) -> String? {
  let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL, 0o600)
  guard descriptor >= 0 else { return String(cString: strerror(errno)) }
  close(descriptor)
  unlink(path)
  return nil
}

// MARK: - Inputs are never overwritten, nor one output by another

/// The files this process reads as data, by device and inode, so that a hard link, a symbolic link or another
/// spelling of the same path is still recognised; and the files its outputs will write, by resolved path (they
/// may not exist yet), with the option that writes each.
private final class RunFiles: @unchecked Sendable {
  private let lock = NSLock()
  private var inputs: [FileIdentity: (path: String, writer: String?)] = [:]
  private var outputs: [String: String] = [:]

  func addInput(_ path: String, writer: String?) {
    guard let identity = FileIdentity(path) else { return }
    lock.withLock { inputs[identity] = (path, writer) }
  }

  func input(sameAs path: String) -> (path: String, writer: String?)? {
    guard let identity = FileIdentity(path) else { return nil }
    return lock.withLock { inputs[identity] }
  }

  func addOutput(_ path: String, owner: String) { lock.withLock { outputs[resolvedPath(path)] = owner } }

  func owner(of path: String) -> String? { lock.withLock { outputs[resolvedPath(path)] } }
}

/// `path` made absolute with its directory's symbolic links resolved, so that two spellings of one file agree.
private func resolvedPath(_ path: String) -> String {
  let url = URL(fileURLWithPath: path)
  let directory = url.deletingLastPathComponent().resolvingSymlinksInPath().path
  let name = url.lastPathComponent
  return (directory == "/" ? "" : directory) + "/" + name
}

private struct FileIdentity: Hashable {
  let device: UInt64
  let inode: UInt64

  init?(_ path: String) {
    var info = stat()
    guard stat(path, &info) == 0 else { return nil }
    device = UInt64(info.st_dev)
    inode = UInt64(info.st_ino)
  }
}

private let runFiles = RunFiles()

/// Records that the run reads `path` as input data: every later write through this file's functions refuses to
/// replace it (an output named like the data set would otherwise destroy it). `writer` is the one option allowed
/// to replace it: a run resumed from a checkpoint may save over that same checkpoint, but no plot may.
public func markAsInput(_ path: String, replaceableBy writer: String? = nil) {
  runFiles.addInput(path, writer: writer)
}

/// Records, before any work, that `owner` (an option such as "--checkpoint", or "--plot-dir") will write `path`,
/// and refuses if that would replace an input or a file another output writes: a plot named like the checkpoint
/// would otherwise replace it at the end of the run.
public func reserveOutput(_ path: String, for owner: String) throws {
  try refuseOverwriting(path, as: owner)
  runFiles.addOutput(path, owner: owner)
}

/// Throws if `writer` writing `path` would replace an input it may not replace, or another output's file.
public func refuseOverwriting(_ path: String, as writer: String?) throws {
  let what = writer.map { "\($0) '\(path)'" } ?? "'\(path)'"
  if let input = runFiles.input(sameAs: path), input.writer == nil || input.writer != writer {
    throw UserError("\(what) is the input file '\(input.path)'; writing it would destroy the input")
  }
  if let owner = runFiles.owner(of: path), owner != writer {
    throw UserError("\(what) is also a file that \(owner) writes; one output would destroy the other")
  }
}

// MARK: - Reading inputs

/// The bytes of the input file `path`, or a `UserError` that says why not: missing, a directory, a device or a
/// pipe (whose read could wait forever), or the system's reason.
public func readInputFile(_ path: String) throws -> Data {
  guard !path.isEmpty else { throw UserError("cannot read '': the path is empty") }
  var info = stat()
  guard stat(path, &info) == 0 else { throw UserError("cannot read '\(path)': \(String(cString: strerror(errno)))") }
  let type = info.st_mode & S_IFMT
  guard type != S_IFDIR else { throw UserError("cannot read '\(path)': it is a directory, not a file") }
  guard type == S_IFREG else { throw UserError("cannot read '\(path)': it is a device, pipe or socket, not a file") }
  guard let data = FileManager.default.contents(atPath: path) else {
    let reason = access(path, R_OK) == 0 ? "the read failed" : String(cString: strerror(errno))
    throw UserError("cannot read '\(path)': \(reason)")
  }
  return data
}

// MARK: - Atomic writes

/// The project's own name for the temporary file beside `name` while it is written: hidden, and marked with the
/// process id, so that a leftover of a killed run can be told from a live run's and removed (see .gitignore).
func temporaryName(for name: String, pid: Int32 = getpid()) -> String {
  ".\(name).partial-\(pid)"
}

/// Writes `contents` to `path` atomically: the bytes go to a temporary file in the same directory, are flushed to
/// the disk (fsync), and the temporary is renamed over `path`. A reader never sees half a file, and a run killed
/// at any moment leaves the previous file whole. The temporary is the project's own, not Foundation's (which
/// leaves `.dat.nosync*` files behind when killed); leftovers of killed runs beside `path` are removed here.
public func writeAtomically(_ contents: Data, to path: String, as writer: String? = nil) throws {
  try refuseOverwriting(path, as: writer)
  let url = URL(fileURLWithPath: path)
  let directory = url.deletingLastPathComponent().path
  removeStaleTemporaries(of: url.lastPathComponent, in: directory)
  let temporary = directory + "/" + temporaryName(for: url.lastPathComponent)
  func fail(_ step: String) -> UserError {
    let reason = String(cString: strerror(errno))
    unlink(temporary)
    return UserError("cannot write '\(path)': \(step) failed (\(reason))")
  }
  let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
  guard descriptor >= 0 else { throw UserError("cannot write '\(path)': \(String(cString: strerror(errno)))") }
  let written = contents.withUnsafeBytes { writeAll(descriptor, $0) }
  guard written else {
    let error = fail("write")
    close(descriptor)
    throw error
  }
  guard fsync(descriptor) == 0 else {
    let error = fail("fsync")
    close(descriptor)
    throw error
  }
  guard close(descriptor) == 0 else { throw fail("close") }
  guard rename(temporary, path) == 0 else { throw fail("rename") }
}

/// Writes every byte of `buffer`, resuming after short writes and interrupted calls.
private func writeAll(_ descriptor: Int32, _ buffer: UnsafeRawBufferPointer) -> Bool {
  var offset = 0
  while offset < buffer.count {
    let count = write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
    if count < 0 && errno == EINTR { continue }
    guard count > 0 else { return false }
    offset += count
  }
  return true
}

/// Removes the temporaries `writeAtomically` left beside `name` in runs that no longer exist (killed mid-write).
/// A temporary whose process is still alive (and is not this one) is another run's write in progress and stays.
func removeStaleTemporaries(of name: String, in directory: String) {
  let prefix = "." + name + ".partial-"
  guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
  for entry in entries where entry.hasPrefix(prefix) {
    guard let pid = Int32(entry.dropFirst(prefix.count)), pid > 0 else { continue }
    // This process's own name is stale too: its writes of one file follow each other, so a temporary of its pid
    // is a leftover of an earlier process that had the same pid (a container's CLI is often pid 1 every time).
    if pid == getpid() || (kill(pid, 0) != 0 && errno == ESRCH) { unlink(directory + "/" + entry) }
  }
}

/// Writes text to `path` atomically (see `writeAtomically(_:to:as:)`).
public func writeAtomically(_ text: String, to path: String, as writer: String? = nil) throws {
  try writeAtomically(Data(text.utf8), to: path, as: writer)
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
