import CMPI
import Foundation
import Support
import Synchronization

/// The MPI backend: every rank is a process started by `mpiexec -n N`, on this machine or on the machines of a
/// hostfile, and a message goes through MPI (MPICH or Open MPI): shared memory between processes of one machine,
/// the network between machines. The collectives are the same ring code as on threads, over MPI's point-to-point
/// calls, so both backends compute the same sums in the same order.
///
/// Sends are non-blocking (MPI_Isend of a copy): in a ring every rank sends before it receives, and a blocking
/// send of a large buffer would wait for a receive that is never posted. Receives wait at most `timeout` seconds;
/// a rank that fails prints why and aborts the whole job (MPI_Abort), so that no rank is left waiting forever.
public final class MPICommunicator: Communicator, @unchecked Sendable {
  let comm: MPI_Comm
  public let rank: Int
  public let size: Int
  public let backend = "mpi"
  let timeout: Double
  /// Sends not known to be finished, with the copies they send from.
  private var pending: [(request: MPI_Request, bytes: UnsafeMutableRawBufferPointer)] = []
  private let sent: ThreadCommunicator.Counter

  /// MPI's tags must not be negative; the collectives' are.
  static let tagOffset: Int32 = 16

  private init(comm: MPI_Comm, timeout: Double, sent: ThreadCommunicator.Counter) throws {
    self.comm = comm
    self.timeout = timeout
    self.sent = sent
    MPI_Comm_set_errhandler(comm, cmpi_errors_return())
    var (r, s): (Int32, Int32) = (0, 0)
    MPI_Comm_rank(comm, &r)
    MPI_Comm_size(comm, &s)
    (rank, size) = (Int(r), Int(s))
  }

  // Never waits: a communicator let go while a peer is gone (a failed run unwinding) must not block on sends
  // that cannot finish. MPI completes the unfinished ones in the background (MPI_Request_free); their copies
  // stay allocated, since MPI may still read them.
  deinit {
    pruneSends()
    for entry in pending {
      var request = entry.request
      MPI_Request_free(&request)
    }
  }

  private static let initialized = Mutex(false)

  /// The world of the processes mpiexec started (one process alone without mpiexec). Starts MPI on first use,
  /// with threads allowed to call it at once (data parallelism's communication thread does).
  public static func world(timeout: Double = 300) throws -> MPICommunicator {
    try initialized.withLock { started in
      guard !started else { return }
      // A peer that died leaves a broken connection: writing to it must be an error MPI returns (which names
      // the peer), not SIGPIPE, which would end this rank without a word.
      signal(SIGPIPE, SIG_IGN)
      var provided: Int32 = 0
      guard MPI_Init_thread(nil, nil, cmpi_thread_multiple(), &provided) == cmpi_success() else {
        throw UserError("MPI could not start (MPI_Init_thread failed)")
      }
      guard provided >= cmpi_thread_multiple() else {
        throw UserError("this MPI library does not let several threads call it (MPI_THREAD_MULTIPLE)")
      }
      started = true
    }
    return try MPICommunicator(comm: cmpi_comm_world(), timeout: timeout, sent: .init())
  }

  public var bytesSent: Int { sent.bytes }

  /// Throws a `ParallelError` about `peer` when an MPI call did not succeed.
  private func check(_ code: Int32, _ what: String, peer: Int) throws {
    guard code != cmpi_success() else { return }
    var text = [CChar](repeating: 0, count: Int(cmpi_max_error_string()) + 1)
    var length: Int32 = 0
    MPI_Error_string(code, &text, &length)
    throw ParallelError(
      rank: peer,
      "\(what) with rank \(peer) failed: \(String(decoding: text.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self))"
    )
  }

  public func send(_ bytes: UnsafeRawBufferPointer, to: Int, tag: Int) throws {
    precondition((0..<size).contains(to), "send: rank \(to) of \(size)")
    precondition(bytes.count <= Int(Int32.max), "send: \(bytes.count) bytes in one message; MPI counts in Int32")
    let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
    if bytes.count > 0 { copy.copyMemory(from: bytes) }
    var request = cmpi_request_null()
    try check(
      MPI_Isend(
        copy.baseAddress, Int32(bytes.count), cmpi_byte(), Int32(to), Int32(tag) + Self.tagOffset, comm, &request),
      "a send", peer: to)
    sent.add(bytes.count)
    pending.append((request, copy))
    pruneSends()
  }

