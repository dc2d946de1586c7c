import RealModule

/// Learning-rate schedules: the learning rate as a function of the step. A large rate early moves fast; a small
/// one late settles into a minimum instead of bouncing around it. Warmup starts small, because the first
/// gradients of a freshly initialised network (and Adam's first moment estimates) are the least reliable.

// MARK: - Schedules

/// A schedule gives the factor that multiplies the base learning rate at each optimizer step (0-based).
public enum LRSchedule: Sendable, Equatable {
  /// Always 1.
  case constant
  /// gamma^(step / every): drop by gamma every `every` steps (PyTorch's StepLR).
  case step(every: Int, gamma: Double)
  /// Linear warmup over `warmup` steps, then a straight line down to `floor` at `total`.
  case linear(warmup: Int, total: Int, floor: Double)
  /// Linear warmup over `warmup` steps, then half a cosine down to `floor` at `total` (as nanoGPT).
  case cosine(warmup: Int, total: Int, floor: Double)

  public func factor(at step: Int) -> Double {
    switch self {
    case .constant:
      return 1
    case .step(let every, let gamma):
      return Double.pow(gamma, Double(step / every))
    case .linear(let warmup, let total, let floor), .cosine(let warmup, let total, let floor):
      if step < warmup { return Double(step + 1) / Double(warmup + 1) }
      if step >= total { return floor }
      let progress = Double(step - warmup) / Double(max(total - warmup, 1))
      if case .linear = self { return 1 - (1 - floor) * progress }
      return floor + (1 - floor) * 0.5 * (1 + Double.cos(Double.pi * progress))
    }
  }
}
