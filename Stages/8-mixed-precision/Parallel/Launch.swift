import Foundation
import Support

/// Where the ranks run: threads of this process (no set-up), or processes started by `mpiexec`.
public enum Backend: String, CaseIterable, Sendable {
  case threads
  case mpi
}

/// Runs `body` on every rank and returns rank 0's result (nil in the other processes of an MPI run, which have
/// nothing more to do). Threads: `ranks` threads of this process. MPI: this process is one rank of the world
/// `mpiexec` started (`ranks` is then the world's size, and must be what mpiexec was given when not nil).
///
/// Three environment variables inject faults, for the tests of what a failure does: STAGE8_FAIL_RANK=r makes rank
/// r throw as it starts; STAGE8_HANG_RANK=r makes it stop answering (it sleeps), which the others' watchdog
/// notices after --timeout; STAGE8_KILL_RANK=r makes rank r's process die (SIGKILL) once the group has formed
/// (under MPI, where mpiexec then stops the others; on threads it would take every rank with it).
public func onRanks<T>(
  _ backend: Backend, ranks: Int, timeout: Double = 300, _ work: @escaping @Sendable (any Communicator) throws -> T
) throws -> T? {
  let environment = ProcessInfo.processInfo.environment
  let rank = { (name: String) in environment[name].flatMap(Int.init) }
  let (failing, hanging, dying) = (rank("STAGE8_FAIL_RANK"), rank("STAGE8_HANG_RANK"), rank("STAGE8_KILL_RANK"))
  let body = { @Sendable (comm: any Communicator) throws -> T in
    if let dying {
      try comm.barrier()  // every rank, so that the group has formed
      if comm.rank == dying { kill(getpid(), SIGKILL) }
    }
    if comm.rank == failing { throw UserError("failed on purpose (STAGE8_FAIL_RANK=\(comm.rank))") }
    if comm.rank == hanging { while true { Thread.sleep(forTimeInterval: 1) } }
    return try work(comm)
  }
  switch backend {
  case .threads:
    return try runOnThreads(ranks: ranks, timeout: timeout) { try body($0) }[0]
  case .mpi:
    let world = try MPICommunicator.world(timeout: timeout)
    let result = try world.run { try body(world) }
    return world.rank == 0 ? result : nil
  }
}
