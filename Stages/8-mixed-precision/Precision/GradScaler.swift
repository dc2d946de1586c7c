/// Dynamic loss scaling, PyTorch's `torch.amp.GradScaler`.
///
/// fp16's smallest normal value is 2^-14 (6.1e-5) and its smallest subnormal 2^-24 (6e-8); a language model's
/// gradients reach far below that, and stored in fp16 they become zero. Multiplying the loss by S multiplies
/// every gradient by S (backward is linear), which lifts them into range; dividing by S before the update
/// ("unscaling", in fp32) gives the true gradients back. Too large an S overflows some gradient to infinity, so S
/// is found as the run goes:
///
///   start at 2^16;
///   a step whose gradients hold an inf or NaN is skipped (the weights and the optimizer's moments are not
///   touched) and S halves;
///   after 2000 clean steps in a row S doubles, to try a larger scale again.
///
/// So S settles just below the largest scale that does not overflow, and a run skips one step in about 2000.
/// The gradients are unscaled exactly once per step, before clipping (clipping a scaled gradient would clip at
/// S times the intended norm), and `step` says whether it stepped: a caller that counts or logs skips needs that
/// (PyTorch's users ask for it; its `step` returns None either way).
public struct GradScaler: Sendable, Equatable {
  /// How the scale is chosen.
  public enum Mode: Sendable, Equatable {
    /// Halve on overflow, double after `growthInterval` clean steps (GradScaler).
    case dynamic
    /// A constant scale; a step with an inf or NaN gradient is still skipped.
    case fixed(Double)
    /// No scaling at all (S = 1) and no check: what fp16 does without a scaler.
    case none
  }

  public let mode: Mode
  public let growthFactor: Double
  public let backoffFactor: Double
  public let growthInterval: Int
  /// The current scale S.
  public internal(set) var scale: Double
  /// Clean steps since the scale last changed (PyTorch's `_growth_tracker`).
  public internal(set) var growthTracker = 0
  /// Steps skipped so far.
  public internal(set) var skippedSteps = 0
  /// Whether this step's gradients are unscaled already, and whether they held an inf or NaN.
  public private(set) var unscaled = false
  public private(set) var foundInfinity = false

  public init(
    _ mode: Mode = .dynamic, initialScale: Double = 65536, growthFactor: Double = 2, backoffFactor: Double = 0.5,
    growthInterval: Int = 2000
  ) {
    precondition(growthFactor > 1 && backoffFactor > 0 && backoffFactor < 1 && growthInterval >= 1, "GradScaler")
    self.mode = mode
    switch mode {
    case .dynamic: scale = initialScale
    case .fixed(let s): scale = s
    case .none: scale = 1
    }
    self.growthFactor = growthFactor
    self.backoffFactor = backoffFactor
    self.growthInterval = growthInterval
  }

  /// What backward's seed is multiplied by (PyTorch's `scaler.scale(loss)`).
  public var lossFactor: Float { Float(scale) }

  /// Divides every gradient by S in fp32 and notes whether any element is inf or NaN (`unscale_`). A second call
  /// in the same step is a programming error, as in PyTorch: it would divide by S twice.
  public mutating func unscale(_ parameters: [Tensor<Float>]) {
    precondition(!unscaled, "GradScaler.unscale: the gradients of this step are unscaled already")
    unscaled = true
    guard mode != .none else { return }
    let inverse = Float(1 / scale)  // a power of two for the dynamic scale: dividing is exact
    var found = false
    for p in parameters where p.gradStorage != nil {
      p.gradStorage!.withUnsafeMutableBufferPointer { g in
        for i in g.indices {
          g[i] *= inverse
          if !g[i].isFinite { found = true }
        }
      }
    }
    foundInfinity = found
  }

  /// Runs `update` unless this step's gradients held an inf or NaN; unscales first if `unscale` was not called.
  /// Then adjusts the scale (`update()` in PyTorch) and returns whether the step was taken.
  @discardableResult
  public mutating func step(_ parameters: [Tensor<Float>], _ update: () throws -> Void) rethrows -> Bool {
    if !unscaled { unscale(parameters) }
    let skip = foundInfinity
    if !skip { try update() }
    adjust()
    return !skip
  }

  /// The state machine: on an overflow, back off and restart the count; on a clean step, count, and grow after
  /// `growthInterval` of them.
  mutating func adjust() {
    defer { (unscaled, foundInfinity) = (false, false) }
    if foundInfinity { skippedSteps += 1 }
    guard mode == .dynamic else { return }
    if foundInfinity {
      scale *= backoffFactor
      growthTracker = 0
    } else {
      growthTracker += 1
      if growthTracker == growthInterval {
        scale *= growthFactor
        growthTracker = 0
      }
    }
  }

  /// Restores a checkpoint's scale, count and skips.
  mutating func restore(scale: Double, growthTracker: Int, skippedSteps: Int) {
    (self.scale, self.growthTracker, self.skippedSteps) = (scale, growthTracker, skippedSteps)
  }
}
