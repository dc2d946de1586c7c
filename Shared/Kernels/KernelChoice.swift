import Synchronization

/// Which form of every kernel a run uses: the fast loops (the default) or their plain references. The choice is
/// for the whole process (`stageN train --kernels reference`), read once at each kernel's entry, never inside a
/// loop. Both give the same results within float noise; the references are the maths written out, the fast forms
/// what it takes to run it at the machine's speed.
public enum KernelChoice: String, CaseIterable, Sendable {
  case fast
  case reference

  @usableFromInline static let referenceFlag = Atomic<Bool>(false)

  /// The choice in force.
  public static var current: KernelChoice {
    get { useReference ? .reference : .fast }
    set { referenceFlag.store(newValue == .reference, ordering: .relaxed) }
  }

  /// Whether the kernels run their references.
  @inlinable
  public static var useReference: Bool { referenceFlag.load(ordering: .relaxed) }

  /// Runs `body` with `choice` in force, then puts the previous choice back (for tests that compare the two).
  public static func with<R>(_ choice: KernelChoice, _ body: () throws -> R) rethrows -> R {
    let previous = current
    current = choice
    defer { current = previous }
    return try body()
  }
}
