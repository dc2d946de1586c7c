import Foundation
import Support

/// Checkpoints of a sharded run (ZeRO 1 to 3), written as PyTorch's distributed checkpoint writes them: every rank
/// saves what it alone holds (its chunks of Adam's moments, and with ZeRO 3 of the weights) to a shard file of its
/// own, and rank 0 saves everything else (the weights below ZeRO 3, the step, the generators, the history) to the
/// checkpoint file, which names the shards. No rank ever gathers the whole optimizer state to save it.
///
/// A shard holds flat pieces: "optimizer.exp_avg.blocks.0.qkv.weight@1536" is that tensor's elements from 1536 on,
/// as many as the piece holds. Reading puts the pieces of every shard back into whole tensors, each element
/// exactly once, so that a checkpoint saved on N ranks resumes on any number: each rank of the new run then takes
/// its own chunks of the whole (re-sharding by its own layout), and a one-process run takes it all.
///
/// A save is safe at any moment. Its shards have names of their own (the step and a number drawn for the save);
/// they are written first, each atomically; the checkpoint file, written atomically last, is what names them; the
/// shards of the save before are removed only after that. Killed anywhere, the previous checkpoint and its shards
/// are whole. The shards stand beside the checkpoint file: move them together, and with MPI on several machines
/// keep the directory on a file system they all share.

/// The metadata "format" of a shard file.
let shardFormat = "stage8 checkpoint shard"

/// The metadata keys of a checkpoint file that has shards: the shard files (one name a line, rank 0 first), the
/// whole tensors they hold ("NAME d0,d1" a line), and the save's name, which every shard repeats.
let shardKeys = (files: "shards", tensors: "sharded_tensors", save: "shard_save")

/// The shard file of rank `rank` of `ranks` for save `save` of the checkpoint `path`.
func shardPath(_ path: String, save: String, rank: Int, ranks: Int) -> String {
  "\(path).\(save).rank\(rank)of\(ranks)"
}

/// Whether `name` (a file name) has the form of a shard of the checkpoint file named `base`:
/// "BASE.stepS-HEX.rankRofN". Nothing else is ever read as a shard, or removed as an old one.
func isShardName(_ name: String, of base: String) -> Bool {
  guard name.hasPrefix(base + ".step") else { return false }
  let rest = name.dropFirst(base.count + 5).split(separator: ".", omittingEmptySubsequences: false)
  guard rest.count == 2, rest[1].hasPrefix("rank") else { return false }
  let save = rest[0].split(separator: "-", omittingEmptySubsequences: false)
  let ranks = rest[1].dropFirst(4).split(separator: "o", maxSplits: 1, omittingEmptySubsequences: false)
  return save.count == 2 && Int(save[0]) != nil && UInt64(save[1], radix: 16) != nil && ranks.count == 2
    && Int(ranks[0]) != nil && ranks[1].hasPrefix("f") && Int(ranks[1].dropFirst()) != nil
}

/// Removes the shard files beside the checkpoint `path` that it does not name (`keeping`): the previous save's,
/// and those of a save killed before its checkpoint file was written. A save calls it after writing the file.
public func removeOldShards(of path: String, keeping: [String] = []) {
  let url = URL(fileURLWithPath: path)
  let directory = url.deletingLastPathComponent().path
  guard let entries = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
  for entry in entries where isShardName(entry, of: url.lastPathComponent) && !keeping.contains(entry) {
    unlink(directory + "/" + entry)
  }
}

