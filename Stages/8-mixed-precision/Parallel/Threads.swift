import Foundation
import Support
import Synchronization

/// The threads backend: every rank is a thread of this process, and a message is a copy into the receiver's
/// mailbox. Nothing to install or start; what it shows about parallel training (who sends what to whom, in which
/// order, with which sums) is what it would be across machines, only faster.
///
/// Deterministic: a rank receives exactly the message it asks for (sender, tag, group), whatever the timing, and
/// the collectives add in a fixed order, so the same inputs give the same bits on every run.

/// What the ranks of one `runOnThreads` share: the mailboxes, which ranks have finished, and the first failure.
final class ThreadWorld: @unchecked Sendable {
  struct Message {
    let group: Int
    let tag: Int
    let bytes: [UInt8]
  }

  let size: Int
  /// How long a rank waits for a message before it gives up on the sender.
  let timeout: Double
  private let condition = NSCondition()
  /// Messages in flight, by (receiver, sender): mailboxes[to * size + from], oldest first. Guarded by `condition`.
  private var mailboxes: [[Message]]
  /// The first failure: which rank and why. Guarded by `condition` (read it through `firstFailure`).
  private var failure: ParallelError?

  var firstFailure: ParallelError? {
    condition.lock()
    defer { condition.unlock() }
    return failure
  }
  /// Ranks whose work has ended (returned or failed). Guarded by `condition`.
  private var finished: [Bool]
  /// Sub-groups by (parent group, the parent's split count, color) -> group id. Guarded by `condition`.
  private var groups: [String: Int] = [:]

  init(size: Int, timeout: Double) {
    self.size = size
    self.timeout = timeout
    mailboxes = Array(repeating: [], count: size * size)
    finished = Array(repeating: false, count: size)
  }

  func post(_ message: Message, from: Int, to: Int) throws {
    condition.lock()
    defer { condition.unlock() }
    if let failure { throw failure }
    mailboxes[to * size + from].append(message)
    condition.broadcast()
  }

  /// Waits for the oldest message from `from` to `to` of `group` with `tag` and takes it out of the mailbox.
  func take(from: Int, to: Int, group: Int, tag: Int) throws -> [UInt8] {
    let deadline = Date(timeIntervalSinceNow: timeout)
    condition.lock()
    defer { condition.unlock() }
    while true {
      if let failure { throw failure }
      let box = to * size + from
      if let index = mailboxes[box].firstIndex(where: { $0.group == group && $0.tag == tag }) {
        return mailboxes[box].remove(at: index).bytes
      }
      if finished[from] {
        let error = ParallelError(
          rank: from, "rank \(from) has stopped without sending what rank \(to) waits for (tag \(tag))")
        failure = error
        condition.broadcast()
        throw error
      }
      if !condition.wait(until: deadline) {
        let error = ParallelError(
          rank: from,
          "rank \(from) did not answer rank \(to) within \(String(format: "%g", timeout)) s (tag \(tag)): stopping every rank"
        )
        if failure == nil { failure = error }
        condition.broadcast()
        throw failure!
      }
    }
  }

  /// Records that `rank` failed: every wait of every rank ends with this error.
  func fail(rank: Int, _ message: String) {
    condition.lock()
    if failure == nil { failure = ParallelError(rank: rank, "rank \(rank) failed: \(message)") }
    condition.broadcast()
    condition.unlock()
  }

  func finish(rank: Int) {
    condition.lock()
    finished[rank] = true
    condition.broadcast()
    condition.unlock()
  }

  /// The id of the sub-group `color` made by the `count`-th split of group `parent` (the same on every member).
  func groupID(parent: Int, count: Int, color: Int) -> Int {
    condition.lock()
    defer { condition.unlock() }
    let key = "\(parent)/\(count)/\(color)"
    if let id = groups[key] { return id }
    let id = groups.count + 1  // 0 is the world
    groups[key] = id
    return id
  }
}

/// One rank's view of a group of thread ranks.
public final class ThreadCommunicator: Communicator, @unchecked Sendable {
  let world: ThreadWorld
  /// The group's ranks as ranks of the world: members[rank] is this rank's thread.
  let members: [Int]
  let group: Int
  public let rank: Int
  public var size: Int { members.count }
  public let backend = "threads"
  private var splits = 0
  /// Shared with the groups split from this one, which send on behalf of the same thread.
  private let sent: Counter

  /// Bytes sent, added to by a rank's threads at once (its own and data parallelism's communication thread).
  final class Counter: Sendable {
    private let total = Atomic<Int>(0)
    var bytes: Int { total.load(ordering: .relaxed) }
    func add(_ count: Int) { total.add(count, ordering: .relaxed) }
  }

  init(world: ThreadWorld, members: [Int], group: Int, rank: Int, sent: Counter) {
    (self.world, self.members, self.group, self.rank, self.sent) = (world, members, group, rank, sent)
  }