  /// Frees the copies of the sends that have finished.
  private func pruneSends() {
    pending.removeAll { entry in
      var request = entry.request
      var done: Int32 = 0
      MPI_Test(&request, &done, nil)
      if done != 0 { entry.bytes.deallocate() }
      return done != 0
    }
  }

  /// Waits for every send of this rank to finish.
  private func finishSends() {
    for entry in pending {
      var request = entry.request
      MPI_Wait(&request, nil)
      entry.bytes.deallocate()
    }
    pending = []
  }

  public func receive(_ bytes: UnsafeMutableRawBufferPointer, from: Int, tag: Int) throws {
    precondition((0..<size).contains(from), "receive: rank \(from) of \(size)")
    precondition(bytes.count <= Int(Int32.max), "receive: \(bytes.count) bytes in one message; MPI counts in Int32")
    var request = cmpi_request_null()
    try check(
      MPI_Irecv(
        bytes.baseAddress, Int32(bytes.count), cmpi_byte(), Int32(from), Int32(tag) + Self.tagOffset, comm, &request),
      "a receive", peer: from)
    let deadline = Stopwatch.now() + UInt64(timeout * 1e9)
    var done: Int32 = 0
    var status = MPI_Status()
    var pause: UInt32 = 10
    while true {
      try check(MPI_Test(&request, &done, &status), "a receive", peer: from)
      if done != 0 { break }
      if Stopwatch.now() > deadline {
        abortJob(
          "rank \(from) did not answer rank \(rank) within \(String(format: "%g", timeout)) s (tag \(tag)): stopping every rank"
        )
      }
      pruneSends()
      usleep(pause)  // MPI progresses inside MPI_Test; between looks, leave the core to the rank's other threads
      pause = min(pause * 2, 500)
    }
    var count: Int32 = 0
    MPI_Get_count(&status, cmpi_byte(), &count)
    precondition(Int(count) == bytes.count, "receive: \(count) bytes arrived from rank \(from) for \(bytes.count)")
  }

  public func split(color: Int, key: Int) throws -> any Communicator {
    try barrier()  // through this code's receives, whose watchdog names a rank that is gone
    var newComm = cmpi_comm_null()
    let code = watched("MPI_Comm_split") { MPI_Comm_split(comm, Int32(color), Int32(key), &newComm) }
    try check(code, "a split", peer: rank)
    return try MPICommunicator(comm: newComm, timeout: timeout, sent: sent)
  }

  /// Runs a blocking MPI call (one this code cannot poll) under a watchdog: if it has not returned after
  /// `timeout` seconds, a rank it waits for is gone, and the job ends with that said.
  private func watched<T>(_ what: String, _ call: () -> T) -> T {
    let finished = Atomic<Bool>(false)
    let (rank, timeout) = (self.rank, self.timeout)
    let watchdog = Thread { [self] in
      let deadline = Stopwatch.now() + UInt64(timeout * 1e9)
      while !finished.load(ordering: .acquiring) {
        if Stopwatch.now() > deadline {
          abortJob(
            "rank \(rank): \(what) did not finish within \(String(format: "%g", timeout)) s (another rank stopped): stopping every rank"
          )
        }
        usleep(10_000)
      }
    }
    watchdog.start()
    defer { finished.store(true, ordering: .releasing) }
    return call()
  }

  /// Prints why this rank stops and ends the whole job: mpiexec stops every other rank.
  public func fail(_ message: String) { abortJob(message) }

  func abortJob(_ message: String) -> Never {
    let program = URL(fileURLWithPath: CommandLine.arguments.first ?? "stage8").lastPathComponent
    FileHandle.standardError.write(
      Data("\(program): error: \(message.hasPrefix("rank ") ? "" : "rank \(rank) failed: ")\(message)\n".utf8))
    // mpiexec forwards a rank's stderr through its proxy, which the abort kills: give the line time to get out
    // (on a loaded machine it was lost now and then).
    usleep(300_000)
    MPI_Abort(cmpi_comm_world(), 1)
    exit(1)
  }

  /// Runs `body` on this rank; a failure ends the job (every rank) with the message, and success waits for the
  /// other ranks and shuts MPI down.
  public func run<T>(_ body: () throws -> T) throws -> T {
    let result: T
    do {
      result = try body()
      try barrier()
    } catch {
      abortJob("\(error)")
    }
    finishSends()
    MPI_Finalize()
    return result
  }
}