extension DataParallelTrainer {
  /// Saves the run to the checkpoint `path`. Every rank calls it. ZeRO 0: rank 0 writes the whole run, as DDP
  /// saves rank 0's state dict. ZeRO 1 to 3: every rank writes its shard, then rank 0 the checkpoint file.
  public func saveCheckpoint(to path: String) throws {
    guard parallel.zero != .none else {
      if communicator.rank == 0 {
        try trainer.save(to: path)
        removeOldShards(of: path)
      }
      return
    }
    let named = trainer.model.namedParameters()
    let nameOf = Dictionary(uniqueKeysWithValues: named.map { (ObjectIdentifier($0.tensor), $0.name) })
    let names = parallel.parameters.map { nameOf[ObjectIdentifier($0)]! }
    let pieces = parallel.ownedPieces().map { piece in
      (
        (piece.kind == "model" ? "model." : "optimizer.\(piece.kind).") + names[piece.parameter], piece.start,
        piece.values
      )
    }
    // What the shards hold between them: every parameter's moments (after the first step), and its weights with
    // ZeRO 3 (the ranks' chunks cover every bucket).
    let kinds =
      (parallel.optimizer.stepCount > 0 ? ["optimizer.exp_avg.", "optimizer.exp_avg_sq."] : [])
      + (parallel.zero == .parameters ? ["model."] : [])
    let sharded = kinds.flatMap { kind in zip(names, parallel.parameters).map { (kind + $0, $1.shape) } }
    try writeShardedCheckpoint(trainer, to: path, pieces: pieces, sharded: sharded, group: communicator)
  }
}

/// Writes `trainer`'s run to the checkpoint `path` in shards: rank r of `group` writes shard r with `pieces`
/// (each a run of a tensor's elements from `start` on), then rank 0 writes the checkpoint file without the
/// `sharded` tensors (the whole tensors the pieces make up), naming the shards. Every rank of `group` calls it.
func writeShardedCheckpoint(
  _ trainer: Trainer, to path: String, pieces: [(name: String, start: Int, values: [Float])],
  sharded: [(name: String, shape: [Int])], group: any Communicator
) throws {
  let (rank, ranks) = (group.rank, group.size)
  var draw = [rank == 0 ? UInt64.random(in: 0..<(1 << 32)) : 0]
  try draw.withUnsafeMutableBufferPointer { try group.broadcast($0, root: 0) }
  let save = "step\(trainer.step)-" + String(draw[0], radix: 16)
  var tensors: [String: SafeTensor] = [:]
  for piece in pieces {
    tensors["\(piece.name)@\(piece.start)"] = try SafeTensor(piece.values, shape: [piece.values.count])
  }
  let metadata = ["format": shardFormat, "save": save, "rank": String(rank), "ranks": String(ranks)]
  try writeAtomically(
    Data(encodeSafetensors(tensors, metadata: metadata)),
    to: shardPath(path, save: save, rank: rank, ranks: ranks), as: "--checkpoint")
  try group.barrier()  // every shard is on the disk
  guard rank == 0 else { return }
  let files = (0..<ranks).map {
    URL(fileURLWithPath: shardPath(path, save: save, rank: $0, ranks: ranks)).lastPathComponent
  }
  let bytes = try trainer.checkpointBytes(
    leavingOut: Set(sharded.map(\.name)),
    metadata: [
      shardKeys.files: files.joined(separator: "\n"),
      shardKeys.tensors: sharded.map { $0.name + " " + $0.shape.map(String.init).joined(separator: ",") }
        .joined(separator: "\n"),
      shardKeys.save: save,
    ])
  try writeAtomically(Data(bytes), to: path, as: "--checkpoint")
  removeOldShards(of: path, keeping: files)
}