  public var bytesSent: Int { sent.bytes }

  public func send(_ bytes: UnsafeRawBufferPointer, to: Int, tag: Int) throws {
    precondition(members.indices.contains(to), "send: rank \(to) of \(size)")
    sent.add(bytes.count)
    let copy = [UInt8](unsafeUninitializedCapacity: bytes.count) { buffer, count in
      if let base = bytes.baseAddress {
        buffer.baseAddress!.update(from: base.assumingMemoryBound(to: UInt8.self), count: bytes.count)
      }
      count = bytes.count
    }
    try world.post(.init(group: group, tag: tag, bytes: copy), from: members[rank], to: members[to])
  }

  public func receive(_ bytes: UnsafeMutableRawBufferPointer, from: Int, tag: Int) throws {
    precondition(members.indices.contains(from), "receive: rank \(from) of \(size)")
    let message = try world.take(from: members[from], to: members[rank], group: group, tag: tag)
    precondition(
      message.count == bytes.count, "receive: \(message.count) bytes arrived from rank \(from) for \(bytes.count)")
    message.withUnsafeBytes { bytes.copyMemory(from: $0) }
  }

  public func split(color: Int, key: Int) throws -> any Communicator {
    // Every rank learns every rank's (color, key), then keeps those of its own color, ordered by key and rank.
    var table = [Double](repeating: 0, count: 2 * size)
    (table[2 * rank], table[2 * rank + 1]) = (Double(color), Double(key))
    try table.withUnsafeMutableBufferPointer { try allGather($0, bounds: (0...size).map { 2 * $0 }) }
    let mine = (0..<size).filter { Int(table[2 * $0]) == color }
      .sorted { (table[2 * $0 + 1], $0) < (table[2 * $1 + 1], $1) }
    splits += 1
    let id = world.groupID(parent: group, count: splits, color: color)
    return ThreadCommunicator(
      world: world, members: mine.map { members[$0] }, group: id, rank: mine.firstIndex(of: rank)!, sent: sent)
  }

  public func fail(_ message: String) { world.fail(rank: members[rank], message) }
}

/// Runs `body` on `ranks` threads at once, each with its communicator of the whole group, and returns their
/// results in rank order. Each rank gets an equal share of the cores for its own loops (one each on a 2-core
/// machine with 2 ranks), so that ranks do not compete for cores their neighbours are using.
///
/// A rank that throws stops every other one at its next wait, and that first error is thrown here, naming the
/// rank (`ParallelError`). A rank that never sends what another waits for stops the group after `timeout`
/// seconds, with the silent rank named: a run ends, never hangs.
public func runOnThreads<T>(
  ranks: Int, timeout: Double = 300, _ body: @escaping @Sendable (ThreadCommunicator) throws -> T
) throws -> [T] {
  precondition(ranks >= 1, "runOnThreads: \(ranks) ranks")
  let world = ThreadWorld(size: ranks, timeout: timeout)
  let results = RankResults<T>(ranks)
  let done = DispatchGroup()
  let share = max(1, Parallel.cores / ranks)
  for rank in 0..<ranks {
    done.enter()
    let thread = Thread {
      let communicator = ThreadCommunicator(
        world: world, members: Array(0..<ranks), group: 0, rank: rank, sent: .init())
      Parallel.withShare(share) {
        do {
          results.values[rank] = try body(communicator)
        } catch {
          results.errors[rank] = error
          if !(error is ParallelError) { world.fail(rank: rank, "\(error)") }
        }
      }
      world.finish(rank: rank)
      done.leave()
    }
    thread.stackSize = 64 << 20
    thread.name = "rank \(rank)"
    thread.start()
  }
  // Every rank ends, or stops at its next wait once one has failed; a rank that never waits again (stuck in
  // its own work) is left behind after a grace second, as a process that hangs is left to its launcher.
  while done.wait(timeout: .now() + 0.05) == .timedOut {
    if world.firstFailure != nil {
      _ = done.wait(timeout: .now() + 1)
      break
    }
  }
  // The error to report: a rank's own failure (not the other ranks' news of it), the lowest rank's when several
  // failed on their own (all ranks refusing the same setting), so that the message does not depend on timing.
  if let failure = world.firstFailure {
    let own = results.errors.enumerated().first { $0.element != nil && !($0.element is ParallelError) }
    if let (rank, error) = own, let error {
      throw ParallelError(rank: rank, "rank \(rank) failed: \(error)")
    }
    throw failure
  }
  if let error = results.errors.compactMap({ $0 }).first { throw error }
  return results.values.map { $0! }
}

/// What each rank of `runOnThreads` returned or threw (each rank writes only its own entry).
private final class RankResults<T>: @unchecked Sendable {
  var values: [T?]
  var errors: [(any Error)?]
  init(_ n: Int) { (values, errors) = (Array(repeating: nil, count: n), Array(repeating: nil, count: n)) }
}
