/// How data parallelism lays the gradients out for sending: buckets, and each bucket's chunks, one per rank.
///
/// Sending each parameter's gradient on its own would pay a message's latency ~50 times per step; sending all of
/// them at the end would leave the network idle during backward. PyTorch's DDP does the middle thing: parameters
/// in reverse order (backward produces the last layers' gradients first), packed into buckets of about
/// `bucketBytes`, each sent as soon as all its gradients are final. The same layout serves ZeRO: chunk r of every
/// bucket is what rank r owns, reduces and updates.

public struct GradientLayout<Scalar: TensorScalar> {
  /// One bucket: parameters (in reverse model order) laid end to end, and the cut into chunks.
  public struct Bucket {
    /// Indices into the model's parameter list, in the bucket's order.
    public let parameters: [Int]
    /// Where each parameter starts in the bucket; offsets.last is the bucket's size.
    public let offsets: [Int]
    /// Chunk r is bounds[r]..<bounds[r + 1]: even, moved to the nearest start of a norm block, so that no block of
    /// the gradient norm's sums is split between two ranks.
    public let bounds: [Int]

    public var count: Int { offsets.last! }

    /// The parts of `range` (a range of the bucket) that fall in each parameter: (parameter index, the range in
    /// that parameter, the range in the bucket).
    public func pieces(of range: Range<Int>) -> [(parameter: Int, inParameter: Range<Int>, inBucket: Range<Int>)] {
      parameters.indices.compactMap { i in
        let start = max(range.lowerBound, offsets[i])
        let end = min(range.upperBound, offsets[i + 1])
        guard start < end else { return nil }
        return (parameters[i], (start - offsets[i])..<(end - offsets[i]), start..<end)
      }
    }
  }

  public let buckets: [Bucket]
  /// For each parameter, its bucket and its place in the bucket.
  public let place: [(bucket: Int, slot: Int)]
  /// For each parameter, the index of its first norm block (blocks numbered over all parameters in model order).
  public let firstBlock: [Int]
  public let blockCount: Int

  /// The layout of parameters with these element counts for `ranks` ranks: buckets of at most `bucketBytes`
  /// (a larger parameter has a bucket of its own).
  public init(counts: [Int], bucketBytes: Int, ranks: Int) {
    let capacity = max(1, bucketBytes / MemoryLayout<Scalar>.stride)
    var groups: [[Int]] = [[]]
    var filled = 0
    for index in counts.indices.reversed() {
      if filled > 0 && filled + counts[index] > capacity {
        groups.append([])
        filled = 0
      }
      groups[groups.count - 1].append(index)
      filled += counts[index]
    }
    self.init(counts: counts, groups: groups, ranks: ranks)
  }

  /// The layout with the buckets given: `groups` lists each bucket's parameter indices, in the order the buckets
  /// are sent, and holds every parameter once.
  public init(counts: [Int], groups: [[Int]], ranks: Int) {
    precondition(groups.joined().sorted() == Array(counts.indices), "GradientLayout: every parameter once")
    var place = Array(repeating: (bucket: 0, slot: 0), count: counts.count)
    buckets = groups.enumerated().map { b, members in
      var offsets = [0]
      var starts: [Int] = []  // where a norm block may start
      for (slot, index) in members.enumerated() {
        place[index] = (b, slot)
        starts += stride(from: offsets.last!, to: offsets.last! + counts[index], by: normBlock)
        offsets.append(offsets.last! + counts[index])
      }
      starts.append(offsets.last!)
      let total = offsets.last!
      let bounds = (0...ranks).map { r -> Int in
        let even = total * r / ranks
        return starts.min { abs($0 - even) < abs($1 - even) }!
      }
      return Bucket(parameters: members, offsets: offsets, bounds: bounds)
    }
    self.place = place
    var first: [Int] = []
    var blocks = 0
    for count in counts {
      first.append(blocks)
      blocks += (count + normBlock - 1) / normBlock
    }
    firstBlock = first
    blockCount = blocks
  }
}