/// Reads the checkpoint at `path`, as `CheckpointReader(path:format:)` does, and puts a sharded checkpoint's
/// pieces back together from its shard files: the reader then holds every tensor whole, as if one process had
/// saved it. Every problem (a shard missing, of another save, a piece out of place or twice, an element left
/// out) is one message naming the file.
public func openCheckpoint(_ path: String, format: String) throws -> CheckpointReader {
  let (tensors, metadata) = try readSafetensors(path)
  markAsInput(path, replaceableBy: "--checkpoint")  // a resumed run may save over it; no plot may
  let keys = [shardKeys.files, shardKeys.tensors, shardKeys.save]
  guard keys.contains(where: { metadata[$0] != nil }) else {
    return try CheckpointReader(tensors: tensors, metadata: metadata, source: path, format: format)
  }
  _ = try CheckpointReader(tensors: [:], metadata: metadata, source: path, format: format)  // the format first
  func fail(_ problem: String) -> UserError { UserError("checkpoint '\(path)': \(problem)") }
  guard let list = metadata[shardKeys.files], let table = metadata[shardKeys.tensors],
    let save = metadata[shardKeys.save]
  else {
    let missing = keys.filter { metadata[$0] == nil }[0]
    throw fail("metadata '\(missing)' is missing (a sharded checkpoint has all of \(keys.joined(separator: ", ")))")
  }
  let files = list.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
  let base = URL(fileURLWithPath: path).lastPathComponent
  guard files.allSatisfy({ isShardName($0, of: base) }), Set(files).count == files.count else {
    throw fail(
      "metadata '\(shardKeys.files)' must name the shard files beside it ('\(base).stepS-HEX.rankRofN'), one per "
        + "line, each once")
  }
  // The whole tensors, each with its elements not yet seen.
  var shapes: [String: [Int]] = [:]
  var elements = 0.0
  for line in table.split(separator: "\n") {
    let parts = line.split(separator: " ")
    let dims = parts.count == 2 ? parts[1].split(separator: ",").map { Int($0) } : []
    guard parts.count == 2, !dims.isEmpty, dims.allSatisfy({ $0 != nil && $0! > 0 }),
      dims.reduce(1.0, { $0 * Double($1!) }) <= Double(1 << 30), tensors[String(parts[0])] == nil,
      shapes[String(parts[0])] == nil
    else {
      throw fail(
        "metadata '\(shardKeys.tensors)' has '\(line)'; each line names a tensor the file does not hold and its "
          + "shape, as 'NAME 3,4' (at most 2^30 elements), each once")
    }
    shapes[String(parts[0])] = dims.map { $0! }
    elements += dims.reduce(1.0, { $0 * Double($1!) })
  }
  guard elements <= Double(1 << 31) else {
    throw fail("metadata '\(shardKeys.tensors)' names \(Int(elements)) elements, more than 2^31")
  }
  var wholes = shapes.mapValues { [Float](repeating: 0, count: $0.reduce(1, *)) }
  var seen = shapes.mapValues { [Bool](repeating: false, count: $0.reduce(1, *)) }
  let directory = URL(fileURLWithPath: path).deletingLastPathComponent()
  for (rank, file) in files.enumerated() {
    let shard = directory.appendingPathComponent(file).path
    guard FileManager.default.fileExists(atPath: shard) else {
      throw fail("its shard '\(shard)' is missing (a sharded checkpoint is the file and every rank's shard beside it)")
    }
    let (pieces, about) = try readSafetensors(shard)
    markAsInput(shard, replaceableBy: "--checkpoint")
    let expected = ["format": shardFormat, "save": save, "rank": String(rank), "ranks": String(files.count)]
    guard about == expected else {
      let found = about.sorted { $0.key < $1.key }.map { "\($0.key) '\($0.value)'" }.joined(separator: ", ")
      throw fail("'\(file)' is not shard \(rank) of \(files.count) of this save ('\(save)'); its metadata: \(found)")
    }
    for (key, piece) in pieces.sorted(by: { $0.key < $1.key }) {
      let at = key.lastIndex(of: "@") ?? key.endIndex
      let name = String(key[..<at])
      guard at < key.endIndex, let start = Int(key[key.index(after: at)...]), start >= 0, let count = seen[name]?.count
      else {
        throw fail("shard '\(file)' holds '\(key)', not a piece 'NAME@START' of a tensor the checkpoint names")
      }
      guard piece.dtype == .f32, piece.shape.count == 1, let values = piece.floats else {
        throw fail("shard '\(file)': '\(key)' is \(piece.dtype.rawValue) \(piece.shape); a piece is F32 [n]")
      }
      guard start <= count, values.count <= count - start else {
        throw fail("shard '\(file)': '\(key)' runs past the end of '\(name)' (\(count) elements)")
      }
      for (i, value) in values.enumerated() {
        guard !seen[name]![start + i] else {
          throw fail("shard '\(file)': '\(key)' holds element \(start + i) of '\(name)', which another piece holds")
        }
        seen[name]![start + i] = true
        wholes[name]![start + i] = value
      }
    }
  }
  var merged = tensors
  for (name, flags) in seen.sorted(by: { $0.key < $1.key }) {
    if let missing = flags.firstIndex(of: false) {
      throw fail("no shard holds element \(missing) of '\(name)'")
    }
    merged[name] = try SafeTensor(wholes[name]!, shape: shapes[name]!)
  }
  var rest = metadata
  for key in keys { rest[key] = nil }
  return try CheckpointReader(tensors: merged, metadata: rest, source: path, format: format)
}
