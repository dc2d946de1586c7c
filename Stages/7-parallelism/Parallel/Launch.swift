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
public func onRanks<T>(
  _ backend: Backend, ranks: Int, timeout: Double = 300, _ body: @escaping @Sendable (any Communicator) throws -> T
) throws -> T? {
  switch backend {
  case .threads:
    return try runOnThreads(ranks: ranks, timeout: timeout) { try body($0) }[0]
  case .mpi:
    let world = try MPICommunicator.world(timeout: timeout)
    let result = try world.run { try body(world) }
    return world.rank == 0 ? result : nil
  }
}
